"""Test helpers: config, websocket helpers, a daemon in a thread.

Timeouts are scaled by TGWS_TEST_TIMEOUT_FACTOR (default 1) instead of hard-coding sleeps
longer "to be safe": the machine is small and noisy, CI can raise the factor.
TGWS_TEST_STORE=postgresql runs the daemons of make_config() on the PostgreSQL store (a schema
each on the session's test server, tests/pgserver.py) instead of sqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tgws.config import Config, load
from tgws.context import App
from tgws.daemon import Daemon

TIMEOUT_FACTOR = float(os.environ.get("TGWS_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_bench(script: str, *args: str, wait: float = 120.0) -> str:
    """Run bench/``script`` with ``args`` in a child Python, within ``wait`` seconds (scaled);
    its stdout. A failed run fails the test with both of its outputs."""
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=timeout(wait), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


_PG_SCHEMAS: dict[Path, str] = {}


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "server.host": "127.0.0.1",
        "server.port": 0,
        "store.path": str(tmp_path / "tgws.db"),
        "telegram.backend": "sandbox",
        "log.level": "INFO",
    }
    if os.environ.get("TGWS_TEST_STORE") == "postgresql" and "store.url" not in overrides:
        # The daemon suites on the PostgreSQL store: a schema per tmp_path, so that two
        # configs of one test share a store as they would share its sqlite file.
        from tests.pgserver import shared_server

        if tmp_path not in _PG_SCHEMAS:
            _PG_SCHEMAS[tmp_path] = shared_server().new_schema()
        values["store.url"] = _PG_SCHEMAS[tmp_path]
    values.update(overrides)
    return load(None, environ={}, overrides=values)


# The end-to-end suites run the hostile world (its content, data centres and fault kinds) at
# 1 % of calls failing, not its default 5 %: Telethon sleeps a fixed 2 s after every 5xx and
# a dropped connection costs a reconnect (client/users.py, mtprotosender.py), so each
# 25,000-message test took ~20 s at 5 % and ~13 s at 2 % against ~2 s with no faults. The
# soak (tests/test_soak.py) and tests/test_hostile_streams.py run at the full 5 %.
HOSTILE_E2E_FAULT_RATE = 0.01


def world_settings(world: str) -> dict[str, Any]:
    """Config overrides for a sandbox world named by conftest.sandbox_world: "calm" (the demo
    world) or "hostile" (the hostile world, its fault plan at HOSTILE_E2E_FAULT_RATE)."""
    if world == "calm":
        return {}
    if world == "hostile":
        return {"sandbox.hostile": True, "sandbox.fault_rate": HOSTILE_E2E_FAULT_RATE}
    raise ValueError(f"unknown sandbox world {world!r}")


def world_toml(world: str) -> str:
    """world_settings(world) as lines of a [sandbox] table (for tests that write a file)."""
    return "".join(f"{key.split('.', 1)[1]} = {str(value).lower()}\n"
                   for key, value in world_settings(world).items())


@contextlib.asynccontextmanager
async def started(config: Config) -> AsyncIterator[Daemon]:
    """A daemon started on ``config``, stopped after the block whatever happens."""
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@contextlib.asynccontextmanager
async def started_with_key(config: Config, name: str) -> AsyncIterator[tuple[Daemon, App, str]]:
    """started(config), with its app and a new API key called ``name``."""
    async with started(config) as daemon:
        assert daemon.app is not None
        yield daemon, daemon.app, await daemon.app.store.create_api_key(name)


def ws_url(daemon: Daemon) -> str:
    return f"ws://127.0.0.1:{daemon.port}{daemon.config.server.path}"


async def open_ws(daemon: Daemon, **options: Any) -> ClientConnection:
    """A client connection; `options` override websockets' connect() defaults used here."""
    return await connect(ws_url(daemon), **{"max_size": 2**24, "compression": None, **options})


async def recv_json(ws: ClientConnection, wait: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout(wait)):
        raw = await ws.recv()
    assert isinstance(raw, str), "tgws sends text frames only"
    data = json.loads(raw)
    assert isinstance(data, dict)
    return data


async def ask(
    ws: ClientConnection, event: str, data: Any = None, wait: float = 10.0
) -> dict[str, Any]:
    frame: dict[str, Any] = {"event": event}
    if data is not None:
        frame["data"] = data
    await ws.send(json.dumps(frame))
    return await recv_json(ws, wait)


def expect(reply: dict[str, Any], event: str, status: str, message: Any) -> None:
    assert reply == {"event": event, "data": {"status": status, "message": message}}, reply


async def wait_closed(ws: ClientConnection, wait: float = 10.0) -> int | None:
    """Wait until the server closes; return its close code."""
    async with asyncio.timeout(timeout(wait)):
        await ws.wait_closed()
    return ws.close_code


async def eventually(check: Callable[[], bool], what: str, wait: float = 10.0) -> None:
    """Wait until `check()` holds, polling; fail naming `what` after the scaled `wait`.

    For conditions that nothing signals (a counter in the daemon that drops after a timer):
    the test waits on the condition itself, never for a guessed number of seconds.
    """
    deadline = asyncio.get_running_loop().time() + timeout(wait)
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # poll interval


async def logged_in(daemon: Daemon, key: str, phone: str = "+919876543210",
                    **options: Any) -> ClientConnection:
    """A connection that passed login and telegram login (code 12345 in the sandbox)."""
    ws = await open_ws(daemon, **options)
    reply = await ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "send phone number":
        expect(
            await ask(ws, "telegram login", {"phone": phone}),
            "telegram login",
            "success",
            "send code",
        )
        expect(
            await ask(ws, "telegram login", {"code": "12345"}),
            "telegram login",
            "success",
            "logged in successfully",
        )
    else:
        expect(reply, "login", "success", "session already exists, call 'users'.")
    return ws


async def collect_stream(
    ws: ClientConnection, event: str, wait: float = 60.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read one stream: the "sending ..." reply, the items, and the "done" reply."""
    first = await recv_json(ws, wait)
    expect(first, event, "success", f"sending {event}")
    items: list[dict[str, Any]] = []
    while True:
        reply = await recv_json(ws, wait)
        data = reply["data"]
        assert reply["event"] == event, reply
        if data["status"] == "progress":
            continue
        assert data["status"] == "success", reply
        if data["message"] == "done":
            return items, data
        items.append(data["message"])


class ThreadedDaemon:
    """A daemon on its own event loop in a thread, for synchronous tests (hypothesis)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedDaemon:
        self._thread.start()
        self.call(self.daemon.start())
        return self

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout(30))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.daemon.port}{self.config.server.path}"

    def __exit__(self, *exc: object) -> None:
        self.call(self.daemon.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout(10))
        self.loop.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A static HTTP server for ``directory`` on 127.0.0.1 (port 0), in a thread, quiet;
    yields its base URL ("http://127.0.0.1:PORT/")."""
    handler = partial(_QuietHandler, directory=str(directory))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        finally:
            httpd.shutdown()
            thread.join(timeout(10))
