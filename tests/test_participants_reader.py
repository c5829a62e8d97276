"""participants_reader.read_result reads a channels.channelParticipants page as Telethon does.

Pages are built from Telethon's own classes (every field of types.User for Telethon's layer,
every participant, status and photo class), serialized with `bytes(page)`, and read twice:
by `participants_reader.read_result` and by Telethon's `BinaryReader.tgread_object`. The
two must give equal objects (`==` compares `to_dict()`) of identical types all the way down
(a `1` where Telethon has `True` would pass `==`), with the same attributes, and leave the
reader at the same position; where Telethon raises, the reader raises the same exception
type. Then the bytes are bent: invalid UTF-8, cuts, other objects, trailing bytes, unknown
flag bits, patched vector ids, corrupted bytes. (The User, status and photo readers it
uses live in tgws/tl_reading.py; these tests reach them through the page.)
"""

from __future__ import annotations

import contextlib
import inspect
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.tl import types as t
from telethon.tl.alltlobjects import tlobjects
from telethon.tl.tlobject import TLObject

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
from tgws import participants_reader
from tgws.member_paging import _members
from tgws.serialize.users import user_frames

# Generating a page of thirty users is most of each example's time: 40 examples a property
# (60 for the main one) keep the file within ~20 s on a busy 2-core machine.
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BLOBS = st.binary(max_size=12) | st.binary(min_size=252, max_size=258)


_BY_ME = (t.UserStatusRecently, t.UserStatusLastWeek, t.UserStatusLastMonth)
STATUSES = st.one_of(
    st.builds(t.UserStatusOnline, expires=DATES),
    st.builds(t.UserStatusOffline, was_online=DATES),
    *(st.builds(cls, by_me=st.booleans()) for cls in _BY_ME),
    st.just(t.UserStatusEmpty()),
)
PHOTOS = st.just(t.UserProfilePhotoEmpty()) | st.builds(
    t.UserProfilePhoto, photo_id=IDS, dc_id=INT32, has_video=st.booleans(),
    personal=st.booleans(), stripped_thumb=optional(BLOBS))
EMOJI_STATUSES = st.one_of(
    st.just(t.EmojiStatusEmpty()),
    st.builds(t.EmojiStatus, document_id=IDS, until=optional(DATES)),
    st.builds(t.EmojiStatusCollectible, collectible_id=IDS, document_id=IDS, title=STRINGS,
              slug=STRINGS, pattern_document_id=IDS, center_color=INT32, edge_color=INT32,
              pattern_color=INT32, text_color=INT32, until=optional(DATES)))
COLORS = st.builds(t.PeerColor, color=optional(INT32),
                   background_emoji_id=optional(IDS)) | st.builds(
    t.PeerColorCollectible, collectible_id=IDS, gift_emoji_id=IDS, background_emoji_id=IDS,
    accent_color=INT32, colors=st.lists(INT32, max_size=3),
    dark_accent_color=optional(INT32), dark_colors=optional(st.lists(INT32, max_size=2)))

# Every field of types.User but id and its boolean flags, with what it may hold. None
# leaves the field (and its flag bit) out.
USER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "access_hash": IDS,
    "first_name": STRINGS,
    "last_name": STRINGS,
    "username": STRINGS,
    "phone": STRINGS,
    "photo": PHOTOS,
    "status": STATUSES,
    "bot_info_version": INT32,
    "restriction_reason": st.lists(st.builds(t.RestrictionReason, platform=STRINGS,
                                             reason=STRINGS, text=STRINGS), max_size=2),
    "bot_inline_placeholder": STRINGS,
    "lang_code": STRINGS,
    "emoji_status": EMOJI_STATUSES,
    "usernames": st.lists(st.builds(t.Username, username=STRINGS, editable=st.booleans(),
                                    active=st.booleans()), max_size=3),
    "stories_max_id": st.builds(t.RecentStory, live=st.booleans(), max_id=optional(INT32)),
    "color": COLORS,
    "profile_color": COLORS,
    "bot_active_users": INT32,
    "bot_verification_icon": IDS,
    "send_paid_messages_stars": IDS,
    "linked_community_id": IDS,
}
_USER_PARAMETERS = [name for name in inspect.signature(t.User.__init__).parameters
                    if name not in ("self", "id")]
# The rest are the boolean flags: test_the_strategies_cover_every_user_field checks they are.
USER_BOOLS = [name for name in _USER_PARAMETERS if name not in USER_VALUES]


_COMMON = ("access_hash", "first_name", "last_name", "username", "phone", "photo", "status")


@st.composite
def users(draw: st.DrawFn) -> Any:
    """A User with any of its fields; the fields past `status` (bots, restrictions,
    colours...) together in a third of them, as in real pages where most users have none."""
    rare = draw(st.integers(0, 2)) == 0
    values = {name: draw(optional(strategy)) if rare or name in _COMMON else None
              for name, strategy in USER_VALUES.items()}
    mask = draw(st.integers(0, 2 ** len(USER_BOOLS) - 1))
    flags = {name: bool(mask >> i & 1) for i, name in enumerate(USER_BOOLS)}
    # TL gives bot and bot_info_version one flag bit, restricted and restriction_reason
    # another: Telethon's serializer wants them set together.
    flags["bot"] = values["bot_info_version"] is not None
    flags["restricted"] = values["restriction_reason"] is not None
    return t.User(id=draw(IDS), **flags, **values)


USERS = users() | st.builds(t.UserEmpty, id=IDS)
PEERS = st.builds(t.PeerUser, user_id=IDS) | st.builds(t.PeerChannel, channel_id=IDS)
ADMIN_RIGHTS = st.builds(t.ChatAdminRights, change_info=st.booleans(),
                         ban_users=st.booleans(), manage_ranks=st.booleans())
BANNED_RIGHTS = st.builds(t.ChatBannedRights, until_date=DATES,
                          view_messages=st.booleans(), send_plain=st.booleans())


def participants(ids: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    ranks = optional(STRINGS)
    plain = st.builds(t.ChannelParticipant, user_id=ids, date=DATES,
                      subscription_until_date=optional(DATES), rank=ranks)
    return st.one_of(
        plain, plain, plain,  # nearly every member of a real page
        st.builds(t.ChannelParticipantSelf, user_id=ids, inviter_id=IDS, date=DATES,
                  via_request=st.booleans(), subscription_until_date=optional(DATES),
                  rank=ranks),
        # TL gives is_self and inviter_id one flag bit.
        st.builds(lambda inviter, **fields: t.ChannelParticipantAdmin(
                      inviter_id=inviter, is_self=inviter is not None, **fields),
                  optional(IDS), user_id=ids, promoted_by=IDS, date=DATES,
                  admin_rights=ADMIN_RIGHTS, can_edit=st.booleans(), rank=ranks),
        st.builds(t.ChannelParticipantCreator, user_id=ids, admin_rights=ADMIN_RIGHTS,
                  rank=ranks),
        st.builds(t.ChannelParticipantBanned,
                  peer=ids.map(lambda i: t.PeerUser(user_id=i)) | PEERS, kicked_by=IDS,
                  date=DATES, banned_rights=BANNED_RIGHTS, left=st.booleans(), rank=ranks),
        st.builds(t.ChannelParticipantLeft, peer=ids.map(lambda i: t.PeerUser(user_id=i))
                  | PEERS),
    )


CHATS = st.one_of(
    st.builds(t.Channel, id=IDS, title=STRINGS, photo=st.just(t.ChatPhotoEmpty()),
              date=DATES, megagroup=st.booleans(), access_hash=optional(IDS),
              username=optional(STRINGS), participants_count=optional(INT32)),
    st.builds(t.Chat, id=IDS, title=STRINGS, photo=st.just(t.ChatPhotoEmpty()),
              participants_count=INT32, date=DATES, version=INT32),
    st.builds(t.ChatEmpty, id=IDS),
    st.builds(t.ChannelForbidden, id=IDS, access_hash=IDS, title=STRINGS,
              megagroup=st.booleans(), until_date=optional(DATES)),
)


@st.composite
def pages(draw: st.DrawFn, max_size: int = 30) -> Any:
    """A page of 0..max_size users, with participants mostly naming them (as Telegram's do)."""
    n = draw(st.integers(0, max_size))
    people = draw(st.lists(USERS, min_size=n, max_size=n))
    ids = [user.id for user in people]
    known = (st.sampled_from(ids) | IDS) if ids else IDS
    return t.channels.ChannelParticipants(
        count=draw(INT32), participants=draw(st.lists(participants(known), min_size=n,
                                                      max_size=n + 2)),
        chats=draw(st.lists(CHATS, max_size=3)), users=people)


# --- comparing the two readings ------------------------------------------------------------
def _telethon(data: bytes) -> Any:
    return BinaryReader(data).tgread_object()


@contextlib.contextmanager
def telethon_reads() -> Iterator[list[str]]:
    """The names of the classes, among User and ChannelParticipant, that Telethon's own
    `from_reader` (tgread_object's way to them) read while inside, one entry a call."""
    calls: list[str] = []
    originals = {cls: cls.__dict__["from_reader"] for cls in (t.User, t.ChannelParticipant)}

    def spy(cls: Any, reader: Any) -> Any:
        calls.append(cls.__name__)
        return originals[cls].__func__(cls, reader)

    try:
        for cls in originals:
            cls.from_reader = classmethod(spy)
        yield calls
    finally:
        for cls, original in originals.items():
            cls.from_reader = original


def same_reading(data: bytes, start: int = 0, *, fast: bool = False) -> tuple[Any, int]:
    """Assert read_result and tgread_object agree on data from start; the object (None if
    both raised) and the position after it. fast: assert too that read_result read every
    User and plain ChannelParticipant itself (the page's layout is the one it knows): the
    comparison is then between two readings, not Telethon's with itself."""
    with telethon_reads() as calls:
        fast_read = read_with(participants_reader.read_result, data, start)
    if fast:
        assert calls == []
    slow_read = read_with(lambda reader: reader.tgread_object(), data, start)
    read, obj, end = fast_read
    assert read == slow_read[0], (fast_read, slow_read)
    if not read:
        assert obj is slow_read[1]  # the same exception type
        return None, -1
    assert obj == slow_read[1]
    assert shape(obj) == shape(slow_read[1])
    assert end == slow_read[2]
    return obj, end


# --- 1. generated pages --------------------------------------------------------------------
@settings(SETTINGS, max_examples=60)
@given(pages())
def test_every_generated_page_reads_as_telethon_reads_it(page: Any) -> None:
    data = bytes(page)
    _, end = same_reading(data, fast=True)
    assert end == len(data)


def test_the_strategies_cover_every_user_field() -> None:
    """Whatever a future layer adds to types.User shows here: a new field that is no flag
    must get a strategy in USER_VALUES."""
    not_flags = [name for name in USER_BOOLS
                 if "bool" not in str(inspect.signature(t.User.__init__).parameters[name]
                                      .annotation)]
    assert not_flags == []
    assert set(USER_VALUES) | set(USER_BOOLS) == set(_USER_PARAMETERS)
    assert len(USER_BOOLS) == 30


def _kinds(cls: Any) -> set[Any]:
    return {c for c in tlobjects.values()
            if getattr(c, "SUBCLASS_OF_ID", None) == cls.SUBCLASS_OF_ID
            and not c.__name__.endswith("Request") and not c.__name__.startswith("Input")}


def test_every_status_photo_and_participant_class_is_generated() -> None:
    @given(STATUSES)
    def statuses(status: Any) -> None:
        seen.add(type(status))

    @given(PHOTOS)
    def photos(photo: Any) -> None:
        seen.add(type(photo))

    @given(participants(IDS))
    def members(participant: Any) -> None:
        seen.add(type(participant))

    for test, kind in ((statuses, t.UserStatusEmpty), (photos, t.UserProfilePhoto),
                       (members, t.ChannelParticipant)):
        seen: set[Any] = set()
        settings(max_examples=200, database=None)(test)()
        assert seen == _kinds(kind)


def test_string_lengths_at_every_length_form() -> None:
    """253 bytes: one length byte; 254 and up (70,000: a third length byte): four."""
    for size in (0, 1, 253, 254, 255, 256, 70_000):
        name = exactly("Zoë 👨\u200d💻 " * 10_000, size)
        user = t.User(id=7, first_name=name, last_name="\U00010348" * (size // 4),
                      phone="", lang_code="x" * size)
        page = t.channels.ChannelParticipants(
            count=1, participants=[t.ChannelParticipant(user_id=7, date=0, rank=name)],
            chats=[], users=[user])
        result, _ = same_reading(bytes(page), fast=True)
        assert result.users[0].first_name == name
        assert result.participants[0].rank == name


@pytest.mark.parametrize("name", ["n" * 255, "\x00\x00\x00" + "n" * 252])
@pytest.mark.parametrize("last_name", ["last", None])
def test_a_one_byte_length_of_255_is_read_as_telethon_reads_it(name: str,
                                                               last_name: str | None) -> None:
    """No serializer writes 255 as a one-byte length (254 and up take four bytes), but
    Telethon reads it as one: 255 bytes, no padding. A server may send it. (Read as the
    four-byte form, "\0\0\0" would be an empty name and the rest of it the next fields.)"""
    page = t.channels.ChannelParticipants(
        count=1, participants=[t.ChannelParticipant(user_id=7, date=0)], chats=[],
        users=[t.User(id=7, first_name=name, last_name=last_name)])
    data = bytes(page)
    written = TLObject.serialize_bytes(name)
    assert data.count(written) == 1
    data = data.replace(written, b"\xff" + name.encode())  # 256 bytes: aligned
    result, end = same_reading(data, fast=True)
    assert end == len(data)
    assert result.users[0].first_name == name and result.users[0].last_name == last_name


# --- 2. invalid UTF-8 ----------------------------------------------------------------------
# Where a string may sit: (the User's fields and the rank to build with it, where to find
# the string read back).
_Build = Callable[[str], tuple[dict[str, Any], Any]]


def _user_field(name: str) -> tuple[_Build, Callable[[Any], Any]]:
    def build(text: str) -> tuple[dict[str, Any], Any]:
        return {name: text}, None

    def found(page: Any) -> Any:
        return getattr(page.users[0], name)

    return build, found


_FIELDS = {name: _user_field(name) for name in (
    "first_name", "last_name", "username", "phone", "bot_inline_placeholder", "lang_code")}
_FIELDS["rank"] = (lambda s: ({}, s), lambda r: r.participants[0].rank)
_FIELDS["usernames"] = (lambda s: ({"usernames": [t.Username(username=s)]}, None),
                        lambda r: r.users[0].usernames[0].username)
_FIELDS["restriction"] = (
    lambda s: ({"restricted": True,
                "restriction_reason": [t.RestrictionReason("ios", "porn", s)]}, None),
    lambda r: r.users[0].restriction_reason[0].text)


@SETTINGS
@given(st.sampled_from(sorted(_FIELDS)), st.binary(min_size=1, max_size=300), pages(4),
       st.booleans())
def test_invalid_utf8_decodes_as_telethon_decodes_it(field: str, bad: bytes, rest: Any,
                                                     has_status: bool) -> None:
    marker = "\x7f" * len(bad)  # the same length as the bytes that replace it
    build, found = _FIELDS[field]
    fields, rank = build(marker)
    status = t.UserStatusRecently() if has_status else None
    page = t.channels.ChannelParticipants(
        count=rest.count,
        participants=[t.ChannelParticipant(user_id=9, date=5, rank=rank), *rest.participants],
        chats=rest.chats, users=[t.User(id=9, status=status, **fields), *rest.users])
    data = bytes(page)
    written = TLObject.serialize_bytes(marker)
    assume(data.count(written) == 1)
    data = data.replace(written, TLObject.serialize_bytes(bad))
    result, _ = same_reading(data, fast=True)
    assert found(result) == str(bad, "utf-8", "replace")


# --- 3. cut pages --------------------------------------------------------------------------
@SETTINGS
@given(pages(6), st.data())
def test_a_cut_page_raises_exactly_when_telethon_raises(page: Any, extra: st.DataObject) -> None:
    """Cut at every point of the page's head and tail (the page's own fields, the last
    user's), and anywhere between."""
    data = bytes(page)
    anywhere = extra.draw(st.lists(st.integers(0, len(data) - 1), max_size=24))
    cuts = {*range(min(len(data), 48)), *range(max(len(data) - 48, 0), len(data)), *anywhere}
    for cut in sorted(cuts):
        result, _ = same_reading(data[:cut])
        assert result is None  # Telethon raises on every cut page: so must the reader


# --- 4. other layouts ----------------------------------------------------------------------
_PAGE_ID = struct.pack("<I", t.channels.ChannelParticipants.CONSTRUCTOR_ID)
OTHER_OBJECTS = st.one_of(
    st.just(t.channels.ChannelParticipantsNotModified()),
    st.builds(t.channels.ChannelParticipant, participant=participants(IDS),
              chats=st.lists(CHATS, max_size=2), users=st.lists(USERS, max_size=2)),
    USERS, participants(IDS), CHATS, STATUSES, PHOTOS,
).map(bytes)
GARBAGE = st.binary(max_size=80) | st.binary(max_size=80).map(lambda b: _PAGE_ID + b)


@SETTINGS
@given(OTHER_OBJECTS | GARBAGE)
def test_another_object_or_garbage_reads_as_telethon_reads_it(data: bytes) -> None:
    same_reading(data)


def _offsets(page: Any) -> tuple[int, int, list[int], list[int]]:
    """Where the chats and users vectors start, and each participant and user."""
    pos = 16
    at_participants = []
    for participant in page.participants:
        at_participants.append(pos)
        pos += len(bytes(participant))
    at_chats = pos
    pos += 8 + sum(len(bytes(chat)) for chat in page.chats)
    at_users = pos
    pos += 8
    at_user = []
    for user in page.users:
        at_user.append(pos)
        pos += len(bytes(user))
    return at_chats, at_users, at_participants, at_user


@SETTINGS
@given(pages(8), st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3))
def test_vector_ids_telethon_skips_unchecked_change_nothing(page: Any, ids: list[int]) -> None:
    data = bytearray(bytes(page))
    at_chats, at_users, _, _ = _offsets(page)
    for at, vector_id in zip((8, at_chats, at_users), ids, strict=True):
        struct.pack_into("<I", data, at, vector_id)
    result, _ = same_reading(bytes(data))
    assert result == _telethon(bytes(page))  # as if the page had come untouched


_FULL_USER = t.User(id=1, **dict.fromkeys(USER_BOOLS, True), access_hash=1, first_name="a",
                    last_name="b", username="c", phone="d", photo=t.UserProfilePhotoEmpty(),
                    status=t.UserStatusEmpty(), bot_info_version=1, restriction_reason=[],
                    bot_inline_placeholder="e", lang_code="f", emoji_status=t.EmojiStatusEmpty(),
                    usernames=[], stories_max_id=t.RecentStory(), color=t.PeerColor(),
                    profile_color=t.PeerColor(), bot_active_users=1, bot_verification_icon=1,
                    send_paid_messages_stars=1, linked_community_id=1)
USED_FLAGS, USED_FLAGS2 = struct.unpack_from("<II", bytes(_FULL_USER), 4)
(USED_PARTICIPANT_FLAGS,) = struct.unpack_from("<I", bytes(t.ChannelParticipant(
    user_id=1, date=1, subscription_until_date=1, rank="r")), 4)


@SETTINGS
@given(pages(8), st.data())
def test_flag_bits_this_layer_does_not_know_are_ignored_as_telethon_ignores_them(
        page: Any, extra: st.DataObject) -> None:
    data = bytearray(bytes(page))
    _, _, at_participants, at_user = _offsets(page)
    noise = st.integers(0, 2**32 - 1)
    for at, user in zip(at_user, page.users, strict=True):
        if type(user) is t.User:
            flags, flags2 = struct.unpack_from("<II", data, at + 4)
            struct.pack_into("<II", data, at + 4, flags | extra.draw(noise) & ~USED_FLAGS,
                             flags2 | extra.draw(noise) & ~USED_FLAGS2)
    for at, participant in zip(at_participants, page.participants, strict=True):
        if type(participant) is t.ChannelParticipant:
            (flags,) = struct.unpack_from("<I", data, at + 4)
            struct.pack_into("<I", data, at + 4,
                             flags | extra.draw(noise) & ~USED_PARTICIPANT_FLAGS)
    result, _ = same_reading(bytes(data), fast=True)
    assert result == _telethon(bytes(page))  # as if the page had come untouched


@pytest.mark.parametrize("status_class", _BY_ME)
@pytest.mark.parametrize("thumb", [None, b"\x01\x02"])
def test_unknown_flag_bits_of_a_status_and_a_photo_are_ignored(status_class: Any,
                                                               thumb: bytes | None) -> None:
    status = status_class(by_me=False)
    photo = t.UserProfilePhoto(photo_id=-5, dc_id=2, has_video=True, stripped_thumb=thumb)
    page = t.channels.ChannelParticipants(
        count=1, participants=[t.ChannelParticipant(user_id=7, date=0)], chats=[],
        users=[t.User(id=7, photo=photo, status=status)])
    data = bytes(page)
    flags = 2 if thumb else 0
    for obj, unknown in ((status, 0xFFFF_FFFE), (photo, 0xFFFF_FFF8 | flags | 1)):
        written = bytes(obj)
        assert data.count(written) == 1
        data = data.replace(written, written[:4] + struct.pack("<I", unknown) + written[8:])
    result, _ = same_reading(data, fast=True)
    assert result == _telethon(bytes(page))  # as if no unknown bit had been set


@SETTINGS
@given(pages(6), st.data())
def test_corrupted_bytes_read_as_telethon_reads_them(page: Any, extra: st.DataObject) -> None:
    """Any byte changed anywhere (a length, a count, a constructor id, a flag word): the
    reader returns what Telethon returns, or raises what Telethon raises."""
    data = bytearray(bytes(page))
    for _ in range(extra.draw(st.integers(1, 3))):
        at = extra.draw(st.integers(0, len(data) - 1))
        data[at] = extra.draw(st.integers(0, 255))
    same_reading(bytes(data))


# --- 5. bytes around the page --------------------------------------------------------------
@SETTINGS
@given(pages(8), st.binary(max_size=24), st.binary(min_size=1, max_size=64))
def test_bytes_before_and_after_the_page_change_nothing(page: Any, before: bytes,
                                                        after: bytes) -> None:
    """Telethon's RpcResult hands the reader the whole message: the page starts where the
    reader stands and may have more bytes after it."""
    data = bytes(page)
    result, end = same_reading(before + data + after, start=len(before), fast=True)
    assert end == len(before) + len(data)
    assert result == _telethon(bytes(page))  # as if the page had come untouched


# --- 6. the layout check -------------------------------------------------------------------
_PLAIN_PAGE = t.channels.ChannelParticipants(
    count=3, participants=[t.ChannelParticipant(user_id=i, date=i) for i in range(3)],
    chats=[], users=[t.User(id=i, first_name=f"user {i}", status=t.UserStatusRecently())
                     for i in range(3)])


def test_the_layout_is_the_installed_telethons_so_the_fast_reader_reads() -> None:
    assert participants_reader.LAYOUT_OK is True
    same_reading(bytes(_PLAIN_PAGE), fast=True)
    with telethon_reads() as calls:
        _telethon(bytes(_PLAIN_PAGE))
    assert calls == ["ChannelParticipant"] * 3 + ["User"] * 3  # the spy sees Telethon's


def test_with_an_unknown_layout_telethon_reads_every_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(participants_reader, "LAYOUT_OK", False)
    data = bytes(_PLAIN_PAGE) + b"tail"
    reader = BinaryReader(data)
    with telethon_reads() as calls:
        result = participants_reader.read_result(reader)
    assert calls == ["ChannelParticipant"] * 3 + ["User"] * 3
    assert result == _telethon(data)
    assert shape(result) == shape(_telethon(data))
    assert [user.first_name for user in result.users] == ["user 0", "user 1", "user 2"]
    assert reader.tell_position() == len(data) - 4


# --- what tgws writes ----------------------------------------------------------------------
@settings(SETTINGS, max_examples=30)
@given(pages())
def test_the_json_written_for_each_member_is_the_same_either_way(page: Any) -> None:
    data = bytes(page)
    fast = _members(participants_reader.read_result(BinaryReader(data)))
    slow = _members(BinaryReader(data).tgread_object())
    assert [type(user) for user in fast] == [type(user) for user in slow]
    assert user_frames("g", fast) == user_frames("g", slow)
