"""What a handler is given: the daemon's shared parts (App) and its own connection (Connection).

Nothing reaches a handler through module globals: the server builds one App per process and
one Connection per websocket, and passes them explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tgws import protocol
from tgws.acks import ClientAcks
from tgws.auth import LoginLimiter
from tgws.config import Config
from tgws.errors import CloseCode, Refusal
from tgws.login_guard import LoginFloods, SendCodeLimiter
from tgws.metrics import Metrics
from tgws.state import ConnectionState, Outcome
from tgws.store import ApiKeyRecord, Store
from tgws.wsguard import Edge, close_within

if TYPE_CHECKING:
    from tgws.gateway import Account, Gateway

log = logging.getLogger("tgws.server")

_ids = itertools.count(1)


class OffsetLocks:
    """One asyncio.Lock per (API key, kind, group id), dropped when nobody holds it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[int, str, int], asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def get(self, api_key_id: int, kind: str, group_id: int) -> asyncio.Lock:
        key = (api_key_id, kind, group_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


@dataclass(eq=False)
class App:
    """Process-wide parts shared by every connection."""

    config: Config
    store: Store
    gateway: Gateway
    limiter: LoginLimiter
    started_at: float = field(default_factory=time.monotonic)
    connections: set[Connection] = field(default_factory=set)
    offset_locks: OffsetLocks = field(default_factory=OffsetLocks)
    send_codes: SendCodeLimiter = field(default_factory=SendCodeLimiter)
    login_floods: LoginFloods = field(default_factory=LoginFloods)  # [limits] *_flood_cooldown
    edge: Edge = field(default_factory=Edge)  # connection pools and limits (tgws.wsguard)
    metrics: Metrics = field(default_factory=Metrics)  # this daemon's counters (tgws.metrics)
    shutting_down: bool = False
    # Replies sent without the sender waiting for them (Connection.send_soon): kept here so
    # they are not garbage-collected half-way.
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def by_api_key(self, api_key_id: int) -> list[Connection]:
        return [c for c in self.connections if c.api_key is not None
                and c.api_key.id == api_key_id]

    def session_ended(self, api_key_id: int) -> None:
        """The key's Telegram session is gone: its connections are back to "verified".

        A connection whose `login` is still answering (key found, phase still NEW) has no
        session to lose and is left alone: its login reads the store after this.
        """
        for conn in self.by_api_key(api_key_id):
            if conn.state.verified:
                conn.state.advance(Outcome.LOGGED_OUT)


@dataclass(eq=False)
class Connection:
    """One websocket: its state machine, who it is, and the stream running on it."""

    app: App
    ws: ServerConnection
    peer: str
    id: int = field(default_factory=lambda: next(_ids))
    state: ConnectionState = field(default_factory=ConnectionState)
    api_key: ApiKeyRecord | None = None
    account: Account | None = None
    failed_logins: int = 0
    stream: asyncio.Task[None] | None = None
    stream_event: str = ""  # the event of the running stream ('users' or 'chats')
    # Sequence numbers and pending commits of "ack": "client" streams (tgws/acks.py).
    acks: ClientAcks = field(default_factory=ClientAcks)

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    def send_soon(self, text: str) -> None:
        """Send `text` without making the caller wait for this client's socket.

        For a reply that another connection's request causes (a `logout` ending this
        connection's stream, say): a client that stopped reading must not hold up someone
        else's request. The write guard (tgws.wsguard) aborts a socket that never drains,
        so the task always ends.
        """
        task = asyncio.get_running_loop().create_task(self._send_quietly(text))
        self.app.background.add(task)
        task.add_done_callback(self.app.background.discard)

    async def _send_quietly(self, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send(text)

    async def success(self, event: str, message: object, **extra: object) -> None:
        await self.send(protocol.success(event, message, **extra))

    async def failed(self, event: str, message: str, **extra: object) -> None:
        await self.send(protocol.failed(event, message, **extra))

    def flood_notifier(self, event: str) -> Callable[[int], Awaitable[None]]:
        """Tell the client that Telegram made us wait, with a progress-status reply."""

        async def notify(seconds: int) -> None:
            await self.send(protocol.reply(event, protocol.PROGRESS,
                                           protocol.FLOOD_WAITING.format(seconds=seconds),
                                           wait=seconds))

        return notify

    async def close(self, code: CloseCode, reason: str = "") -> None:
        """Close within a bounded time (abort if the client does not read); the reason is
        cut to the 123 bytes of UTF-8 a close frame holds."""
        await close_within(self.ws, int(code), reason)

    def label(self) -> str:
        return f"conn#{self.id}"

    async def guarded(self, event: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one request's work; turn what it raises into the reply the protocol defines.

        Refusal -> its failed reply (+ close when it says so). Anything else is our bug:
        logged with a traceback, answered "internal error", closed 1011. Other connections
        never notice: the exception stops here.
        """
        try:
            await work
        except Refusal as refusal:
            # %r: the message may quote a client's group name; a newline must not forge lines.
            log.info("%s: %s -> failed: %r%s", self.label(), event, refusal.message,
                     f" (close {int(refusal.close)})" if refusal.close else "")
            try:
                await self.send(protocol.refusal_reply(refusal))
                if refusal.close is not None:
                    await self.close(refusal.close, refusal.message)
            except ConnectionClosed:
                pass
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("%s: internal error handling %r", self.label(), event)
            try:
                await self.failed(event, protocol.INTERNAL_ERROR)
                await self.close(CloseCode.INTERNAL, "internal error")
            except ConnectionClosed:
                pass

    def start_stream(self, event: str, work: Coroutine[Any, Any, None]) -> None:
        """Run a users/chats stream as its own task, so this connection keeps reading."""
        self.state.streaming = True
        self.stream_event = event
        self.app.metrics.stream_started(event)

        async def run() -> None:
            try:
                await self.guarded(event, work)
            finally:
                self.state.streaming = False
                self.stream = None

        self.stream = asyncio.get_running_loop().create_task(run(), name=f"{self.label()}-stream")
