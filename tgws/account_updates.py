"""The Telethon side of `watch` (tgws/live.py): Telegram's update stream, and newest ids in bulk.

Like account_calls.py, this is part of the boundary to Telegram: live.py never touches
Telethon. It gets plain `Change`s (with the raw message kept for tgws.serialize) and
a dict of newest ids.

Receiving updates costs Telegram nothing until asked: clients are built with
receive_updates=False (every request wrapped in invokeWithoutUpdates, so Telegram pushes
nothing and Telethon's update loop idles). `follow` switches the account's client to
receiving (Telethon's set_receive_updates: one updates.getState) and adds a handler for raw
updates; `unfollow` removes it, and the last one stops asking for updates again. So an
account that nobody watches pays nothing; one that is watched pays what Telethon pays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon import errors, events, functions, types

from tgws import fastpath
from tgws.rpc_errors import translate

if TYPE_CHECKING:
    from tgws.gateway import Account
    from tgws.peers import Peer

PEER_DIALOGS_MAX = 100  # messages.getPeerDialogs answers at most this many peers per call

Handler = Callable[[Any], Awaitable[None]]
OnGap = Callable[[int | None], None]  # a chat_key, or None: every chat

# Service messages that change who is in a group.
_JOINS = (types.MessageActionChatAddUser, types.MessageActionChatJoinedByLink,
          types.MessageActionChatJoinedByRequest)


def chat_key(peer: Peer) -> int:
    """The marked id Telethon gives the chat (-100… for channels, -id for basic groups)."""
    return -peer.id if peer.kind == "chat" else -(10**12 + peer.id)


def _key_of(peer: Any) -> int | None:
    if isinstance(peer, types.PeerChannel):
        return -(10**12 + int(peer.channel_id))
    if isinstance(peer, types.PeerChat):
        return -int(peer.chat_id)
    return None


@dataclass(slots=True)
class Change:
    """One update for one chat: kind 'message' | 'edit' | 'deletion'."""

    kind: str
    chat: int  # chat_key
    message: Any = None  # the raw message ('message', 'edit')
    ids: list[int] = field(default_factory=list)  # deleted ids ('deletion')
    entities: dict[int, Any] = field(default_factory=dict)  # users and chats the update names


def read(update: Any) -> Change | None:
    """The Change a raw Telethon update stands for, or None (not about a group's messages).

    Deletions in basic groups (UpdateDeleteMessages) do not say which chat they were in, so
    they are not reported (docs/protocol.md)."""
    entities = getattr(update, "_entities", None) or {}
    if isinstance(update, types.UpdateNewChannelMessage | types.UpdateNewMessage):
        kind = "message"
    elif isinstance(update, types.UpdateEditChannelMessage | types.UpdateEditMessage):
        kind = "edit"
    elif isinstance(update, types.UpdateDeleteChannelMessages):
        return Change("deletion", -(10**12 + update.channel_id), ids=list(update.messages))
    else:
        return None
    message = update.message
    if isinstance(message, types.MessageEmpty):
        return None
    key = _key_of(getattr(message, "peer_id", None))
    if key is None:
        return None
    return Change(kind, key, message=message, entities=entities)


def joined(message: Any, entities: dict[int, Any]) -> list[Any]:
    """The users a service message says joined, each with `.participant` set (as member
    pages carry it) so tgws.serialize writes them in the `users` item format. A user the
    update did not name (no entity) is left out."""
    action = getattr(message, "action", None)
    if not isinstance(action, _JOINS):
        return []
    if isinstance(action, types.MessageActionChatAddUser):
        ids = list(action.users)
        inviter = _sender(message)
    else:
        sender = _sender(message)
        ids, inviter = ([sender] if sender is not None else []), None
    channel = isinstance(message.peer_id, types.PeerChannel)
    out: list[Any] = []
    for user_id in ids:
        user = entities.get(user_id)
        if not isinstance(user, types.User):
            continue
        if channel:
            # What channels.getParticipants would list for a plain member who just joined.
            user.participant = types.ChannelParticipant(user_id=user_id, date=message.date)
        else:
            user.participant = types.ChatParticipant(user_id=user_id,
                                                     inviter_id=inviter or user_id,
                                                     date=message.date)
        out.append(user)
    return out


def left(message: Any) -> tuple[int, int | None] | None:
    """(user id, who removed them or None when they left) for MessageActionChatDeleteUser."""
    action = getattr(message, "action", None)
    if not isinstance(action, types.MessageActionChatDeleteUser):
        return None
    actor = _sender(message)
    return action.user_id, (None if actor == action.user_id else actor)


def _sender(message: Any) -> int | None:
    sender = getattr(message, "from_id", None)
    return sender.user_id if isinstance(sender, types.PeerUser) else None


async def follow(account: Account, handler: Handler, on_gap: OnGap) -> None:
    """Telegram's updates on for this account's client, `handler` called with each raw one,
    `on_gap(chat_key)` when Telegram answered channelDifferenceTooLong for a channel, and
    `on_gap(None)` after Telethon reconnected by itself (it catches up on nothing then).

    Idempotent; called again after a reconnect (a new client object loses its handlers)."""

    async def on(client: Any) -> None:
        # `==`, not `is`: a bound method (Feed.on_update) is a new object at each access, so
        # `is` never matched and every watch of the account added the handler once more
        # (each update was then read and fanned out once per watch).
        if not any(callback == handler for callback, _ in client.list_event_handlers()):
            client.add_event_handler(handler, events.Raw)
        fastpath.report_too_long(client, on_gap)
        fastpath.report_reconnects(client, on_gap)
        if not fastpath.receives_updates(client):
            await client.set_receive_updates(True)

    try:
        await account._call(on, None)
    except errors.RPCError as err:
        raise translate(err) from None


def unfollow(account: Account, handler: Handler) -> None:
    """Remove `handler`; with no handler left, stop asking Telegram for updates (the next
    request goes out wrapped in invokeWithoutUpdates again)."""
    client = account._client
    if client is None:
        return
    client.remove_event_handler(handler, events.Raw)
    if not client.list_event_handlers():
        fastpath.forget_gap_reports(client)
        fastpath.stop_updates(client)


def generation(account: Account) -> tuple[int, int]:
    """Changes whenever the account's client was rebuilt or reconnected by tgws: an update
    may have been missed, so every watched group is reconciled."""
    return id(account._client), account._generation


@dataclass(frozen=True, slots=True)
class Newest:
    """What messages.getPeerDialogs told about one chat."""

    top: int  # the newest message id
    usernames: frozenset[str]  # the chat's active usernames, lower case


async def newest_ids(account: Account, peers: Sequence[Peer]) -> dict[int, Newest]:
    """{peer.id: Newest} for the peers that are dialogs of this account, asking Telegram
    with one messages.getPeerDialogs per 100 peers. A peer left out (the account is not a
    member, or Telegram refused the chunk: a stale access hash, say) has no entry."""
    out: dict[int, Newest] = {}
    by_key = {chat_key(peer): peer for peer in peers}
    for start in range(0, len(peers), PEER_DIALOGS_MAX):
        chunk = peers[start:start + PEER_DIALOGS_MAX]
        request = functions.messages.GetPeerDialogsRequest(
            peers=[types.InputDialogPeer(peer=peer.input_peer()) for peer in chunk])

        async def ask(client: Any, request: Any = request) -> Any:
            return await client(request)

        try:
            result = await account._call(ask, None)
        except errors.RPCError:
            continue  # e.g. CHANNEL_PRIVATE in the chunk: those groups fall back to history
        names: dict[int, frozenset[str]] = {}
        for chat in result.chats:
            found = {str(chat.username).lower()} if getattr(chat, "username", None) else set()
            found.update(str(u.username).lower() for u in (getattr(chat, "usernames", None)
                                                            or ()) if u.active)
            names[int(chat.id)] = frozenset(found)
        for dialog in result.dialogs:
            key = _key_of(dialog.peer)
            peer = by_key.get(key) if key is not None else None
            if peer is not None:
                out[peer.id] = Newest(int(dialog.top_message), names.get(peer.id, frozenset()))
    return out
