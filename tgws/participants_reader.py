"""A channels.getParticipants page read straight from its bytes, into the objects Telethon builds.

Why: reading the page is most of what listing a member costs. Telethon's generated
`User.from_reader` computes thirty flag booleans one by one, reads every field through a
method call, and passes fifty keyword arguments to `User.__init__`, which stores them one by
one: ~6 µs per member on our machine, more than everything tgws does with the member
afterwards. Here the flags become a ready dict of booleans (cached per flag word), the
fixed fields come out of one `struct.unpack_from`, and each object is made from a copy of
that dict: the same `types.User`, `types.ChannelParticipant` and status objects, field for
field (`==` compares `to_dict()`; tests/test_participants_reader.py checks it over
generated pages), in about a third of the time.

The layout of each constructor read here is fixed by its TL schema line, whose CRC32 is the
constructor id: `LAYOUT_OK` is true only when Telethon's classes carry exactly the ids this
module was written for (layer 229, Telethon 1.45). Any other layer, any constructor this
module does not read itself (admins, banned entries, chats, photos of other kinds, emoji
statuses, usernames...) is read by Telethon's own `tgread_object` at that position, and
anything unexpected (a short buffer, a vector id out of place) makes the whole page go
through Telethon's reader from the start: slower, never different.

`read_result` has the signature of `TLRequest.read_result`, which Telethon's sender calls
with the RPC result's reader; tgws/fastpath.py attaches it to a request (and says what that
relies on).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from telethon.extensions import BinaryReader
from telethon.tl import types

_EXPECTED: Final[dict[Any, int]] = {
    types.channels.ChannelParticipants: 0x9AB0FEAF,
    types.ChannelParticipant: 0x1BD54456,
    types.User: 0xB1B8CC83,
    types.UserProfilePhoto: 0x82D1F706,
    types.UserStatusOnline: 0xEDB93949,
    types.UserStatusOffline: 0x008C703F,
    types.UserStatusRecently: 0x7B197DC8,
    types.UserStatusLastWeek: 0x541A1D1A,
    types.UserStatusLastMonth: 0x65899777,
    types.UserStatusEmpty: 0x09D05049,
}
LAYOUT_OK: Final = all(getattr(cls, "CONSTRUCTOR_ID", None) == cid
                       for cls, cid in _EXPECTED.items())

_PAGE: Final = 0x9AB0FEAF
_VECTOR: Final = 0x1CB5C415
_PLAIN: Final = 0x1BD54456
_USER: Final = 0xB1B8CC83
_PHOTO: Final = 0x82D1F706
_ONLINE: Final = 0xEDB93949
_OFFLINE: Final = 0x008C703F
# Statuses whose only field is the by_me flag.
_BY_ME: Final[dict[int, type]] = {
    0x7B197DC8: types.UserStatusRecently,
    0x541A1D1A: types.UserStatusLastWeek,
    0x65899777: types.UserStatusLastMonth,
}
_EMPTY_STATUS: Final = 0x09D05049

# User's boolean flags, in User.__init__'s order: (name, word, bit); word 0 is `flags`,
# 1 is `flags2` (the schema's flags.N?true and flags2.N?true).
_USER_FLAGS: Final = (
    ("is_self", 0, 10), ("contact", 0, 11), ("mutual_contact", 0, 12), ("deleted", 0, 13),
    ("bot", 0, 14), ("bot_chat_history", 0, 15), ("bot_nochats", 0, 16),
    ("verified", 0, 17), ("restricted", 0, 18), ("min", 0, 20), ("bot_inline_geo", 0, 21),
    ("support", 0, 23), ("scam", 0, 24), ("apply_min_photo", 0, 25), ("fake", 0, 26),
    ("bot_attach_menu", 0, 27), ("premium", 0, 28), ("attach_menu_enabled", 0, 29),
    ("bot_can_edit", 1, 1), ("close_friend", 1, 2), ("stories_hidden", 1, 3),
    ("stories_unavailable", 1, 4), ("contact_require_premium", 1, 10),
    ("bot_business", 1, 11), ("bot_has_main_app", 1, 13), ("bot_forum_view", 1, 16),
    ("bot_forum_can_manage_topics", 1, 17), ("bot_can_manage_bots", 1, 18),
    ("bot_guestchat", 1, 19), ("bot_guard", 1, 20),
)
_USER_FIELDS: Final = (
    "access_hash", "first_name", "last_name", "username", "phone", "photo", "status",
    "bot_info_version", "restriction_reason", "bot_inline_placeholder", "lang_code",
    "emoji_status", "usernames", "stories_max_id", "color", "profile_color",
    "bot_active_users", "bot_verification_icon", "send_paid_messages_stars",
    "linked_community_id",
)
_FLAG_MASK: Final = sum(1 << bit for _, word, bit in _USER_FLAGS if word == 0)
_FLAG2_MASK: Final = sum(1 << bit for _, word, bit in _USER_FLAGS if word == 1)
# The flag bits of User's fields after `status` (_user_rest reads them).
_REST: Final = 16384 | 262144 | 524288 | 4194304 | 1073741824
_REST2: Final = 1 | 32 | 256 | 512 | 4096 | 16384 | 32768 | 2097152
# (flags & mask, flags2 & mask2) -> every User field but id: the booleans set, the rest None.
# Accounts differ in a handful of flag combinations; the cap only bounds a hostile server.
_BASES: dict[tuple[int, int], dict[str, Any]] = {}
_BASES_CAP: Final = 4096


def _base(flags: int, flags2: int) -> dict[str, Any]:
    words = (flags, flags2)
    base: dict[str, Any] = {"id": 0}
    for name, word, bit in _USER_FLAGS:
        base[name] = bool(words[word] >> bit & 1)
    base.update(dict.fromkeys(_USER_FIELDS))
    if len(_BASES) < _BASES_CAP:
        _BASES[flags, flags2] = base
    return base


class _Unexpected(Exception):
    """The page is not laid out as this module reads it: Telethon reads it instead."""


_new = object.__new__
_unpack = struct.unpack_from
_User = types.User
_Participant = types.ChannelParticipant
_Photo = types.UserProfilePhoto
_Online = types.UserStatusOnline
_Offline = types.UserStatusOffline
_Page = types.channels.ChannelParticipants
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_utc_from = datetime.fromtimestamp


def _date(seconds: int) -> datetime:
    """Telethon's tgread_date (epoch + seconds, in UTC)."""
    try:
        return _utc_from(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return _EPOCH + timedelta(seconds=seconds)


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """A TL `bytes`/`string` at pos: its bytes and the position after its padding."""
    n = data[pos]
    if n < 254:
        start, total = pos + 1, (n + 4) & ~3  # 1 + n, rounded up to 4
    else:
        n = data[pos + 1] | data[pos + 2] << 8 | data[pos + 3] << 16
        start, total = pos + 4, (n + 7) & ~3  # 4 + n, rounded up to 4
    end = start + n
    if end > len(data):
        raise _Unexpected("a string runs past the end")
    return data[start:end], pos + total


def _string(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _bytes(data, pos)
    return str(raw, "utf-8", "replace"), pos


def _telethon(data: bytes, pos: int) -> tuple[Any, int]:
    """Telethon's own reading of the object at pos."""
    reader = BinaryReader(data)
    reader.set_position(pos)
    obj = reader.tgread_object()
    return obj, reader.tell_position()


def _vector(data: bytes, pos: int) -> tuple[list[Any], int]:
    """A Vector<T> of boxed objects, each read by Telethon (as Telethon reads User's: the
    vector id is skipped unchecked)."""
    (count,) = _unpack("<i", data, pos + 4)
    pos += 8
    items = []
    for _ in range(count):
        item, pos = _telethon(data, pos)
        items.append(item)
    return items, pos


def _status(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = _unpack("<I", data, pos)
    if cid == _OFFLINE or cid == _ONLINE:
        (seconds,) = _unpack("<i", data, pos + 4)
        status = _new(_Offline if cid == _OFFLINE else _Online)
        status.__dict__ = ({"was_online": _date(seconds)} if cid == _OFFLINE
                           else {"expires": _date(seconds)})
        return status, pos + 8
    by_me_class = _BY_ME.get(cid)
    if by_me_class is not None:
        (flags,) = _unpack("<i", data, pos + 4)
        by_me: Any = _new(by_me_class)
        by_me.__dict__ = {"by_me": bool(flags & 1)}
        return by_me, pos + 8
    if cid == _EMPTY_STATUS:
        return _new(types.UserStatusEmpty), pos + 4
    return _telethon(data, pos)


def _photo(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = _unpack("<I", data, pos)
    if cid != _PHOTO:
        return _telethon(data, pos)
    flags, photo_id = _unpack("<iq", data, pos + 4)
    pos += 16
    thumb = None
    if flags & 2:
        thumb, pos = _bytes(data, pos)
    (dc_id,) = _unpack("<i", data, pos)
    photo = _new(_Photo)
    photo.__dict__ = {"photo_id": photo_id, "dc_id": dc_id, "has_video": bool(flags & 1),
                      "personal": bool(flags & 4), "stripped_thumb": thumb}
    return photo, pos + 4


def _user(data: bytes, pos: int) -> tuple[Any, int]:
    """A User (its constructor id already read): pos is at its flags."""
    flags, flags2, user_id = _unpack("<iiq", data, pos)
    pos += 16
    base = _BASES.get((flags & _FLAG_MASK, flags2 & _FLAG2_MASK))
    if base is None:
        base = _base(flags & _FLAG_MASK, flags2 & _FLAG2_MASK)
    d = base.copy()
    d["id"] = user_id
    if flags & 1:
        (d["access_hash"],) = _unpack("<q", data, pos)
        pos += 8
    if flags & 2:
        d["first_name"], pos = _string(data, pos)
    if flags & 4:
        d["last_name"], pos = _string(data, pos)
    if flags & 8:
        d["username"], pos = _string(data, pos)
    if flags & 16:
        d["phone"], pos = _string(data, pos)
    if flags & 32:
        d["photo"], pos = _photo(data, pos)
    if flags & 64:
        d["status"], pos = _status(data, pos)
    if flags & _REST or flags2 & _REST2:  # rarer fields: bots, restrictions, colours...
        pos = _user_rest(data, pos, flags, flags2, d)
    user = _new(_User)
    user.__dict__ = d
    return user, pos


def _user_rest(data: bytes, pos: int, flags: int, flags2: int, d: dict[str, Any]) -> int:
    """User's fields after `status`, in schema order."""
    if flags & 16384:
        (d["bot_info_version"],) = _unpack("<i", data, pos)
        pos += 4
    if flags & 262144:
        d["restriction_reason"], pos = _vector(data, pos)
    if flags & 524288:
        d["bot_inline_placeholder"], pos = _string(data, pos)
    if flags & 4194304:
        d["lang_code"], pos = _string(data, pos)
    if flags & 1073741824:
        d["emoji_status"], pos = _telethon(data, pos)
    if flags2 & 1:
        d["usernames"], pos = _vector(data, pos)
    if flags2 & 32:
        d["stories_max_id"], pos = _telethon(data, pos)
    if flags2 & 256:
        d["color"], pos = _telethon(data, pos)
    if flags2 & 512:
        d["profile_color"], pos = _telethon(data, pos)
    if flags2 & 4096:
        (d["bot_active_users"],) = _unpack("<i", data, pos)
        pos += 4
    for bit, name in ((16384, "bot_verification_icon"), (32768, "send_paid_messages_stars"),
                      (2097152, "linked_community_id")):
        if flags2 & bit:
            (d[name],) = _unpack("<q", data, pos)
            pos += 8
    return pos


def _participant(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = _unpack("<I", data, pos)
    if cid != _PLAIN:
        return _telethon(data, pos)  # admins, the creator, self, banned, left: a few a page
    flags, user_id, joined = _unpack("<iqi", data, pos + 4)
    pos += 20
    until = rank = None
    if flags & 1:
        (seconds,) = _unpack("<i", data, pos)
        until = _date(seconds)
        pos += 4
    if flags & 4:
        rank, pos = _string(data, pos)
    participant = _new(_Participant)
    participant.__dict__ = {"user_id": user_id, "date": _date(joined),
                            "subscription_until_date": until, "rank": rank}
    return participant, pos


def _page(data: bytes, pos: int) -> tuple[Any, int]:
    cid, count, vector, n = _unpack("<IiIi", data, pos)
    if cid != _PAGE or vector != _VECTOR:
        raise _Unexpected("not a channels.channelParticipants page")
    pos += 16
    participants = []
    for _ in range(n):
        item, pos = _participant(data, pos)
        participants.append(item)
    chats, pos = _vector(data, pos)
    (vector, n) = _unpack("<Ii", data, pos)
    if vector != _VECTOR:
        raise _Unexpected("no users vector")
    pos += 8
    users = []
    for _ in range(n):
        (cid,) = _unpack("<I", data, pos)
        if cid == _USER:
            item, pos = _user(data, pos + 4)
        else:
            item, pos = _telethon(data, pos)  # userEmpty
        users.append(item)
    if pos > len(data):
        raise _Unexpected("the page runs past the end")
    page = _new(_Page)
    page.__dict__ = {"count": count, "participants": participants, "chats": chats,
                     "users": users}
    return page, pos


def read_result(reader: Any) -> Any:
    """TLRequest.read_result for channels.getParticipants: the page, read here when its
    layout is the one this module knows, else by Telethon (`tgread_object`)."""
    start = reader.tell_position()
    if LAYOUT_OK:
        try:
            page, end = _page(reader.get_bytes(), start)
        except Exception:  # any surprise: Telethon's reader decides
            reader.set_position(start)
        else:
            reader.set_position(end)
            return page
    return reader.tgread_object()
