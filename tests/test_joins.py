"""JoinMark (tgws/joins.py) decides exactly as the whole-second rule it replaces.

The reference below is the users offset rule as streaming.py applied it before, on
integer join dates from serialize.join_date: send a member when joined > since.value, or
joined == since.value and their id is not a tie; the new mark is the newest joined among
those sent, with every id sent at that second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tgws import serialize
from tgws.joins import JoinMark
from tgws.store import Offset

BASE = 1_700_000_000


def reference(pages: list[list[Any]], since: Offset | None) -> tuple[list[int], Offset | None]:
    newest, ties, sent = -1, set[int](), []
    for page in pages:
        for user in page:
            joined = serialize.join_date(user) or 0
            if since is not None and (joined < since.value or
                                      (joined == since.value and user.id in since.tie_ids)):
                continue
            sent.append(user.id)
            if joined > newest:
                newest, ties = joined, {user.id}
            elif joined == newest:
                ties.add(user.id)
    return sent, (Offset(newest, frozenset(ties)) if newest >= 0 else None)


def with_mark(pages: list[list[Any]], since: Offset | None) -> tuple[list[int], Offset | None]:
    mark, sent = JoinMark(since), list[int]()
    for page in pages:
        fresh = mark.unseen(page)
        mark.delivered(fresh)
        sent.extend(u.id for u in fresh)
    return sent, mark.offset()


def member(uid: int, date: datetime | None) -> Any:
    return SimpleNamespace(id=uid, participant=SimpleNamespace(date=date))


# Dates a few seconds apart, so ties and "the same second" happen often; some naive, some
# in another zone, some with microseconds; some members with no date at all.
dates = st.one_of(
    st.none(),
    st.builds(lambda s, us, zone: (datetime.fromtimestamp(BASE + s, UTC)
                                   + timedelta(microseconds=us)).astimezone(zone),
              st.integers(0, 6), st.sampled_from([0, 0, 999_999]),
              st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
    st.builds(lambda s: datetime.fromtimestamp(BASE + s, UTC).replace(tzinfo=None),
              st.integers(0, 6)),
)
pages_of_members = st.lists(st.lists(dates, max_size=8), max_size=5).map(
    lambda pages: [[member(10 * p + i, d) for i, d in enumerate(page)]
                   for p, page in enumerate(pages)])
offsets = st.one_of(st.none(), st.builds(
    lambda v, ties: Offset(v, frozenset(ties)),
    st.sampled_from([0, BASE, BASE + 2, BASE + 3, BASE + 9]),
    st.sets(st.integers(0, 50), max_size=6)))


@given(pages_of_members, offsets)
def test_join_mark_sends_and_marks_exactly_as_the_whole_second_rule(
        pages: list[list[Any]], since: Offset | None) -> None:
    assert with_mark(pages, since) == reference(pages, since)


def test_a_member_in_the_marked_second_is_sent_unless_a_tie() -> None:
    at = datetime.fromtimestamp(BASE, UTC)
    since = Offset(BASE, frozenset({1}))
    page = [member(1, at), member(2, at + timedelta(microseconds=5)), member(3, at - timedelta(
        microseconds=1)), member(4, at + timedelta(seconds=1))]
    mark = JoinMark(since)
    fresh = mark.unseen(page)
    assert [u.id for u in fresh] == [2, 4]
    mark.delivered(fresh)
    assert mark.offset() == Offset(BASE + 1, frozenset({4}))


def test_members_without_a_join_date_leave_a_mark_at_zero() -> None:
    mark = JoinMark(None)
    assert mark.offset() is None
    mark.delivered([member(7, None), SimpleNamespace(id=8)])
    assert mark.offset() == Offset(0, frozenset({7, 8}))
