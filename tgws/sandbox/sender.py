"""SandboxSender: what TelegramClient sees in place of its MTProtoSender ("seam A").

It stands in for one Telethon class (MTProtoSender), method for method, so it is read beside
that class; faults it applies live in faults.py, and what it does exactly as remote.py does
(the face it shows Telethon, reconnecting, handing a new key over) in sender_face.py.

TelegramClient 1.45 touches its `_sender` only through: connect(connection) -> bool,
disconnect(), is_connected(), _transport_connected(), _keepalive_ping(id), the `disconnected`
future, send(request | list, ordered=False) -> future | list of futures, the `auth_key` object
(shared with the session), and `_connection` (set_proxy pokes it). DH, encryption and acks have
no counterpart here; connecting, reconnecting and losing answers do, because that is where
Telegram's faults meet Telethon:

- connect(connection) reads the data centre from Telethon's Connection object (dcs.py) and
  "dials" it as MTProtoSender._connect does: `retries` attempts `delay` seconds apart, then
  ConnectionError("Connection to Telegram failed N time(s)"). A fresh key is made (the key
  exchange) when the session has none; that exchange hangs while the world is stalled.
- every transmitted request gets a Decision from the world's FaultPlan (faults.py): an answer
  or an RPC error after the plan's latency, or a dropped connection.
- a dropped connection loses every answer in flight; as MTProtoSender._reconnect does, the
  sender reconnects in the background and re-sends every request still waiting (each gets a
  new Decision). If reconnecting fails `retries` times (the world refuses connections), the
  waiting futures fail with ConnectionError, `disconnected` resolves with it, is_connected()
  turns False, and later sends raise ConnectionError until connect() is called again.
- against an endpoint that answers junk (FaultPlan.garble), a key exchange fails with
  asyncio.IncompleteReadError and every answer breaks the connection (reconnect, re-send).
- while the world is stalled, answers are held (not lost) until it resumes. _keepalive_ping
  behaves as Telethon's: a ping still unanswered at the next keep-alive starts a reconnect.
- updates the world pushes (updates.py) go on the client's `_updates_queue`, as
  MTProtoSender._handle_update puts them there, once the client has sent a request not wrapped
  in invokeWithoutUpdates (receive_updates=True) and only while the connection is up.

The sender takes `retries`, `delay` and `auto_reconnect` from the client it replaces
(connection_retries, retry_delay, auto_reconnect), so tgws's settings reach it as they would
reach Telethon's own sender. Answers arrive on a later loop iteration (`call_soon`, or
`call_later` with latency), never inside send().
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telethon.extensions import BinaryReader
from telethon.helpers import retry_range
from telethon.tl.functions import InitConnectionRequest, InvokeWithoutUpdatesRequest

from tgws.sandbox.call import Call
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.faults import EXEMPT, Decision
from tgws.sandbox.rpc import answer, unwrap
from tgws.sandbox.sender_face import AuthKeyCallback, SenderFace
from tgws.sandbox.updates import HeldPush
from tgws.sandbox.wire import encode
from tgws.sandbox.world import World

log = logging.getLogger("tgws.sandbox")

_HTTP_AS_LENGTH = int.from_bytes(b"HTTP", "little") - 8  # what TcpFull reads "HTTP/1.1" as
_GARBAGE_ROUND = 0.01  # seconds per connect-send-junk round against a non-MTProto endpoint


@dataclass(slots=True)
class _Inflight:
    """One request waiting for its answer."""

    request: Any
    future: asyncio.Future[Any]
    decision: Decision | None = None  # None until transmitted on the current connection
    handle: asyncio.Handle | None = None  # the scheduled arrival
    held: bool = False  # arrived while the world stalled; delivered on resume


def _describe(request: Any) -> tuple[str, bool]:
    """(the inner request's class name, exempt from random faults)."""
    name = type(unwrap(request)).__name__
    wrapped = request
    while hasattr(wrapped, "query") and not isinstance(wrapped, InitConnectionRequest):
        wrapped = wrapped.query
    return name, name in EXEMPT or isinstance(wrapped, InitConnectionRequest)


def _without_updates(request: Any) -> bool:
    """True when `request` is wrapped in invokeWithoutUpdates (at any depth)."""
    while request is not None:
        if isinstance(request, InvokeWithoutUpdatesRequest):
            return True
        request = getattr(request, "query", None)
    return False


class SandboxSender(SenderFace):
    _log = log
    _log_prefix = "sandbox"

    def __init__(self, world: World, auth_key: Any = None, *,
                 auth_key_callback: AuthKeyCallback | None = None,
                 wire: bool | None = None, retries: int = 5, delay: float = 1.0,
                 auto_reconnect: bool = True,
                 updates_queue: asyncio.Queue[Any] | None = None,
                 auto_reconnect_callback: Callable[[], Coroutine[Any, Any, Any]] | None = None,
                 ) -> None:
        super().__init__(auth_key, auth_key_callback, retries, delay, auto_reconnect,
                         updates_queue)
        self.world = world
        self._wire = wire
        # Called after each successful reconnect, as MTProtoSender does (Telethon's client
        # passes _handle_auto_reconnect: a get_me, so Telegram keeps pushing updates).
        self._auto_reconnect_callback = auto_reconnect_callback
        self._callback_task: asyncio.Task[Any] | None = None
        self._inflight: dict[asyncio.Future[Any], _Inflight] = {}
        self._wants_updates = False  # sent a request without invokeWithoutUpdates
        # A push waiting to be overtaken (UpdateLog.reorder_rate): one held past its window
        # still goes out if the connection is up then.
        self._held_push = HeldPush(self._queue_push, late_ok=self._transport_connected)
        self._loop: asyncio.AbstractEventLoop | None = None  # the client's, set by connect()

    @property
    def wire(self) -> bool:
        """Serialize every answer and parse it back with Telethon (per client, else the world's)."""
        return self.world.wire if self._wire is None else self._wire

    # --- connecting ------------------------------------------------------------------------

    async def connect(self, connection: Any) -> bool:
        if self._user_connected:
            return False
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        await self._dial()
        self._user_connected = True
        self._disconnected_future = asyncio.get_running_loop().create_future()
        self.world.faults.attach(self)
        self.world.updates.attach(self)
        return True

    async def _dial(self) -> None:
        """MTProtoSender._connect: reach the DC (retrying), then make a key if there is none."""
        faults = self.world.faults
        for attempt in retry_range(self._retries):
            dc = self.world.dcs.identify(self._connection)
            if dc is None or not faults.accepts_connection():
                log.debug("sandbox: connection attempt %d refused", attempt)
                await asyncio.sleep(self._delay)
                continue
            self.dc = dc
            if not self.auth_key:
                await faults.until_answering()  # a stalled endpoint never finishes the exchange
                if faults.garbage:  # an HTTP reply read as a packet length, then EOF
                    raise asyncio.IncompleteReadError(b"", _HTTP_AS_LENGTH)
                # What a Diffie-Hellman exchange yields: a random key nobody is logged in with.
                self.auth_key.key = os.urandom(256)
                if self._auth_key_callback is not None:
                    await self._auth_key_callback(self.auth_key)
            return
        raise ConnectionError(f"Connection to Telegram failed {self._retries} time(s)")

    # --- losing the connection -------------------------------------------------------------

    def drop_connection(self) -> None:
        """The TCP connection dies: answers in flight are lost; reconnect and re-send."""
        if not self._user_connected:
            return
        for entry in self._inflight.values():
            self._unschedule(entry)
        self._start_reconnect()

    def _start_reconnect(self) -> None:
        if self._user_connected and not self._reconnecting:
            self._reconnecting = True
            for entry in self._inflight.values():
                self._unschedule(entry)
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    def _resend(self) -> None:
        for entry in list(self._inflight.values()):
            if entry.decision is None:
                self._transmit(entry)
        if self._auto_reconnect_callback is not None:
            self._callback_task = asyncio.get_running_loop().create_task(
                self._auto_reconnect_callback())

    def _drop_waiting(self, error: Exception | None) -> None:
        self.world.faults.detach(self)
        self._stop_pushes()
        for entry in list(self._inflight.values()):
            self._unschedule(entry)
            if error is None:
                entry.future.cancel()
            elif not entry.future.done():
                entry.future.set_exception(error)
        self._inflight.clear()

    def _unschedule(self, entry: _Inflight) -> None:
        if entry.handle is not None:
            entry.handle.cancel()
        entry.handle = None
        entry.decision = None
        entry.held = False

    def release_held(self) -> None:
        """The world resumed answering: deliver what arrived while it stalled."""
        loop = asyncio.get_running_loop()
        for entry in list(self._inflight.values()):
            if entry.held and entry.decision is not None:
                entry.held = False
                entry.handle = loop.call_soon(self._arrive, entry, entry.decision)

    # --- requests --------------------------------------------------------------------------

    def _enqueue(self, request: Any) -> asyncio.Future[Any]:
        bytes(request)  # MTProtoSender serializes on send: a malformed request fails right here
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = _Inflight(request, future)
        self._inflight[future] = entry
        if not self._reconnecting:  # else it goes out when the connection is back
            self._transmit(entry)
        return future

    def _transmit(self, entry: _Inflight) -> None:
        if not self._wants_updates and not _without_updates(entry.request):
            self._wants_updates = True  # Telegram subscribes a connection on such a request
        name, exempt = _describe(entry.request)
        decision = self.world.faults.decide(name, exempt=exempt)
        entry.decision = decision
        loop = asyncio.get_running_loop()
        delay = decision.delay
        if self.world.faults.garbage:
            delay = max(delay, _GARBAGE_ROUND)
        entry.handle = (loop.call_later(delay, self._arrive, entry, decision)
                        if delay > 0 else loop.call_soon(self._arrive, entry, decision))

    def _arrive(self, entry: _Inflight, decision: Decision) -> None:
        entry.handle = None
        future = entry.future
        if future.done():
            self._inflight.pop(future, None)
            return
        if self.world.faults.stalled:
            entry.held = True
            return
        if decision.kind == "drop" or self.world.faults.garbage:
            self.drop_connection()
            return
        self._inflight.pop(future, None)
        if decision.error is not None:
            future.set_exception(decision.error.to_telethon(entry.request))
            return
        self._answer(entry.request, future)

    def _answer(self, request: Any, future: asyncio.Future[Any]) -> None:
        key = self.auth_key.key or b""
        call = Call(self.world, key, self.world.user_for_key(key), self.wire, dc=self.dc)
        try:
            result = answer(call, request)
            if call.wire:
                # Pay Telethon's real deserialization, and fail loudly on a malformed object.
                with BinaryReader(encode(result)) as reader:
                    result = request.read_result(reader)
        except SandboxRpcError as error:
            future.set_exception(error.to_telethon(request))
            return
        except Exception as error:  # a sandbox bug: surface it on the caller, not in a log
            log.exception("sandbox: answering %s failed", type(request).__name__)
            future.set_exception(error)
            return
        self._deliver(future, result, call.new_key)

    # --- pushed updates (updates.py) ---------------------------------------------------------

    def _listening(self) -> bool:
        """Whether pushed updates reach this connection now (wanted, and connected)."""
        return (self._updates_queue is not None and self._wants_updates
                and self._transport_connected() and self.world.faults.mode == "up")

    def push_target(self) -> Any:
        """The logged-in user this connection receives updates for, or None (no updates
        wanted, not connected, no login, or a login that belongs on another DC)."""
        if not self._listening():
            return None
        user = self.world.user_for_key(self.auth_key.key)
        if user is None or self.world.dcs.of_user(user) != self.dc:
            return None
        return user

    def listening_key(self) -> bytes | None:
        """The auth key of this connection when it receives updates (logged in or not)."""
        key: bytes | None = self.auth_key.key if self._listening() else None
        return key

    def push(self, updates: Any, *, hold: bool) -> str:
        """Deliver one pushed `Updates`; with `hold`, keep it until the next push overtakes it
        (or reorder_window passes). Returns "pushed", "held", or "" (no queue to push to)."""
        queue, loop = self._updates_queue, self._loop
        if queue is None or loop is None:
            return ""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:  # the world changed on another thread: hop to the client's
            loop.call_soon_threadsafe(functools.partial(self.push, updates, hold=hold))
            return "held" if hold else "pushed"
        if self.wire:  # what MTProtoSender reads off the socket
            with BinaryReader(bytes(updates)) as reader:
                updates = reader.tgread_object()
        return self._held_push.push(updates, hold=hold, loop=loop,
                                    window=self.world.updates.reorder_window)

    def _queue_push(self, updates: Any) -> None:
        if self._updates_queue is not None:
            self._updates_queue.put_nowait(updates)

    def _stop_pushes(self) -> None:
        """The connection is gone: nothing more is pushed, a held push is lost."""
        self.world.updates.detach(self)
        self._held_push.clear()
        self._wants_updates = False
