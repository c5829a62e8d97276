"""serialize.user_frames (the template path) equals user_envelope (dicts + orjson) byte for byte.

user_frames writes members Telethon parsed from a fixed JSON template and leaves every other
member to user_envelope; these tests generate members of every shape (as Telethon parses
them, and as code builds them: naive and non-UTC dates, None flags, ints where strs belong,
lone surrogates) and compare the two, page by page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telethon.tl import types as t

from tests.test_serialize import MAY_1, ann, member, ts, wire
from tgws import serialize
from tgws.serialize import users

GROUPS = st.sampled_from(["grp", "", "名前 \"quoted\" \\ back", "\ud800 lone surrogate"])
# Text Telethon can carry (TL strings are UTF-8: no lone surrogates), including everything
# JSON escapes and the format characters (U+200D, U+200F) real names hold.
WIRE_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["Ann", "", "a\"b", "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "👨\u200d💻",
     "\u200f\u05e2\u05d1\u05e8\u05d9\u05ea", "名前", "\u2028"])
ANY_TEXT = WIRE_TEXT | st.text(max_size=6)  # code can build lone surrogates too
IDS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DATES = st.integers(min_value=0, max_value=2**31 - 1).map(ts)
FLAGS = st.sampled_from([True, False, None])

_ZONES = [UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(0), "zero")]


def _code_dates() -> st.SearchStrategy[datetime]:
    """Dates as code may build them: UTC, naive, other zones, with microseconds."""
    return st.builds(lambda seconds, micro, zone: datetime.fromtimestamp(seconds, UTC)
                     .replace(microsecond=micro, tzinfo=zone),
                     st.integers(min_value=86_400, max_value=2**31 - 1),
                     st.sampled_from([0, 1, 999_999]), st.sampled_from(_ZONES))


def _statuses(dates: st.SearchStrategy[datetime]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.builds(t.UserStatusOnline, expires=dates),
        st.builds(t.UserStatusOffline, was_online=dates),
        st.sampled_from([t.UserStatusRecently(), t.UserStatusLastWeek(),
                         t.UserStatusLastMonth(), t.UserStatusEmpty()]))


def _participants(dates: st.SearchStrategy[datetime],
                  text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    ranks = st.none() | text
    rights = st.builds(t.ChatBannedRights, until_date=dates, view_messages=st.booleans(),
                       send_messages=st.booleans())
    return st.one_of(
        st.none(),
        st.builds(t.ChannelParticipant, user_id=IDS, date=dates, rank=ranks),
        st.builds(t.ChannelParticipantSelf, user_id=IDS, inviter_id=IDS, date=dates,
                  via_request=st.booleans(), rank=ranks),
        st.builds(lambda inviter, **fields: t.ChannelParticipantAdmin(
                      inviter_id=inviter, is_self=inviter is not None or None, **fields),
                  st.none() | IDS, user_id=IDS, promoted_by=IDS, date=dates,
                  admin_rights=st.just(t.ChatAdminRights()), rank=ranks),
        st.builds(t.ChannelParticipantCreator, user_id=IDS,
                  admin_rights=st.just(t.ChatAdminRights()), rank=ranks),
        st.builds(t.ChannelParticipantBanned, peer=st.builds(t.PeerUser, IDS),
                  kicked_by=IDS, date=dates, banned_rights=rights, left=st.booleans()),
        st.builds(t.ChatParticipant, user_id=IDS, inviter_id=IDS, date=dates, rank=ranks),
        st.builds(t.ChatParticipantAdmin, user_id=IDS, inviter_id=IDS, date=dates),
        st.builds(t.ChatParticipantCreator, user_id=IDS),
    )


def _users(text: st.SearchStrategy[str], dates: st.SearchStrategy[datetime],
           ids: st.SearchStrategy[int], flags: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.lists(st.builds(t.Username, username=text, active=st.booleans(),
                               editable=st.booleans()), max_size=2)
    optional = st.none() | text
    return st.builds(
        _user, id=ids, first_name=optional, last_name=optional,
        username=optional, phone=optional, lang_code=optional, status=_statuses(dates),
        usernames=st.none() | names, bot=flags, deleted=flags, verified=flags,
        premium=flags, scam=flags, fake=flags, restricted=flags, support=flags,
        is_self=flags, contact=flags, mutual_contact=flags)


def _user(**fields: Any) -> Any:
    # TL wants bot_info_version exactly when bot is set, restriction_reason with restricted.
    return t.User(access_hash=5, bot_info_version=1 if fields["bot"] else None,
                  restriction_reason=[] if fields["restricted"] else None, **fields)


@st.composite
def _wire_members(draw: st.DrawFn) -> Any:
    """A member as iter_participants (or the member pager) hands it over."""
    u = _users(WIRE_TEXT, DATES, IDS, st.booleans())
    return member(draw(u), draw(_participants(DATES, WIRE_TEXT)))


@st.composite
def _code_members(draw: st.DrawFn) -> Any:
    """A member as code may build it, never through TL bytes."""
    ids = IDS | st.sampled_from([2**64 - 1, 2**64, -(2**63) - 1, True])
    u = draw(_users(ANY_TEXT, _code_dates(), ids, FLAGS))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        u.participant = draw(_participants(_code_dates(), ANY_TEXT))
    elif choice == 1:
        u.first_name = draw(st.sampled_from([5, b"bytes", 1.5]))
        u.participant = None
    elif choice == 2:
        return draw(st.sampled_from([t.UserEmpty(id=5), wire(ann())]))  # no .participant
    return u


def _same_as_envelopes(group: str, members: list[Any]) -> None:
    try:
        expected = [serialize.user_envelope(group, u) for u in members]
    except TypeError:  # e.g. bytes for a name: refused alike, never half-written
        with pytest.raises(TypeError):
            serialize.user_frames(group, members)
        return
    assert serialize.user_frames(group, members) == expected


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(GROUPS, st.lists(_wire_members(), max_size=6))
def test_template_frames_equal_the_envelopes_for_parsed_members(group: str,
                                                                members: list[Any]) -> None:
    _same_as_envelopes(group, members)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(GROUPS, st.lists(_wire_members() | _code_members(), max_size=6))
def test_template_frames_equal_the_envelopes_for_members_built_in_code(
        group: str, members: list[Any]) -> None:
    _same_as_envelopes(group, members)


def _plain_member(i: int, participant: Any, status: Any) -> Any:
    return member(ann(id=1000 + i, username=None if i % 2 else f"user{i}", phone=None,
                      lang_code=None, status=status, first_name="Zoë 👨\u200d💻"),
                  participant)


def test_plain_members_take_the_template_and_match() -> None:
    """The members a listing brings (every status, every listed role) are written from the
    template, not left to user_envelope: the speed of `users` rests on it."""
    participants = [t.ChannelParticipant(user_id=1, date=ts(MAY_1)),
                    t.ChannelParticipantAdmin(user_id=1, promoted_by=2, date=ts(MAY_1),
                                              admin_rights=t.ChatAdminRights(), rank="boss"),
                    t.ChannelParticipantCreator(user_id=1, admin_rights=t.ChatAdminRights()),
                    t.ChannelParticipantSelf(user_id=1, inviter_id=3, date=ts(MAY_1),
                                             via_request=True),
                    t.ChatParticipant(user_id=1, inviter_id=3, date=ts(MAY_1))]
    statuses = [None, t.UserStatusOnline(expires=ts(MAY_1)),
                t.UserStatusOffline(was_online=ts(MAY_1)), t.UserStatusRecently(),
                t.UserStatusLastWeek(), t.UserStatusLastMonth(), t.UserStatusEmpty()]
    members = [_plain_member(i, p, s) for i, (p, s) in enumerate(
        (p, s) for p in participants for s in statuses)]
    frames, general = users._template_frames("", members, [])
    assert general == set() and all(frames)
    _same_as_envelopes("grp", members)
    parsed = json.loads(serialize.user_frames("grp", members)[1])
    assert parsed["data"]["message"]["user"] == serialize.user(members[1])


def test_one_member_needing_escapes_leaves_the_rest_of_the_page_on_the_template() -> None:
    members = [_plain_member(i, t.ChannelParticipant(user_id=1, date=ts(MAY_1)), None)
               for i in range(5)]
    members[2].last_name = 'say "hi"\n'
    frames = serialize.user_frames("grp", members)
    assert frames == [serialize.user_envelope("grp", u) for u in members]
    assert b'"last_name":"say \\"hi\\"\\n"' in frames[2]
