"""`latest` that costs Telegram little: what is new in every group, in one call per 100.

A `chats` `latest` over idle groups used to cost, per group, a channels.getChannels (to check
the cached username) and a messages.getHistory (to find nothing). messages.getPeerDialogs
answers, for up to 100 chats at once, each chat's newest message id and the chat itself (its
usernames), fresh from Telegram at the time of the request. So before paging:

* a group whose cached entity Telegram returns as a dialog still bearing the name needs no
  getChannels (the access hash opened it, the name is still its);
* a group whose stored offset is at or past that newest id has nothing new: no getHistory,
  and `done` reports it with `sent` 0 and `total` null (Telegram did not count it).

Groups that are not dialogs of the account (not a member), not cached, or in a chunk that
Telegram refused, are resolved and fetched as before. The answer is never stale: it is asked
for on every request. A group whose offset is 0 is always fetched (an upgraded group's
old history comes before the first supergroup message; see docs/offsets.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tgws import account_updates
from tgws.errors import GatewayError, NotAuthorized
from tgws.gateway import Account
from tgws.peers import Peer
from tgws.protocol import username_of

log = logging.getLogger("tgws.bulk_latest")


@dataclass(frozen=True, slots=True)
class Known:
    """A group resolved and checked in bulk: its peer and its newest message id."""

    peer: Peer
    newest: int


async def prefetch(account: Account, names: list[str]) -> dict[str, Known]:
    """{name as given: Known} for the names whose cached entity getPeerDialogs confirmed."""
    cached: dict[str, Peer] = {}
    max_age = account.config.entity_cache_ttl or None
    for name in names:
        username = username_of(name)
        if username is None:
            continue
        record = await account.store.lookup_entity(account.api_key_id, username,
                                                   max_age=max_age)
        if record is not None and record.kind != "user":
            cached[name] = Peer(record.peer_id, record.access_hash, record.kind, record.title,
                                record.username)
    if not cached:
        return {}
    unique = list({peer.id: peer for peer in cached.values()}.values())
    try:
        newest = await account_updates.newest_ids(account, unique)
    except NotAuthorized:
        raise
    except GatewayError as err:
        # Telegram failed the bulk call (a 5xx, a stall, a flood): learn nothing from it and
        # let each group take the path it took before, with that path's retries.
        log.info("account of key #%d: getPeerDialogs failed (%s); asking each group",
                 account.api_key_id, err)
        return {}
    known: dict[str, Known] = {}
    for name, peer in cached.items():
        found = newest.get(peer.id)
        username = username_of(name)
        if found is not None and username is not None and username.lower() in found.usernames:
            known[name] = Known(peer, found.top)
    return known
