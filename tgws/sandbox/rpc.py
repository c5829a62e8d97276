"""Request -> answer: unwrap, check the login and its data centre, run the handler.

Faults (errors, drops, stalls, latency) are decided before a request gets here, by the world's
fault plan at the sender seam (faults.py, sender.py).

Every request Telethon 1.45 sends for connecting, resolving, reading history and listing members
has a handler here (or in login.py). Anything else fails loudly with
400 METHOD_NOT_SUPPORTED_BY_SANDBOX; Telethon's exception text names the request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from telethon.tl import functions, types

from tgws.sandbox import basic, dialogs, differences, login, wire
from tgws.sandbox.call import Call, Handler
from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.derive import when
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.history import select_history_page, timestamp
from tgws.sandbox.members import select_participants
from tgws.sandbox.users import SandboxUser
from tgws.sandbox.world import World, valid_username

log = logging.getLogger("tgws.sandbox")

_WRAPPERS = (
    functions.InvokeWithLayerRequest, functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest, functions.InvokeAfterMsgRequest,
    functions.InvokeAfterMsgsRequest, functions.InvokeWithTakeoutRequest,
    functions.InvokeWithMessagesRangeRequest,
)


def unwrap(request: Any) -> Any:
    """The request inside invokeWithLayer/initConnection/invokeWithoutUpdates/... wrappers."""
    while isinstance(request, _WRAPPERS):
        request = request.query
    return request


def answer(call: Call, request: Any) -> Any:
    """The result of `request` for `call`, or raise SandboxRpcError."""
    inner = unwrap(request)
    entry = HANDLERS.get(type(inner))
    if entry is None:
        log.warning("sandbox: %s is not supported; answering METHOD_NOT_SUPPORTED_BY_SANDBOX",
                    type(inner).__name__)
        raise SandboxRpcError(400, "METHOD_NOT_SUPPORTED_BY_SANDBOX")
    handler, needs_login = entry
    if needs_login:
        if call.user is None:
            raise SandboxRpcError(401, "AUTH_KEY_UNREGISTERED")
        home = call.world.dcs.of_user(call.user)
        if home != call.dc:  # the account lives elsewhere (dcs.py)
            raise SandboxRpcError(303, f"USER_MIGRATE_{home}")
    return handler(call, inner)


# --- helpers ---------------------------------------------------------------------------------

def channel_of(world: World, peer: Any) -> SandboxChat:
    """The chat an InputPeerChannel/InputChannel names; CHANNEL_INVALID on a wrong hash."""
    if isinstance(peer, (types.InputPeerChannel, types.InputChannel)):
        chat = world.chats.get(peer.channel_id)
        if chat is None or chat.basic or chat.access_hash != peer.access_hash:
            raise SandboxRpcError(400, "CHANNEL_INVALID")
        return chat
    if isinstance(peer, (types.InputChannelEmpty, types.InputPeerEmpty)):
        raise SandboxRpcError(400, "CHANNEL_INVALID")
    raise SandboxRpcError(400, "PEER_ID_INVALID")


def _user_of(call: Call, peer: Any) -> SandboxUser | None:
    if isinstance(peer, (types.InputUserSelf, types.InputPeerSelf)):
        return call.user
    if isinstance(peer, (types.InputUser, types.InputPeerUser)):
        user = call.world.users.get(peer.user_id)
        if user is not None and user.access_hash == peer.access_hash:
            return user
    return None


def _user_tl(call: Call, user: SandboxUser) -> Any:
    return user.tl(is_self=user is call.user)


def _user_wire(call: Call, user: SandboxUser) -> bytes:
    return bytes(user.tl(is_self=True)) if user is call.user else user.wire()


def _users(world: World, ids: Iterable[int]) -> list[SandboxUser]:
    found = (world.users.get(user_id) for user_id in dict.fromkeys(ids))
    return [user for user in found if user is not None]


# --- connection and account ------------------------------------------------------------------

def get_config(call: Call, request: Any) -> Any:
    now = call.world.now()
    return types.Config(
        date=when(now), expires=when(now + 3600), test_mode=False, this_dc=call.dc,
        dc_options=call.world.dcs.options(),
        dc_txt_domain_name="sandbox.invalid", chat_size_max=200, megagroup_size_max=200_000,
        forwarded_count_max=100, online_update_period_ms=210_000, offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30_000, online_cloud_timeout_ms=300_000,
        notify_cloud_delay_ms=30_000, notify_default_delay_ms=1500, push_chat_period_ms=60_000,
        push_chat_limit=2, edit_time_limit=172_800, revoke_time_limit=2_147_483_647,
        revoke_pm_time_limit=2_147_483_647, rating_e_decay=2_419_200,
        stickers_recent_limit=200, channels_read_media_period=604_800,
        call_receive_timeout_ms=20_000, call_ring_timeout_ms=90_000,
        call_connect_timeout_ms=30_000, call_packet_timeout_ms=10_000,
        me_url_prefix="https://t.me/", caption_length_max=1024, message_length_max=4096,
        webfile_dc_id=4)


def get_nearest_dc(call: Call, request: Any) -> Any:
    return types.NearestDc(country="XX", this_dc=call.dc, nearest_dc=call.dc)


def ping(call: Call, request: Any) -> Any:
    return types.Pong(msg_id=0, ping_id=request.ping_id)


def get_users(call: Call, request: Any) -> Any:
    found = (_user_of(call, peer) for peer in request.id)
    return [_user_tl(call, user) for user in found if user is not None]


def get_full_user(call: Call, request: Any) -> Any:
    user = _user_of(call, request.id)
    if user is None:
        raise SandboxRpcError(400, "USER_ID_INVALID")
    full = types.UserFull(id=user.id, settings=types.PeerSettings(),
                          notify_settings=types.PeerNotifySettings(), common_chats_count=0,
                          about=None)
    return types.users.UserFull(full_user=full, chats=[], users=[_user_tl(call, user)])


def resolve_username(call: Call, request: Any) -> Any:
    if not valid_username(request.username):
        raise SandboxRpcError(400, "USERNAME_INVALID")
    found = call.world.resolve(request.username)
    if found is None:
        raise SandboxRpcError(400, "USERNAME_NOT_OCCUPIED")
    if isinstance(found, SandboxUser):
        return types.contacts.ResolvedPeer(peer=types.PeerUser(user_id=found.id), chats=[],
                                           users=[_user_tl(call, found)])
    return types.contacts.ResolvedPeer(peer=types.PeerChannel(channel_id=found.id),
                                       chats=[found.tl(call.user)], users=[])


# --- channels ---------------------------------------------------------------------------------

def get_channels(call: Call, request: Any) -> Any:
    chats = [channel_of(call.world, peer) for peer in request.id]
    return types.messages.Chats(chats=[chat.tl(call.user) for chat in chats])


def get_full_channel(call: Call, request: Any) -> Any:
    chat = channel_of(call.world, request.channel)
    chats = [chat.tl(call.user)]
    if chat.migrated_from is not None:  # Telegram sends the old basic group along
        chats.append(basic.chat_tl(chat.migrated_from, call.user))
    return types.messages.ChatFull(full_chat=chat.full_tl(call.user), chats=chats, users=[])


def _messages_page(call: Call, chat: SandboxChat, ids: list[int]) -> Any:
    """messages.ChannelMessages for `ids`: spliced bytes in wire mode, fresh objects otherwise.
    Ids the chat does not have (never posted, or deleted) come back as MessageEmpty, as
    Telegram answers them."""
    top, gone = chat.top_id, chat.deleted_ids

    def exists(msg_id: int) -> bool:  # inlined chat.exists: this runs per message streamed
        return 0 < msg_id <= top and msg_id not in gone

    user_ids = [uid for msg_id in ids if exists(msg_id)
                for uid in chat.message_user_ids(msg_id)]
    users = _users(call.world, user_ids)
    pts, count = call.world.updates.channel_pts(chat), chat.count
    if call.wire:
        return wire.channel_messages(
            pts=pts, count=count,
            messages=[chat.message_wire(i) if exists(i) else bytes(_empty(chat, i))
                      for i in ids],
            chats=[bytes(chat.tl(call.user))], users=[_user_wire(call, u) for u in users])
    return types.messages.ChannelMessages(
        pts=pts, count=count, topics=[], chats=[chat.tl(call.user)],
        messages=[chat.message_tl(i) if exists(i) else _empty(chat, i) for i in ids],
        users=[_user_tl(call, u) for u in users])


def _empty(chat: SandboxChat, msg_id: int) -> Any:
    return types.MessageEmpty(id=msg_id, peer_id=types.PeerChannel(channel_id=chat.id))


def get_history(call: Call, request: Any) -> Any:
    if isinstance(request.peer, types.InputPeerChat):
        return basic.get_history(call, request)
    chat = channel_of(call.world, request.peer)
    start, ids = select_history_page(
        chat, offset_id=request.offset_id, offset_date=timestamp(request.offset_date),
        add_offset=request.add_offset, limit=request.limit, max_id=request.max_id,
        min_id=request.min_id, short=call.world.short_pages)
    page = _messages_page(call, chat, ids)
    chat.served("history", start, ids)  # page hooks may change the world for the next page
    return page


def get_messages(call: Call, request: Any) -> Any:
    """channels.getMessages by id (InputMessageID only)."""
    chat = channel_of(call.world, request.channel)
    wanted = [m.id for m in request.id if isinstance(m, types.InputMessageID)]
    return _messages_page(call, chat, wanted)


def get_participants(call: Call, request: Any) -> Any:
    world = call.world
    chat = channel_of(world, request.channel)
    count, members = select_participants(chat, call.user, request.filter, request.offset,
                                         request.limit, cap=world.participants_cap,
                                         short=world.short_pages)
    if call.wire:
        page: Any = wire.channel_participants(
            count=count, participants=[m.wire(chat, call.user) for m in members], chats=[],
            users=[_user_wire(call, m.user) for m in members])
    else:
        page = types.channels.ChannelParticipants(
            count=count, participants=[m.tl(chat, call.user) for m in members], chats=[],
            users=[_user_tl(call, m.user) for m in members])
    chat.served("members", request.offset, [m.user.id for m in members])
    return page


def get_participant(call: Call, request: Any) -> Any:
    chat = channel_of(call.world, request.channel)
    user = _user_of(call, request.participant)
    member = chat.member(user)
    if member is None and user is not None and chat.is_admin(call.user):
        member = chat.banned(user.id)  # admins see a ban as ChannelParticipantBanned
    if member is None or user is None:
        raise SandboxRpcError(400, "USER_NOT_PARTICIPANT")
    if chat.broadcast and user is not call.user and not chat.is_admin(call.user):
        raise SandboxRpcError(400, "CHAT_ADMIN_REQUIRED")
    return types.channels.ChannelParticipant(participant=member.tl(chat, call.user), chats=[],
                                             users=[_user_tl(call, user)])


# request class -> (handler, needs a logged-in key)
HANDLERS: dict[type, tuple[Handler, bool]] = {
    functions.help.GetConfigRequest: (get_config, False),
    functions.help.GetNearestDcRequest: (get_nearest_dc, False),
    functions.PingRequest: (ping, False),
    functions.PingDelayDisconnectRequest: (ping, False),
    functions.updates.GetStateRequest: (differences.get_state, True),
    functions.updates.GetDifferenceRequest: (differences.get_difference, True),
    functions.updates.GetChannelDifferenceRequest: (differences.get_channel_difference, True),
    functions.users.GetUsersRequest: (get_users, True),
    functions.users.GetFullUserRequest: (get_full_user, True),
    functions.contacts.ResolveUsernameRequest: (resolve_username, True),
    functions.channels.GetChannelsRequest: (get_channels, True),
    functions.channels.GetFullChannelRequest: (get_full_channel, True),
    functions.channels.GetParticipantsRequest: (get_participants, True),
    functions.channels.GetParticipantRequest: (get_participant, True),
    functions.channels.GetMessagesRequest: (get_messages, True),
    functions.messages.GetHistoryRequest: (get_history, True),
    functions.messages.GetChatsRequest: (basic.get_chats, True),
    functions.messages.GetFullChatRequest: (basic.get_full_chat, True),
    functions.messages.GetPeerDialogsRequest: (dialogs.get_peer_dialogs, True),
    **login.HANDLERS,
}
