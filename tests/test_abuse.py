"""Issue 11, the network edge: every connection pays its way; lockouts spare the innocent.

Driven from outside: real sockets (hand-made ones where a polite client cannot misbehave)
against a real daemon on 127.0.0.1. Sources 127.0.0.2-5 stand for other client addresses
(Linux routes all of 127/8 to the loopback interface).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.abuse_support import (
    PING,
    closed_by_server,
    half_handshake,
    ping_until_refused,
    raw_upgrade,
)
from tests.support import (
    ask,
    eventually,
    expect,
    logged_in,
    make_config,
    recv_json,
    started_with_key,
    timeout,
    wait_closed,
    ws_url,
)
from tgws import protocol as p
from tgws.admission import close_reason
from tgws.daemon import Daemon
from tgws.wsguard import GuardedConnection


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Daemon, str]]:
    async with started_with_key(make_config(tmp_path, **overrides), "legit") as (d, _, key):
        yield d, key


async def open_from(d: Daemon, source: str = "127.0.0.1", **kwargs: Any) -> ClientConnection:
    return await connect(ws_url(d), local_addr=(source, 0), compression=None,
                         max_size=2**24, **kwargs)


# --- 1. a deadline to log in, pools that squatters cannot fill --------------------------------
async def test_a_connection_that_never_logs_in_is_closed_at_the_login_deadline(
        tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.login_timeout": 0.5}) as (d, key):
        async with await open_from(d) as idler:
            assert await wait_closed(idler, wait=5) == 1008
            assert idler.close_reason == "login timeout"
        # A client that logs in in time is not touched by the deadline.
        async with await open_from(d) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "send phone number")
            await asyncio.sleep(1.0)  # past the deadline: it must not fire any more
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   p.ALREADY_VERIFIED)


async def test_a_half_sent_handshake_is_dropped_at_the_login_deadline(tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.login_timeout": 0.5}) as (d, _key):
        sock = await half_handshake(d.port, d.config.server.path)
        try:
            await eventually(lambda: closed_by_server(sock), "the server closing the socket", 5)
        finally:
            sock.close()


async def test_twenty_squatters_do_not_keep_a_real_client_out(tmp_path: Path) -> None:
    # The case with default pools: max_connections = 20 held by twenty connections
    # that never log in answered a real client with HTTP 503 for 40 s.
    async with running(tmp_path, **{"server.max_connections": 20}) as (d, key):
        squatters = [await open_from(d, f"127.0.0.{2 + n % 4}") for n in range(20)]
        async with await open_from(d) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "send phone number")
        for s in squatters:
            await s.close()


async def test_clients_that_never_log_in_never_push_a_real_client_to_503(
        tmp_path: Path) -> None:
    # Twenty squatters (the number) against a server with 4 slots; some of them
    # from the real client's own address, as behind a NAT.
    async with running(tmp_path, **{
            "server.max_connections": 4, "server.max_unverified": 6,
            "server.max_unverified_per_address": 3}) as (d, key):
        squatters = [await open_from(d, f"127.0.0.{2 + n % 4}") for n in range(16)]
        squatters += [await open_from(d, "127.0.0.1") for _ in range(4)]
        for _round in range(3):  # again and again: the squatters never tire
            async with await open_from(d, "127.0.0.1") as ws:
                expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                       "send phone number")
        assert d.app is not None
        assert d.app.edge.pools.unverified <= 6
        # The squatters that made room were told why; at most 6 - 1 of them are left.
        await eventually(lambda: sum(s.close_code is not None for s in squatters) >= 15,
                         "15 squatters closed", 5)
        evicted = [s for s in squatters if s.close_code is not None]
        assert {s.close_code for s in evicted} == {1008}
        assert {s.close_reason for s in evicted} == {"too many connections not logged in"}
        health = json.loads(await asyncio.to_thread(_get, f"http://127.0.0.1:{d.port}/healthz"))
        assert health["dropped_not_logged_in"] >= len(evicted)
        assert health["not_logged_in"] <= 6 and health["logged_in"] == 0
        for s in squatters:
            await s.close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout(10)) as response:
        body: bytes = response.read()
        return body


async def test_only_logged_in_connections_count_towards_503(tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.max_connections": 1}) as (d, key):
        async with await open_from(d) as first, await open_from(d) as second:
            expect(await ask(first, "login", {"apiKey": key}), "login", "success",
                   "send phone number")
            # The slot is taken by a logged-in client: now, and only now, 503.
            with pytest.raises(InvalidStatus) as info:
                await open_from(d)
            assert info.value.response.status_code == 503
            expect(await ask(second, "login", {"apiKey": key}), "login", "failed",
                   p.TOO_MANY_CONNECTIONS)
            assert await wait_closed(second) == 1013


async def test_connections_per_api_key_are_capped(tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.max_connections_per_key": 2}) as (d, key):
        async with await open_from(d) as a, await open_from(d) as b, \
                await open_from(d) as c:
            for ws in (a, b):
                expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                       "send phone number")
            expect(await ask(c, "login", {"apiKey": key}), "login", "failed",
                   p.TOO_MANY_KEY_CONNECTIONS)
            assert await wait_closed(c) == 1008
        # Once they are gone, the key gets its slots back.
        await eventually(lambda: d.app is not None and not d.app.connections,
                         "no connection left", 5)
        async with await open_from(d) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "send phone number")


# --- 2. a write-buffer ceiling ----------------------------------------------------------------
async def test_a_ping_flood_that_never_reads_pongs_is_cut_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path) as (d, _key):  # default write_limit and max_write_buffer
        sock = await raw_upgrade(d.port, d.config.server.path, rcvbuf=4096)
        try:
            limit = 32 * 2**20
            async with asyncio.timeout(timeout(30)):
                sent = await ping_until_refused(sock, limit)
            # The kernel buffers some of what we sent on both sides; the server never
            # answers more than max_write_buffer plus a read's worth of pongs.
            assert sent < limit, "the server answered 32 MiB of pings nobody read"
        finally:
            sock.close()
        assert d.app is not None
        await eventually(lambda: d.app is not None and d.app.edge.pools.unverified == 0,
                         "no unverified connection left", 5)
    assert "(max_write_buffer)" in caplog.text


async def test_output_that_does_not_drain_is_aborted_after_write_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Under the ceiling, but never read: once write_timeout passes with our buffer above
    # write_limit, the connection goes. Keepalive could not do it (its ping waits behind
    # the unread pongs), and the idle timeout is off here.
    await _fill_and_wait_for_the_drop(tmp_path, {"server.write_timeout": 1.0,
                                                 "server.idle_timeout": 0}, wait=10)
    assert "(write_timeout)" in caplog.text


async def test_the_idle_timeout_closes_a_connection_whose_output_never_drains(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tgws")
    # The idle close frame cannot be written; the bounded close then aborts.
    await _fill_and_wait_for_the_drop(tmp_path, {"server.idle_timeout": 0.5}, wait=20)
    assert "idle for" in caplog.text
    assert "(write_timeout)" not in caplog.text and "(max_write_buffer)" not in caplog.text


async def _fill_and_wait_for_the_drop(tmp_path: Path, settings: dict[str, Any],
                                      wait: float) -> None:
    """A client that logs in, pings and never reads: wait until the server dropped it."""
    async with running(tmp_path, **settings, **{"server.write_limit": 4096,
                                                "server.max_write_buffer": 64 << 20}) as (d, key):
        sock = await raw_upgrade(d.port, d.config.server.path, rcvbuf=4096)
        try:
            await _login_and_fill_with_pongs(d, sock, key)
            await eventually(lambda: d.app is not None and not d.app.connections,
                             "the connection dropped", wait)
            await eventually(lambda: closed_by_server(sock),  # reads what is left
                             "the server closing the socket", 5)
        finally:
            sock.close()


async def _login_and_fill_with_pongs(d: Daemon, sock: Any, key: str) -> None:
    """Log in (no login deadline), then ping until the server's output passes write_limit.

    Nothing is read here: reading would drain the very buffer the test is about.
    """
    loop = asyncio.get_running_loop()
    login = json.dumps({"event": "login", "data": {"apiKey": key}}).encode()
    await loop.sock_sendall(sock, _masked_text(login))
    assert d.app is not None
    app = d.app
    # The key is checked in the store first: pings sent before that would queue their pongs
    # ahead of the login reply, and on a slower store the login would wait behind them.
    await eventually(lambda: any(c.api_key is not None for c in app.connections),
                     "the server verified the api key")
    async with asyncio.timeout(timeout(10)):
        while not any(isinstance(c.ws, GuardedConnection) and c.ws.write_paused
                      for c in d.app.connections):
            await loop.sock_sendall(sock, PING * 64)


def _masked_text(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


# --- 4. lockouts that cannot hit the innocent ------------------------------------------------
async def test_a_valid_key_is_served_while_its_address_is_blocked(tmp_path: Path) -> None:
    async with running(tmp_path, **{"limits.failed_logins_per_peer": 3,
                                    "limits.failed_login_delay": 0.0}) as (d, key):
        for _ in range(3):
            async with await open_from(d) as guesser:
                await ask(guesser, "login", {"apiKey": "tgws_wrong"})
        async with await open_from(d) as guesser:
            # A blocked peer's next guess is refused and closed at once...
            expect(await ask(guesser, "login", {"apiKey": "tgws_wrong"}), "login", "failed",
                   p.TOO_MANY_FAILURES)
            assert await wait_closed(guesser) == 1008
        async with await open_from(d) as ws:
            # ...but a valid key proves itself: failures it did not make never refuse it.
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "send phone number")


async def test_trusted_proxies_forwarded_address_is_the_one_blocked(tmp_path: Path) -> None:
    async with running(tmp_path, **{"limits.failed_logins_per_peer": 2,
                                    "limits.failed_login_delay": 0.0,
                                    "server.trusted_proxies": ["127.0.0.1"]}) as (d, _key):
        bad = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}  # the proxy saw .7
        for _ in range(2):
            async with await open_from(d, additional_headers=bad) as ws:
                await ask(ws, "login", {"apiKey": "tgws_wrong"})
        async with await open_from(d, additional_headers=bad) as ws:
            expect(await ask(ws, "login", {"apiKey": "tgws_wrong"}), "login", "failed",
                   p.TOO_MANY_FAILURES)
        # Another client behind the same proxy is not blocked...
        other = {"Forwarded": 'for="[2001:db8::1]:4711"'}
        async with await open_from(d, additional_headers=other) as ws:
            expect(await ask(ws, "login", {"apiKey": "tgws_wrong"}), "login", "failed",
                   p.UNAUTHORIZED)
        # ...and a left-hand hop the client wrote itself does not buy a fresh address.
        forged = {"X-Forwarded-For": "192.0.2.99, 203.0.113.7"}
        async with await open_from(d, additional_headers=forged) as ws:
            expect(await ask(ws, "login", {"apiKey": "tgws_wrong"}), "login", "failed",
                   p.TOO_MANY_FAILURES)


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    async with running(tmp_path, **{"limits.failed_logins_per_peer": 2,
                                    "limits.failed_login_delay": 0.0}) as (d, _key):
        for n in range(2):
            headers = {"X-Forwarded-For": f"203.0.113.{n}"}
            async with await open_from(d, additional_headers=headers) as ws:
                await ask(ws, "login", {"apiKey": "tgws_wrong"})
        # Both counted against 127.0.0.1, whatever the header claimed.
        headers = {"X-Forwarded-For": "203.0.113.50"}
        async with await open_from(d, additional_headers=headers) as ws:
            expect(await ask(ws, "login", {"apiKey": "tgws_wrong"}), "login", "failed",
                   p.TOO_MANY_FAILURES)


async def test_a_foreign_web_page_is_refused_by_default(tmp_path: Path) -> None:
    async with running(tmp_path) as (d, key):
        with pytest.raises(InvalidStatus) as info:
            await open_from(d, origin="https://any-page.example")
        assert info.value.response.status_code == 403
        async with await open_from(d) as ws:  # no Origin: not a browser, not affected
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "send phone number")


async def test_a_browser_origin_is_refused_unless_allowed(tmp_path: Path) -> None:
    async with running(tmp_path, **{
            "server.allowed_origins": ["https://app.example.org"]}) as (d, key):
        with pytest.raises(InvalidStatus) as info:
            await open_from(d, origin="http://evil.example")
        assert info.value.response.status_code == 403
        # DNS rebinding: a name that matches the Host header is still a foreign page.
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://localtest.invalid:{d.port}/ws/telegram/",
                          host="127.0.0.1", port=d.port,
                          origin=f"http://localtest.invalid:{d.port}")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        for allowed in ("https://app.example.org", f"http://127.0.0.1:{d.port}", None):
            async with await open_from(d, origin=allowed) as ws:
                expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                       "send phone number")


# --- 5. the close reason is cut on UTF-8 bytes ------------------------------------------------
async def test_a_long_non_ascii_group_name_still_closes_the_socket(tmp_path: Path) -> None:
    async with running(tmp_path) as (d, key):
        ws = await logged_in(d, key)
        name = "группа" * 20  # 120 characters, 240 bytes of UTF-8
        await ws.send(json.dumps({"event": "users", "data": {"group": [name], "status": ""}}))
        reply = await recv_json(ws)
        assert reply["event"] == "users" and reply["data"]["status"] == "failed", reply
        message = reply["data"]["message"]
        assert name in message
        assert await wait_closed(ws) == 1000
        assert ws.close_reason == close_reason(message)
        assert len(ws.close_reason.encode()) <= 123
        assert message.startswith(ws.close_reason)
