"""updates.getState, updates.getDifference and updates.getChannelDifference, answered truthfully
from the records the world keeps (updates.py).

- getState: the caller's account box (pts, seq, now).
- getDifference(pts, date): the basic-group changes after `pts` in the caller's account box:
  new messages (as they are now) in `new_messages`, edits and deletions in `other_updates`
  with their pts; plus one UpdateChannelTooLong(channel_id, pts) per channel the caller is a
  member of that changed at or after `date` (Telegram's way of saying "fetch this channel's
  difference"). DifferenceEmpty when nothing is due; DifferenceSlice (with an intermediate
  state) when more than `difference_limit` records are due (or the request's pts_total_limit);
  DifferenceTooLong when `pts` is older than the records kept.
- getChannelDifference(channel, pts, limit): ChannelDifferenceEmpty when nothing is due;
  ChannelDifferenceTooLong (the dialog with the channel's pts, its newest message) when more
  than `too_long_after` (default: the request's `limit`) pts are pending, when `pts` is older
  than the records kept, or when forced (`world.updates.force_too_long(chat)`); else
  ChannelDifference (final) with the new messages as they are now and the edits and
  deletions in `other_updates`. Every answer carries `timeout` (world.updates.timeout).

A message posted and then edited within one difference comes once, in its current form; one
posted and then deleted does not come at all, as Telegram folds its differences.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.call import Call
from tgws.sandbox.derive import when
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.updates import Record

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat
    from tgws.sandbox.world import World


@dataclass(slots=True)
class _Folded:
    """A run of records folded the way Telegram folds a difference."""

    new: dict[tuple[int, int], Record] = field(default_factory=dict)  # (chat, id) -> record
    edits: dict[tuple[int, int], Record] = field(default_factory=dict)
    deletes: list[Record] = field(default_factory=list)

    def add(self, record: Record) -> None:
        chat_id = record.chat_id
        if record.kind == "new":
            self.new[chat_id, record.msg_ids[0]] = record
        elif record.kind == "edit":
            key = (chat_id, record.msg_ids[0])
            if key not in self.new:  # a new message already comes as it is now
                self.edits[key] = record
        else:
            kept = []
            for msg_id in record.msg_ids:
                self.edits.pop((chat_id, msg_id), None)
                if self.new.pop((chat_id, msg_id), None) is None:
                    kept.append(msg_id)
            if kept:
                self.deletes.append(Record(record.pts, record.pts_count, "delete", chat_id,
                                           tuple(kept), record.date, record.seq))


def _fold(records: list[Record]) -> _Folded:
    folded = _Folded()
    for record in records:
        folded.add(record)
    return folded


def _channel(world: World, peer: Any) -> SandboxChat:
    if isinstance(peer, (types.InputChannel, types.InputPeerChannel)):
        chat = world.chats.get(peer.channel_id)
        if chat is not None and not chat.basic and chat.access_hash == peer.access_hash:
            return chat
    raise SandboxRpcError(400, "CHANNEL_INVALID")


def _timestamp(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return int(value or 0)


def get_state(call: Call, request: Any) -> Any:
    assert call.user is not None  # needs a login (rpc.HANDLERS)
    return call.world.updates.state(call.user)


def get_difference(call: Call, request: Any) -> Any:
    world, user = call.world, call.user
    assert user is not None
    log = world.updates
    log.note("differences")
    box = log.account_box(user)
    now = world.now()
    records = box.since(request.pts)
    if records is None:
        log.note("difference_too_long")
        return types.updates.DifferenceTooLong(pts=box.pts)
    limit = request.pts_total_limit or log.difference_limit
    sliced = len(records) > limit
    if sliced:
        records = records[:limit]
    since = _timestamp(request.date)
    noted = [] if sliced else [
        chat for chat in world.chats.values()
        if not chat.basic and chat.member(user) is not None
        and log.channel_box(chat).date >= since > 0]
    if not records and not noted:
        return types.updates.DifferenceEmpty(date=when(now), seq=box.seq)
    folded = _fold(records)
    users: list[int] = []
    new_messages = []
    for (chat_id, msg_id) in folded.new:
        chat = world.chats[chat_id]
        if chat.exists(msg_id):
            new_messages.append(chat.message_tl(msg_id))
            users.extend(chat.message_user_ids(msg_id))
    other: list[tuple[int, Any]] = []
    for (chat_id, msg_id), record in folded.edits.items():
        chat = world.chats[chat_id]
        if chat.exists(msg_id):
            other.append((record.pts, log.update_tl(chat, record)))
            users.extend(chat.message_user_ids(msg_id))
    for record in folded.deletes:
        other.append((record.pts, log.update_tl(world.chats[record.chat_id], record)))
    other.sort(key=lambda pair: pair[0])
    updates = [update for _, update in other]
    updates.extend(types.UpdateChannelTooLong(channel_id=chat.id,
                                              pts=log.channel_box(chat).pts)
                   for chat in noted)
    chat_ids = dict.fromkeys(record.chat_id for record in records)
    chats = [log.chat_tl(world.chats[chat_id], user) for chat_id in chat_ids]
    chats.extend(chat.tl(user) for chat in noted)
    common = {"new_messages": new_messages, "new_encrypted_messages": [],
              "other_updates": updates, "chats": chats, "users": log.users_tl(users, user)}
    if sliced:
        last = records[-1]
        state = types.updates.State(pts=last.pts, qts=0, date=when(last.date), seq=last.seq,
                                    unread_count=0)
        return types.updates.DifferenceSlice(**common, intermediate_state=state)
    return types.updates.Difference(**common, state=log.state(user))


def get_channel_difference(call: Call, request: Any) -> Any:
    world, log = call.world, call.world.updates
    chat = _channel(world, request.channel)
    if call.user is not None and chat.is_banned(call.user.id):
        raise SandboxRpcError(400, "CHANNEL_PRIVATE")
    log.note("channel_differences")
    box = log.channel_box(chat)
    if request.pts <= 0:
        raise SandboxRpcError(400, "PERSISTENT_TIMESTAMP_EMPTY")
    if request.pts > box.pts:
        raise SandboxRpcError(400, "PERSISTENT_TIMESTAMP_INVALID")
    threshold = log.too_long_after if log.too_long_after is not None else max(request.limit, 1)
    records = box.since(request.pts)
    if log.take_too_long(chat) or records is None or box.pts - request.pts > threshold:
        return _too_long(call, chat)
    if not records:
        return types.updates.ChannelDifferenceEmpty(pts=box.pts, final=True,
                                                    timeout=log.timeout)
    folded = _fold(records)
    users: list[int] = []
    new_messages = []
    for (_, msg_id) in folded.new:
        if chat.exists(msg_id):
            new_messages.append(chat.message_tl(msg_id))
            users.extend(chat.message_user_ids(msg_id))
    other: list[tuple[int, Any]] = []
    for (_, msg_id), record in folded.edits.items():
        if chat.exists(msg_id):
            other.append((record.pts, log.update_tl(chat, record)))
            users.extend(chat.message_user_ids(msg_id))
    other.extend((record.pts, log.update_tl(chat, record)) for record in folded.deletes)
    other.sort(key=lambda pair: pair[0])
    return types.updates.ChannelDifference(
        pts=box.pts, new_messages=new_messages, other_updates=[u for _, u in other],
        chats=[chat.tl(call.user)], users=log.users_tl(users, call.user), final=True,
        timeout=log.timeout)


def _too_long(call: Call, chat: SandboxChat) -> Any:
    log = call.world.updates
    log.note("channel_too_long")
    newest = chat.newest_ids(0, 1)
    top = newest[0] if newest else 0
    messages = [chat.message_tl(top)] if top else []
    dialog = types.Dialog(
        peer=types.PeerChannel(channel_id=chat.id), top_message=top, read_inbox_max_id=top,
        read_outbox_max_id=top, unread_count=0, unread_mentions_count=0,
        unread_reactions_count=0, unread_poll_votes_count=0,
        notify_settings=types.PeerNotifySettings(), pts=log.channel_box(chat).pts)
    users = list(chat.message_user_ids(top)) if top else []
    return types.updates.ChannelDifferenceTooLong(
        dialog=dialog, messages=messages, chats=[chat.tl(call.user)],
        users=log.users_tl(users, call.user), final=True, timeout=log.timeout)
