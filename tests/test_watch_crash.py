"""A watch whose daemon is killed with SIGKILL: a new daemon's watch resumes with no gap.

The daemon runs as a process with the demo world ticking (a new message in testgroup00002
every tick). The account is not a member of that group, so nothing is pushed to it: every
new message reaches the watch by the periodic reconciliation, the path a restarted daemon
depends on. What was confirmed before the kill is not sent again; nothing after it is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.daemon_process import DaemonProcess, create_key
from tests.daemon_process import start_daemon as start
from tests.support import ask, expect, recv_json, timeout

GROUP = "testgroup00002"  # 120 messages in the demo world, one more per tick


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tgws.toml"
    path.write_text('[server]\nport = 0\n'
                    f'[store]\npath = "{tmp_path / "t.db"}"\n'
                    '[telegram]\nbackend = "sandbox"\n'
                    '[sandbox]\ntick = 0.2\n'
                    '[watch]\nreconcile_interval = 0.3\n')
    return path


async def watching(port: int, key: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/telegram/", compression=None)
    reply = await ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "send phone number":
        await ask(ws, "telegram login", {"phone": "+919876543210"})
        expect(await ask(ws, "telegram login", {"code": "12345"}), "telegram login",
               "success", "logged in successfully")
    await ws.send(json.dumps({"event": "watch", "data": {"group": [GROUP]}}))
    expect(await recv_json(ws), "watch", "success", "watching")
    return ws


async def read_ids(ws: ClientConnection, until: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while not until(items):
        data = (await recv_json(ws, 20))["data"]
        assert data["kind"] == "message", data
        items.append(data)
    return items


async def buffered(ws: ClientConnection) -> list[dict[str, Any]]:
    """The watch items left in the client's buffer of a connection whose daemon died."""
    items: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            data = json.loads(await asyncio.wait_for(ws.recv(), timeout(20)))["data"]
            assert data["kind"] == "message", data
            items.append(data)
    return items


def committed(db: Path) -> int | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT max(value) FROM offsets WHERE kind = 'chats'").fetchone()
    return None if row[0] is None else int(row[0])


async def wait_committed_past(db: Path, value: int) -> int:
    deadline = time.monotonic() + timeout(20)
    while True:
        found = committed(db)
        if found is not None and found > value:
            return found
        assert time.monotonic() < deadline, f"nothing past {value} committed"
        await asyncio.sleep(0.02)  # poll interval


async def test_a_watch_killed_with_its_daemon_resumes_with_no_gap(
        tmp_path: Path, config_file: Path, processes: list[DaemonProcess]) -> None:
    first = start(tmp_path, config_file, processes, "first")
    key = create_key(config_file, "watcher")
    ws = await watching(first.port, key)
    items = await read_ids(ws, lambda items: any(i["path"] == "reconcile" for i in items[-1:])
                           and len(items) >= 123)
    received = [i["message"]["chat"]["id"] for i in items]
    assert received == list(range(1, len(received) + 1))  # catch-up 1-120, then new ones
    assert {i["path"] for i in items[:120]} == {"catch-up"}
    await wait_committed_past(tmp_path / "t.db", 120)  # a live item was confirmed
    first.signal(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    # What the daemon sent while the test waited for the commit: the client's websocket
    # library read it (and answered the pings that confirmed it) without the test reading
    # it yet. It is in the library's buffer, then the connection ends (the daemon is gone).
    received += [i["message"]["chat"]["id"] for i in await buffered(ws)]
    assert received == list(range(1, len(received) + 1))
    confirmed = committed(tmp_path / "t.db")
    assert confirmed is not None and 120 < confirmed <= received[-1]
    await ws.close()

    second = start(tmp_path, config_file, processes, "second")
    ws = await watching(second.port, key)
    resumed_items = await read_ids(ws, lambda items: len(items) >= 3)
    resumed = [i["message"]["chat"]["id"] for i in resumed_items]
    # The restarted world ticks from message 121 again; the watch resumes right after what
    # was confirmed before the kill, in order, with nothing in between missing.
    assert resumed[0] == confirmed + 1, (confirmed, resumed)
    assert resumed[0] <= received[-1] + 1
    assert resumed == list(range(resumed[0], resumed[0] + len(resumed)))
    await ws.close()
