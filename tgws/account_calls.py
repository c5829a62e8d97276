"""One account's TelegramClient and how every call to Telegram is made.

AccountCalls is the base of tgws.gateway.Account (the method groups, account_login.py and
peers.py, build on it as Telethon's TelegramClient builds on its *Methods classes): the
client is connected on first use within [telegram] connect_timeout, each call runs within
call_timeout (tgws/resilience.py turns transient failures into TelegramUnavailable and
closes a stalled connection), and flood waits are waited out or raised as FloodWait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from telethon import errors
from telethon.sessions import StringSession

from tgws import resilience
from tgws.config import TelegramConfig
from tgws.errors import FloodWait, SessionLocked, TelegramUnavailable
from tgws.rpc_errors import FLOOD_ERRORS, translate
from tgws.store import SessionUnreadable, Store

if TYPE_CHECKING:
    from tgws.gateway import Gateway

log = logging.getLogger("tgws.gateway")  # one logger for the whole boundary, as before

T = TypeVar("T")
OnFlood = Callable[[int], Awaitable[None]]


class AccountCalls:
    """One account's client, its state, and the way every call to Telegram is made."""

    def __init__(self, gateway: Gateway, api_key_id: int) -> None:
        self.gateway = gateway
        self.api_key_id = api_key_id
        self.holders = 0  # connections holding this account (a reference count)
        self._client: Any = None
        self._connect_lock = asyncio.Lock()
        self._login_phone: str | None = None
        # The connection that asked for the pending code: only it may send the code (two
        # connections of one key must not sign in each other's phone).
        self._login_owner: object = None
        self._idle_task: asyncio.Task[None] | None = None
        self.pending = resilience.Pending()  # calls in flight, for /healthz
        self._generation = 0  # one more per successful connect (see _unavailable)

    @property
    def store(self) -> Store:
        return self.gateway.store

    @property
    def config(self) -> TelegramConfig:
        return self.gateway.config

    async def has_session(self) -> bool:
        return await self.store.has_session(self.api_key_id)

    async def _ensure_client(self) -> Any:
        """The connected client, connected first if need be, within [telegram] connect_timeout.

        The deadline covers waiting for the connect lock too, so one stalled key exchange
        holds the other requests of this API key for connect_timeout at most.
        """
        limit = self.config.connect_timeout
        try:
            async with asyncio.timeout(limit):
                async with self._connect_lock:
                    await self._hold_lease()
                    client = self._client
                    if client is not None and client.is_connected():
                        return client
                    if client is None:
                        try:
                            saved = await self.store.load_session(self.api_key_id)
                        except SessionUnreadable as err:
                            log.error("account of key #%d: %s", self.api_key_id, err)
                            raise SessionLocked(str(err)) from None
                        client = self._client = self._guarded(
                            self.gateway.factory(StringSession(saved or None)))
                    with self.pending.call(limit):
                        await self._connect(client)
                    return client
        except resilience.TRANSIENT as err:  # the deadline's TimeoutError included
            raise self._failed(resilience.unavailable(err, deadline=limit)) from None
        except asyncio.CancelledError:
            if not resilience.cancelled_by_disconnect():
                raise
            raise self._failed(TelegramUnavailable("connection closed while connecting")) \
                from None
        except FLOOD_ERRORS:
            # Telethon's connect() may send a request (updates.getDifference for a session
            # with update state) that Telegram answers FLOOD_WAIT like any other call: the
            # callers wait it out (_with_flood_control, Gateway._batches), then reconnect.
            raise
        except errors.RPCError as err:
            raise translate(err) from None

    # -- ownership (PostgreSQL, several daemons: tgws/ownership_guard.py) -------------------
    async def _hold_lease(self) -> None:
        """Before the client connects or is used: this daemon holds the account's lease
        (acquired if free or expired), else AccountMoved. Without a guard (sqlite): nothing."""
        guard = self.gateway.guard
        if guard is not None:
            await guard.hold(self.api_key_id)

    def _guarded(self, client: Any) -> Any:
        """The client with the lease checked before every request it sends."""
        guard = self.gateway.guard
        return client if guard is None else guard.guard_client(client, self.api_key_id)

    async def _connect(self, client: Any) -> None:
        try:
            await client.connect()
        except BaseException:
            # Cut short (deadline) or failed half-way: the socket may be open, and Telethon
            # may count itself connected without having sent its first request.
            await self._close_client(client)
            raise
        self._generation += 1
        self.pending.ok()

    async def _close_client(self, client: Any) -> None:
        """Disconnect, bounded: Telethon's own close waits up to 10 s for a silent peer."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.connect_timeout):
                await client.disconnect()

    def _failed(self, failure: TelegramUnavailable) -> TelegramUnavailable:
        self.pending.failed()
        log.warning("account of key #%d: %s", self.api_key_id, failure)
        return failure

    async def _unavailable(self, err: BaseException, generation: int) -> TelegramUnavailable:
        """Record a transient failure; a stalled or broken connection is closed so the next
        attempt reconnects (only once per connection, however many calls saw it fail)."""
        failure = self._failed(resilience.unavailable(err, deadline=self.config.call_timeout))
        client = self._client
        if (resilience.needs_new_connection(err) and generation == self._generation
                and client is not None and client.is_connected()):
            await self._close_client(client)
        return failure

    async def _attempt(self, request: Callable[[Any], Awaitable[T]]) -> T:
        """One call within [telegram] call_timeout; transient failures -> TelegramUnavailable."""
        client = await self._ensure_client()
        generation = self._generation
        limit = self.config.call_timeout
        try:
            with self.pending.call(limit):
                async with asyncio.timeout(limit):
                    result = await request(client)
        except resilience.TRANSIENT as err:
            raise await self._unavailable(err, generation) from None
        except asyncio.CancelledError:
            if not resilience.cancelled_by_disconnect():
                raise
            raise await self._unavailable(ConnectionError("disconnected"), generation) from None
        self.pending.ok()
        return result

    async def _call(self, request: Callable[[Any], Awaitable[T]], on_flood: OnFlood | None) -> T:
        return await self._with_flood_control(lambda: self._attempt(request), on_flood)

    async def _with_flood_control(self, attempt: Callable[[], Awaitable[T]],
                                  on_flood: OnFlood | None) -> T:
        while True:
            try:
                return await attempt()
            except FLOOD_ERRORS as err:
                await self._flood_wait(int(err.seconds), on_flood)

    async def _flood_wait(self, seconds: int, on_flood: OnFlood | None) -> None:
        if seconds > self.config.flood_wait_ceiling:
            raise FloodWait(seconds)
        log.info("account of key #%d: flood wait %d s", self.api_key_id, seconds)
        if on_flood is not None:
            await on_flood(seconds)
        await asyncio.sleep(seconds)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._login_phone = self._login_owner = None
        if client is not None:
            await self._close_client(client)

    async def disconnect(self) -> None:
        client = self._client
        if client is not None:
            await self._close_client(client)
