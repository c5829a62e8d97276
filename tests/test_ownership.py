"""tgws.store.ownership: one owner per API key's session, leases that expire, fencing tokens.

Against a real PostgreSQL (conftest.pg_server). Expiry is on the database's clock, so tests
that need a lease to expire use short ttls and wait for the expiry itself (polling the
condition under a scaled deadline), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.support import timeout
from tgws.errors import StoreError
from tgws.store import Offset, Store
from tgws.store.ownership import Lease, LeaseLost, Ownership

REPO_ROOT = Path(__file__).resolve().parents[1]


async def until(check: Callable[[], Awaitable[bool]], what: str, wait: float = 10.0) -> None:
    """Poll ``check`` until it holds (the condition itself), failing after a scaled wait."""
    try:
        async with asyncio.timeout(timeout(wait)):
            while not await check():  # noqa: ASYNC110 - a database row has no event to await
                await asyncio.sleep(0.02)  # poll interval
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def take_over(ownership: Ownership, api_key_id: int) -> Lease:
    """The key's lease for ``ownership`` as soon as the current one has expired."""
    taken: list[Lease] = []

    async def acquired() -> bool:
        lease = await ownership.acquire(api_key_id)
        if lease is not None:
            taken.append(lease)
        return bool(taken)

    await until(acquired, "the expired lease to be taken over")
    return taken[0]


async def test_one_owner_at_a_time_and_every_daemon_sees_who_and_where(
        store: Store, key_id: int) -> None:
    a = Ownership(store, "daemon-a", "10.0.0.1:9001")
    b = Ownership(store, "daemon-b", "10.0.0.2:9001")
    await a.register()
    await b.register()
    lease = await a.acquire(key_id)
    assert lease is not None and lease.token == 1 and lease.alive()
    assert await b.acquire(key_id) is None
    owner = await b.owner_of(key_id)
    assert owner is not None
    assert (owner.daemon_id, owner.address, owner.token, owner.expired) == (
        "daemon-a", "10.0.0.1:9001", 1, False)
    assert await b.owner_of(key_id + 1) is None


async def test_concurrent_contenders_for_a_free_key_end_with_exactly_one_owner(
        store: Store, key_id: int) -> None:
    daemons = [Ownership(store, f"daemon-{n}", f"10.0.0.{n}:9001") for n in range(8)]
    leases = await asyncio.gather(*(d.acquire(key_id) for d in daemons))
    winners = [lease for lease in leases if lease is not None]
    assert len(winners) == 1
    owner = await daemons[0].owner_of(key_id)
    assert owner is not None and owner.daemon_id == winners[0].owner


async def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_off(
        store: Store, key_id: int) -> None:
    # Long enough for a's first commit to land inside its lease on a loaded machine.
    a = Ownership(store, "daemon-a", "a:1", ttl=timeout(2.0))
    b = Ownership(store, "daemon-b", "b:1", ttl=5.0)
    old = await a.acquire(key_id)
    assert old is not None
    await a.commit_offset(old, "chats", 1, Offset(10))  # fenced commits work while it holds
    new = await take_over(b, key_id)  # a never renewed: a paused or partitioned owner
    assert new.token == old.token + 1
    # The old owner's own clock already told it: no more Telegram calls.
    assert not old.alive()
    with pytest.raises(LeaseLost):
        old.check()
    # And the database refuses its commits, whatever its clock says.
    with pytest.raises(LeaseLost):
        await a.commit_offset(old, "chats", 1, Offset(20))
    with pytest.raises(LeaseLost):
        await a.renew(old)
    assert await store.get_offset(key_id, "chats", 1) == Offset(10)
    await b.commit_offset(new, "chats", 1, Offset(30))
    assert await store.get_offset(key_id, "chats", 1) == Offset(30)


async def test_the_database_fences_a_commit_even_when_the_holders_clock_disagrees(
        store: Store, key_id: int) -> None:
    frozen = 0.0  # a holder whose clock claims no time passed (a clock that lies)
    a = Ownership(store, "daemon-a", "a:1", ttl=0.5, clock=lambda: frozen)
    b = Ownership(store, "daemon-b", "b:1")
    old = await a.acquire(key_id)
    assert old is not None
    await take_over(b, key_id)
    assert old.alive()  # the local check cannot see it...
    with pytest.raises(LeaseLost, match="no longer ours"):
        await a.commit_offset(old, "chats", 1, Offset(5))  # ...the fence does
    assert await store.get_offset(key_id, "chats", 1) is None


async def test_an_expired_lease_nobody_took_is_not_revived_by_a_late_heartbeat(
        store: Store, key_id: int) -> None:
    a = Ownership(store, "daemon-a", "a:1", ttl=0.3)
    old = await a.acquire(key_id)
    assert old is not None

    async def expired() -> bool:
        owner = await a.owner_of(key_id)
        return owner is not None and owner.expired

    await until(expired, "the lease to expire")
    with pytest.raises(LeaseLost):
        await a.renew(old)
    again = await a.acquire(key_id)
    assert again is not None and again.token == old.token + 1


async def test_a_released_lease_can_be_taken_at_once(store: Store, key_id: int) -> None:
    a = Ownership(store, "daemon-a", "a:1", ttl=60)
    b = Ownership(store, "daemon-b", "b:1", ttl=60)
    lease = await a.acquire(key_id)
    assert lease is not None
    await a.release(lease)
    taken = await b.acquire(key_id)
    assert taken is not None and taken.token == lease.token + 1
    # Released and taken again by the first owner: still a new token, never a repeated one.
    await b.release(taken)
    again = await a.acquire(key_id)
    assert again is not None and again.token == taken.token + 1


async def test_heartbeats_keep_the_lease_and_report_when_it_is_lost(
        store: Store, key_id: int, database: str) -> None:
    ttl = timeout(1.2)  # heartbeats every 0.4 s: a loaded machine may delay one or two
    a = Ownership(store, "daemon-a", "a:1", ttl=ttl)
    b = Ownership(store, "daemon-b", "b:1")
    lease = await a.acquire(key_id)
    assert lease is not None
    lost: asyncio.Queue[int] = asyncio.Queue()

    async def on_lost(api_key_id: int) -> None:
        await lost.put(api_key_id)

    beating = asyncio.create_task(a.heartbeat(on_lost))
    try:
        # Over two lease lifetimes, the heartbeat keeps it: b never gets it.
        loop = asyncio.get_running_loop()
        end = loop.time() + 2 * ttl
        while loop.time() < end:
            assert await b.acquire(key_id) is None
            await asyncio.sleep(0.1)  # spacing between b's attempts
        assert a.held[key_id].alive()
        # Someone ends it behind a's back (an operator; a database failover): a notices.
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("UPDATE leases SET expires_ms = 0")
        finally:
            await conn.close()
        assert await b.acquire(key_id) is not None
        async with asyncio.timeout(timeout(5)):
            assert await lost.get() == key_id
        assert key_id not in a.held
    finally:
        beating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beating


async def test_ownership_needs_the_postgresql_store(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "tgws.db") as sqlite:
        with pytest.raises(StoreError, match="PostgreSQL"):
            Ownership(sqlite, "daemon-a", "a:1")


# A daemon stand-in in its own process: holds the lease with heartbeats and, as a session
# would, checks the lease before each "Telegram call" and commits an offset after it.
_HOLDER = """
import asyncio, sys, time
from tgws.store import Offset, Store
from tgws.store.ownership import LeaseLost, Ownership

async def main(url, key_id):
    store = await Store.open(url)
    own = Ownership(store, "stopped-daemon", "s:1", ttl=3.0)
    lease = await own.acquire(key_id)
    assert lease is not None
    lost = asyncio.Event()
    async def on_lost(_):
        lost.set()
    beat = asyncio.create_task(own.heartbeat(on_lost))
    print("held", lease.token, flush=True)
    n = 0
    while True:
        lease = own.held.get(key_id, lease)
        try:
            lease.check()                   # before the Telegram call
        except LeaseLost:
            print("check refused", n, flush=True)
            break
        n += 1
        print("call", n, flush=True)        # the Telegram call would be here
        try:
            await own.commit_offset(lease, "chats", 1, Offset(n))
        except LeaseLost:
            print("commit refused", n, flush=True)
            break
        await asyncio.sleep(0.02)
    beat.cancel()
    await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_a_stopped_owner_makes_no_call_and_commits_nothing_after_losing_its_lease(
        store: Store, key_id: int, database: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, database, str(key_id), cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout(20)):
            first = (await proc.stdout.readline()).decode().split()
            assert first[0] == "held", first
            # Let it make a few calls and commits, then stop it (SIGSTOP: a paused VM, a GC).
            while not (line := await proc.stdout.readline()).startswith(b"call 3"):
                assert line.startswith(b"call"), f"the holder stopped early: {line!r}"
            proc.send_signal(signal.SIGSTOP)
        # Drain what it printed before the stop; the last call it made is the high mark.
        before: list[str] = []
        while True:
            try:
                async with asyncio.timeout(timeout(0.5)):
                    line = await proc.stdout.readline()
            except TimeoutError:
                break
            before.append(line.decode().strip())
        b = Ownership(store, "daemon-b", "b:1", ttl=60)
        new = await take_over(b, key_id)
        assert new.token == int(first[1]) + 1
        at_takeover = await store.get_offset(key_id, "chats", 1)
        proc.send_signal(signal.SIGCONT)
        async with asyncio.timeout(timeout(20)):
            out, err = await proc.communicate()
        after = out.decode().split("\n")
        assert proc.returncode == 0, err.decode()
        # Woken up past its deadline: it refused before any further call...
        assert after[0].startswith(("check refused", "commit refused")), after
        assert not [line for line in after if line.startswith("call")], after
        # ...and nothing it had in flight was committed after the takeover.
        assert await store.get_offset(key_id, "chats", 1) == at_takeover
        calls = [line for line in ["call 3", *before] if line.startswith("call")]
        assert at_takeover is not None
        assert at_takeover.value <= int(calls[-1].split()[1])
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
