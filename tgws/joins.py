"""Members offsets: who is new since a `latest` mark, and the mark a users stream leaves.

Telegram lists members in its own order, not by join date, so a users offset is "the
newest join date delivered, in unix seconds, plus the ids delivered with exactly that
date" (store.Offset). A member is new when they joined after that second, or in that
second without being one of its ids. Members without a join date (creators, left
participants) count as joined at 0, as serialize.join_date's None does in the protocol.

Dates stay datetimes here: comparing two costs ~40 ns where int(d.timestamp()) costs
~400, and this runs once per member listed. A second `v` is the half-open interval
[v, v+1) of aware datetimes, so "joined == v" is `lo <= d < hi` and "joined > v" is
`d >= hi`, exactly as with whole seconds (floored, as Telegram's dates are whole anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tgws.store import Offset

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)


def _second(value: int) -> tuple[datetime, datetime]:
    start = _EPOCH + timedelta(seconds=value)
    return start, start + _SECOND


def joined_at(u: Any) -> datetime:
    """When the member joined, as an aware datetime (the epoch when Telegram gave none).

    The date serialize.join_date reads (u.participant.date; naive taken as UTC).
    """
    d = getattr(getattr(u, "participant", None), "date", None)
    if d is None:
        return _EPOCH
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    joined: datetime = d
    return joined


class JoinMark:
    """The members a users stream should send after `since`, and the offset it leaves."""

    def __init__(self, since: Offset | None) -> None:
        self.since = since
        self._since_lo, self._since_hi = _second(since.value if since is not None else -1)
        self.value = -1  # nothing delivered yet
        self._lo, self._hi = _second(self.value)
        self.ties: set[int] = set()

    def unseen(self, users: list[Any]) -> list[Any]:
        """Those of `users` the stream that left `since` did not deliver (all without one)."""
        if self.since is None:
            return users
        lo, hi, ties = self._since_lo, self._since_hi, self.since.tie_ids
        fresh = []
        for u in users:
            d = joined_at(u)
            if d >= hi or (d >= lo and u.id not in ties):
                fresh.append(u)
        return fresh

    def delivered(self, users: list[Any]) -> None:
        """Note that `users` were sent: the mark moves to the newest join among them."""
        lo, hi, ties = self._lo, self._hi, self.ties
        for u in users:
            # joined_at(u), inline: this runs for every member streamed, and the call and
            # getattr's defaults were half its cost.
            try:
                d = u.participant.date
            except AttributeError:
                d = None
            if d is None:
                d = _EPOCH
            elif d.tzinfo is None:
                d = d.replace(tzinfo=UTC)
            if d < lo:
                continue  # the common case: an older member
            if d >= hi:
                self.value = (d - _EPOCH) // _SECOND
                lo, hi = _second(self.value)
                ties = self.ties = {u.id}
            else:
                ties.add(u.id)
        self._lo, self._hi = lo, hi

    def offset(self) -> Offset | None:
        """The offset to commit once the client confirmed every delivered member."""
        return Offset(self.value, frozenset(self.ties)) if self.value >= 0 else None
