"""Reading TL objects straight from their bytes, into the objects Telethon's reader builds.

Why: parsing is most of what a listed member costs. Telethon's generated `User.from_reader`
computes thirty flag booleans one by one, reads every field through a method call, and
passes fifty keyword arguments to `User.__init__`, which stores them one by one. Here the
flags become a ready dict of booleans (cached per flag word), the fixed fields come out of
one `struct.unpack_from`, and each object is made from a copy of that dict: the same
`types.User` (and status and photo) objects, field for field, at about a third of the cost
(tests/test_participants_reader.py compares them with Telethon's over generated pages).

Every function takes the whole buffer and a position and returns (object, next position).
The layout each constructor has is fixed by its TL schema line, whose CRC32 is its
constructor id: `LAYOUT_OK` is true only when Telethon's classes carry exactly the ids this
module was written for (layer 229, Telethon 1.45). A constructor not read here is read by
Telethon's own `tgread_object` at that position (`telethon_object`); anything unexpected
raises (`Unexpected`, or struct.error/IndexError on a short buffer), and the caller then
hands the whole result to Telethon's reader: slower, never different.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from telethon.extensions import BinaryReader
from telethon.tl import types

_EXPECTED: Final[dict[Any, int]] = {
    types.User: 0xB1B8CC83,
    types.UserProfilePhoto: 0x82D1F706,
    types.UserStatusOnline: 0xEDB93949,
    types.UserStatusOffline: 0x008C703F,
    types.UserStatusRecently: 0x7B197DC8,
    types.UserStatusLastWeek: 0x541A1D1A,
    types.UserStatusLastMonth: 0x65899777,
    types.UserStatusEmpty: 0x09D05049,
}


def layout_ok(expected: dict[Any, int]) -> bool:
    """Whether each class carries the constructor id its reader here was written for."""
    return all(getattr(cls, "CONSTRUCTOR_ID", None) == cid for cls, cid in expected.items())


LAYOUT_OK: Final = layout_ok(_EXPECTED)

VECTOR: Final = 0x1CB5C415
USER: Final = 0xB1B8CC83
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


class Unexpected(Exception):
    """The bytes are not laid out as this module reads them: Telethon reads them instead."""


unpack = struct.unpack_from
new = object.__new__
_User = types.User
_Photo = types.UserProfilePhoto
_Online = types.UserStatusOnline
_Offline = types.UserStatusOffline
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_utc_from = datetime.fromtimestamp


def read_date(seconds: int) -> datetime:
    """Telethon's tgread_date (epoch + seconds, in UTC)."""
    try:
        return _utc_from(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return _EPOCH + timedelta(seconds=seconds)


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """A TL `bytes`/`string` at pos: its bytes and the position after its padding."""
    n = data[pos]
    if n != 254:  # as Telethon's tgread_bytes: only 254 announces a 3-byte length
        start, total = pos + 1, (n + 4) & ~3  # 1 + n, rounded up to 4
    else:
        n = data[pos + 1] | data[pos + 2] << 8 | data[pos + 3] << 16
        start, total = pos + 4, (n + 7) & ~3  # 4 + n, rounded up to 4
    end = start + n
    if pos + total > len(data):  # Telethon raises BufferError (its padding read too)
        raise Unexpected("a string runs past the end")
    return data[start:end], pos + total


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_bytes(data, pos)
    return str(raw, "utf-8", "replace"), pos


def telethon_object(data: bytes, pos: int) -> tuple[Any, int]:
    """Telethon's own reading of the object at pos."""
    reader = BinaryReader(data)
    reader.set_position(pos)
    obj = reader.tgread_object()
    return obj, reader.tell_position()


def boxed_vector(data: bytes, pos: int) -> tuple[list[Any], int]:
    """A Vector<T> of boxed objects, each read by Telethon (as Telethon reads User's: the
    vector id is skipped unchecked)."""
    (count,) = unpack("<i", data, pos + 4)
    pos += 8
    items = []
    for _ in range(count):
        item, pos = telethon_object(data, pos)
        items.append(item)
    return items, pos


def read_status(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = unpack("<I", data, pos)
    if cid == _OFFLINE or cid == _ONLINE:
        (seconds,) = unpack("<i", data, pos + 4)
        status = new(_Offline if cid == _OFFLINE else _Online)
        status.__dict__ = ({"was_online": read_date(seconds)} if cid == _OFFLINE
                           else {"expires": read_date(seconds)})
        return status, pos + 8
    by_me_class = _BY_ME.get(cid)
    if by_me_class is not None:
        (flags,) = unpack("<i", data, pos + 4)
        by_me: Any = new(by_me_class)
        by_me.__dict__ = {"by_me": bool(flags & 1)}
        return by_me, pos + 8
    if cid == _EMPTY_STATUS:
        return new(types.UserStatusEmpty), pos + 4
    return telethon_object(data, pos)


def read_photo(data: bytes, pos: int) -> tuple[Any, int]:
    (cid,) = unpack("<I", data, pos)
    if cid != _PHOTO:
        return telethon_object(data, pos)
    flags, photo_id = unpack("<iq", data, pos + 4)
    pos += 16
    thumb = None
    if flags & 2:
        thumb, pos = read_bytes(data, pos)
    (dc_id,) = unpack("<i", data, pos)
    photo = new(_Photo)
    photo.__dict__ = {"photo_id": photo_id, "dc_id": dc_id, "has_video": bool(flags & 1),
                      "personal": bool(flags & 4), "stripped_thumb": thumb}
    return photo, pos + 4


def read_user(data: bytes, pos: int) -> tuple[Any, int]:
    """A types.User whose constructor id (USER) is already read: pos is at its flags."""
    flags, flags2, user_id = unpack("<iiq", data, pos)
    pos += 16
    base = _BASES.get((flags & _FLAG_MASK, flags2 & _FLAG2_MASK))
    if base is None:
        base = _base(flags & _FLAG_MASK, flags2 & _FLAG2_MASK)
    d = base.copy()
    d["id"] = user_id
    if flags & 1:
        (d["access_hash"],) = unpack("<q", data, pos)
        pos += 8
    if flags & 2:
        d["first_name"], pos = read_string(data, pos)
    if flags & 4:
        d["last_name"], pos = read_string(data, pos)
    if flags & 8:
        d["username"], pos = read_string(data, pos)
    if flags & 16:
        d["phone"], pos = read_string(data, pos)
    if flags & 32:
        d["photo"], pos = read_photo(data, pos)
    if flags & 64:
        d["status"], pos = read_status(data, pos)
    if flags & _REST or flags2 & _REST2:  # rarer fields: bots, restrictions, colours...
        pos = _user_rest(data, pos, flags, flags2, d)
    user = new(_User)
    user.__dict__ = d
    return user, pos


def _user_rest(data: bytes, pos: int, flags: int, flags2: int, d: dict[str, Any]) -> int:
    """User's fields after `status`, in schema order."""
    if flags & 16384:
        (d["bot_info_version"],) = unpack("<i", data, pos)
        pos += 4
    if flags & 262144:
        d["restriction_reason"], pos = boxed_vector(data, pos)
    if flags & 524288:
        d["bot_inline_placeholder"], pos = read_string(data, pos)
    if flags & 4194304:
        d["lang_code"], pos = read_string(data, pos)
    if flags & 1073741824:
        d["emoji_status"], pos = telethon_object(data, pos)
    if flags2 & 1:
        d["usernames"], pos = boxed_vector(data, pos)
    if flags2 & 32:
        d["stories_max_id"], pos = telethon_object(data, pos)
    if flags2 & 256:
        d["color"], pos = telethon_object(data, pos)
    if flags2 & 512:
        d["profile_color"], pos = telethon_object(data, pos)
    if flags2 & 4096:
        (d["bot_active_users"],) = unpack("<i", data, pos)
        pos += 4
    for bit, name in ((16384, "bot_verification_icon"), (32768, "send_paid_messages_stars"),
                      (2097152, "linked_community_id")):
        if flags2 & bit:
            (d[name],) = unpack("<q", data, pos)
            pos += 8
    return pos


def mixed_vector(data: bytes, pos: int, constructor: int,
                 read: Callable[[bytes, int], tuple[Any, int]]) -> tuple[list[Any], int]:
    """A Vector of boxed objects, those of `constructor` read by `read` (given the position
    after the id), any other by Telethon. The vector id is skipped unchecked, as Telethon's
    generated readers skip it."""
    (count,) = unpack("<i", data, pos + 4)
    pos += 8
    items = []
    for _ in range(count):
        (cid,) = unpack("<I", data, pos)
        if cid == constructor:
            item, pos = read(data, pos + 4)
        else:
            item, pos = telethon_object(data, pos)
        items.append(item)
    return items, pos


def users_vector(data: bytes, pos: int) -> tuple[list[Any], int]:
    """A page's Vector<User>: types.User read here, userEmpty by Telethon."""
    return mixed_vector(data, pos, USER, read_user)


def read_page(reader: Any, page: Callable[[bytes, int], tuple[Any, int]],
              layout_ok: bool) -> Any:
    """TLRequest.read_result with `page` (a reader of this module's kind) first: the result
    as `page` reads it when `layout_ok`, else, or on any surprise, as Telethon's
    `tgread_object` reads it from the same position."""
    start = reader.tell_position()
    if layout_ok:
        try:
            result, end = page(reader.get_bytes(), start)
        except Exception:  # any surprise: Telethon's reader decides
            reader.set_position(start)
        else:
            reader.set_position(end)
            return result
    return reader.tgread_object()
