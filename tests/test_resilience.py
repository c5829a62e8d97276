"""tgws when Telegram fails, stalls and floods (issue 10), end to end.

Real daemon on 127.0.0.1, real websocket client, unmodified Telethon against the sandbox,
whose fault plan (tgws/sandbox/faults.py, docs/sandbox.md) plays Telegram's failures at the
sender seam: 5xx answers, stalls, refused connections, flood waits and RPC errors.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import (
    ask,
    collect_stream,
    eventually,
    expect,
    logged_in,
    make_config,
    open_ws,
    recv_json,
    started,
    started_with_key,
    wait_closed,
)
from tgws import protocol as p
from tgws import resilience
from tgws.daemon import Daemon
from tgws.sandbox.demo import GROUP_1, GROUP_2
from tgws.store import EntityRecord

TL = "telegram login"
FAST = {
    # Telethon's own 5xx retry sleeps 2 s (cut short by call_timeout): the stream's retries
    # are under test here.
    "telegram.request_retries": 1,  # the least the config allows (data-centre migrations)
    "telegram.connection_retries": 1,
    # Short deadlines so stalls are noticed quickly (Telethon also sleeps 2 s after a 5xx
    # before raising it; the deadline cuts that short too).
    "telegram.call_timeout": 1.0,
    "telegram.connect_timeout": 1.0,
    "telegram.stream_retries": 5,
    "telegram.retry_backoff": 0.01,
}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(make_config(tmp_path, **FAST)) as d:
        yield d


def world(daemon: Daemon) -> Any:
    assert daemon.backend is not None
    return daemon.backend.world


async def send(ws: ClientConnection, event: str, data: dict[str, Any]) -> None:
    await ws.send(json.dumps({"event": event, "data": data}))


async def read_stream(ws: ClientConnection, event: str, *, on_notice: Any = None,
                      wait: float = 30.0) -> tuple[list[int], list[dict[str, Any]],
                                                   dict[str, Any]]:
    """Item ids, progress notices and the final reply (done, or failed) of one stream."""
    expect(await recv_json(ws, wait), event, "success", f"sending {event}")
    return await read_items(ws, event, on_notice=on_notice, wait=wait)


async def read_items(ws: ClientConnection, event: str, *, on_notice: Any = None,
                     wait: float = 30.0) -> tuple[list[int], list[dict[str, Any]],
                                                  dict[str, Any]]:
    """read_stream once its "sending ..." reply has been read."""
    kind = "chat" if event == "chats" else "user"
    got: list[int] = []
    notices: list[dict[str, Any]] = []
    while True:
        reply = await recv_json(ws, wait)
        data = reply["data"]
        if data["status"] == "progress":
            notices.append(data)
            if on_notice is not None:
                on_notice(data)
        elif data["status"] == "failed" or data["message"] == "done":
            return got, notices, reply
        else:
            got.append(data["message"][kind]["id"])


async def stream_once(daemon: Daemon, api_key: str, event: str, data: dict[str, Any], *,
                      on_notice: Any = None) -> tuple[list[int], list[dict[str, Any]],
                                                      dict[str, Any]]:
    """Log in, ask for one stream, and read it (read_stream) to its end."""
    async with await logged_in(daemon, api_key) as ws:
        await send(ws, event, data)
        return await read_stream(ws, event, on_notice=on_notice)


async def next_stream_is_whole(ws: ClientConnection) -> None:
    """The socket still serves: a chats stream of GROUP_2 (120 messages) arrives whole."""
    await send(ws, "chats", {"group": [GROUP_2]})
    got, _, done = await read_stream(ws, "chats")
    assert done["data"]["message"] == "done" and len(got) == 120


def retries(notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in notices if isinstance(n["message"], str)
            and n["message"].startswith("telegram unavailable; retrying")]


# --- transient failures inside a stream ----------------------------------------------------
async def test_5xx_inside_a_stream_is_retried_and_the_stream_resumes_exactly(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).faults.script("GetHistory", "internal", times=3, after=2)
    got, notices, done = await stream_once(daemon, api_key,
                                           "chats", {"group": [GROUP_1], "progress": True})
    assert done["data"]["message"] == "done", done
    assert got == list(range(1, 1001))  # no gap, no duplicate, in order
    waits = [n["wait"] for n in retries(notices)]
    assert waits[:3] == [0.01, 0.02, 0.04], waits  # three in a row, backing off


async def test_5xx_past_the_retry_budget_ends_the_stream_clearly(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, **{**FAST, "telegram.stream_retries": 2})
    async with started_with_key(config, "k") as (d, _, key):
        world(d).faults.script("GetHistory", "rpc_call_fail", times=None, after=2)
        async with await logged_in(d, key) as ws:
            await send(ws, "chats", {"group": [GROUP_1]})
            got, notices, failed = await read_stream(ws, "chats")
            expect(failed, "chats", "failed", p.TELEGRAM_UNAVAILABLE)
            assert got == list(range(1, len(got) + 1)) and got
            assert notices == []  # "progress" was not asked for
            world(d).faults.calm()
            # Not a 1011, not a close: the next request streams.
            await next_stream_is_whole(ws)


@pytest.mark.parametrize("mode", ["refuse", "stall", "garble"])
async def test_an_endpoint_that_stays_broken_mid_stream_ends_it_clearly(
        tmp_path: Path, mode: str) -> None:
    """Past the retry budget, each way an endpoint can break while a page is awaited (down:
    ConnectionError; silent: the call's deadline, TimeoutError; not MTProto: the call never
    completes) ends the stream with "telegram unavailable" on an open socket, not 1011."""
    config = make_config(tmp_path, **{**FAST, "telegram.stream_retries": 2})
    async with started_with_key(config, "k") as (d, _, key):
        faults = world(d).faults
        faults.set(latency=0.02)  # ten pages: the endpoint breaks after the first arrived
        async with await logged_in(d, key) as ws:
            await send(ws, "chats", {"group": [GROUP_1], "progress": True})
            expect(await recv_json(ws), "chats", "success", "sending chats")
            first = await recv_json(ws)
            getattr(faults, mode)()  # and it stays that way
            rest, notices, failed = await read_items(ws, "chats")
            expect(failed, "chats", "failed", p.TELEGRAM_UNAVAILABLE)
            assert len(retries(notices)) == 2  # the whole budget was spent first
            got = [first["data"]["message"]["chat"]["id"], *rest]
            assert got == list(range(1, len(got) + 1))  # what came was in order, once
            faults.resume()
            faults.set(latency=0.0)
            # Same socket: the next request streams.
            await send(ws, "chats", {"group": [GROUP_2]})
            again, _, done = await read_stream(ws, "chats")
            assert done["data"]["message"] == "done" and again == list(range(1, 121))


async def test_a_stall_mid_stream_reconnects_and_resumes_after_the_last_item(
        daemon: Daemon, api_key: str) -> None:
    faults = world(daemon).faults
    faults.script("GetHistory", "stall", after=3)

    def on_notice(notice: dict[str, Any]) -> None:
        if retries([notice]):
            faults.resume()  # Telegram answers again

    got, notices, done = await stream_once(daemon, api_key,
                                           "chats", {"group": [GROUP_1], "progress": True},
                                           on_notice=on_notice)
    assert done["data"]["message"] == "done", done
    assert retries(notices)
    assert got == list(range(1, 1001))


async def test_an_endpoint_that_goes_down_mid_stream_is_waited_for(
        daemon: Daemon, api_key: str) -> None:
    faults = world(daemon).faults
    faults.set(latency=0.02)  # ten pages take long enough to pull the plug half-way

    def on_notice(notice: dict[str, Any]) -> None:
        if retries([notice]):
            faults.resume()

    async with await logged_in(daemon, api_key) as ws:
        await send(ws, "chats", {"group": [GROUP_1], "progress": True})
        expect(await recv_json(ws), "chats", "success", "sending chats")
        first = await recv_json(ws)
        faults.refuse()  # every connection drops, reconnecting fails
        rest, notices, done = await read_items(ws, "chats", on_notice=on_notice)
    got = [first["data"]["message"]["chat"]["id"], *rest]
    assert done["data"]["message"] == "done", done
    assert retries(notices)
    assert got == list(range(1, 1001))


async def test_members_resume_after_a_5xx_without_gap_or_duplicate(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).faults.script("GetParticipants", "timeout", times=2, after=1)
    got, notices, done = await stream_once(daemon, api_key,
                                           "users", {"group": [GROUP_1], "progress": True})
    assert done["data"]["message"] == "done", done
    assert len(retries(notices)) == 2
    assert len(got) == len(set(got)) == 250


# --- what a request is told ----------------------------------------------------------------
async def test_a_5xx_on_resolve_is_telegram_unavailable_not_does_not_exist(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).fail("ResolveUsername", "INTERNAL", times=None)
    async with await logged_in(daemon, api_key) as ws:
        expect(await ask(ws, "users", {"group": [GROUP_2]}), "users", "failed",
               p.TELEGRAM_UNAVAILABLE)
        expect(await ask(ws, "chats", {"group": [GROUP_2]}), "chats", "failed",
               p.TELEGRAM_UNAVAILABLE)
        world(daemon).faults.calm()
        await send(ws, "users", {"group": [GROUP_2]})
        items, _ = await collect_stream(ws, "users")  # same socket: nothing was closed
        assert len(items) == 40


@pytest.mark.parametrize(("error", "code"), [("AUTH_KEY_UNREGISTERED", 401),
                                           ("AUTH_KEY_DUPLICATED", 406)])
async def test_a_dead_auth_key_forgets_the_session_and_says_it_expired(
        daemon: Daemon, api_key: str, error: str, code: int) -> None:
    # AUTH_KEY_DUPLICATED: Telegram saw the key used from two connections at once and
    # invalidated it, which leaves the session as dead as a revoked one.
    async with await logged_in(daemon, api_key) as ws:
        world(daemon).fail("GetHistory", error, code=code)
        await send(ws, "chats", {"group": [GROUP_2]})
        got, _, reply = await read_stream(ws, "chats")
    assert got == []
    assert reply["data"]["status"] == "failed", reply
    assert reply["data"]["message"] == p.SESSION_EXPIRED, reply
    assert daemon.app is not None
    [record] = await daemon.app.store.list_api_keys()
    assert await daemon.app.store.load_session(record.id) is None
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")


async def test_a_username_nobody_has_still_does_not_exist(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        reply = await ask(ws, "users", {"group": ["nosuchgroup4242"]})
        assert reply["data"] == {"status": "failed", "message": "nosuchgroup4242 does not exist",
                                 "group": "nosuchgroup4242"}
        assert await wait_closed(ws) == 1000


async def test_a_member_list_hidden_mid_listing_gets_the_hidden_list_reply(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).fail("GetParticipants", "CHAT_ADMIN_REQUIRED", after=1)
    got, _, failed = await stream_once(daemon, api_key, "users", {"group": [GROUP_1]})
    expect(failed, "users", "failed", p.MEMBERS_HIDDEN.format(group=GROUP_1))
    assert got  # the first page went out before the admins hid the list


async def test_flood_notices_are_not_sent_when_progress_is_false(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).fail("GetHistory", "FLOOD_WAIT_1", after=2)
    got, notices, done = await stream_once(daemon, api_key,
                                           "chats", {"group": [GROUP_2], "progress": False})
    assert done["data"]["message"] == "done"
    assert notices == [] and got == list(range(1, 121))


async def test_a_stream_waiting_behind_another_of_the_same_group_says_so(
        daemon: Daemon, api_key: str) -> None:
    faults = world(daemon).faults
    faults.set(latency=0.05)  # the first stream takes a while
    async with await logged_in(daemon, api_key) as a, await logged_in(daemon, api_key) as b:
        await send(a, "chats", {"group": [GROUP_1]})
        expect(await recv_json(a), "chats", "success", "sending chats")
        await recv_json(a)  # a's first item: it holds the group's offset lock now
        await send(b, "chats", {"group": [GROUP_1], "progress": True})
        expect(await recv_json(b), "chats", "success", "sending chats")
        waiting = await recv_json(b)
        assert waiting == {"event": "chats", "data": {
            "status": "progress", "message": p.WAITING_FOR_STREAM.format(group=GROUP_1),
            "group": GROUP_1}}, waiting
        faults.set(latency=0.0)
        await read_items(a, "chats")
        got, _, done = await read_items(b, "chats")
        assert done["data"]["message"] == "done" and got == list(range(1, 1001))


# --- stale entity cache --------------------------------------------------------------------
async def test_a_stale_cached_access_hash_is_dropped_and_resolved_again(
        daemon: Daemon, api_key: str) -> None:
    app = daemon.app
    assert app is not None
    group = world(daemon).resolve(GROUP_2)
    record = await app.store.verify_api_key(api_key)
    assert record is not None
    await app.store.cache_entities(record.id, [EntityRecord(
        peer_id=group.id, access_hash=group.access_hash ^ 1, kind="megagroup",
        username=GROUP_2, title="stale")])
    async with await logged_in(daemon, api_key) as ws:
        await send(ws, "chats", {"group": [GROUP_2]})
        got, _, done = await read_stream(ws, "chats")
        assert done["data"]["message"] == "done" and got == list(range(1, 121))
        await send(ws, "users", {"group": [GROUP_2]})
        members, _, done = await read_stream(ws, "users")
        assert done["data"]["message"] == "done" and len(members) == 40
    cached = await app.store.lookup_entity(record.id, GROUP_2)
    assert cached is not None and cached.access_hash == group.access_hash


@pytest.mark.parametrize("error", ["CHANNEL_PRIVATE", "CHANNEL_INVALID"])
async def test_a_cached_entry_telegram_refuses_is_resolved_again_not_failed_for_a_day(
        daemon: Daemon, api_key: str, error: str) -> None:
    faults = world(daemon).faults
    async with await logged_in(daemon, api_key) as ws:
        await send(ws, "chats", {"group": [GROUP_2]})  # resolves and caches GROUP_2
        got, _, done = await read_stream(ws, "chats")
        assert done["data"]["message"] == "done" and len(got) == 120
        resolves = faults.per_method["ResolveUsernameRequest"]
        world(daemon).fail("GetChannels", error)  # the cached entry's check, once
        await send(ws, "users", {"group": [GROUP_2]})
        members, _, done = await read_stream(ws, "users")
        assert done["data"]["message"] == "done" and len(members) == 40
        # Dropped and asked for by name again, once: not trusted until it expires.
        assert faults.per_method["ResolveUsernameRequest"] == resolves + 1


async def test_a_username_that_changed_hands_streams_the_new_owner(
        daemon: Daemon, api_key: str) -> None:
    app = daemon.app
    assert app is not None
    old = world(daemon).resolve(GROUP_1)  # the cache says GROUP_2 is this group
    new = world(daemon).resolve(GROUP_2)
    record = await app.store.verify_api_key(api_key)
    assert record is not None
    await app.store.cache_entities(record.id, [EntityRecord(
        peer_id=old.id, access_hash=old.access_hash, kind="megagroup", username=GROUP_2,
        title="old owner")])
    got, _, done = await stream_once(daemon, api_key, "chats", {"group": [GROUP_2]})
    assert done["data"]["message"] == "done" and len(got) == 120  # GROUP_2's history
    cached = await app.store.lookup_entity(record.id, GROUP_2)
    assert cached is not None and cached.peer_id == new.id


# Login floods (PHONE_NUMBER_FLOOD, PHONE_PASSWORD_FLOOD): tests/test_login_flood.py.


# --- the login/logout race and the stalled client ------------------------------------------
async def test_a_logout_while_another_connections_login_is_answering(
        daemon: Daemon, api_key: str) -> None:
    app = daemon.app
    assert app is not None
    record = await app.store.verify_api_key(api_key)
    assert record is not None
    async with await logged_in(daemon, api_key) as a, await open_ws(daemon) as b:
        # b's `login` has found the key and is asking the store (its phase is still NEW)
        # when a logs out: the moment the race hits, held still.
        conn_b = next(c for c in app.connections if c.api_key is None)
        conn_b.api_key = record
        expect(await ask(a, "logout", {}), "logout", "success", "logged out")
        assert not conn_b.state.verified  # untouched: it had no session to lose
        conn_b.api_key = None
        expect(await ask(b, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")


async def test_a_client_that_stops_reading_is_dropped_even_without_pings(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, **{
        "server.ping_interval": 0, "streaming.ack_timeout": 1.0})
    async with started_with_key(config, "k") as (d, app, key):
        group = world(d).megagroup("bighistory", title="Big history")
        group.populate(5)
        group.history(20_000)
        # A client that reads nothing after its request: the daemon's writes, or its wait
        # for a pong, stall (and with ping_interval = 0 no keep-alive notices).
        ws = await logged_in(d, key, max_queue=1)
        ws.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws.transport.pause_reading()
        await send(ws, "chats", {"group": ["bighistory"]})
        await eventually(lambda: any(c.stream is not None for c in app.connections),
                         "the stream to start")
        await eventually(lambda: not app.connections, "the stalled client to be dropped",
                         wait=15)
        ws.transport.abort()


async def test_sandbox_stall_at_connect_fails_login_clearly(
        daemon: Daemon, api_key: str) -> None:
    world(daemon).faults.stall()  # the key exchange never completes
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": api_key})
        reply = await ask(ws, TL, {"phone": "+15551234567"}, wait=10)
        expect(reply, TL, "failed", p.TELEGRAM_UNAVAILABLE)
        world(daemon).faults.resume()
        expect(await ask(ws, TL, {"phone": "+15551234567"}), TL, "success", "send code")


# --- the pure parts ------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap_and_gives_up_past_the_budget() -> None:
    backoff = resilience.Backoff(budget=7, first=1.0)
    assert [backoff.failed() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, None]
    backoff.succeeded()  # a page arrived: the count starts again
    assert backoff.failed() == 1


def test_pending_calls_past_their_deadline_count_as_stuck() -> None:
    pending = resilience.Pending()
    assert not pending.stuck()
    with pending.call(10):
        assert not pending.stuck()
        assert pending.stuck(now=time.monotonic() + 11)
    assert not pending.stuck(now=time.monotonic() + 11)
    pending.failed()
    assert pending.stuck()
    pending.ok()
    assert not pending.stuck()


async def test_a_stalled_connect_holds_the_keys_other_requests_no_longer_than_its_deadline(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, **{**FAST, "telegram.idle_disconnect": 0.0})
    async with started_with_key(config, "k") as (d, app, key):
        async with await logged_in(d, key):
            pass
        await eventually(lambda: app.gateway.connected_accounts == 0,
                         "the account to disconnect after its last connection")
        world(d).faults.stall()  # the next connect's first request never gets an answer
        async with await logged_in(d, key) as a, await logged_in(d, key) as b:
            started = time.monotonic()
            await send(a, "users", {"group": [GROUP_2]})  # connects, holding the lock
            await send(b, "chats", {"group": [GROUP_2]})  # waits for the lock
            replies = [await recv_json(a, 15), await recv_json(b, 15)]
            elapsed = time.monotonic() - started
            for reply, event in zip(replies, ("users", "chats"), strict=True):
                expect(reply, event, "failed", p.TELEGRAM_UNAVAILABLE)
            assert elapsed < 2 * FAST["telegram.connect_timeout"] + 3
            world(d).faults.resume()
            await next_stream_is_whole(b)
