"""A messages.getHistory page read straight from its bytes, into the objects Telethon builds.

Why: under cProfile, Telethon's generated `Message.from_reader` and its custom
`Message.__init__` (which stores ~80 attributes one by one and works out the sender) are
~45 % of the daemon's CPU per streamed message. This reads the page and its types.Message
entries here, with tgws/tl_reading.py's primitives: each message is a copy of a dict made
once per flag combination by Telethon's own `__init__` (so every attribute it sets,
private ones included, is there), into which the fields present are read by a plan made
once per flag combination too. The result is what Telethon's reader gives: instances of
the exact classes in Telethon's `tlobjects` (telethon.tl.patched.Message) with equal
`vars()` (tests/test_history_reader.py compares them over generated pages), at about a
quarter of the cost (callgrind: ~38k instructions per message of a page, Telethon ~145k).

`read_result` has the signature of `TLRequest.read_result`; tgws/fastpath.py attaches it to
a messages.GetHistoryRequest (`read_history_fast`) and says what that relies on. Nested
objects (media, entities, forward headers, reactions; reply headers but plain ones),
service and empty messages, topics and chats are read by Telethon at their position; users
by tl_reading.read_user. Any other result (MessagesNotModified), a layout other than the
one written for (`LAYOUT_OK`), or any surprise: Telethon's reader reads the whole result.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable
from typing import Any, Final

from telethon import utils
from telethon.tl import types
from telethon.tl.alltlobjects import tlobjects
from telethon.tl.custom.message import Message as CustomMessage

from tgws import tl_reading
from tgws.tl_reading import (
    Unexpected,
    boxed_vector,
    layout_ok,
    mixed_vector,
    new,
    read_date,
    read_page,
    read_string,
    telethon_object,
    unpack,
    users_vector,
)

_CHANNEL_MESSAGES: Final = 0xC776BA4E
_SLICE: Final = 0x5F206716
_MESSAGES: Final = 0x1D73E7EA
MESSAGE: Final = 0x7600B9D3
_PEER_USER: Final = 0x59511722
_PEER_CHAT: Final = 0x36C6019A
_PEER_CHANNEL: Final = 0xA2A5371E
_MEDIA_EMPTY: Final = 0x3DED6320
_REPLY_HEADER: Final = 0x1B97DD66

# The class Telethon's reader builds for a message: its custom Message mixed into the TL type.
_Message: Any = tlobjects.get(MESSAGE)
_PeerUser = types.PeerUser
_PeerChat = types.PeerChat
_PeerChannel = types.PeerChannel
_ReplyHeader = types.MessageReplyHeader
_ChannelMessages = types.messages.ChannelMessages
_Slice = types.messages.MessagesSlice
_Messages = types.messages.Messages

Reader = Callable[[bytes, int], tuple[Any, int]]


def _int(data: bytes, pos: int) -> tuple[int, int]:
    (value,) = unpack("<i", data, pos)
    return value, pos + 4


def _long(data: bytes, pos: int) -> tuple[int, int]:
    (value,) = unpack("<q", data, pos)
    return value, pos + 8


def _date(data: bytes, pos: int) -> tuple[Any, int]:
    (seconds,) = unpack("<i", data, pos)
    return read_date(seconds), pos + 4


def _peer(data: bytes, pos: int) -> tuple[Any, int]:
    """PeerUser, PeerChannel or PeerChat: in every message, built here (fresh each time:
    Telethon's get_peer_id may change an out-of-range id in place)."""
    cid, peer_id = unpack("<Iq", data, pos)
    if cid == _PEER_USER:
        peer: Any = new(_PeerUser)
        peer.__dict__ = {"user_id": peer_id}
    elif cid == _PEER_CHANNEL:
        peer = new(_PeerChannel)
        peer.__dict__ = {"channel_id": peer_id}
    elif cid == _PEER_CHAT:
        peer = new(_PeerChat)
        peer.__dict__ = {"chat_id": peer_id}
    else:  # not a Peer: what Telethon's Message.__init__ makes of it is Telethon's to say
        raise Unexpected("a message peer that is no Peer")
    return peer, pos + 12


# A plain reply (~15 % of a group's messages) is read here: MessageReplyHeader's booleans,
# reply_to_msg_id, reply_to_peer_id, reply_to_top_id. One with another field of this
# layer's (_REPLY_ALL: a quote, another chat's message or media, a todo item) is Telethon's.
_REPLY_HERE: Final = 4 | 8 | 512 | 8192 | 16 | 1 | 2
_REPLY_ALL: Final = _REPLY_HERE | 32 | 256 | 64 | 128 | 1024 | 2048 | 4096


def _reply_to(data: bytes, pos: int) -> tuple[Any, int]:
    cid, flags = unpack("<Ii", data, pos)
    if cid != _REPLY_HEADER or flags & (_REPLY_ALL & ~_REPLY_HERE):
        return telethon_object(data, pos)  # MessageReplyStoryHeader, quotes, other chats
    pos += 8
    msg_id = peer = top_id = None
    if flags & 16:
        msg_id, pos = _int(data, pos)
    if flags & 1:
        peer, pos = _peer(data, pos)
    if flags & 2:
        top_id, pos = _int(data, pos)
    header = new(_ReplyHeader)
    header.__dict__ = {
        "reply_to_scheduled": bool(flags & 4), "forum_topic": bool(flags & 8),
        "quote": bool(flags & 512), "reply_to_ephemeral": bool(flags & 8192),
        "reply_to_msg_id": msg_id, "reply_to_peer_id": peer, "reply_from": None,
        "reply_media": None, "reply_to_top_id": top_id, "quote_text": None,
        "quote_entities": None, "quote_offset": None, "todo_item_id": None,
        "poll_option": None}
    return header, pos


def _media(data: bytes, pos: int) -> tuple[Any, int]:
    media, end = telethon_object(data, pos)
    # Message.__init__ keeps no MessageMediaEmpty (`None if isinstance(media, ...)`).
    return (None if isinstance(media, types.MessageMediaEmpty) else media), end


# types.Message's fields after its flag words and id, in the schema's (and from_reader's)
# order: (flag word, bit, attribute, reader). Word 0 is `flags`, 1 is `flags2`. from_id,
# peer_id, date and message (nearly every message's) are read in _message itself (reader
# None).
_FIELDS: Final[tuple[tuple[int, int | None, str, Reader | None], ...]] = (
    (0, 256, "from_id", None),
    (0, 536870912, "from_boosts_applied", _int),
    (1, 4096, "from_rank", read_string),
    (0, None, "peer_id", None),
    (0, 268435456, "saved_peer_id", telethon_object),
    (0, 4, "fwd_from", telethon_object),
    (0, 2048, "via_bot_id", _long),
    (1, 1, "via_business_bot_id", _long),
    (1, 524288, "guestchat_via_from", telethon_object),
    (0, 8, "reply_to", _reply_to),
    (0, None, "date", None),
    (0, None, "message", None),
    (0, 512, "media", _media),
    (0, 64, "reply_markup", telethon_object),
    (0, 128, "entities", boxed_vector),
    (0, 1024, "views", _int),
    (0, 1024, "forwards", _int),  # views and forwards share a flag bit
    (0, 8388608, "replies", telethon_object),
    (0, 32768, "edit_date", _date),
    (0, 65536, "post_author", read_string),
    (0, 131072, "grouped_id", _long),
    (0, 1048576, "reactions", telethon_object),
    (0, 4194304, "restriction_reason", boxed_vector),
    (0, 33554432, "ttl_period", _int),
    (0, 1073741824, "quick_reply_shortcut_id", _int),
    (1, 4, "effect", _long),
    (1, 8, "factcheck", telethon_object),
    (1, 32, "report_delivery_until_date", _date),
    (1, 64, "paid_message_stars", _long),
    (1, 128, "suggested_post", telethon_object),
    (1, 1024, "schedule_repeat_period", _int),
    (1, 2048, "summary_from_language", read_string),
    (1, 8192, "rich_message", telethon_object),
)
# types.Message's flags.N?true fields: (attribute, flag word, bit).
_FLAGS: Final = (
    ("out", 0, 2), ("mentioned", 0, 16), ("media_unread", 0, 32), ("silent", 0, 8192),
    ("post", 0, 16384), ("from_scheduled", 0, 262144), ("legacy", 0, 524288),
    ("edit_hide", 0, 2097152), ("pinned", 0, 16777216), ("noforwards", 0, 67108864),
    ("invert_media", 0, 134217728), ("offline", 1, 2), ("video_processing_pending", 1, 16),
    ("paid_suggested_post_stars", 1, 256), ("paid_suggested_post_ton", 1, 512),
)
# Bits are OR-ed, not summed: views and forwards share one.
_MASK: Final = functools.reduce(operator.or_, (
    *(bit for word, bit, _, _ in _FIELDS if word == 0 and bit),
    *(bit for _, word, bit in _FLAGS if word == 0)))
_MASK2: Final = functools.reduce(operator.or_, (
    *(bit for word, bit, _, _ in _FIELDS if word == 1 and bit),
    *(bit for _, word, bit in _FLAGS if word == 1)))
_OUT: Final = 2
_POST: Final = 16384
# The attributes custom Message.__init__ and its ChatGetter/SenderGetter inits set besides
# the TL fields: the base dict made by that __init__ must have exactly these and the TL
# fields (LAYOUT_OK), so a Telethon that sets another is read by Telethon.
_PRIVATE: Final = frozenset({
    "_client", "_text", "_file", "_reply_message", "_buttons", "_buttons_flat",
    "_buttons_count", "_via_bot", "_via_input_bot", "_action_entities", "_linked_chat",
    "_chat_peer", "_input_chat", "_chat", "_broadcast", "_sender_id", "_sender",
    "_input_sender", "_forward", "_reply_to_chat", "_reply_to_sender",
})

# (flags & _MASK, flags2 & _MASK2) -> (every attribute as Telethon's __init__ leaves it for
# these flags and no fields; the readers of the fields present before peer_id, before the
# date, after the text). Real pages show a handful of flag combinations; the cap only
# bounds a hostile server.
Readers = tuple[tuple[str, Reader], ...]
Plan = tuple[dict[str, Any], Readers, Readers, Readers]
_PLANS: dict[tuple[int, int], Plan] = {}
_PLANS_CAP: Final = 4096


def _plan(flags: int, flags2: int) -> Plan:
    words = (flags, flags2)
    present = {name: bool(words[word] & bit) for name, word, bit in _FLAGS}
    base = vars(_Message(id=0, peer_id=None, **present)).copy()
    readers: list[list[tuple[str, Reader]]] = [[], [], []]
    section = 0
    for word, bit, name, reader in _FIELDS:
        section += name in ("peer_id", "date")
        if reader is not None and bit is not None and words[word] & bit:
            readers[section].append((name, reader))
    plan = base, tuple(readers[0]), tuple(readers[1]), tuple(readers[2])
    if len(_PLANS) < _PLANS_CAP:
        _PLANS[flags, flags2] = plan
    return plan


def _keys_ok() -> bool:
    """Whether custom Message.__init__ sets the TL fields, the flags and _PRIVATE, no more."""
    try:
        keys = set(vars(_Message(id=0, peer_id=None)))
        params = set(inspect.signature(CustomMessage.__init__).parameters) - {"self"}
    except Exception:  # any failure means: not the Telethon this was written for
        return False
    tl_fields = ({name for _, _, name, _ in _FIELDS} | {name for name, _, _ in _FLAGS}
                 | {"id", "action", "reactions_are_possible"})
    return keys == tl_fields | _PRIVATE and params == tl_fields


LAYOUT_OK: Final = (
    tl_reading.LAYOUT_OK
    and layout_ok({_ChannelMessages: _CHANNEL_MESSAGES, _Slice: _SLICE,
                   _Messages: _MESSAGES, types.Message: MESSAGE, _PeerUser: _PEER_USER,
                   _PeerChat: _PEER_CHAT, _PeerChannel: _PEER_CHANNEL,
                   types.MessageMediaEmpty: _MEDIA_EMPTY, _ReplyHeader: _REPLY_HEADER})
    and isinstance(_Message, type) and issubclass(_Message, CustomMessage)
    and _keys_ok()
)


def _sender_id(peer: Any) -> Any:
    """utils.get_peer_id(peer), but for a usual id a type check only."""
    cls = type(peer)
    if cls is _PeerUser:
        return peer.user_id
    if cls is _PeerChannel and 0 < peer.channel_id <= 9999999999:
        return -(1000000000000 + peer.channel_id)
    if cls is _PeerChat and 0 < peer.chat_id <= 9999999999:
        return -peer.chat_id
    return utils.get_peer_id(peer)  # out of range: Telethon changes the id in place


def _message(data: bytes, pos: int) -> tuple[Any, int]:
    """A types.Message whose constructor id is already read: pos is at its flags."""
    flags, flags2, message_id = unpack("<iii", data, pos)
    pos += 12
    plan = _PLANS.get((flags & _MASK, flags2 & _MASK2))
    if plan is None:
        plan = _plan(flags & _MASK, flags2 & _MASK2)
    base, before_peer, before_date, after_text = plan
    d = base.copy()
    d["id"] = message_id
    # The sender as Message.__init__ works it out: from_id, else the chat for a channel
    # post or an incoming private message. The usual peers (a user's from_id, a channel's
    # peer_id) and a short text are read inline: most of a message is these.
    sender = None
    if flags & 256:
        cid, value = unpack("<Iq", data, pos)
        if cid == _PEER_USER:
            from_id: Any = new(_PeerUser)
            from_id.__dict__ = {"user_id": value}
            sender, pos = value, pos + 12
        else:
            from_id, pos = _peer(data, pos)
            sender = _sender_id(from_id)
        d["from_id"] = from_id
    for name, reader in before_peer:
        d[name], pos = reader(data, pos)
    cid, value = unpack("<Iq", data, pos)
    if cid == _PEER_CHANNEL:
        peer: Any = new(_PeerChannel)
        peer.__dict__ = {"channel_id": value}
        pos += 12
    else:
        peer, pos = _peer(data, pos)
    d["peer_id"] = d["_chat_peer"] = peer
    for name, reader in before_date:
        d[name], pos = reader(data, pos)
    seconds, n = unpack("<iB", data, pos)
    d["date"] = read_date(seconds)
    if n < 254:  # as tl_reading.read_string
        end = pos + 4 + ((n + 4) & ~3)
        if end > len(data):
            raise Unexpected("the text runs past the end")
        d["message"] = str(data[pos + 5:pos + 5 + n], "utf-8", "replace")
        pos = end
    else:
        d["message"], pos = read_string(data, pos + 4)
    for name, reader in after_text:
        d[name], pos = reader(data, pos)
    if sender is not None:
        d["_sender_id"] = sender
    elif flags & _POST or (not flags & _OUT and type(peer) is _PeerUser):
        d["_sender_id"] = _sender_id(peer)
    message = new(_Message)
    message.__dict__ = d
    return message, pos


def _page(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = unpack("<I", data, pos)
    if cid == _CHANNEL_MESSAGES:
        flags, pts, count = unpack("<iii", data, pos + 4)
        pos += 16
        offset = None
        if flags & 4:
            offset, pos = _int(data, pos)
        head: dict[str, Any] = {"pts": pts, "count": count}
        tail: dict[str, Any] = {"inexact": bool(flags & 2), "offset_id_offset": offset}
        cls: Any = _ChannelMessages
    elif cid == _SLICE:
        flags, count = unpack("<ii", data, pos + 4)
        pos += 12
        next_rate = offset = flood = None
        if flags & 1:
            next_rate, pos = _int(data, pos)
        if flags & 4:
            offset, pos = _int(data, pos)
        if flags & 8:
            flood, pos = telethon_object(data, pos)
        head, cls = {"count": count}, _Slice
        tail = {"inexact": bool(flags & 2), "next_rate": next_rate,
                "offset_id_offset": offset, "search_flood": flood}
    elif cid == _MESSAGES:
        head, tail, cls = {}, {}, _Messages
        pos += 4
    else:
        raise Unexpected("not a page of messages")  # MessagesNotModified: Telethon's
    head["messages"], pos = mixed_vector(data, pos, MESSAGE, _message)  # service, empty: Telethon
    head["topics"], pos = boxed_vector(data, pos)
    head["chats"], pos = boxed_vector(data, pos)
    head["users"], pos = users_vector(data, pos)
    if pos > len(data):
        raise Unexpected("the page runs past the end")
    head.update(tail)  # the attributes in __init__'s order
    page = new(cls)
    page.__dict__ = head
    return page, pos


def read_result(reader: Any) -> Any:
    """TLRequest.read_result for messages.getHistory: the page, read here when its layout is
    the one this module knows, else by Telethon (`tgread_object`)."""
    return read_page(reader, _page, LAYOUT_OK)
