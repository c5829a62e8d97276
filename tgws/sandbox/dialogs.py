"""messages.getPeerDialogs: the newest message id (and pts) of up to 100 chats in one call.

Telegram answers only the dialogs the account has: a chat it is not a member of (or is
banned from) is simply left out of `dialogs`, which is how tgws learns to fall back to
GetHistory for it. More than 100 peers is refused as Telegram refuses it.
"""

from __future__ import annotations

from typing import Any

from telethon.tl import types

from tgws.sandbox.call import Call
from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.errors import SandboxRpcError

MAX_PEERS = 100


def _chat_of(call: Call, peer: Any) -> SandboxChat | None:
    world = call.world
    if isinstance(peer, types.InputPeerChannel):
        chat = world.chats.get(peer.channel_id)
        if chat is None or chat.basic or chat.access_hash != peer.access_hash:
            raise SandboxRpcError(400, "CHANNEL_INVALID")
        return chat
    if isinstance(peer, types.InputPeerChat):
        chat = world.chats.get(peer.chat_id)
        if chat is None or not chat.basic:
            raise SandboxRpcError(400, "PEER_ID_INVALID")
        return chat
    raise SandboxRpcError(400, "PEER_ID_INVALID")


def get_peer_dialogs(call: Call, request: Any) -> Any:
    if len(request.peers) > MAX_PEERS:
        raise SandboxRpcError(400, "LIMIT_INVALID")
    assert call.user is not None  # needs a login (rpc.HANDLERS)
    updates = call.world.updates
    dialogs: list[Any] = []
    messages: list[Any] = []
    chats: list[Any] = []
    user_ids: list[int] = []
    for dialog_peer in request.peers:
        if not isinstance(dialog_peer, types.InputDialogPeer):
            raise SandboxRpcError(400, "PEER_ID_INVALID")
        chat = _chat_of(call, dialog_peer.peer)
        if chat is None or chat.member(call.user) is None:
            continue  # not a dialog of this account: Telegram leaves it out
        newest = chat.newest_ids(0, 1)
        top = newest[0] if newest else 0
        if chat.basic:
            peer: Any = types.PeerChat(chat_id=chat.id)
            pts = None
        else:
            peer = types.PeerChannel(channel_id=chat.id)
            pts = updates.channel_box(chat).pts
        dialogs.append(types.Dialog(
            peer=peer, top_message=top, read_inbox_max_id=top, read_outbox_max_id=top,
            unread_count=0, unread_mentions_count=0, unread_reactions_count=0,
            unread_poll_votes_count=0, notify_settings=types.PeerNotifySettings(), pts=pts))
        if top:
            messages.append(chat.message_tl(top))
            user_ids.extend(chat.message_user_ids(top))
        chats.append(chat.tl(call.user))
    return types.messages.PeerDialogs(dialogs=dialogs, messages=messages, chats=chats,
                                      users=updates.users_tl(user_ids, call.user),
                                      state=updates.state(call.user))
