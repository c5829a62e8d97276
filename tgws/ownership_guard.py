"""The gateway's side of ownership: this daemon runs an account's session only under its lease.

With the PostgreSQL store several daemons share one database (docs/scaling.md), and each API
key's Telegram session must be run by exactly one of them (AUTH_KEY_DUPLICATED otherwise).
tgws/store/ownership.py decides who in the database; this module makes the daemon obey it:

- :meth:`OwnershipGuard.hold` before a client connects: the lease held, or acquired when it
  is free or expired; :class:`AccountMoved` when another daemon holds it.
- :meth:`OwnershipGuard.guard_client` puts :meth:`check` (the lease's local monotonic
  deadline) in front of every request the Telethon client sends: nothing leaves without it.
- A timer at each lease's local deadline fences at once: if the heartbeat has not renewed
  the lease by then (database unreachable, process paused, partitioned), the lease is dropped
  and ``on_lost`` disconnects the client and closes its connections, before anything else
  of this daemon can use it.
- :class:`FencedStore` sends offset commits through the fenced commit (the lease row checked
  in the commit's own transaction), so a daemon that lost a lease commits nothing for it.
- :meth:`route` tells the server where a client of a key is served: here, or forwarded to
  the daemon that holds the key's live lease (tgws/forwarding.py).

With sqlite there is no guard (one file, one daemon) and none of this runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from tgws.errors import StoreError, TelegramUnavailable
from tgws.store.base import Store
from tgws.store.ownership import Lease, LeaseLost, Ownership
from tgws.store.postgres import PostgresStore
from tgws.store.records import Offset

log = logging.getLogger("tgws.ownership")

OnLost = Callable[[int], Awaitable[None]]


class AccountMoved(TelegramUnavailable):
    """This daemon does not (or no longer) run the account's Telegram session."""


class OwnershipGuard:
    """This daemon's leases, checked before every Telegram request and every offset commit."""

    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership
        self.on_lost: OnLost | None = None  # set by the daemon: disconnect and close
        self._fences: dict[int, asyncio.TimerHandle] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._lost: set[asyncio.Task[None]] = set()

    @property
    def ttl(self) -> float:
        return self.ownership.ttl

    # -- life -----------------------------------------------------------------------------
    async def start(self, address: str) -> None:
        """Register this daemon's internal address and start the heartbeat."""
        self.ownership.address = address
        await self.ownership.register()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self.ownership.heartbeat(self._lose), name="tgws-lease-heartbeat")
        log.info("daemon %s registered at %s (lease %.1f s)", self.ownership.daemon_id,
                 address, self.ttl)

    async def stop(self) -> None:
        """Stop the heartbeat and give every lease up (the clients are disconnected by now),
        so another daemon need not wait for them to expire."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        for key in list(self.ownership.held):
            await self.release(key)

    # -- leases ---------------------------------------------------------------------------
    def lease(self, api_key_id: int) -> Lease | None:
        """Our lease on the key if we hold it and its local deadline has not passed."""
        lease = self.ownership.held.get(api_key_id)
        return lease if lease is not None and lease.alive() else None

    def check(self, api_key_id: int) -> None:
        """Before every request with the key's session: AccountMoved unless we hold it."""
        if self.lease(api_key_id) is None:
            raise AccountMoved(f"this daemon does not hold the lease on key #{api_key_id}")

    async def hold(self, api_key_id: int) -> Lease:
        """Our live lease on the key, acquired if it is free or expired; else AccountMoved."""
        lease = self.lease(api_key_id)
        if lease is not None:
            return lease
        async with self._locks.setdefault(api_key_id, asyncio.Lock()):
            lease = self.lease(api_key_id)
            if lease is None:
                try:
                    lease = await self.ownership.acquire(api_key_id)
                except StoreError as err:  # retried as any unreachable Telegram is
                    raise TelegramUnavailable(f"cannot take the lease on key #{api_key_id}: "
                                              f"{err}") from None
                if lease is None:
                    raise AccountMoved(f"another daemon runs the account of key #{api_key_id}")
                log.info("took the lease on key #%d (token %d)", api_key_id, lease.token)
                self._arm(api_key_id)
            return lease

    async def release(self, api_key_id: int) -> None:
        """Give the key's lease up (its client is disconnected)."""
        fence = self._fences.pop(api_key_id, None)
        if fence is not None:
            fence.cancel()
        lease = self.ownership.held.get(api_key_id)
        if lease is not None:
            await self.ownership.release(lease)
            log.info("released the lease on key #%d", api_key_id)

    async def route(self, api_key_id: int) -> str | None:
        """Where a client of the key is served: None = here (we hold the lease, or nobody
        holds a live one), else the internal address of the daemon that holds it.
        AccountMoved when that daemon registered no address (it is starting or gone)."""
        if self.lease(api_key_id) is not None:
            return None
        owner = await self.ownership.owner_of(api_key_id)
        if owner is None or owner.expired or owner.daemon_id == self.ownership.daemon_id:
            return None
        if owner.address is None:
            raise AccountMoved(f"the daemon running key #{api_key_id} has no address")
        return owner.address

    # -- fencing --------------------------------------------------------------------------
    def _arm(self, api_key_id: int) -> None:
        """A timer at the lease's local deadline: if it was not renewed by then, fence."""
        lease = self.ownership.held.get(api_key_id)
        if lease is None:
            return
        old = self._fences.pop(api_key_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        # The lease's deadline is on time.monotonic; the loop's clock may differ in origin.
        when = loop.time() + (lease.deadline - time.monotonic())
        self._fences[api_key_id] = loop.call_at(when, self._on_deadline, api_key_id)

    def _on_deadline(self, api_key_id: int) -> None:
        self._fences.pop(api_key_id, None)
        lease = self.ownership.held.get(api_key_id)
        if lease is None:
            return
        if lease.alive():  # renewed meanwhile by the heartbeat: watch the new deadline
            self._arm(api_key_id)
            return
        # Synchronously, before any other task runs: check() refuses from now on.
        self.ownership.held.pop(api_key_id, None)
        task = asyncio.get_running_loop().create_task(self._lose(api_key_id))
        self._lost.add(task)
        task.add_done_callback(self._lost.discard)

    async def _lose(self, api_key_id: int) -> None:
        fence = self._fences.pop(api_key_id, None)
        if fence is not None:
            fence.cancel()
        self.ownership.held.pop(api_key_id, None)
        log.warning("lost the lease on key #%d: its Telegram session stops here", api_key_id)
        if self.on_lost is not None:
            await self.on_lost(api_key_id)

    def guard_client(self, client: Any, api_key_id: int) -> Any:
        """Put check() in front of every request the client's sender is given.

        Every Telethon request, the ones Telethon makes by itself included (initConnection
        at connect, get_me after a reconnect, getDifference), goes through the sender's
        send(); it raises AccountMoved synchronously instead, so nothing is sent.
        """
        sender = client._sender
        send = sender.send

        def fenced_send(request: Any, *args: Any, **kwargs: Any) -> Any:
            self.check(api_key_id)
            return send(request, *args, **kwargs)

        sender.send = fenced_send
        return client


class FencedStore:
    """The PostgreSQL store with offset commits fenced by this daemon's leases.

    Everything but the two commit methods is the store's own (attribute delegation); the
    daemon hands this to the gateway and the connections in place of the store.
    """

    def __init__(self, store: PostgresStore, guard: OwnershipGuard) -> None:
        self._store = store
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _lease(self, api_key_id: int) -> Lease:
        lease = self._guard.lease(api_key_id)
        if lease is None:
            raise AccountMoved(f"offset for key #{api_key_id} not committed: this daemon "
                               "does not hold its lease")
        return lease

    async def commit_offset(self, api_key_id: int, kind: str, group_id: int,
                            offset: Offset) -> None:
        try:
            await self._guard.ownership.commit_offset(self._lease(api_key_id), kind, group_id,
                                                      offset)
        except LeaseLost as err:
            raise AccountMoved(str(err)) from None

    async def commit_offsets(self, api_key_id: int,
                             offsets: Iterable[tuple[str, int, Offset]]) -> None:
        try:
            await self._guard.ownership.commit_offsets(self._lease(api_key_id), offsets)
        except LeaseLost as err:
            raise AccountMoved(str(err)) from None


def fenced(store: PostgresStore, guard: OwnershipGuard) -> Store:
    """The store as the rest of the daemon sees it (a Store by its interface)."""
    return cast(Store, FencedStore(store, guard))
