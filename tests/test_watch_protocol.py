"""Parsing `watch` and `ack`, the "ack" flag of users/chats, and ClientAcks (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tgws import protocol as p
from tgws.acks import ClientAcks, with_seq
from tgws.errors import CloseCode, Refusal


def parse(event: str, data: Any) -> Any:
    return p.parse(json.dumps({"event": event, "data": data}))


def refused(event: str, data: Any) -> Refusal:
    with pytest.raises(Refusal) as info:
        parse(event, data)
    return info.value


def test_watch_defaults_to_messages_only_and_pong_acks() -> None:
    request = parse("watch", {"group": ["testgroup00001", "@TestGroup00001", "other_group"]})
    assert request == p.Watch(groups=("testgroup00001", "other_group"), messages=True,
                              edits=False, deletions=False, members=False, client_acks=False)


def test_watch_takes_each_kind_and_client_acks() -> None:
    request = parse("watch", {"group": "g_roup", "messages": False, "edits": True,
                              "deletions": True, "members": True, "ack": "client"})
    assert request == p.Watch(groups=("g_roup",), messages=False, edits=True, deletions=True,
                              members=True, client_acks=True)


@pytest.mark.parametrize("data, message", [
    ({"group": []}, "'data.group' must be a non-empty list"),
    ({"group": ["abcd"], "edits": "yes"}, "'data.edits' must be true or false"),
    ({"group": ["abcd"], "ack": "server"}, "'data.ack' must be \"client\" or \"pong\""),
])
def test_bad_watch_fields_are_refused_on_the_watch_event(data: Any, message: str) -> None:
    r = refused("watch", data)
    assert (r.event, r.message, r.close) == ("watch", message, None)


def test_a_watch_of_a_name_that_is_no_username_is_refused_and_closed() -> None:
    refusal = p.unusable_group(parse("watch", {"group": ["-1001234567890"]}))
    assert refusal is not None
    assert (refusal.event, refusal.message, refusal.close) == (
        "watch", "-1001234567890 does not exist", CloseCode.NORMAL)


def test_users_and_chats_take_the_ack_flag() -> None:
    assert parse("users", {"group": ["abcd"], "status": "", "ack": "client"}).client_acks
    assert not parse("users", {"group": ["abcd"], "status": ""}).client_acks
    assert parse("chats", {"group": ["abcd"], "status": "", "ack": "client"}).client_acks
    assert not parse("chats", {"group": ["abcd"], "ack": "pong"}).client_acks


@pytest.mark.parametrize("seq", [-1, 1.5, "3", True, None, 2**63])
def test_ack_needs_a_non_negative_integer(seq: Any) -> None:
    r = refused("ack", {"seq": seq})
    assert (r.event, r.message) == ("ack", "'data.seq' must be a non-negative integer")


def test_ack_parses() -> None:
    assert parse("ack", {"seq": 12}) == p.Ack(12)


def test_with_seq_adds_the_key_last_in_data() -> None:
    frame = b'{"event":"chats","data":{"status":"success","message":{"group":"g","chat":{"id":1}}}}'
    assert json.loads(with_seq(frame, 7)) == {"event": "chats", "data": {
        "status": "success", "message": {"group": "g", "chat": {"id": 1}}, "seq": 7}}


async def test_client_acks_run_work_only_once_everything_before_it_is_acked() -> None:
    acks = ClientAcks()
    done: list[str] = []

    async def note(what: str) -> None:
        done.append(what)

    frames = acks.number([b'{"data":{"a":1}}', b'{"data":{"a":2}}'])
    assert [json.loads(f)["data"]["seq"] for f in frames] == [1, 2]
    await acks.after(lambda: note("first two"))
    acks.number([b'{"data":{"a":3}}'])
    await acks.after(lambda: note("third"))
    await acks.ack(1)
    assert done == []
    await acks.ack(2)
    assert done == ["first two"]
    with pytest.raises(ValueError):
        await acks.ack(4)  # never sent
    await acks.ack(3)
    assert done == ["first two", "third"]
    await acks.after(lambda: note("nothing pending"))
    assert done[-1] == "nothing pending"
