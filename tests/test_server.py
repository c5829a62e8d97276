"""The server end to end: a real daemon on 127.0.0.1, a real websocket client."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as sync_connect

from tests.support import (
    ThreadedDaemon,
    ask,
    expect,
    make_config,
    open_ws,
    recv_json,
    timeout,
    wait_closed,
    ws_url,
)
from tgws import protocol as p
from tgws.daemon import Daemon
from tgws.store import Store

SEED_LOGIN_REPLIES = {
    "send phone number", "unauthorized",
    "Already verified. Send data to 'telegram login' or 'users'.",
    "session already exists, call 'users'.",
}


async def test_login_with_valid_key_asks_for_phone(daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        await ws.send(json.dumps({"event": "login", "data": {"apiKey": api_key}}))
        raw = await ws.recv()
        assert raw == ('{"event": "login", "data": {"status": "success", '
                       '"message": "send phone number"}}')


async def test_login_with_wrong_key_is_unauthorized_and_stays_open(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": "nope"}), "login", "failed", "unauthorized")
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")


async def test_second_login_on_a_connection_is_already_verified(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": api_key})
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "Already verified. Send data to 'telegram login' or 'users'.")
        # Even a wrong key after a successful one does not undo the verification.
        expect(await ask(ws, "login", {"apiKey": "wrong"}), "login", "success",
               "Already verified. Send data to 'telegram login' or 'users'.")


async def test_login_when_key_has_a_session_says_session_exists(
        daemon: Daemon, api_key: str) -> None:
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(api_key)
    assert record is not None
    await daemon.app.store.save_session(record.id, "1AAAA", 42)
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "session already exists, call 'users'.")


async def test_requests_before_login_close_the_socket(daemon: Daemon) -> None:
    for event, data in [("telegram login", {"phone": "+15550001"}),
                        ("users", {"group": ["testgroup00001"], "status": ""}),
                        ("chats", {"group": [{"name": "UnderWorld4444", "status": ""}]}),
                        ("logout", {})]:
        async with await open_ws(daemon) as ws:
            expect(await ask(ws, event, data), event, "failed", "verify your api key first")
            assert await wait_closed(ws) == 1000


BAD_FRAMES: list[tuple[str, str, str]] = [
    ("{not json", "error", "invalid JSON"),
    ("[1, 2, 3]", "error", p.NOT_AN_OBJECT),
    ('"just a string"', "error", p.NOT_AN_OBJECT),
    ('{"data": {}}', "error", p.NO_EVENT),
    ('{"event": 7, "data": {}}', "error", p.NO_EVENT),
    ('{"event": "dance", "data": {}}', "error", "unknown event 'dance'"),
    ('{"event": "login"}', "login", "'data.apiKey' must be a string"),
    ('{"event": "login", "data": {"apiKey": 12}}', "login", "'data.apiKey' must be a string"),
    ('{"event": "login", "data": "key"}', "login", "'data' must be a JSON object"),
]


@pytest.mark.parametrize(("frame", "event", "message"), BAD_FRAMES)
async def test_bad_input_gets_a_failed_reply_and_the_connection_stays_usable(
        daemon: Daemon, api_key: str, frame: str, event: str, message: str) -> None:
    async with await open_ws(daemon) as ws:
        await ws.send(frame)
        reply = await recv_json(ws)
        assert reply["event"] == event
        assert reply["data"]["status"] == "failed"
        assert message in reply["data"]["message"]
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")


async def test_bad_data_fields_after_login_keep_the_connection(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": api_key})
        for frame in [{"event": "telegram login", "data": {}},
                      {"event": "telegram login", "data": {"phone": 5}},
                      {"event": "telegram login", "data": {"phone": "+1", "code": "1"}},
                      {"event": "users", "data": {"group": "x", "status": "soon"}},
                      {"event": "users", "data": {"group": []}},
                      {"event": "chats", "data": {"group": [5]}}]:
            await ws.send(json.dumps(frame))
            reply = await recv_json(ws)
            assert reply["event"] == frame["event"]
            assert reply["data"]["status"] == "failed"
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               p.ALREADY_VERIFIED)


async def test_binary_frames_are_refused_politely(daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as ws:
        await ws.send(b'{"event": "login"}')
        expect(await recv_json(ws), "error", "failed", p.BINARY_FRAME)
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")


async def test_frames_over_the_size_limit_close_with_1009(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"server.max_message_size": 2048})
    d = Daemon(config)
    await d.start()
    try:
        async with await open_ws(d) as ws:
            await ws.send(json.dumps({"event": "login", "data": {"apiKey": "x" * 5000}}))
            assert await wait_closed(ws) == 1009
        async with await open_ws(d) as ws:  # the server carries on
            expect(await ask(ws, "login", {"apiKey": "y"}), "login", "failed", "unauthorized")
    finally:
        await d.stop()


async def test_other_paths_get_404(daemon: Daemon) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{daemon.port}/ws/other/")
    assert info.value.response.status_code == 404


def _http_get(url: str) -> tuple[int, dict[str, Any], str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout(10)) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


async def test_healthz_reports_store_uptime_and_connections(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon):
        status, headers, body = await asyncio.to_thread(
            _http_get, f"http://127.0.0.1:{daemon.port}/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["store"] is True
    assert health["connections"] == 1
    assert health["uptime"] >= 0
    status, _, _ = await asyncio.to_thread(_http_get, f"http://127.0.0.1:{daemon.port}/nope")
    assert status == 404


async def test_revoked_key_closes_its_connections_and_fails_afterwards(
        daemon: Daemon, api_key: str) -> None:
    assert daemon.app is not None
    other_key = await daemon.app.store.create_api_key("other")
    async with await open_ws(daemon) as ws, await open_ws(daemon) as bystander:
        await ask(ws, "login", {"apiKey": api_key})
        await ask(bystander, "login", {"apiKey": other_key})
        # Revoke from a second store connection, as `tgws apikey revoke` does.
        async with await Store.open(daemon.config.store.target) as cli_store:
            assert await cli_store.revoke_api_key("test")
        assert await wait_closed(ws, wait=10) == 1008
        assert ws.close_reason == p.API_KEY_REVOKED
        # The other key's connection is untouched.
        expect(await ask(bystander, "login", {"apiKey": other_key}), "login", "success",
               p.ALREADY_VERIFIED)
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "failed", "unauthorized")


async def test_repeated_failed_logins_are_slowed_then_closed_1008(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"limits.failed_logins_per_connection": 3})
    d = Daemon(config)
    await d.start()
    try:
        async with await open_ws(d) as ws:
            loop = asyncio.get_running_loop()
            started = loop.time()
            expect(await ask(ws, "login", {"apiKey": "a"}), "login", "failed", "unauthorized")
            expect(await ask(ws, "login", {"apiKey": "b"}), "login", "failed", "unauthorized")
            expect(await ask(ws, "login", {"apiKey": "c"}), "login", "failed", "unauthorized")
            assert await wait_closed(ws) == 1008
            # 0.25 + 0.5 + 1.0 s of deliberate slow-down
            assert loop.time() - started >= 1.5
    finally:
        await d.stop()


async def test_a_crashing_connection_does_not_affect_another(
        daemon: Daemon, api_key: str) -> None:
    async with await open_ws(daemon) as calm:
        expect(await ask(calm, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")
        async with await open_ws(daemon) as rude:
            await rude.send("x" * 70000)  # over the limit: closed 1009
            assert await wait_closed(rude) == 1009
        expect(await ask(calm, "login", {"apiKey": api_key}), "login", "success",
               p.ALREADY_VERIFIED)


async def test_max_connections_answers_503(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"server.max_connections": 1})
    d = Daemon(config)
    await d.start()
    try:
        assert d.app is not None
        key = await d.app.store.create_api_key("one")
        async with await open_ws(d) as ws:
            # max_connections counts logged-in connections (tests/test_abuse.py: the rest).
            await ask(ws, "login", {"apiKey": key})
            with pytest.raises(InvalidStatus) as info:
                await connect(ws_url(d))
            assert info.value.response.status_code == 503
    finally:
        await d.stop()


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"server.idle_timeout": 0.3})
    d = Daemon(config)
    await d.start()
    try:
        async with await open_ws(d) as ws:
            assert await wait_closed(ws, wait=5) == 1000
            assert ws.close_reason == "idle timeout"
    finally:
        await d.stop()


# --- property: arbitrary frames always get a protocol-shaped reply or a defined close ------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
frames = (
    st.text(max_size=300)
    | st.binary(max_size=300)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries({"event": st.sampled_from(p.EVENTS) | st.text(max_size=10),
                             "data": json_values}).map(json.dumps)
)

DEFINED_CLOSES = {1000, 1008, 1009}


def _check_reply(raw: str | bytes) -> None:
    assert isinstance(raw, str)
    reply = json.loads(raw)
    assert set(reply) == {"event", "data"}
    assert isinstance(reply["event"], str)
    assert reply["data"]["status"] in ("success", "failed", "progress")
    assert isinstance(reply["data"]["message"], str | dict)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames, min_size=1, max_size=4))
def test_arbitrary_frames_get_a_shaped_reply_or_a_defined_close(
        threaded_daemon: ThreadedDaemon, batch: list[str | bytes]) -> None:
    with sync_connect(threaded_daemon.url, open_timeout=timeout(10)) as ws:
        for frame in batch:
            try:
                ws.send(frame)
                _check_reply(ws.recv(timeout=timeout(10)))
            except ConnectionClosed:
                assert ws.close_code in DEFINED_CLOSES
                break
    # The server keeps serving the next connection.
    with sync_connect(threaded_daemon.url, open_timeout=timeout(10)) as ws:
        ws.send(json.dumps({"event": "login", "data": {"apiKey": "nobody"}}))
        reply = json.loads(ws.recv(timeout=timeout(10)))
        assert reply["data"]["message"] in SEED_LOGIN_REPLIES
