"""Issue 11 with the daemon as a process: descriptors, and a bounded abuse soak.

The daemon runs as `python -m tgws serve` (tests/daemon_process.py) so its descriptor limit
can be lowered and its memory read from /proc/PID/status while it is attacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.abuse_support import half_handshake, ping_until_refused, raw_upgrade
from tests.daemon_process import DaemonProcess
from tests.support import ask, collect_stream, expect, timeout
from tgws.store import Store

PATH = "/ws/telegram/"
SOAK_SECONDS = 12.0
# Peak VmRSS the soak allows, above the daemon's own after start-up. The ping flood
# alone added 94 MB; everything the attackers can make the daemon hold here is bounded by
# the pools (32 + 8 per address) times max_write_buffer (256 KiB), about 10 MiB.
RSS_GROWTH_BOUND_KB = 40 * 1024


def write_config(tmp: Path, **server: Any) -> Path:
    lines = ["[server]", "port = 0"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in server.items()]
    lines += ["[store]", f'path = "{tmp / "tgws.db"}"', "[telegram]", 'backend = "sandbox"',
              "[log]", 'level = "INFO"']
    path = tmp / "tgws.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def create_key(tmp: Path) -> str:
    store = await Store.open(str(tmp / "tgws.db"))
    try:
        return await store.create_api_key("legit")
    finally:
        await store.close()


def nofile(limit: int, hard: int | None = None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit if hard is None else hard))
    return apply


def vmrss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def legit_session(port: int, key: str, *, stream: bool) -> float:
    """Log in like a real client (sandbox code 12345); returns the seconds login took."""
    started = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}{PATH}", max_size=2**24,
                       compression=None) as ws:
        reply = await ask(ws, "login", {"apiKey": key})
        if reply["data"]["message"] == "send phone number":
            expect(await ask(ws, "telegram login", {"phone": "+919876543210"}),
                   "telegram login", "success", "send code")
            expect(await ask(ws, "telegram login", {"code": "12345"}),
                   "telegram login", "success", "logged in successfully")
        else:
            expect(reply, "login", "success", "session already exists, call 'users'.")
        took = time.monotonic() - started
        if stream:
            await ws.send(json.dumps({"event": "chats", "data": {
                "group": [{"name": "testgroup00001", "status": ""}], "status": ""}}))
            items, done = await collect_stream(ws, "chats")
            assert len(items) == done["count"] == 1000, done
    return took


# --- descriptors ------------------------------------------------------------------------------
async def test_a_low_descriptor_limit_is_reported_and_a_handshake_storm_stays_quiet(
        tmp_path: Path) -> None:
    key = await create_key(tmp_path)
    proc = DaemonProcess(tmp_path, "--config", str(write_config(tmp_path)),
                         preexec_fn=nofile(64))
    socks: list[socket.socket] = []
    try:
        port = await asyncio.to_thread(proc.wait_ready)
        assert "RLIMIT_NOFILE is 64" in proc.stderr
        # The storm: half-sent handshakes, more than there are descriptors.
        for _ in range(4):
            socks += await asyncio.gather(*(half_handshake(port, PATH, "127.0.0.2")
                                            for _ in range(60)))
        took = await legit_session(port, key, stream=False)
        assert took < timeout(5), f"a real login took {took:.1f} s during the storm"
        await asyncio.sleep(2)  # let the accept loop retry a couple of times
        storm_lines = [line for line in proc.stderr_lines if "accept()" in line]
        print(f"storm: login took {took:.2f} s; {len(storm_lines)} accept() log lines")
        assert len(storm_lines) <= 3, "".join(storm_lines[:20])
    finally:
        for sock in socks:
            sock.close()
        proc.close()


def test_a_short_soft_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    hard = min(8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    proc = DaemonProcess(tmp_path, "--config", str(write_config(tmp_path)),
                         preexec_fn=nofile(256, hard))
    try:
        proc.wait_ready()
        with open(f"/proc/{proc.proc.pid}/limits") as limits:
            line = next(row for row in limits if row.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
        if hard >= 2 * 1000 + 64 + 64:
            assert "RLIMIT_NOFILE" not in proc.stderr
    finally:
        proc.close()


# --- the soak ---------------------------------------------------------------------------------
async def test_abuse_soak_memory_stays_bounded_and_the_real_client_is_served(
        tmp_path: Path) -> None:
    key = await create_key(tmp_path)
    config = write_config(tmp_path, login_timeout=3.0, max_unverified=32,
                          max_unverified_per_address=8, write_limit=16384,
                          max_write_buffer=262144, write_timeout=5.0)
    proc = DaemonProcess(tmp_path, "--config", str(config))
    stop = asyncio.Event()
    counts = {"never_login": 0, "ping_flood": 0, "bad_key": 0, "half_open": 0}
    try:
        port = await asyncio.to_thread(proc.wait_ready)
        pid = proc.proc.pid
        baseline = vmrss_kb(pid)
        peak = baseline

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, vmrss_kb(pid))
                await asyncio.sleep(0.1)

        async def forever(name: str, attack: Callable[[], Coroutine[Any, Any, None]]) -> None:
            while not stop.is_set():
                counts[name] += 1
                with contextlib.suppress(OSError, ConnectionClosed, InvalidStatus,
                                         TimeoutError, AssertionError):
                    await attack()
                await asyncio.sleep(0.01)

        held: list[socket.socket] = []

        async def never_login() -> None:
            held.append(await raw_upgrade(port, PATH, "127.0.0.2"))
            if len(held) > 40:
                held.pop(0).close()

        async def ping_flood() -> None:
            sock = await raw_upgrade(port, PATH, "127.0.0.3", rcvbuf=4096)
            try:
                async with asyncio.timeout(5):
                    await ping_until_refused(sock, 8 * 2**20)
            finally:
                sock.close()

        async def bad_keys() -> None:
            async with connect(f"ws://127.0.0.1:{port}{PATH}",
                               local_addr=("127.0.0.4", 0)) as ws:
                while True:
                    await ask(ws, "login", {"apiKey": "tgws_" + "x" * 43})

        half: list[socket.socket] = []

        async def half_open() -> None:
            half.append(await half_handshake(port, PATH, "127.0.0.5"))
            if len(half) > 40:
                half.pop(0).close()

        tasks = [asyncio.create_task(sample()),
                 asyncio.create_task(forever("never_login", never_login)),
                 asyncio.create_task(forever("ping_flood", ping_flood)),
                 asyncio.create_task(forever("bad_key", bad_keys)),
                 asyncio.create_task(forever("half_open", half_open))]
        started = time.monotonic()
        sessions = 0
        try:
            await asyncio.sleep(1.0)  # the attack is under way before the real client comes
            while sessions == 0 or time.monotonic() - started < SOAK_SECONDS:
                # Never refused: no 503, no close; the whole group arrives every time.
                await legit_session(port, key, stream=True)
                sessions += 1
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sock in held + half:
                sock.close()
        print(f"soak: {sessions} sessions, {counts}, VmRSS {baseline} -> peak {peak} kB")
        assert all(counts.values()), counts
        assert peak - baseline < RSS_GROWTH_BOUND_KB, (
            f"VmRSS grew {peak - baseline} kB (from {baseline} kB) under {counts}")
        assert proc.proc.poll() is None
    finally:
        proc.close()
