"""Listing a supergroup's members exactly, although Telegram pages them by position.

channels.getParticipants pages the newest-join-first list by *position*. A member who leaves
between two pages moves everyone after them up one place, so a client that asks for
`offset += len(page)` never sees the member that slid from the next page onto the one it has
read (Telethon's iter_participants does exactly that); a member who joins moves everyone down
one, so the pager sees one member twice.

`OverlapPager` asks for each next page `OVERLAP` positions early and keeps the page only when
it holds at least one member this listing has already seen:

* Why that is enough. A page is one contiguous run of the list at the moment Telegram
  answers, and the list is ordered by join date. If it holds a member x seen before, then
  every member present throughout that joined between x and the page's last member is on the
  page, and every one that joined after x was seen already (x itself joined no earlier than
  the last member of the previous page, by induction). So the members seen so far are all
  those present throughout down to the last member of the newest page: no one is skipped,
  however many left or joined in between.
* A page with no member seen before (more than OVERLAP members left ahead of it) proves
  nothing: its members are handed out (they are members) but do not count as seen for the
  overlap test (a later page overlapping only them would prove nothing about the gap
  before them), and the pager steps back a whole page and reads again, until a page
  overlaps (offset 0 always does).
* The end: a page that overlaps and reaches the count Telegram gives with it (offset + length
  >= count) covered the list to its end at that moment. An empty page where the count says
  there is less than the offset means the list shrank under us: step back. At Telegram's cap
  (about 10,000 positions) the pager ends (an empty page while the count is larger says the
  same): the listing is then incomplete, which the caller sees by comparing what it listed
  with the count.
* Duplicates (joins move members down onto the overlap) are dropped by id, so each member is
  handed out once per listing.

The pager is a resumable async iterator in the shape gateway._batches drives (Telethon's
RequestIter's): a failed request (5xx, dropped connection, deadline) raises out of
`__anext__` and leaves every offset untouched, so calling `__anext__` again re-sends the same
page.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from telethon.tl import functions, types

from tgws import fastpath

PAGE_LIMIT = 200  # Telegram's largest channels.getParticipants page
OVERLAP = 4  # positions re-read at the top of every page: up to 3 departures between pages
# cost nothing more; more cost one page read again (step back). 2 % more is read without
# churn: 10,000 members in 51 requests, as Telethon's 50 pages and its empty last one.
LIST_CAP = 10_000  # positions Telegram lists by plain paging
STEP_BACK_LIMIT = 50  # step-backs without progress before the listing is given up as shifting


class OverlapPager:
    """Members of a channel matching `query` ("" = everyone), each once, newest join first."""

    def __init__(self, client: Any, channel: Any, query: str = "",
                 limit: int = PAGE_LIMIT, overlap: int = OVERLAP, cap: int = LIST_CAP) -> None:
        self._client = client
        self._channel = channel
        self._query = query
        self._limit = limit
        self._overlap = overlap
        self._cap = cap
        self._offset = 0
        self._seen: set[int] = set()  # handed out (each member once)
        self._covered: set[int] = set()  # on pages that overlapped: the proven prefix
        self._buffer: deque[Any] = deque()
        self._done = False
        self._step_backs = 0
        self.total: int | None = None  # Telegram's count with the newest page
        self.requests = 0  # pages asked for (for tests and logs)
        self.gave_up = False  # ended because the list kept shifting, not at its end

    def __aiter__(self) -> OverlapPager:
        return self

    async def __anext__(self) -> Any:
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            await self._next_page()
        return self._buffer.popleft()

    def take_loaded(self, items: list[Any], size: int) -> None:
        """Move members already fetched into `items`, up to `size` in all.

        gateway._batches then takes a page per __anext__ (and per deadline) rather than
        one member at a time; what stays behind is handed out next, as by __anext__.
        """
        buffer = self._buffer
        room = size - len(items)
        if room >= len(buffer):
            items.extend(buffer)
            buffer.clear()
        else:
            items.extend(buffer.popleft() for _ in range(room))

    async def _next_page(self) -> None:
        offset = self._offset
        result = await self._client(fastpath.read_participants_fast(
            functions.channels.GetParticipantsRequest(
                channel=self._channel, filter=types.ChannelParticipantsSearch(self._query),
                offset=offset, limit=self._limit, hash=0)))
        # Nothing below raises: the page is taken whole, or (above) not at all.
        self.requests += 1
        count = int(getattr(result, "count", 0) or 0)
        self.total = count
        members = _members(result)
        ids = [user.id for user in members]  # read once: this is per member listed
        covered, seen, buffer = self._covered, self._seen, self._buffer
        overlaps = offset == 0 or not covered.isdisjoint(ids)
        if overlaps:
            covered.update(ids)
        for user_id, user in zip(ids, members, strict=True):
            if user_id not in seen:
                seen.add(user_id)
                buffer.append(user)
        if not members:
            # Empty at 0: no members. Empty where Telegram counts more: its cap. Otherwise
            # the list shrank below our offset: read earlier.
            self._done = offset == 0 or count > offset or not self._step_back()
            return
        if not overlaps:
            self._done = not self._step_back()
            return
        self._step_backs = 0
        end = offset + len(members)
        if end >= count or end >= self._cap:
            self._done = True  # the list's end (or as far as Telegram lists) at this moment
            return
        # Re-read the last `overlap` positions next time (half of a short page at most, so
        # the listing always moves on).
        self._offset = end - min(self._overlap, len(members) // 2)

    def _step_back(self) -> bool:
        """Read one page earlier next time; False once that keeps happening without an end."""
        self._step_backs += 1
        if self._step_backs > STEP_BACK_LIMIT or self._offset == 0:
            self.gave_up = self._offset != 0
            return False
        self._offset = max(0, self._offset - self._limit)
        return True


_PLAIN: Final = types.ChannelParticipant


def _members(result: Any) -> list[Any]:
    """The users of a channels.ChannelParticipants page, in order, `.participant` set (as
    Telethon's iter_participants sets it); entries for left users and banned non-users
    skipped, as Telethon skips them."""
    users = {user.id: user for user in result.users}
    out: list[Any] = []
    for participant in result.participants:
        if type(participant) is _PLAIN:
            user_id = participant.user_id  # nearly every member: no isinstance tests
        elif isinstance(participant, types.ChannelParticipantLeft):
            continue
        elif isinstance(participant, types.ChannelParticipantBanned):
            if not isinstance(participant.peer, types.PeerUser):
                continue
            user_id = participant.peer.user_id
        else:
            user_id = participant.user_id
        user = users.get(user_id)
        if user is None:
            continue
        user.participant = participant
        out.append(user)
    return out


class WordIndex:
    """The words of the names seen so far, to split a search that hit the cap (member_sweep).

    Telegram's participant search matches the prefix of any word of the first name, last
    name or username, in its own script. A Latin alphabet alone never reaches "Иван" or
    "田中", so a query q is split into q + c for every character c of the alphabet and every
    character that follows q at the start of a word seen: the names already listed say which
    scripts the group writes in.
    """

    def __init__(self) -> None:
        self._words: set[str] = set()

    def add(self, users: list[Any]) -> None:
        for user in users:
            for name in (getattr(user, "first_name", None), getattr(user, "last_name", None),
                         getattr(user, "username", None)):
                if name:
                    self._words.update(w.casefold() for w in str(name).split())

    def children(self, query: str, alphabet: str) -> list[str]:
        q = query.casefold()
        following = {w[len(q)] for w in self._words if len(w) > len(q) and w.startswith(q)}
        return [query + ch for ch in sorted(following | set(alphabet))]
