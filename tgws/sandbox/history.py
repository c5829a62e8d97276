"""Which message ids one messages.getHistory call returns, following Telegram's semantics.

Messages are ordered newest first. The call picks a starting position, then a window:
- position p: the first message with id < offset_id; with no offset_id, the first message dated
  before offset_date; with neither, the newest message (p = 0);
- window: positions [p + add_offset, p + add_offset + limit), clipped to the history, limit at
  most 100. A negative add_offset reaches newer messages: that is how clients page upwards
  (Telethon's reverse=True sends add_offset = -limit with offset_id = last seen + 1);
- min_id / max_id (exclusive) then filter that window. They do not move it, so a max_id far below
  the newest message returns nothing: Telethon works around exactly this by turning max_id into
  offset_id, and notes that Telegram "doesn't like min_id/max_id".
`count` in the answer is the number of messages that exist, which is not the top id once some
were deleted. Deleted ids are holes: positions count existing messages only, so a window of
`limit` skips the holes and still holds `limit` messages where there are that many.

Short pages (World.short_pages) drop part of some windows deterministically, as Telegram does for
messages it will not show. They drop from the end the *next* request starts from (the oldest end
when paging down, the newest when add_offset < 0), so offset paging refetches what was dropped
and a correct client still sees everything. A page whose newest id is <= limit is never cut:
Telethon stops when `messages[0].id <= limit` (ids are dense down to 1), and so would any client
that uses the same shortcut against Telegram.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from tgws.sandbox.derive import mix64

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat

PAGE_MAX = 100


def timestamp(value: Any) -> int:
    """A TL date field as Unix time (Telethon passes datetimes, ints or None)."""
    if value is None:
        return 0
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp())
    return int(value)


def select_history(chat: SandboxChat, *, offset_id: int, offset_date: int, add_offset: int,
                   limit: int, max_id: int, min_id: int, short: bool) -> list[int]:
    return select_history_page(chat, offset_id=offset_id, offset_date=offset_date,
                               add_offset=add_offset, limit=limit, max_id=max_id,
                               min_id=min_id, short=short)[1]


def select_history_page(chat: SandboxChat, *, offset_id: int, offset_date: int,
                        add_offset: int, limit: int, max_id: int, min_id: int,
                        short: bool) -> tuple[int, list[int]]:
    """(the window's start position, the ids it returns). Positions count existing messages
    only, so deleted ids are skipped and never move the window."""
    count = chat.count
    limit = max(0, min(limit, PAGE_MAX))
    if offset_id > 0:
        position = chat.existing_above(offset_id - 1)
    elif offset_date:
        position = chat.existing_above(chat.count_before(offset_date))
    else:
        position = 0
    start = max(position + add_offset, 0)
    end = min(position + add_offset + limit, count)
    ids = chat.newest_ids(start, end - start) if start < end else []
    if min_id > 0 or max_id > 0:
        ids = [i for i in ids if i > min_id and (max_id <= 0 or i < max_id)]
    if short and len(ids) > 1 and (add_offset < 0 or ids[0] > limit):
        h = mix64(chat.id * 1_000_003 + start * 131 + limit)
        if h % 3 == 0:
            keep = 1 + (h >> 8) % (len(ids) - 1)
            ids = ids[len(ids) - keep :] if add_offset < 0 else ids[:keep]
    return start, ids
