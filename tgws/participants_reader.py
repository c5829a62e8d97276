"""A channels.getParticipants page read straight from its bytes, into the objects Telethon builds.

Why: reading the page is most of what listing a member costs: Telethon's generated readers
take ~6 µs per member on our machine, more than everything tgws does with the member
afterwards. This reads the page, its plain ChannelParticipant entries and its users with
tgws/tl_reading.py (which says how, and what it hands back to Telethon): the same
`types.channels.ChannelParticipants`, field for field, in about a third of the time
(callgrind: 172,331 -> 80,869 instructions per member listed through the daemon, against
170,049 for bare `iter_participants`; bench/README.md).

`read_result` has the signature of `TLRequest.read_result`, which Telethon's sender calls
with the RPC result's reader; tgws/fastpath.py attaches it to a request (and says what that
relies on). Other participant classes (admins, the creator, self, banned, left: a few a
page) and the chats are read by Telethon at their position; a page laid out otherwise, or
any surprise, goes to Telethon's reader whole.
"""

from __future__ import annotations

from typing import Any, Final

from telethon.tl import types

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
    unpack,
    users_vector,
)

LAYOUT_OK: Final = tl_reading.LAYOUT_OK and layout_ok({
    types.channels.ChannelParticipants: 0x9AB0FEAF, types.ChannelParticipant: 0x1BD54456})
_PAGE: Final = 0x9AB0FEAF
_PLAIN: Final = 0x1BD54456
_Participant = types.ChannelParticipant
_Page = types.channels.ChannelParticipants


def _plain_participant(data: bytes, pos: int) -> tuple[Any, int]:
    """A ChannelParticipant whose constructor id is already read: pos is at its flags."""
    flags, user_id, joined = unpack("<iqi", data, pos)
    pos += 16
    until = rank = None
    if flags & 1:
        (seconds,) = unpack("<i", data, pos)
        until = read_date(seconds)
        pos += 4
    if flags & 4:
        rank, pos = read_string(data, pos)
    participant = new(_Participant)
    participant.__dict__ = {"user_id": user_id, "date": read_date(joined),
                            "subscription_until_date": until, "rank": rank}
    return participant, pos


def _page(data: bytes, pos: int) -> tuple[Any, int]:
    cid, count = unpack("<Ii", data, pos)
    if cid != _PAGE:
        raise Unexpected("not a channels.channelParticipants page")
    # Admins, the creator, self, banned and left entries (a few a page): Telethon's.
    participants, pos = mixed_vector(data, pos + 8, _PLAIN, _plain_participant)
    chats, pos = boxed_vector(data, pos)
    users, pos = users_vector(data, pos)
    if pos > len(data):
        raise Unexpected("the page runs past the end")
    page = new(_Page)
    page.__dict__ = {"count": count, "participants": participants, "chats": chats,
                     "users": users}
    return page, pos


def read_result(reader: Any) -> Any:
    """TLRequest.read_result for channels.getParticipants: the page, read here when its
    layout is the one this module knows, else by Telethon (`tgread_object`)."""
    return read_page(reader, _page, LAYOUT_OK)
