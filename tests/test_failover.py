"""Three daemons on one PostgreSQL and one shared sandbox Telegram: ownership wired end to end.

Each account's session is run by the daemon holding its lease (tgws/ownership_guard.py); a
client on another daemon is forwarded there (tgws/forwarding.py); when the owner dies or is
paused past its lease, another daemon takes the account over. The shared sandbox
(`tgws sandbox serve`) answers AUTH_KEY_DUPLICATED when one auth key is used from two
processes at once and records it: every test ends with `stats["duplicates"] == []`.
Leases are short here ([store] lease_ttl) so the tests stay bounded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.daemon_process import DaemonProcess
from tests.sandbox_process import SandboxProcess
from tests.support import ask, expect, timeout
from tests.test_crash_recovery import (
    GROUP,
    assert_no_gap,
    drain,
    open_client,
    resume,
    start_stream,
)
from tests.test_store_postgres_daemon import wait_committed
from tgws.sandbox.remote import admin

LEASE = timeout(3.0)  # [store] lease_ttl for these daemons


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    server = SandboxProcess(idle_timeout=2.0)
    yield server
    server.stop()


@pytest.fixture
def daemons(tmp_path: Path, database: str,
            sandbox: SandboxProcess) -> Iterator[list[DaemonProcess]]:
    """Three `tgws serve` daemons on loopback ports, one database, one sandbox world."""
    config = tmp_path / "tgws.toml"
    config.write_text('[server]\nport = 0\nshutdown_timeout = 5.0\n'
                      f'[store]\nurl = "{database}"\nlease_ttl = {LEASE}\n'
                      '[telegram]\nbackend = "sandbox"\n'
                      f'[sandbox]\nurl = "{sandbox.url}"\n')
    started: list[DaemonProcess] = []
    try:
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            started.append(DaemonProcess(tmp_path / name, "--config", str(config)))
        for proc in started:
            proc.wait_ready()
        yield started
    finally:
        for proc in started:
            if proc.proc.poll() is None:
                proc.signal(signal.SIGCONT)  # a stopped one must be able to die
            proc.close()
            print(f"--- daemon {proc.port} ---\n{proc.stderr}")  # shown when a test fails


def create_key(daemons: list[DaemonProcess]) -> str:
    config = daemons[0].tmp.parent / "tgws.toml"
    out = subprocess.run([sys.executable, "-m", "tgws", "apikey", "--config", str(config),
                          "create", "client"], capture_output=True, text=True, check=True,
                         timeout=timeout(30))
    return out.stdout.strip().splitlines()[-1]


async def owner_port(database: str) -> int | None:
    """The port of the daemon holding the (only) key's live lease, read from PostgreSQL."""
    conn = await asyncpg.connect(database)
    try:
        address = await conn.fetchval(
            "SELECT d.address FROM leases l JOIN daemons d ON d.id = l.owner "
            "WHERE l.expires_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint")
    finally:
        await conn.close()
    return None if address is None else int(str(address).rsplit(":", 1)[1])


async def offsets(database: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(database)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT * FROM offsets ORDER BY 1, 2, 3")]
    finally:
        await conn.close()


async def no_duplicates(sandbox: SandboxProcess) -> None:
    stats = await admin(sandbox.url, "stats")
    assert stats["duplicates"] == [], stats["duplicates"]
    assert stats["answered_duplicated"] == 0, stats


async def drain_replies(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame the connection still delivers, and its close code."""
    replies: list[dict[str, Any]] = []
    while True:
        try:
            async with asyncio.timeout(timeout(20)):
                replies.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            return replies, ws.close_code


async def requests_from(sandbox: SandboxProcess, daemon: DaemonProcess) -> int:
    """How many requests the sandbox has received from the daemon's process (its origin)."""
    stats = await admin(sandbox.url, "stats")
    mine = f"pid{daemon.proc.pid}-"
    return sum(n for origin, n in stats["requests_by_origin"].items() if origin.startswith(mine))


async def test_a_client_on_a_non_owner_daemon_is_forwarded_to_the_owner(
        daemons: list[DaemonProcess], database: str, sandbox: SandboxProcess) -> None:
    key = create_key(daemons)
    owner, other = daemons[0], daemons[1]
    first, seen = await start_stream(owner.port, key)  # logs in; streams; holds the account
    try:
        assert await owner_port(database) == owner.port
        answer = await admin(sandbox.url, "post", chat="testgroup00002", text="via the owner")
        # A second client on another daemon, while the owner runs the account: served,
        # through the owner (one auth key in use, from one process).
        items = await resume(other.port, key, "testgroup00002")
        assert items and items[-1] == answer["id"]
        other.wait_log("forwarded to")
        assert await owner_port(database) == owner.port, "the account did not move"
    finally:
        await first.close()
    assert seen == list(range(1, 151))
    await no_duplicates(sandbox)


async def test_a_forwarded_client_that_drops_mid_stream_loses_nothing_the_owner_committed(
        daemons: list[DaemonProcess], database: str, sandbox: SandboxProcess) -> None:
    """The owner's acknowledgements are pongs. The forwarding daemon in between must not
    answer them itself: it would confirm every item it had read, though thousands may still
    sit in its buffers and the kernel's on the way to a client that stopped reading, and a
    client that then drops would never get them, nor `latest` after them."""
    key = create_key(daemons)
    owner, other = daemons[0], daemons[1]
    holder = await open_client(owner.port)  # logs the account in on the owner and holds it
    try:
        reply = await ask(holder, "login", {"apiKey": key})
        assert reply["data"]["message"] == "send phone number", reply
        await ask(holder, "telegram login", {"phone": "+919876543210"})
        expect(await ask(holder, "telegram login", {"code": "12345"}), "telegram login",
               "success", "logged in successfully")
        assert await owner_port(database) == owner.port
        # A stalled consumer on the other daemon: forwarded to the owner, reads 150 items.
        ws, seen = await start_stream(other.port, key)
        other.wait_log("forwarded to")
        assert await wait_committed(database) >= 1  # what its stack confirmed while reading
        # The owner goes on writing the group into the buffers on the way (the group's 1,000
        # messages fit in them) and pings every 0.25 s ([streaming] ack_interval): give it
        # the time to ask for ten acknowledgements more, which only the client may give.
        await asyncio.sleep(timeout(2.5))
        ws.transport.abort()  # the client drops: what its stack had read is all it got
        more, _ = await drain(ws)
        seen += more
        assert await owner_port(database) == owner.port
        assert_no_gap(seen, await resume(owner.port, key))
    finally:
        await holder.close()
    await no_duplicates(sandbox)


async def test_sigkill_of_the_owner_mid_stream_another_daemon_takes_over_without_a_gap(
        daemons: list[DaemonProcess], database: str, sandbox: SandboxProcess) -> None:
    key = create_key(daemons)
    owner, taker = daemons[0], daemons[2]
    ws, seen = await start_stream(owner.port, key)
    assert await owner_port(database) == owner.port
    assert await wait_committed(database) >= 1  # the owner committed what was confirmed
    owner.proc.kill()
    owner.proc.wait(timeout(10))
    killed = time.monotonic()
    more, _ = await drain(ws)
    # The client reconnects (through the load balancer) to another daemon: it waits for the
    # dead owner's lease to expire, takes the account over, and resumes after the last item
    # the client confirmed.
    # The takeover itself is timed (the lease row changing hands), not the stream after it.
    resuming = asyncio.ensure_future(resume(taker.port, key))
    try:
        while await owner_port(database) != taker.port:
            if resuming.done():
                await resuming  # its error, if it failed
                pytest.fail("the client was served without the lease changing hands")
            assert time.monotonic() - killed < LEASE + timeout(10), "no takeover"
            await asyncio.sleep(0.02)  # poll interval: a row in PostgreSQL
        took = time.monotonic() - killed
        resumed = await resuming
    finally:
        resuming.cancel()
    # The dead owner's lease ends at most LEASE after its last heartbeat; the taker polls it
    # every LEASE / 10.
    assert took < LEASE + timeout(3), took
    assert await owner_port(database) == taker.port
    taker.wait_log("took the lease")
    assert resumed[0] > 1, "confirmed items were committed before the kill"
    assert_no_gap(seen + more, resumed)
    await no_duplicates(sandbox)


async def test_a_paused_owner_makes_no_call_and_commits_nothing_after_losing_its_lease(
        daemons: list[DaemonProcess], database: str, sandbox: SandboxProcess) -> None:
    key = create_key(daemons)
    owner, taker = daemons[0], daemons[1]
    ws, seen = await start_stream(owner.port, key)  # mid-stream, a stalled consumer
    assert await owner_port(database) == owner.port
    assert await wait_committed(database) >= 1
    # A second client of the key on the owner, logged in and idle...
    waiting = await open_client(owner.port)
    expect(await ask(waiting, "login", {"apiKey": key}), "login", "success",
           "session already exists, call 'users'.")
    # The login reply goes out before the daemon places the connection (served here or
    # forwarded); the reply to a next request proves it was placed here, under the lease.
    placed = await ask(waiting, "nonsense", {})
    assert placed["data"]["status"] == "failed", placed
    owner.signal(signal.SIGSTOP)
    try:
        # ...asks for another group while the owner is stopped: the request waits in the
        # owner's socket and is the first thing it reads when it wakes, past its deadline.
        await waiting.send(json.dumps({"event": "chats", "data": {
            "group": [{"name": "testgroup00002", "status": "latest"}], "status": ""}}))
        resumed = await resume(taker.port, key)  # waits out the paused owner's lease
        assert await owner_port(database) == taker.port
        # What the owner sent before it lost the lease (some of it maybe while stopped:
        # bytes already in its socket); from here on the count must not move.
        sent_before = await requests_from(sandbox, owner)
        assert sent_before > 0, "the owner's requests are not told apart by origin"
        assert_no_gap(seen, resumed)
        committed = await offsets(database)
        assert committed, "the new owner committed what its client confirmed"
    finally:
        owner.signal(signal.SIGCONT)
    # Awake again: its deadline passed while it was stopped, so it fences at once.
    owner.wait_log("lost the lease on key")
    code = (await drain(ws))[1]
    assert code == 1013, code  # its client is told to reconnect
    # The request that was waiting is not served from the lost session: no item, and the
    # connection too is told to reconnect.
    answered, code = await drain_replies(waiting)
    assert code == 1013, (code, answered)
    assert not [r for r in answered if isinstance(r["data"].get("message"), dict)], answered
    assert await offsets(database) == committed, "the paused owner committed after its loss"
    # The new owner keeps running the account: any request the old one sent now with the
    # key would be AUTH_KEY_DUPLICATED, recorded by the sandbox.
    answer = await admin(sandbox.url, "post", chat=GROUP, text="after the pause")
    assert await resume(taker.port, key) == [answer["id"]]
    assert await owner_port(database) == taker.port
    assert owner.proc.poll() is None, "the old owner lives on, serving nothing of this key"
    # Not one request from it since the takeover: not the re-send of a request it had in
    # flight, nor Telethon's get_me after a reconnect (not only none while the new owner
    # happened to use the key, which is all AUTH_KEY_DUPLICATED would show).
    assert await requests_from(sandbox, owner) == sent_before
    await no_duplicates(sandbox)
