"""tgws.ownership_guard: the daemon's side of ownership, against a real PostgreSQL and an
unmodified Telethon client on the sandbox (issue 15).

tests/test_failover.py shows the whole (three daemons, SIGKILL, SIGSTOP); there the client is
disconnected by the fence as soon as the paused daemon wakes, so the guard in front of the
sender is never the last line. Here each piece is shown alone: the check before every request
the client's sender is given, the fence timer at the lease's local deadline (no heartbeat
runs, as in a paused or partitioned daemon), offset commits that need the lease, and where a
client is routed.
"""

from __future__ import annotations

import pytest
from telethon import functions
from telethon.sessions import StringSession

from tests.support import eventually
from tests.test_ownership import take_over
from tgws.ownership_guard import AccountMoved, OwnershipGuard, fenced
from tgws.sandbox import World, sandbox_client
from tgws.store import Offset, Store
from tgws.store.ownership import Ownership
from tgws.store.postgres import PostgresStore


def guard_for(store: Store, name: str, ttl: float) -> tuple[OwnershipGuard, list[int]]:
    """A guard whose on_lost records the keys it was told about (the daemon's disconnects)."""
    guard = OwnershipGuard(Ownership(store, name, f"ws://{name}:1", ttl=ttl))
    lost: list[int] = []

    async def on_lost(api_key_id: int) -> None:
        lost.append(api_key_id)

    guard.on_lost = on_lost
    return guard, lost


async def test_a_guarded_client_sends_nothing_once_the_lease_deadline_passed(
        store: Store, key_id: int) -> None:
    world = World()
    alice = world.user("alice", first_name="Alice", phone="+15550001")
    guard, lost = guard_for(store, "daemon-a", ttl=1.0)
    await guard.hold(key_id)  # no heartbeat: nothing renews it
    async with sandbox_client(world, StringSession(world.session_string(alice))) as client:
        guard.guard_client(client, key_id)
        assert (await client.get_me()).id == alice.id  # under the lease: sent
        # The fence timer at the local deadline drops the lease and tells the daemon.
        await eventually(lambda: lost == [key_id], "the fence at the lease's deadline")
        assert guard.lease(key_id) is None and key_id not in guard.ownership.held
        sent = dict(world.faults.per_method)
        with pytest.raises(AccountMoved):
            await client.get_me()
        with pytest.raises(AccountMoved):
            await client(functions.updates.GetStateRequest())
        assert dict(world.faults.per_method) == sent, "a request reached Telegram"


async def test_offset_commits_need_the_lease_here_and_in_the_database(
        store: Store, key_id: int) -> None:
    assert isinstance(store, PostgresStore)
    guard, lost = guard_for(store, "daemon-a", ttl=1.0)
    commits = fenced(store, guard)
    await guard.hold(key_id)
    await commits.commit_offset(key_id, "chats", 7, Offset(5))
    await commits.commit_offsets(key_id, [("chats", 8, Offset(3))])
    assert (await store.get_offset(key_id, "chats", 7)) == Offset(5)
    await eventually(lambda: lost == [key_id], "the fence at the lease's deadline")
    other, _ = guard_for(store, "daemon-b", ttl=60.0)
    await take_over(other.ownership, key_id)
    with pytest.raises(AccountMoved):
        await commits.commit_offset(key_id, "chats", 7, Offset(9))
    with pytest.raises(AccountMoved):
        await commits.commit_offsets(key_id, [("chats", 8, Offset(9))])
    assert (await store.get_offset(key_id, "chats", 7)) == Offset(5)
    assert (await store.get_offset(key_id, "chats", 8)) == Offset(3)
    # Reads and everything else go to the store itself.
    assert (await commits.get_offset(key_id, "chats", 7)) == Offset(5)


async def test_a_key_held_elsewhere_is_routed_there_and_not_taken(
        store: Store, key_id: int) -> None:
    here, _ = guard_for(store, "daemon-a", ttl=60.0)
    there, _ = guard_for(store, "daemon-b", ttl=60.0)
    await here.ownership.register()
    await there.ownership.register()
    assert await here.route(key_id) is None  # nobody holds it: served here
    await there.hold(key_id)
    assert await here.route(key_id) == "ws://daemon-b:1"
    assert await there.route(key_id) is None
    with pytest.raises(AccountMoved):
        await here.hold(key_id)
    with pytest.raises(AccountMoved):
        here.check(key_id)
    there.check(key_id)
    # Stopping gives the lease up at once: the other daemon need not wait for its expiry.
    await there.stop()
    lease = await here.hold(key_id)
    assert lease.owner == "daemon-a"
    assert await there.route(key_id) == "ws://daemon-a:1"
    await here.stop()
