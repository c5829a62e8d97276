"""history_reader.read_result reads a messages.getHistory page as Telethon does.

Pages are built from Telethon's own classes (every field of types.Message for Telethon's
layer, media of several kinds, service and empty messages, users, chats, topics; the three
page classes), serialized with `bytes(page)`, and read twice: by
`history_reader.read_result` and by Telethon's `BinaryReader.tgread_object`. Every message
must be of the same class (telethon.tl.patched.Message) with equal `vars()`, private
attributes included (`_sender_id`, `_chat_peer`, `_broadcast`...), of identical types all
the way down; the rest of the page equal too, and the reader left at the same position.
Where Telethon raises, the reader raises the same exception type. Then the bytes are bent:
invalid UTF-8, cuts, other objects, unknown flag bits, vector ids, corrupted bytes, bytes
around the page, another layout. Last, the JSON tgws writes per message, and the daemon's
own history pages reaching the reader through Telethon's sender.
"""

from __future__ import annotations

import inspect
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.tl import types as t
from telethon.tl.tlobject import TLObject

from tests.support import collect_stream, logged_in, make_config
from tests.tl_support import (
    DATES,
    IDS,
    INT32,
    STRINGS,
    exactly,
    optional,
    read_with,
    shape,
)
from tgws import fastpath, history_reader, serialize
from tgws.daemon import Daemon
from tgws.sandbox.media import MEDIA_KINDS, build_action, build_media

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Peer ids: usual ones, and the edges where Telethon's get_peer_id rewrites a chat or
# channel id in place (0, negative, above 9999999999).
PEER_IDS = st.sampled_from([0, -1, 1, 9999999999, 10**10, 10**12 + 5]) | IDS


# Telethon's own generated classes: the patched ones (custom Message) drop a
# MessageMediaEmpty and want a peer_id, where the bytes may carry either.
RawMessage = next(c for c in t.Message.__mro__ if c.__module__ == "telethon.tl.types")
RawService = next(c for c in t.MessageService.__mro__ if c.__module__ == "telethon.tl.types")
RawEmpty = next(c for c in t.MessageEmpty.__mro__ if c.__module__ == "telethon.tl.types")

PEERS = st.one_of(st.builds(t.PeerUser, user_id=PEER_IDS),
                  st.builds(t.PeerChannel, channel_id=PEER_IDS),
                  st.builds(t.PeerChat, chat_id=PEER_IDS))
ENTITIES = st.lists(st.one_of(
    st.builds(t.MessageEntityBold, offset=INT32, length=INT32),
    st.builds(t.MessageEntityTextUrl, offset=INT32, length=INT32, url=STRINGS),
    st.builds(t.MessageEntityMentionName, offset=INT32, length=INT32, user_id=IDS),
    st.builds(t.MessageEntityPre, offset=INT32, length=INT32, language=STRINGS)), max_size=3)
MEDIA = st.one_of(
    st.just(t.MessageMediaEmpty()),  # custom Message.__init__ makes it None
    st.builds(build_media, st.sampled_from(MEDIA_KINDS), IDS, DATES),
    st.builds(t.MessageMediaDice, value=INT32, emoticon=STRINGS))
FORWARDS = st.builds(t.MessageFwdHeader, date=DATES, from_id=optional(PEERS),
                     from_name=optional(STRINGS), channel_post=optional(INT32),
                     post_author=optional(STRINGS), imported=st.booleans())
# A plain reply header (read by history_reader), one with fields it leaves to Telethon, a
# story's.
REPLY_TO = st.one_of(
    st.builds(t.MessageReplyHeader, reply_to_msg_id=optional(INT32),
              reply_to_peer_id=optional(PEERS), reply_to_top_id=optional(INT32),
              forum_topic=st.booleans(), reply_to_scheduled=st.booleans(),
              quote=st.booleans(), reply_to_ephemeral=st.booleans()),
    st.builds(t.MessageReplyHeader, reply_to_msg_id=optional(INT32),
              reply_from=optional(FORWARDS), reply_media=optional(MEDIA),
              quote_text=optional(STRINGS), quote_entities=optional(ENTITIES),
              quote_offset=optional(INT32), todo_item_id=optional(INT32),
              poll_option=optional(st.binary(max_size=8))),
    st.builds(t.MessageReplyStoryHeader, peer=PEERS, story_id=INT32))
REACTIONS = st.builds(t.MessageReactions, min=st.booleans(), results=st.lists(st.builds(
    t.ReactionCount, reaction=st.builds(t.ReactionEmoji, emoticon=STRINGS), count=INT32,
    chosen_order=optional(INT32)), max_size=3))

# Every field of types.Message but id and its boolean flags, with what it may hold. None
# leaves the field (and its flag bit) out. views and forwards share a bit: plain_messages()
# gives both or neither.
MESSAGE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "peer_id": PEERS,
    "date": DATES,
    "message": STRINGS,
    "from_id": PEERS,
    "from_boosts_applied": INT32,
    "from_rank": STRINGS,
    "saved_peer_id": PEERS,
    "fwd_from": FORWARDS,
    "via_bot_id": IDS,
    "via_business_bot_id": IDS,
    "guestchat_via_from": PEERS,
    "reply_to": REPLY_TO,
    "media": MEDIA,
    "reply_markup": st.just(t.ReplyKeyboardHide()) | st.builds(
        lambda text: t.ReplyKeyboardMarkup(rows=[t.KeyboardButtonRow(
            buttons=[t.KeyboardButton(text=text, type=t.ButtonTypeDefault())])]), STRINGS),
    "entities": ENTITIES,
    "views": INT32,
    "forwards": INT32,
    "replies": st.builds(t.MessageReplies, replies=INT32, replies_pts=INT32) | st.builds(
        t.MessageReplies, replies=INT32, replies_pts=INT32, comments=st.just(True),
        channel_id=IDS, max_id=optional(INT32)),
    "edit_date": DATES,
    "post_author": STRINGS,
    "grouped_id": IDS,
    "reactions": REACTIONS,
    "restriction_reason": st.lists(st.builds(t.RestrictionReason, platform=STRINGS,
                                             reason=STRINGS, text=STRINGS), max_size=2),
    "ttl_period": INT32,
    "quick_reply_shortcut_id": INT32,
    "effect": IDS,
    "factcheck": st.builds(t.FactCheck, hash=IDS, need_check=st.booleans()) | st.builds(
        lambda h, country, text: t.FactCheck(hash=h, country=country, text=t.TextWithEntities(
            text=text, entities=[t.MessageEntityItalic(offset=0, length=1)])),
        IDS, STRINGS, STRINGS),
    "report_delivery_until_date": DATES,
    "paid_message_stars": IDS,
    "suggested_post": st.builds(t.SuggestedPost, accepted=st.booleans(),
                                schedule_date=optional(DATES)),
    "schedule_repeat_period": INT32,
    "summary_from_language": STRINGS,
    "rich_message": st.builds(t.RichMessage, blocks=st.just([]), photos=st.just([]),
                              documents=st.just([]), rtl=st.booleans()),
}
_ALWAYS = ("peer_id", "date", "message")  # no flag bit: always written
_MESSAGE_PARAMETERS = [name for name in inspect.signature(RawMessage.__init__).parameters
                       if name not in ("self", "id")]
MESSAGE_BOOLS = [name for name in _MESSAGE_PARAMETERS if name not in MESSAGE_VALUES]


@st.composite
def plain_messages(draw: st.DrawFn) -> Any:
    values = {name: draw(strategy if name in _ALWAYS else optional(strategy))
              for name, strategy in MESSAGE_VALUES.items()}
    # Most fields absent, as in real pages: each kept with probability ~1/4.
    for name in list(values):
        if name not in _ALWAYS and draw(st.integers(0, 3)):
            values[name] = None
    if values["views"] is None or values["forwards"] is None:
        values["views"] = values["forwards"] = None
    # out, post and from_id decide the sender: every combination comes up.
    mask = draw(st.integers(0, 2 ** len(MESSAGE_BOOLS) - 1))
    flags = {name: bool(mask >> i & 1) for i, name in enumerate(MESSAGE_BOOLS)}
    return RawMessage(id=draw(INT32), **flags, **values)


SERVICE = st.builds(
    lambda kind, users, peer, from_id, post, out, date, message_id: RawService(
        id=message_id, peer_id=peer, date=date, from_id=from_id, post=post, out=out,
        action=build_action(kind, users=users or [1], inviter=users[0] if users else 1,
                            title="T", pinned=1)),
    st.sampled_from(["create", "add_user", "joined_by_link", "delete_user", "pin"]),
    st.lists(IDS, max_size=3), PEERS, optional(PEERS), st.booleans(), st.booleans(), DATES,
    INT32)
MESSAGES = st.one_of(plain_messages(), plain_messages(), plain_messages(), SERVICE,
                     st.builds(RawEmpty, id=INT32, peer_id=optional(PEERS)))
USERS = st.one_of(
    st.builds(t.User, id=IDS, first_name=optional(STRINGS), username=optional(STRINGS),
              access_hash=optional(IDS), premium=st.booleans(),
              status=st.just(t.UserStatusRecently()) | st.builds(t.UserStatusOffline, DATES)),
    st.builds(t.UserEmpty, id=IDS))
CHATS = st.one_of(
    st.builds(t.Channel, id=IDS, title=STRINGS, photo=st.just(t.ChatPhotoEmpty()),
              date=DATES, megagroup=st.booleans(), access_hash=optional(IDS),
              username=optional(STRINGS)),
    st.builds(t.Chat, id=IDS, title=STRINGS, photo=st.just(t.ChatPhotoEmpty()),
              participants_count=INT32, date=DATES, version=INT32),
    st.builds(t.ChatEmpty, id=IDS))
TOPICS = st.lists(st.builds(t.ForumTopicDeleted, id=INT32), max_size=1)


@st.composite
def pages(draw: st.DrawFn, max_size: int = 12) -> Any:
    kind = draw(st.sampled_from(["channel", "slice", "all"]))
    parts = {"messages": draw(st.lists(MESSAGES, max_size=max_size)), "topics": draw(TOPICS),
             "chats": draw(st.lists(CHATS, max_size=2)),
             "users": draw(st.lists(USERS, max_size=4))}
    if kind == "channel":
        return t.messages.ChannelMessages(pts=draw(INT32), count=draw(INT32),
                                          inexact=draw(st.booleans()),
                                          offset_id_offset=draw(optional(INT32)), **parts)
    if kind == "slice":
        flood = draw(optional(st.builds(t.SearchPostsFlood, total_daily=INT32,
                                         remains=INT32, stars_amount=IDS)))
        return t.messages.MessagesSlice(count=draw(INT32), inexact=draw(st.booleans()),
                                        next_rate=draw(optional(INT32)),
                                        offset_id_offset=draw(optional(INT32)),
                                        search_flood=flood, **parts)
    return t.messages.Messages(**parts)


# --- comparing the two readings ------------------------------------------------------------
def same_reading(data: bytes, start: int = 0) -> tuple[Any, int]:
    """Assert read_result and tgread_object agree on data from start; the page (None if
    both raised) and the position after it."""
    fast = read_with(history_reader.read_result, data, start)
    slow = read_with(lambda reader: reader.tgread_object(), data, start)
    assert fast[0] == slow[0], (fast, slow)
    if not slow[0]:
        assert fast[1] is slow[1]
        return None, -1
    page, telethons = fast[1], slow[1]
    assert type(page) is type(telethons)
    for mine, theirs in zip(getattr(page, "messages", ()), getattr(telethons, "messages", ()),
                            strict=True):
        assert type(mine) is type(theirs)
        assert vars(mine) == vars(theirs)  # nested TLObjects by ==, dates by ==
    assert page == telethons
    assert shape(page) == shape(telethons)
    assert fast[2] == slow[2]
    return page, fast[2]


def read_here(data: bytes, start: int = 0) -> tuple[Any, int]:
    """same_reading, and the page was read by history_reader itself: any surprise inside it
    falls back to Telethon's reader, which would hide a field it reads wrong."""
    result, end = same_reading(data, start)
    assert history_reader._page(data, start) == (result, end)
    return result, end


# --- 1. generated pages --------------------------------------------------------------------
@SETTINGS
@given(pages())
def test_every_generated_page_reads_as_telethon_reads_it(page: Any) -> None:
    data = bytes(page)
    result, end = read_here(data)
    assert end == len(data)
    assert type(result) is type(page)
    assert len(result.messages) == len(page.messages)


def test_the_strategies_cover_every_message_field() -> None:
    """Whatever a future layer adds to types.Message shows here: a new field that is no
    flag must get a strategy in MESSAGE_VALUES."""
    params = inspect.signature(RawMessage.__init__).parameters
    not_flags = [name for name in MESSAGE_BOOLS if "bool" not in str(params[name].annotation)]
    assert not_flags == []
    assert set(MESSAGE_VALUES) | set(MESSAGE_BOOLS) == set(_MESSAGE_PARAMETERS)
    assert len(MESSAGE_BOOLS) == 15


def _message_page(*messages: Any) -> bytes:
    return bytes(t.messages.ChannelMessages(pts=1, count=len(messages), messages=list(messages),
                                            topics=[], chats=[], users=[]))


def test_the_sender_is_worked_out_as_telethon_works_it_out() -> None:
    """from_id, else the chat for a channel post or an incoming message in a private chat,
    else none; with the ids Telethon rewrites in place (out of a chat's or channel's range)."""
    peers = [t.PeerUser(user_id=5), t.PeerChat(chat_id=6), t.PeerChannel(channel_id=7),
             t.PeerChannel(channel_id=10**12 + 7), t.PeerChat(chat_id=-6)]
    seen = set()
    for from_id in (None, *peers):
        for peer in peers:
            for out in (False, True):
                for post in (False, True):
                    data = _message_page(RawMessage(id=1, peer_id=peer, date=0, message="",
                                                    from_id=from_id, out=out, post=post))
                    result, _ = read_here(data)
                    seen.add(result.messages[0].sender_id)
    # 10**12 + 7 is no channel id Telethon knows: it marks it once more (-2 * 10**12 - 7).
    assert seen == {None, 5, -6, -(10**12 + 7), -(2 * 10**12 + 7)}


def test_text_at_every_length_form_and_astral_characters() -> None:
    """253 bytes: one length byte; 254 and up (70,000: a third length byte): four."""
    for size in (0, 1, 253, 254, 255, 256, 70_000):
        text = exactly("Zoë 👨\u200d💻 \U00010348 " * 10_000, size)
        result, _ = read_here(_message_page(RawMessage(
            id=1, peer_id=t.PeerChannel(channel_id=2), date=3, message=text, post_author=text)))
        assert result.messages[0].message == text == result.messages[0].post_author


def test_a_one_byte_length_of_255_is_read_as_telethon_reads_it() -> None:
    text = "n" * 255
    data = _message_page(RawMessage(id=1, peer_id=t.PeerUser(user_id=2), date=3, message=text,
                                    post_author="last"))
    written = TLObject.serialize_bytes(text)
    assert data.count(written) == 1
    data = data.replace(written, b"\xff" + text.encode())  # 256 bytes: aligned
    result, end = read_here(data)
    assert end == len(data)
    assert result.messages[0].message == text and result.messages[0].post_author == "last"


# --- 2. invalid UTF-8 ----------------------------------------------------------------------
_STRING_FIELDS = ("message", "from_rank", "post_author", "summary_from_language")


@SETTINGS
@given(st.sampled_from(_STRING_FIELDS), st.binary(min_size=1, max_size=300), pages(4))
def test_invalid_utf8_decodes_as_telethon_decodes_it(field: str, bad: bytes, rest: Any) -> None:
    marker = "\x7f" * len(bad)  # the same length as the bytes that replace it
    fields = {"message": "", field: marker}
    message = RawMessage(id=9, peer_id=t.PeerChannel(channel_id=1), date=5, **fields)
    page = t.messages.Messages(messages=[message, *rest.messages], topics=rest.topics,
                               chats=rest.chats, users=rest.users)
    data = bytes(page)
    written = TLObject.serialize_bytes(marker)
    assume(data.count(written) == 1)
    data = data.replace(written, TLObject.serialize_bytes(bad))
    result, _ = read_here(data)
    assert getattr(result.messages[0], field) == str(bad, "utf-8", "replace")


# --- 3. cut pages --------------------------------------------------------------------------
@SETTINGS
@given(pages(3))
def test_a_cut_page_raises_exactly_when_telethon_raises(page: Any) -> None:
    data = bytes(page)
    for cut in range(0, len(data), max(1, len(data) // 150)):
        result, _ = same_reading(data[:cut])
        assert result is None  # Telethon raises on every cut page: so must the reader


# --- 4. other layouts ----------------------------------------------------------------------
_PAGE_IDS = [struct.pack("<I", cls.CONSTRUCTOR_ID) for cls in (
    t.messages.ChannelMessages, t.messages.MessagesSlice, t.messages.Messages)]
OTHER_OBJECTS = st.one_of(
    st.builds(t.messages.MessagesNotModified, count=INT32),
    st.builds(t.messages.MessagesSlice, count=INT32, messages=st.just([]), topics=TOPICS,
              chats=st.just([]), users=st.lists(USERS, max_size=2)),
    MESSAGES, USERS, CHATS, PEERS).map(bytes)
GARBAGE = st.binary(max_size=80) | st.builds(
    lambda head, tail: head + tail, st.sampled_from(_PAGE_IDS), st.binary(max_size=80))


@SETTINGS
@given(OTHER_OBJECTS | GARBAGE)
def test_another_object_or_garbage_reads_as_telethon_reads_it(data: bytes) -> None:
    same_reading(data)


def _offsets(page: Any) -> tuple[int, list[int]]:
    """Where the messages vector starts, and each message."""
    at_vector = len(bytes(page)) - sum(len(bytes(x)) for x in (
        *page.messages, *page.topics, *page.chats, *page.users)) - 4 * 8
    pos = at_vector + 8
    at_message = []
    for message in page.messages:
        at_message.append(pos)
        pos += len(bytes(message))
    return at_vector, at_message


def _used_flags() -> tuple[int, int]:
    """The flag bits this layer gives types.Message (set by every field and flag)."""
    full = {"from_id": t.PeerUser(user_id=1), "from_boosts_applied": 1, "from_rank": "",
            "saved_peer_id": t.PeerUser(user_id=1), "fwd_from": t.MessageFwdHeader(date=0),
            "via_bot_id": 1, "via_business_bot_id": 1, "guestchat_via_from": t.PeerUser(1),
            "reply_to": t.MessageReplyStoryHeader(peer=t.PeerUser(1), story_id=1),
            "media": t.MessageMediaEmpty(), "reply_markup": t.ReplyKeyboardHide(),
            "entities": [], "views": 1, "forwards": 1,
            "replies": t.MessageReplies(replies=1, replies_pts=1), "edit_date": 0,
            "post_author": "", "grouped_id": 1, "reactions": t.MessageReactions(results=[]),
            "restriction_reason": [], "ttl_period": 1, "quick_reply_shortcut_id": 1,
            "effect": 1, "factcheck": t.FactCheck(hash=1), "report_delivery_until_date": 0,
            "paid_message_stars": 1, "suggested_post": t.SuggestedPost(),
            "schedule_repeat_period": 1, "summary_from_language": "",
            "rich_message": t.RichMessage(blocks=[], photos=[], documents=[])}
    assert set(full) | set(_ALWAYS) == set(MESSAGE_VALUES)
    message = RawMessage(id=1, peer_id=t.PeerUser(user_id=1), date=0, message="",
                         **dict.fromkeys(MESSAGE_BOOLS, True), **full)
    flags, flags2 = struct.unpack_from("<II", bytes(message), 4)
    return flags, flags2


USED_FLAGS, USED_FLAGS2 = _used_flags()


@SETTINGS
@given(pages(8), st.data())
def test_flag_bits_this_layer_does_not_know_are_ignored_as_telethon_ignores_them(
        page: Any, draw: Any) -> None:
    data = bytearray(bytes(page))
    _, at_message = _offsets(page)
    noise = st.integers(0, 2**32 - 1)
    for at, message in zip(at_message, page.messages, strict=True):
        if type(message) is RawMessage:
            flags, flags2 = struct.unpack_from("<II", data, at + 4)
            struct.pack_into("<II", data, at + 4, flags | draw.draw(noise) & ~USED_FLAGS,
                             flags2 | draw.draw(noise) & ~USED_FLAGS2)
    result, _ = read_here(bytes(data))
    assert len(result.messages) == len(page.messages)


@SETTINGS
@given(pages(8), st.integers(0, 2**32 - 1))
def test_a_messages_vector_id_telethon_skips_unchecked_changes_nothing(
        page: Any, vector_id: int) -> None:
    data = bytearray(bytes(page))
    at_vector, _ = _offsets(page)
    struct.pack_into("<I", data, at_vector, vector_id)
    read_here(bytes(data))


@SETTINGS
@given(pages(6), st.data())
def test_corrupted_bytes_read_as_telethon_reads_them(page: Any, draw: Any) -> None:
    """Any byte changed anywhere (a length, a count, a constructor id, a flag word): the
    reader returns what Telethon returns, or raises what Telethon raises."""
    data = bytearray(bytes(page))
    assume(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at] = draw.draw(st.integers(0, 255))
    same_reading(bytes(data))


@SETTINGS
@given(pages(8), st.binary(max_size=24), st.binary(min_size=1, max_size=64))
def test_bytes_before_and_after_the_page_change_nothing(page: Any, before: bytes,
                                                        after: bytes) -> None:
    """Telethon's RpcResult hands the reader the whole message: the page starts where the
    reader stands and may have more bytes after it."""
    data = bytes(page)
    _, end = read_here(before + data + after, start=len(before))
    assert end == len(before) + len(data)


# --- 5. the layout check -------------------------------------------------------------------
def _counting_message_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count Telethon's Message.from_reader calls (tgread_object's way to a Message)."""
    calls: list[int] = []
    original = t.Message.from_reader.__func__

    def from_reader(cls: Any, reader: Any) -> Any:
        calls.append(1)
        return original(cls, reader)

    monkeypatch.setattr(t.Message, "from_reader", classmethod(from_reader))
    return calls


_PLAIN_PAGE = t.messages.ChannelMessages(
    pts=1, count=3, topics=[], chats=[], users=[t.User(id=7, first_name="Ann")],
    messages=[RawMessage(id=i, peer_id=t.PeerChannel(channel_id=9), date=i, message=f"m{i}",
                         from_id=t.PeerUser(user_id=7)) for i in range(3)])


def test_the_layout_is_the_installed_telethons_so_the_fast_reader_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert history_reader.LAYOUT_OK is True
    calls = _counting_message_reads(monkeypatch)
    result, _ = same_reading(bytes(_PLAIN_PAGE))
    assert len(calls) == 3  # Telethon's reading, for the comparison
    calls.clear()
    assert history_reader.read_result(BinaryReader(bytes(_PLAIN_PAGE))) == result
    assert calls == []  # the messages were read here, not by Telethon


def test_with_an_unknown_layout_telethon_reads_every_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_reader, "LAYOUT_OK", False)
    calls = _counting_message_reads(monkeypatch)
    data = bytes(_PLAIN_PAGE) + b"tail"
    reader = BinaryReader(data)
    result = history_reader.read_result(reader)
    assert len(calls) == 3
    assert result == BinaryReader(data).tgread_object()
    assert reader.tell_position() == len(data) - 4


def test_a_telethon_whose_message_sets_other_attributes_fails_the_layout_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert history_reader._keys_ok() is True
    monkeypatch.setattr(history_reader, "_PRIVATE", history_reader._PRIVATE - {"_forward"})
    assert history_reader._keys_ok() is False


# --- what tgws writes ----------------------------------------------------------------------
def _streamed(page: Any) -> list[Any]:
    """What HistoryPager hands the serializer: every message but MessageEmpty."""
    return [m for m in page.messages if not isinstance(m, t.MessageEmpty)]


@SETTINGS
@given(pages())
def test_the_json_written_for_each_message_is_the_same_either_way(page: Any) -> None:
    data = bytes(page)
    fast = _streamed(history_reader.read_result(BinaryReader(data)))
    slow = _streamed(BinaryReader(data).tgread_object())
    assert [type(m) for m in fast] == [type(m) for m in slow]
    try:
        expected = serialize.message_frames("g", slow)
    except Exception as exc:  # the fast objects must fail alike
        with pytest.raises(type(exc)):
            serialize.message_frames("g", fast)
        return
    assert serialize.message_frames("g", fast) == expected


# --- end to end: the daemon's own pages ----------------------------------------------------
@pytest.fixture
def checked_afresh() -> Iterator[None]:
    fastpath.force_public(False)
    yield
    fastpath.force_public(False)


async def _chats(tmp_path: Path, name: str) -> list[Any]:
    daemon = Daemon(make_config(tmp_path, **{"store.path": str(tmp_path / f"{name}.db"),
                                             "sandbox.wire": True}))
    await daemon.start()
    try:
        assert daemon.backend is not None and daemon.app is not None
        group = daemon.backend.world.megagroup("readertest", title="Reader test")
        group.populate(20)  # the history's authors
        group.history(450)
        key = await daemon.app.store.create_api_key(name)
        async with await logged_in(daemon, key) as ws:
            await ws.send(json.dumps({"event": "chats", "data": {"status": "", "group": [
                {"name": "readertest", "status": ""}]}}))
            chats, _ = await collect_stream(ws, "chats")
    finally:
        await daemon.stop()
    return chats


async def test_history_pages_reach_the_reader_through_telethons_sender(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked_afresh: None) -> None:
    """Through the daemon, unmodified Telethon and the sandbox in wire mode: every history
    page is read by history_reader (a spy counts them; it changes nothing), and the items
    streamed equal those of the public path, where no page is."""
    pages = 0
    read_page = history_reader._page

    def counting(data: bytes, pos: int) -> Any:
        nonlocal pages
        pages += 1
        return read_page(data, pos)

    monkeypatch.setattr(history_reader, "_page", counting)
    fast = await _chats(tmp_path, "spied")
    assert [item["chat"]["id"] for item in fast] == list(range(1, 451))
    assert pages >= 5  # 450 messages, 100 a page, and the empty page that ends them
    fastpath.force_public(True)
    pages = 0
    public = await _chats(tmp_path, "spied-public")
    assert pages == 0 and public == fast
