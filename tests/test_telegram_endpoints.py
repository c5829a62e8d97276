"""Telegram endpoints that misbehave: real TCP servers on 127.0.0.1 reached through
[telegram.server] with backend "telegram", so Telethon's own connection and key-exchange
code meets them (issue 10).

- a server that accepts TCP and never answers (Telegram unreachable behind a black hole);
- a server that answers an HTTP 400 (the port points at a web server, not MTProto).

Each gets the clear failed reply "telegram unavailable, try again later" within
[telegram] connect_timeout, the socket stays open, and the daemon stays healthy enough to
say so on /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from telethon.sessions import StringSession

from tests.support import ask, eventually, expect, make_config, open_ws, recv_json, timeout
from tgws import protocol as p
from tgws.context import App
from tgws.daemon import Daemon
from tgws.telegram_clients import telegram_client_factory

TL = "telegram login"
CONNECT_TIMEOUT = 1.0

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never sends a byte; reads whatever comes."""
    async with _tcp_server(_read_forever) as port:
        yield port


RECEIVED: list[bytes] = []  # what the silent server was sent (the key exchange's first bytes)


async def _read_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        RECEIVED.append(data)
    writer.close()


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """Answers whatever arrives with an HTTP 400, as a web server on the port would."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 11\r\nConnection: close\r\n\r\nBad Request")
        await writer.drain()
        writer.close()

    async with _tcp_server(serve) as port:
        yield port


@contextlib.asynccontextmanager
async def _tcp_server(serve: Serve) -> AsyncIterator[int]:
    """A real TCP server on 127.0.0.1 (port 0); yields its port."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _daemon(tmp_path: Path, port: int, **overrides: Any) -> Daemon:
    config = make_config(tmp_path, **{
        "telegram.backend": "telegram", "telegram.api_id": 1, "telegram.api_hash": "x" * 32,
        "telegram.server.dc_id": 2, "telegram.server.host": "127.0.0.1",
        "telegram.server.port": port, "telegram.connect_timeout": CONNECT_TIMEOUT,
        "telegram.connection_retries": 1, **overrides})
    daemon = Daemon(config)
    await daemon.start()
    return daemon


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, port: int, **overrides: Any
                   ) -> AsyncIterator[tuple[Daemon, App, str]]:
    """(the daemon, its app, an API key "k") on the endpoint at ``port``; stopped after."""
    daemon = await _daemon(tmp_path, port, **overrides)
    try:
        assert daemon.app is not None
        yield daemon, daemon.app, await daemon.app.store.create_api_key("k")
    finally:
        await daemon.stop()


def _health(daemon: Daemon) -> dict[str, Any]:
    url = f"http://127.0.0.1:{daemon.port}/healthz"
    with urllib.request.urlopen(url, timeout=timeout(10)) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        assert resp.status == 200
        return body


async def _verified(daemon: Daemon, key: str) -> Any:
    ws = await open_ws(daemon)
    expect(await ask(ws, "login", {"apiKey": key}), "login", "success", "send phone number")
    return ws


async def test_a_silent_endpoint_fails_telegram_login_within_connect_timeout(
        tmp_path: Path, silent_server: int) -> None:
    async with _running(tmp_path, silent_server) as (daemon, _, key):
        async with await _verified(daemon, key) as ws:
            started = time.monotonic()
            reply = await ask(ws, TL, {"phone": "+15551234567"}, wait=CONNECT_TIMEOUT + 10)
            elapsed = time.monotonic() - started
            expect(reply, TL, "failed", p.TELEGRAM_UNAVAILABLE)
            assert elapsed < timeout(CONNECT_TIMEOUT + 5)
            # The socket stays open: the same connection can try again.
            expect(await ask(ws, TL, {"phone": "+15551234567"}, wait=CONNECT_TIMEOUT + 10),
                   TL, "failed", p.TELEGRAM_UNAVAILABLE)
            health = await asyncio.to_thread(_health, daemon)
            assert health["status"] == "degraded" and health["accounts_stuck"] == 1, health


async def test_two_logins_of_one_key_against_a_silent_endpoint_both_get_an_answer(
        tmp_path: Path, silent_server: int) -> None:
    async with _running(tmp_path, silent_server) as (daemon, _, key):
        async with await _verified(daemon, key) as a, await _verified(daemon, key) as b:
            await a.send(json.dumps({"event": TL, "data": {"phone": "+15551234567"}}))
            first = await recv_json(a, CONNECT_TIMEOUT + 10)
            await b.send(json.dumps({"event": TL, "data": {"phone": "+15557654321"}}))
            second = await recv_json(b, CONNECT_TIMEOUT + 10)
        expect(first, TL, "failed", p.TELEGRAM_UNAVAILABLE)
        expect(second, TL, "failed", p.TELEGRAM_UNAVAILABLE)


async def test_an_http_endpoint_is_telegram_unavailable_not_an_internal_error(
        tmp_path: Path, http_server: int) -> None:
    async with _running(tmp_path, http_server) as (daemon, _, key):
        async with await _verified(daemon, key) as ws:
            expect(await ask(ws, TL, {"phone": "+15551234567"}, wait=CONNECT_TIMEOUT + 10),
                   TL, "failed", p.TELEGRAM_UNAVAILABLE)
            # Still open and answering (a 1011 would have closed it).
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   p.ALREADY_VERIFIED)


async def test_a_client_that_leaves_a_stuck_login_is_seen_leaving(
        tmp_path: Path, silent_server: int) -> None:
    """The handler waits on Telegram (a long connect_timeout here); the client's close is
    still seen at once: the connection is no longer counted, its handler stops."""
    async with _running(tmp_path, silent_server,
                        **{"telegram.connect_timeout": 120.0}) as (daemon, app, key):
        RECEIVED.clear()
        async with await _verified(daemon, key) as ws:
            await ws.send(json.dumps({"event": TL, "data": {"phone": "+15551234567"}}))
            await eventually(lambda: bool(RECEIVED), "the key exchange to begin")
        await eventually(lambda: not app.connections, "the closed connection to be dropped",
                         wait=5)
        await eventually(lambda: not any(a.pending.calls for a in app.gateway._accounts.values()),
                         "the abandoned login to stop waiting", wait=5)


async def test_shutdown_does_not_wait_for_a_login_stuck_on_telegram(
        tmp_path: Path, silent_server: int) -> None:
    daemon = await _daemon(tmp_path, silent_server, **{"telegram.connect_timeout": 120.0,
                                                       "server.shutdown_timeout": 10.0})
    stopped = False
    try:
        app = daemon.app
        assert app is not None
        key = await app.store.create_api_key("k")
        RECEIVED.clear()
        async with await _verified(daemon, key) as ws:
            await ws.send(json.dumps({"event": TL, "data": {"phone": "+15551234567"}}))
            await eventually(lambda: bool(RECEIVED), "the key exchange to begin")
            started = time.monotonic()
            await daemon.stop()
            stopped = True
            assert time.monotonic() - started < timeout(5)
    finally:
        if not stopped:
            await daemon.stop()


def test_the_retry_and_deadline_settings_reach_telethon(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{
        "telegram.backend": "telegram", "telegram.api_id": 1, "telegram.api_hash": "x" * 32,
        "telegram.request_retries": 3, "telegram.connection_retries": 2,
        "telegram.connect_timeout": 7.0})
    client = telegram_client_factory(config.telegram)(StringSession())
    try:
        assert client._request_retries == 3
        assert client._connection_retries == 2
        assert client._timeout == 7.0  # each TCP connect attempt
        # After the last retry of a 5xx, Telethon raises Telegram's error, not ValueError.
        assert client._raise_last_call_error is True
    finally:
        client.session.close()
