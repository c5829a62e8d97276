"""`users` and `chats` end to end: real server, real websocket client, Telethon on the sandbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support import (
    ask,
    collect_stream,
    expect,
    logged_in,
    make_config,
    open_ws,
    recv_json,
    wait_closed,
    world_settings,
)
from tgws import protocol as p
from tgws.config import Config
from tgws.daemon import Daemon

# Every test here runs against the sandbox in both of its modes: "objects" hands Telethon
# ready-made TL objects; "wire" serializes every answer to TL bytes and has Telethon parse
# them back, as it does with Telegram. To keep the suite's time down, the long streams whose
# subject is tgws's own logic (cancel, refusal of a second stream, progress, flood waits, short
# pages, serialized `latest`) run in objects mode only; the complete stream and the resume
# after a disconnect run in both. (test_sandbox_history.py covers Telethon's paging over short
# pages and flood waits in wire mode.) Only the tests where size is the point stream the
# 25,000-message history (`big`): the complete stream, and cancel and disconnect, which need
# more in flight than the sockets' buffers hold so that the stream is truly cut mid-way.
# The others take `medium` (3,000 messages: 30 pages, or about 40 with short_pages, which cuts
# about 20 of them short; three progress replies; a flood wait on the 5th call; two streams
# that overlap).
OBJECTS_ONLY = pytest.mark.parametrize("sandbox_wire", [False], ids=["objects"])
# And in both worlds (conftest.sandbox_world): the calm demo world, and the hostile one with
# 5 % of Telegram calls failing; the demo's groups are in both, so the numbers hold in both.


@pytest.fixture
def config(tmp_path: Path, sandbox_wire: bool, sandbox_world: str) -> Config:
    return make_config(tmp_path, **{"sandbox.wire": sandbox_wire,
                                    **world_settings(sandbox_world)})


async def test_the_daemons_sandbox_runs_in_the_configured_mode(
        daemon: Daemon, sandbox_wire: bool) -> None:
    assert world_of(daemon).wire is sandbox_wire


def world_of(daemon: Daemon) -> Any:
    assert daemon.backend is not None
    return daemon.backend.world


async def send_chats(ws: ClientConnection, *names: str, latest: bool = False,
                     **extra: Any) -> None:
    """Ask for the chats of `names`, each with status "latest" or ""; `extra` adds to (or,
    for the top-level "status", replaces) the request's data. The replies are the caller's."""
    status = "latest" if latest else ""
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": n, "status": status} for n in names], "status": "", **extra}}))


async def chats(ws: ClientConnection, *names: str, latest: bool = False,
                **extra: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await send_chats(ws, *names, latest=latest, **extra)
    return await collect_stream(ws, "chats")


async def users(ws: ClientConnection, *names: str, latest: bool = False,
                **extra: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await ws.send(json.dumps({"event": "users", "data": {
        "group": list(names), "status": "latest" if latest else "", **extra}}))
    return await collect_stream(ws, "users")


def ids(items: list[dict[str, Any]], kind: str = "chat") -> list[int]:
    return [item[kind]["id"] for item in items]


@pytest.fixture
async def big(daemon: Daemon) -> str:
    """A megagroup with a lazily generated history of 25,000 messages."""
    group = world_of(daemon).megagroup("bighistory", title="Big history")
    group.populate(30)
    group.history(25_000)
    return "bighistory"


MEDIUM = 3_000


@pytest.fixture
async def medium(daemon: Daemon) -> str:
    """A megagroup with a lazily generated history of MEDIUM messages."""
    group = world_of(daemon).megagroup("mediumhistory", title="Medium history")
    group.populate(30)
    group.history(MEDIUM)
    return "mediumhistory"


# --- replies before streaming ------------------------------------------------------------
async def test_users_of_a_channel_fail_with_the_seed_message(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        expect(await ask(ws, "users", {"group": ["testgroup00001", "UnderWorld4444"]}),
               "users", "failed", "UnderWorld4444 is a channel name")
        assert await wait_closed(ws) == 1000


async def test_users_of_an_unknown_group_fail_before_anything_streams(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        # The good first group is not streamed: everything is resolved first.
        reply = await ask(ws, "users", {"group": ["testgroup00001", "NoSuchGroup77"]})
        # The seed's message unchanged, and beside it the group it is about (issue 14).
        assert reply == {"event": "users", "data": {
            "status": "failed", "message": "NoSuchGroup77 does not exist",
            "group": "NoSuchGroup77"}}
        assert await wait_closed(ws) == 1000


async def test_chats_of_an_unknown_name_or_a_user_is_an_invalid_request(
        daemon: Daemon, api_key: str) -> None:
    world_of(daemon).user("plainperson", first_name="Plain")
    for name in ["NoSuchGroup77", "plainperson"]:
        async with await logged_in(daemon, api_key) as ws:
            reply = await ask(ws, "chats", {"group": [{"name": name, "status": ""}],
                                            "status": ""})
            assert reply == {"event": "chats", "data": {
                "status": "failed", "message": "invalid request", "group": name}}
            assert await wait_closed(ws) == 1000


async def test_streams_before_a_telegram_session_are_refused_clearly(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": api_key})
        expect(await ask(ws, "chats", {"group": [{"name": "UnderWorld4444", "status": ""}]}),
               "chats", "failed", p.TELEGRAM_LOGIN_FIRST)
        expect(await ask(ws, "users", {"group": ["testgroup00001"]}), "users", "failed",
               p.TELEGRAM_LOGIN_FIRST)


async def test_a_hidden_member_list_is_refused_not_streamed_as_complete(
        daemon: Daemon, api_key: str) -> None:
    group = world_of(daemon).megagroup("secretive", title="Secretive")
    group.populate(20)
    group.hide_members()
    async with await logged_in(daemon, api_key) as ws:
        expect(await ask(ws, "users", {"group": ["secretive"]}), "users", "failed",
               p.MEMBERS_HIDDEN.format(group="secretive"))
        assert await wait_closed(ws) == 1000


# --- streams -------------------------------------------------------------------------------
async def test_users_stream_in_the_seed_format_with_an_end_marker(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        await ws.send(json.dumps({"event": "users", "data": {
            "group": ["testgroup00001", "testgroup00002"], "status": ""}}))
        expect(await recv_json(ws), "users", "success", "sending users")
        first = await recv_json(ws)
        assert list(first) == ["event", "data"]
        assert list(first["data"]["message"]) == ["group", "user"]
        assert first["data"]["message"]["group"] == "testgroup00001"
        items, done = await collect_rest(ws, "users", [first["data"]["message"]])
    by_group: dict[str, set[int]] = {}
    for item in items:
        by_group.setdefault(item["group"], set()).add(item["user"]["id"])
    assert {g: len(s) for g, s in by_group.items()} == {"testgroup00001": 250,
                                                          "testgroup00002": 40}
    assert done["count"] == 290 and done["total"] == 290 and done["complete"] is True
    user = items[0]["user"]
    for field in ("id", "username", "first_name", "last_name", "phone", "bot", "deleted",
                  "verified", "premium", "scam", "fake", "status", "membership"):
        assert field in user
    assert {"role", "joined", "inviter_id"} <= set(user["membership"])


async def collect_rest(ws: ClientConnection, event: str, items: list[dict[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    while True:
        reply = await recv_json(ws)
        data = reply["data"]
        if data["message"] == "done":
            return items, data
        items.append(data["message"])


async def test_chats_stream_oldest_first_with_message_fields(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        items, done = await chats(ws, "UnderWorld4444", "testgroup00002")
    channel = [i for i in items if i["group"] == "UnderWorld4444"]
    group = [i for i in items if i["group"] == "testgroup00002"]
    assert ids(channel) == list(range(1, 301))
    assert ids(group) == sorted(ids(group)) and len(group) == 120
    assert done["count"] == 420
    post = channel[10]["chat"]
    assert post["post"] is True and isinstance(post["views"], int)
    for field in ("id", "date", "edit_date", "text", "sender_id", "reply_to_msg_id",
                  "forward", "views", "forwards", "replies", "pinned", "post", "grouped_id",
                  "media", "action"):
        assert field in post
    assert post["date"].endswith("Z")


async def test_25000_messages_stream_completely_in_order(
        daemon: Daemon, api_key: str, big: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        items, done = await chats(ws, big)
    assert ids(items) == list(range(1, 25_001))
    assert done["count"] == 25_000 and done["groups"][0]["total"] == 25_000


async def test_12000_members_with_the_sweep_are_complete_without_it_honestly_not(
        tmp_path: Path) -> None:
    for sweep, expected, complete in [(True, 12_000, True), (False, 10_000, False)]:
        (tmp_path / str(sweep)).mkdir()
        d = Daemon(make_config(tmp_path / str(sweep), **{"telegram.member_sweep": sweep}))
        await d.start()
        try:
            group = world_of(d).megagroup("crowded", title="Crowded")
            group.populate(12_000)
            assert d.app is not None
            key = await d.app.store.create_api_key("k")
            async with await logged_in(d, key) as ws:
                items, done = await users(ws, "crowded")
            members = ids(items, "user")
            assert len(members) == len(set(members)) == expected
            assert done["total"] == 12_000 and done["complete"] is complete
        finally:
            await d.stop()


@OBJECTS_ONLY
async def test_short_history_pages_do_not_end_the_stream(
        daemon: Daemon, api_key: str, medium: str) -> None:
    world_of(daemon).short_pages = True
    async with await logged_in(daemon, api_key) as ws:
        items, _ = await chats(ws, medium)
    assert ids(items) == list(range(1, MEDIUM + 1))


# --- latest --------------------------------------------------------------------------------
async def test_latest_chats_sends_exactly_the_new_messages(
        daemon: Daemon, api_key: str) -> None:
    assert daemon.backend is not None
    async with await logged_in(daemon, api_key) as ws:
        first, _ = await chats(ws, "UnderWorld4444", latest=True)
        assert len(first) == 300  # the first-ever latest is everything
        nothing, done = await chats(ws, "UnderWorld4444", latest=True)
        assert nothing == [] and done["count"] == 0
        for _ in range(3):
            daemon.backend.world.tick()
        fresh, _ = await chats(ws, "UnderWorld4444", latest=True)
        assert ids(fresh) == [301, 302, 303]


async def test_top_level_latest_is_the_default_for_groups_without_status(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        await chats(ws, "testgroup00002")
        await send_chats(ws, "testgroup00002", status="latest")
        items, _ = await collect_stream(ws, "chats")
        assert items == []


async def test_latest_users_sends_exactly_the_new_members(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        everyone, _ = await users(ws, "testgroup00002", latest=True)
        assert len(everyone) == 40
        newcomers = world_of(daemon).resolve("testgroup00002").populate(3)
        fresh, _ = await users(ws, "testgroup00002", latest=True)
        assert sorted(ids(fresh, "user")) == sorted(u.id for u in newcomers)
        again, _ = await users(ws, "testgroup00002", latest=True)
        assert again == []


async def test_two_api_keys_keep_separate_offsets(daemon: Daemon, api_key: str) -> None:
    assert daemon.app is not None
    other = await daemon.app.store.create_api_key("other")
    async with await logged_in(daemon, api_key) as a:
        assert len((await chats(a, "testgroup00002", latest=True))[0]) == 120
        assert (await chats(a, "testgroup00002", latest=True))[0] == []
    async with await logged_in(daemon, other, phone="+15550001111") as b:
        assert len((await chats(b, "testgroup00002", latest=True))[0]) == 120


@OBJECTS_ONLY
async def test_concurrent_latest_streams_of_one_key_and_group_do_not_both_send(
        daemon: Daemon, api_key: str, medium: str) -> None:
    async with await logged_in(daemon, api_key) as a, await logged_in(daemon, api_key) as b:
        results = await asyncio.gather(chats(a, medium, latest=True),
                                       chats(b, medium, latest=True))
    counts = sorted(done["count"] for _, done in results)
    # Serialized: the second stream starts after the first committed everything.
    assert counts == [0, MEDIUM]


# --- never lose anything -------------------------------------------------------------------
async def test_disconnect_mid_stream_then_latest_resumes_without_a_gap(
        daemon: Daemon, api_key: str, big: str) -> None:
    seen: list[int] = []
    ws = await logged_in(daemon, api_key)
    await send_chats(ws, big, latest=True)
    expect(await recv_json(ws), "chats", "success", "sending chats")
    while len(seen) < 3_000:
        seen.append((await recv_json(ws))["data"]["message"]["chat"]["id"])
    ws.transport.abort()  # the client vanishes mid-stream
    # What the client's websocket stack had already received counts as received: it is
    # what the pongs acknowledged. Drain it, as a client's last reads would. An offset past
    # what was drained is a gap in the daemon (tests/test_acks.py has the race this once
    # caught: a ping failed by the disconnect taken for a confirmed one).
    seen.extend(await drain_ids(ws))
    # Reconnect at once, as a real client may, without waiting for the daemon to notice the
    # disconnect: the new `latest` stream must wait for the dying one on the (key, group)
    # offset lock and start from what that one committed.
    async with await logged_in(daemon, api_key) as again:
        rest, _ = await chats(again, big, latest=True)
    resumed = ids(rest)
    assert resumed, "the rest of the history must come"
    assert resumed[0] <= seen[-1] + 1, "a gap between what was read and what was resent"
    assert resumed == list(range(resumed[0], 25_001))
    assert set(seen) | set(resumed) == set(range(1, 25_001))


async def drain_ids(ws: ClientConnection) -> list[int]:
    """Ids of chat items the client library still holds after the connection died."""
    found: list[int] = []
    while True:
        try:
            raw = await ws.recv()
        except ConnectionClosed:
            return found
        message = json.loads(raw)["data"]["message"]
        if isinstance(message, dict) and "chat" in message:
            found.append(message["chat"]["id"])


@OBJECTS_ONLY
async def test_cancel_stops_the_stream_and_keeps_the_connection(
        daemon: Daemon, api_key: str, big: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        await send_chats(ws, big, latest=True)
        expect(await recv_json(ws), "chats", "success", "sending chats")
        for _ in range(500):
            await recv_json(ws)
        await ws.send(json.dumps({"event": "cancel"}))
        received = 500
        while True:
            reply = await recv_json(ws)
            if reply["event"] == "cancel":
                expect(reply, "cancel", "success", "cancelled")
                break
            assert reply["data"]["message"] != "done"
            received += 1
        assert received < 25_000
        expect(await ask(ws, "cancel"), "cancel", "failed", p.NOTHING_TO_CANCEL)
        rest, _ = await chats(ws, big, latest=True)
        assert rest and rest[0]["chat"]["id"] <= received + 1
        assert ids(rest)[-1] == 25_000


@OBJECTS_ONLY
async def test_a_second_stream_while_one_runs_is_refused(
        daemon: Daemon, api_key: str, medium: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        await send_chats(ws, medium)
        await ws.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
        refused = False
        while True:
            reply = await recv_json(ws)
            if reply["event"] == "users":
                expect(reply, "users", "failed", p.STREAM_IN_PROGRESS)
                refused = True
            elif reply["data"]["message"] == "done":
                break
        assert refused


@OBJECTS_ONLY
async def test_flood_wait_while_paging_is_waited_and_the_stream_completes(
        daemon: Daemon, api_key: str, medium: str) -> None:
    world_of(daemon).fail("GetHistoryRequest", "FLOOD_WAIT_1", after=5)
    async with await logged_in(daemon, api_key) as ws:
        # Flood notices are progress replies: only a request that asks for progress gets
        # them (tests/test_resilience.py checks that "progress": false gets none).
        await send_chats(ws, medium, progress=True)
        notices = []
        got: list[int] = []
        while True:
            reply = await recv_json(ws, wait=30)
            data = reply["data"]
            if data["status"] == "progress":
                if "wait" in data:
                    notices.append(data)
            elif isinstance(data["message"], dict):
                got.append(data["message"]["chat"]["id"])
            elif data["message"] == "done":
                break
    scripted = {"status": "progress", "message": "telegram asks to wait 1 s; waiting", "wait": 1}
    if daemon.config.sandbox.hostile:
        # The hostile world's own faults add flood waits and retries, each said once.
        assert scripted in notices and all(n["wait"] > 0 for n in notices)
    else:
        assert notices == [scripted]
    assert got == list(range(1, MEDIUM + 1))


@OBJECTS_ONLY
async def test_progress_replies_when_asked(daemon: Daemon, api_key: str, medium: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        await send_chats(ws, medium, progress=True)
        progress = []
        notices = []  # flood waits and retries: the hostile world's faults
        while True:
            data = (await recv_json(ws))["data"]
            if data["status"] == "progress":
                if isinstance(data["message"], dict):
                    progress.append(data["message"])
                else:
                    notices.append(data)
            elif data["message"] == "done":
                break
    assert all(n["wait"] > 0 for n in notices)
    assert daemon.config.sandbox.hostile or not notices
    assert progress, "a 3,000-message stream with progress on reports progress"
    assert all(m["group"] == medium and m["total"] == MEDIUM for m in progress)
    sent = [m["sent"] for m in progress]
    assert sent == sorted(sent) and sent[-1] <= MEDIUM
