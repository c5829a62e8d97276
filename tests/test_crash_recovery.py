"""A daemon process killed or stopped mid-stream: the next `latest` resumes without a gap."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.daemon_process import DaemonProcess, create_key
from tests.daemon_process import start_daemon as start
from tests.support import ask, collect_stream, expect, recv_json, timeout, world_toml

GROUP = "testgroup00001"  # 1,000 messages in the demo world


# The SIGKILL test runs with the sandbox in both modes (conftest.sandbox_wire): with
# `wire = true` Telethon parses every answer from TL bytes, as it does Telegram's. The other
# two are about signals and shutdown, which the mode does not touch: objects only, for time.
OBJECTS_ONLY = pytest.mark.parametrize("sandbox_wire", [False], ids=["objects"])


@pytest.fixture
def config_file(tmp_path: Path, sandbox_wire: bool, sandbox_world: str) -> Path:
    """Both sandbox modes and both worlds (conftest.sandbox_world): a restarted process
    builds the same world from the same seed, hostile or calm."""
    path = tmp_path / "tgws.toml"
    path.write_text(f'[server]\nport = 0\nshutdown_timeout = 5.0\n'
                    f'[store]\npath = "{tmp_path / "t.db"}"\n'
                    '[telegram]\nbackend = "sandbox"\n'
                    f'[sandbox]\nwire = {str(sandbox_wire).lower()}\n'
                    + world_toml(sandbox_world))
    return path


async def open_client(port: int) -> ClientConnection:
    # A stalled consumer: a small queue (the websocket stack stops reading, and so stops
    # answering pings, soon after the application does) and a small kernel receive buffer
    # (so the daemon is blocked mid-stream on backpressure, not done writing).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await connect(f"ws://127.0.0.1:{port}/ws/telegram/", sock=sock, max_queue=4,
                         compression=None)


async def start_stream(port: int, key: str) -> tuple[ClientConnection, list[int]]:
    ws = await open_client(port)
    reply = await ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "send phone number":
        await ask(ws, "telegram login", {"phone": "+919876543210"})
        expect(await ask(ws, "telegram login", {"code": "12345"}), "telegram login",
               "success", "logged in successfully")
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": GROUP, "status": "latest"}], "status": ""}}))
    expect(await recv_json(ws), "chats", "success", "sending chats")
    seen = [(await recv_json(ws))["data"]["message"]["chat"]["id"] for _ in range(150)]
    return ws, seen


async def drain(ws: ClientConnection) -> tuple[list[int], int | None]:
    """Everything the client's websocket stack still delivers, and the close code.

    The stream must not have finished: the daemon sends "done" only after the client
    confirmed everything, which this stalled client never did.
    """
    found: list[int] = []
    while True:
        try:
            async with asyncio.timeout(timeout(20)):
                raw = await ws.recv()
        except ConnectionClosed:
            return found, ws.close_code
        message = json.loads(raw)["data"]["message"]
        assert message != "done", "the stream was not interrupted"
        if isinstance(message, dict):
            found.append(message["chat"]["id"])


async def resume(port: int, key: str, group: str = GROUP) -> list[int]:
    """The message ids a `latest` chats stream of ``group`` delivers now."""
    async with await open_client(port) as ws:
        expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
               "session already exists, call 'users'.")
        await ws.send(json.dumps({"event": "chats", "data": {
            "group": [{"name": group, "status": "latest"}], "status": ""}}))
        items, _ = await collect_stream(ws, "chats")
    return [item["chat"]["id"] for item in items]


def assert_no_gap(received: list[int], resumed: list[int]) -> None:
    assert received == list(range(1, len(received) + 1)), "the first stream is in order"
    assert resumed, "the rest must come after the restart"
    assert resumed[0] <= received[-1] + 1, f"gap: got up to {received[-1]}, resumed at " \
                                           f"{resumed[0]}"
    assert resumed == list(range(resumed[0], resumed[-1] + 1))
    assert resumed[-1] >= 1000


async def restart_and_resume(tmp_path: Path, config_file: Path,
                             processes: list[DaemonProcess], key: str,
                             received: list[int]) -> None:
    """The store survived intact; a new daemon's `latest` continues with no gap.

    The stalled client's stack stopped answering pings early, so the daemon may have
    committed only what those pongs confirmed, whatever it had written into the socket.
    """
    assert integrity(tmp_path / "t.db") == "ok"
    second = start(tmp_path, config_file, processes, "second")
    resumed = await resume(second.port, key)
    assert resumed[0] > 1, "confirmed items were committed before the stop"
    assert_no_gap(received, resumed)


async def wait_committed(db: Path, wait: float = 10.0) -> int:
    """The chats offset the daemon committed, once it has committed one.

    The client's websocket stack answered the ping sent after the first batch while the test
    read 150 items; the daemon commits that batch when the pong is in. Stopping the daemon
    before then would leave nothing to resume from, so wait for the commit itself, read from
    the store as another process would (WAL lets a reader in beside the daemon's writer).
    """
    deadline = time.monotonic() + timeout(wait)
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT max(value) FROM offsets WHERE kind = 'chats'").fetchone()
        if row[0] is not None:
            return int(row[0])
        assert time.monotonic() < deadline, "the daemon committed no offset"
        await asyncio.sleep(0.02)  # poll interval


async def stream_on_first(tmp_path: Path, config_file: Path, processes: list[DaemonProcess]
                          ) -> tuple[DaemonProcess, str, ClientConnection, list[int]]:
    """A first daemon, a key, and a stalled client mid-stream on it (start_stream)."""
    first = start(tmp_path, config_file, processes, "first")
    key = create_key(config_file, "client")
    ws, seen = await start_stream(first.port, key)
    return first, key, ws, seen


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return result


async def test_sigkill_mid_stream_then_latest_after_restart_has_no_gap(
        tmp_path: Path, config_file: Path, processes: list[DaemonProcess]) -> None:
    first, key, ws, seen = await stream_on_first(tmp_path, config_file, processes)
    await wait_committed(tmp_path / "t.db")
    first.proc.kill()
    first.proc.wait(timeout(10))
    more, _ = await drain(ws)
    await restart_and_resume(tmp_path, config_file, processes, key, seen + more)


@OBJECTS_ONLY
async def test_sigterm_mid_stream_closes_1001_commits_and_resumes_without_a_gap(
        tmp_path: Path, config_file: Path, processes: list[DaemonProcess]) -> None:
    first, key, ws, seen = await stream_on_first(tmp_path, config_file, processes)
    await wait_committed(tmp_path / "t.db")
    first.signal(signal.SIGTERM)
    more, code = await drain(ws)  # reading again lets the close frame through
    assert code == 1001
    assert first.wait_exit() == 0
    first.wait_notify("STOPPING=1")
    await restart_and_resume(tmp_path, config_file, processes, key, seen + more)


@OBJECTS_ONLY
async def test_a_second_signal_exits_at_once(
        tmp_path: Path, config_file: Path, processes: list[DaemonProcess]) -> None:
    # No wait after this: the stream is under way and the client has stopped reading, so the
    # daemon's close frame queues behind unread data whenever the stop comes.
    first, _, ws, _ = await stream_on_first(tmp_path, config_file, processes)
    # The client is stalled: a graceful stop would wait up to shutdown_timeout (5 s) for
    # its close handshake. The operator's second Ctrl-C must not wait for that.
    first.signal(signal.SIGINT)
    first.wait_log("shutting down")
    started = time.monotonic()
    first.signal(signal.SIGINT)
    assert first.wait_exit() == 1
    assert time.monotonic() - started < 3.0
    ws.transport.abort()
