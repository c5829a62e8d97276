"""user_frames / message_frames (what streams send) equal the per-item envelopes byte for byte."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from telethon.tl import types as t

from tests.test_serialize import MAY_1, _corpus, ann, member, ts, wire
from tgws import serialize

GROUPS = ["grp", "", "名前 \"quoted\" \\ back", "\ud800 lone surrogate"]


def _members() -> list[Any]:
    participants = [None, t.ChannelParticipant(user_id=1, date=ts(MAY_1)),
                    t.ChannelParticipantCreator(user_id=1, admin_rights=t.ChatAdminRights()),
                    t.ChannelParticipantBanned(left=True, peer=t.PeerUser(1), kicked_by=2,
                                               date=ts(MAY_1), banned_rights=t.ChatBannedRights(
                                                   until_date=ts(MAY_1)))]
    statuses = [None, t.UserStatusOnline(expires=ts(MAY_1)), t.UserStatusRecently()]
    users = [member(ann(status=s), p) for p in participants for s in statuses]
    broken = member(ann(), participants[1])
    broken.first_name = "\udc00 broken"  # not from the wire: cleaned, not lost
    users.append(broken)
    users.append(wire(ann()))  # no .participant at all
    users.append(t.UserEmpty(id=5))  # the lenient path
    return users


def test_user_frames_are_the_user_envelopes() -> None:
    users = _members()
    for group in GROUPS:
        assert serialize.user_frames(group, users) == [
            serialize.user_envelope(group, u) for u in users]


def test_message_frames_are_the_message_envelopes() -> None:
    messages = _corpus()
    for group in GROUPS:
        assert serialize.message_frames(group, messages) == [
            serialize.message_envelope(group, m) for m in messages]


def test_frames_of_an_empty_page_are_none() -> None:
    assert serialize.user_frames("g", []) == serialize.message_frames("g", []) == []


@given(st.text())
def test_any_group_name_frames_as_valid_json_with_that_name(group: str) -> None:
    [frame] = serialize.message_frames(group, [_corpus()[0]])
    assert frame == serialize.message_envelope(group, _corpus()[0])
    parsed = json.loads(frame)
    assert parsed["event"] == "chats" and list(parsed["data"]["message"]) == ["group", "chat"]
