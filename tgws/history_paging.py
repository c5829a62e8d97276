"""A chat's history oldest first, through messages.getHistory, as tgws streams it.

Telethon's `iter_messages(reverse=True)` finishes every message for its own object API
(`Message._finish_init`: the sender, chat, forward and action entities looked up in the
page's users and chats, ~3.3 µs per message, bench/README.md) and hands the page out one
`__anext__` at a time. tgws reads none of that but a service message's action entities
(set here, for the pages that hold one: `_name_action_users`): its serializer reads the TL
fields, which Telethon's parser already set (tgws/serialize/messages.py; `sender_id` is set
when a message is parsed). So `HistoryPager` sends the requests itself and hands out the
messages as parsed, a page at a time, as member_paging.OverlapPager does. The pages are
parsed by tgws/history_reader.py (through fastpath.read_history_fast): the objects
Telethon's parser builds, at about a quarter of its cost.

The requests are the ones Telethon 1.x sends for `iter_messages(peer, reverse=True,
min_id=after_id)`, so Telegram (and the sandbox) sees the same calls:
messages.getHistory(offset_id = after_id + 1, or 1 from the start; add_offset = -100;
limit = 100; min_id = max_id = 0): Telegram finds the first message older than offset_id
and returns the 100 just above it, newest first. Each next request starts above the newest
message handed out (offset_id = its id + 1, offset_date = its date).

Ends, as Telethon's: an answer that is not a slice (messages.Messages: Telegram sent the
whole history), an empty page, or a page with nothing newer than what was handed out.
Telegram may send fewer than 100 messages while more exist (messages it will not show):
only those ends count, never a short page.

Each message goes out once, ascending by id, MessageEmpty skipped. Two differences from
Telethon, both for answers Telegram should not give: a message at or below the last one
handed out (or at or below `after_id`) is skipped, where Telethon ends the whole iteration
at such a message (one stale id would silently truncate a stream) or, on the first page,
hands out ids below `min_id`; and a page is ordered by id before it is read.

Resumable as Telethon's RequestIter (the shape gateway._batches drives): a failed request
(5xx, dropped connection, deadline) raises out of `__anext__` with every offset untouched,
so calling `__anext__` again re-sends the same page.

For groups and channels only (gateway.Account.message_pages): the other thing `_finish_init`
changes in a field tgws reads, `out` on a chat with oneself, cannot arise there.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any

from telethon.tl import functions, types

from tgws import fastpath

PAGE_LIMIT = 100  # Telegram's largest messages.getHistory page

_by_id = operator.attrgetter("id")
# Telethon replaces types.MessageEmpty by its own subclass; both share the constructor id.
_EMPTY = types.MessageEmpty.CONSTRUCTOR_ID
_SERVICE = types.MessageService.CONSTRUCTOR_ID


class HistoryPager:
    """Messages of `peer` (an InputPeer) with id > `after_id`, oldest first, each once."""

    def __init__(self, client: Any, peer: Any, after_id: int = 0,
                 limit: int = PAGE_LIMIT) -> None:
        self._client = client
        self._peer = peer
        self._limit = limit
        self._last_id = max(after_id, 0)  # the newest id handed out (or the floor)
        self._offset_id = self._last_id + 1  # Telethon: min_id + 1, or 1 from the start
        self._offset_date: datetime | None = None
        self._buffer: list[Any] = []
        self._index = 0
        self._done = False
        self.total: int | None = None  # Telegram's count with the newest page
        self.requests = 0  # pages asked for (for tests and logs)

    def __aiter__(self) -> HistoryPager:
        return self

    async def __anext__(self) -> Any:
        while self._index >= len(self._buffer):
            if self._done:
                raise StopAsyncIteration
            await self._next_page()
        message = self._buffer[self._index]
        self._index += 1
        return message

    def take_loaded(self, items: list[Any], size: int) -> None:
        """Move messages already fetched into `items`, up to `size` in all.

        gateway._batches then takes a page per __anext__ (and per deadline) rather than one
        message at a time; what stays behind is handed out next, as by __anext__.
        """
        start = self._index
        end = min(len(self._buffer), start + size - len(items))
        if end > start:
            items.extend(self._buffer[start:end])
            self._index = end

    async def _next_page(self) -> None:
        request = functions.messages.GetHistoryRequest(
            peer=self._peer, offset_id=self._offset_id, offset_date=self._offset_date,
            add_offset=-self._limit, limit=self._limit, max_id=0, min_id=0, hash=0)
        # The page is read by tgws/history_reader.py: Telethon's objects, at a third the cost.
        result = await self._client(fastpath.read_history_fast(request))
        # Nothing below raises: the page is taken whole, or (above) not at all.
        self.requests += 1
        received: list[Any] = getattr(result, "messages", None) or []
        self.total = int(getattr(result, "count", len(received)))
        last_id = self._last_id
        # Newest first from Telegram; oldest first here. A page is normally in order
        # already, which sorting detects in one pass.
        fresh = [m for m in sorted(received, key=_by_id)
                 if m.id > last_id and m.CONSTRUCTOR_ID != _EMPTY]
        if any(m.CONSTRUCTOR_ID == _SERVICE for m in fresh):
            _name_action_users(fresh, getattr(result, "users", None) or [])
        self._buffer = fresh
        self._index = 0
        if not fresh or isinstance(result, types.messages.Messages):
            self._done = True  # nothing newer, or Telegram sent the whole history
            return
        newest = fresh[-1]
        self._last_id = newest.id
        self._offset_id = newest.id + 1
        self._offset_date = newest.date


def _name_action_users(messages: list[Any], users: list[Any]) -> None:
    """Give each service message the users its action and sender name (`action_entities`,
    which `_finish_init` would set from the page's users): a watch's reconciliation turns a
    join it finds in history into a member item from them (tgws/live_items.members). Only
    pages holding a service message pay for this."""
    by_id = {u.id: u for u in users}
    for message in messages:
        if message.CONSTRUCTOR_ID != _SERVICE:
            continue
        sender = getattr(message.from_id, "user_id", None)
        ids = [*(getattr(message.action, "users", None) or ()), sender]
        fastpath.give_action_entities(message, [by_id[i] for i in ids if i in by_id])
