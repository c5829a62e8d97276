"""Group names to peers: the entity cache first, then contacts.ResolveUsername."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from telethon import errors, functions, types

from tgws.account_calls import AccountCalls, OnFlood
from tgws.errors import PeerNotFound, TelegramFailure
from tgws.rpc_errors import PEER_ERRORS, STALE_PEER_ERRORS, translate
from tgws.store import EntityRecord, normalize_username

log = logging.getLogger("tgws.gateway")

GROUP_KINDS = ("megagroup", "gigagroup", "chat")
_UNKNOWN = object()  # migrated_from not asked yet


@dataclass(frozen=True, slots=True)
class Peer:
    """A resolved group or channel, as the rest of tgws sees it."""

    id: int
    access_hash: int
    kind: str  # 'megagroup' | 'gigagroup' | 'chat' | 'broadcast' | 'user'
    title: str
    username: str

    @property
    def is_group(self) -> bool:
        return self.kind in GROUP_KINDS

    def input_peer(self) -> Any:
        if self.kind == "chat":
            return types.InputPeerChat(self.id)
        if self.kind == "user":
            return types.InputPeerUser(self.id, self.access_hash)
        return types.InputPeerChannel(self.id, self.access_hash)


def classify(entity: Any) -> str:
    if isinstance(entity, types.Channel):
        if entity.megagroup:
            return "megagroup"
        if getattr(entity, "gigagroup", False):
            return "gigagroup"
        return "broadcast"
    if isinstance(entity, types.Chat | types.ChatForbidden):
        return "chat"
    return "user"


def _resolved_entity(result: Any) -> Any:
    """The user or chat a contacts.ResolvedPeer names, or None when it is not included."""
    peer = result.peer
    if isinstance(peer, types.PeerUser):
        pool, wanted = result.users, peer.user_id
    elif isinstance(peer, types.PeerChannel):
        pool, wanted = result.chats, peer.channel_id
    else:
        pool, wanted = result.chats, getattr(peer, "chat_id", None)
    return next((e for e in pool if e.id == wanted), None)


class ResolveMethods(AccountCalls):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Supergroup id -> the basic group it was upgraded from (None: not an upgrade).
        self._upgrades: dict[int, Peer | None] = {}

    async def resolve(self, name: str, on_flood: OnFlood | None = None) -> Peer:
        username = normalize_username(name)
        if not username:
            raise PeerNotFound(name)
        cached = await self.store.lookup_entity(
            self.api_key_id, username, max_age=self.config.entity_cache_ttl or None)
        if cached is not None:
            peer = Peer(cached.peer_id, cached.access_hash, cached.kind, cached.title,
                        cached.username)
            if await self._still_named(peer, username, on_flood):
                return peer
            # The access hash went stale, we lost access, or the name changed hands.
            log.info("account of key #%d: cached entry for %r is stale; resolving again",
                     self.api_key_id, username)
            await self.store.forget_entity(self.api_key_id, username)
        try:
            # contacts.ResolveUsername itself, not get_entity: Telethon turns a username
            # that is not taken into a ValueError it also uses for other failures, and only
            # USERNAME_NOT_OCCUPIED / USERNAME_INVALID mean "does not exist".
            result = await self._call(
                lambda c: c(functions.contacts.ResolveUsernameRequest(username)), on_flood)
        except PEER_ERRORS:
            raise PeerNotFound(name) from None
        except errors.RPCError as err:
            raise translate(err) from None
        entity = _resolved_entity(result)
        if entity is None:
            raise PeerNotFound(name)
        if isinstance(entity, types.ChannelForbidden):
            raise TelegramFailure("CHANNEL_PRIVATE")
        peer = Peer(
            id=int(entity.id),
            access_hash=int(getattr(entity, "access_hash", 0) or 0),
            kind=classify(entity),
            title=str(getattr(entity, "title", None) or getattr(entity, "first_name", "") or ""),
            username=str(getattr(entity, "username", None) or username),
        )
        # Cached only under the username Telegram confirms the entity has: an answer found
        # by anything else (an id, a phone, a title) is not a username's and must not pose
        # as one.
        if str(getattr(entity, "username", None) or "").lower() == username.lower():
            await self.store.cache_entities(self.api_key_id, [EntityRecord(
                peer_id=peer.id, access_hash=peer.access_hash, kind=peer.kind,
                username=username, title=peer.title)])
        return peer

    async def _still_named(self, peer: Peer, username: str, on_flood: OnFlood | None) -> bool:
        """Whether a cached channel still opens with its access hash and still bears the name.

        One channels.GetChannels per cached resolve (not rate-limited like
        contacts.ResolveUsername): a stale entry would otherwise fail every request, or
        stream the old chat of a username that changed hands, until it expires.
        """
        if peer.kind not in ("megagroup", "gigagroup", "broadcast"):
            return True
        request = functions.channels.GetChannelsRequest(
            [types.InputChannel(peer.id, peer.access_hash)])
        try:
            result = await self._call(lambda c: c(request), on_flood)
        except STALE_PEER_ERRORS:
            return False
        except errors.RPCError as err:
            raise translate(err) from None
        chat = next((c for c in result.chats if c.id == peer.id), None)
        if not isinstance(chat, types.Channel):
            return False  # ChannelForbidden: no longer ours to read
        names = {str(chat.username or "").lower()}
        names.update(str(u.username).lower() for u in (chat.usernames or ()) if u.active)
        return username.lower() in names

    async def migrated_from(self, peer: Peer, on_flood: OnFlood | None = None) -> Peer | None:
        """The basic group `peer` was upgraded from (its history comes first), or None.

        Telegram's apps show an upgraded group's two histories as one: the old basic group's
        (reached by InputPeerChat) and then the supergroup's. channels.getFullChannel names
        the old chat (migrated_from_chat_id) and sends it along in `chats`.
        """
        if peer.kind != "megagroup":
            return None
        # Asked once per supergroup: a supergroup is born from an upgrade or not, for good,
        # so later streams save the round trip (and a flood-prone call).
        known = self._upgrades.get(peer.id, _UNKNOWN)
        if known is not _UNKNOWN:
            return known if isinstance(known, Peer) else None
        full = await self._full_channel(peer, on_flood)
        old_id = getattr(full.full_chat, "migrated_from_chat_id", None)
        origin = None
        if old_id:
            old = next((c for c in full.chats if c.id == old_id and classify(c) == "chat"),
                       None)
            title = str(getattr(old, "title", "") or "")
            origin = Peer(int(old_id), 0, "chat", title, peer.username)
        self._upgrades[peer.id] = origin
        return origin

    async def _full_channel(self, peer: Peer, on_flood: OnFlood | None) -> Any:
        """channels.getFullChannel for a channel or supergroup (its counts, its history)."""
        try:
            return await self._call(
                lambda c: c(functions.channels.GetFullChannelRequest(peer.input_peer())),
                on_flood)
        except errors.RPCError as err:
            raise translate(err) from None
