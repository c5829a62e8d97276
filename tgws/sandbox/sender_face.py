"""What both sandbox senders show Telethon alike: SandboxSender (in process, sender.py) and
RemoteSandboxSender (over TCP, remote.py) differ in how a request is answered, not in the
face MTProtoSender turns to TelegramClient: connection state, keep-alive pings, the
`disconnected` future and `send` (a future per request, a list for a list); nor in how they
reconnect, hand a new auth key to the client before its answer, and end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from telethon.crypto import AuthKey
from telethon.tl.functions import PingRequest
from telethon.utils import is_list_like

from tgws.sandbox.dcs import DEFAULT_DC

AuthKeyCallback = Callable[[Any], Awaitable[None]]


class SenderFace:
    """The MTProtoSender methods both sandbox senders implement the same way.

    A subclass provides `_enqueue(request) -> future`, `_start_reconnect()`, `_dial()` (reach
    the DC, retrying), `_resend()` (after a reconnect), `_drop_waiting(error)` (the connection
    is over: cancel, or fail with ``error``, every waiting request) and, where a link must be
    closed before dialling again or disconnecting, `_close_link()`."""

    _log: ClassVar[logging.Logger]
    _log_prefix: ClassVar[str]  # what the subclass's log lines start with

    def __init__(self, auth_key: Any, auth_key_callback: AuthKeyCallback | None,
                 retries: int, delay: float, auto_reconnect: bool,
                 updates_queue: asyncio.Queue[Any] | None) -> None:
        # The same AuthKey object the session holds: replacing its bytes in place after a
        # login is what makes StringSession.save() return the logged-in key.
        self.auth_key: Any = auth_key if auth_key is not None else AuthKey(None)
        self._auth_key_callback = auth_key_callback
        self._retries = retries
        self._delay = delay
        self._auto_reconnect = auto_reconnect
        self._updates_queue = updates_queue  # the client's: pushed updates go here
        self.dc = DEFAULT_DC  # the data centre of the current (or last) connection
        self.reconnects = 0  # successful reconnects after drops (tests read it)
        self._connection: Any = None
        self._user_connected = False
        self._reconnecting = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._disconnected_future: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ping: int | None = None

    def _enqueue(self, request: Any) -> asyncio.Future[Any]:
        raise NotImplementedError

    def _start_reconnect(self) -> None:
        raise NotImplementedError

    async def _dial(self) -> None:
        raise NotImplementedError

    def _resend(self) -> None:
        raise NotImplementedError

    def _drop_waiting(self, error: Exception | None) -> None:
        raise NotImplementedError

    async def _close_link(self) -> None:
        """Close the current connection before dialling again (nothing by default)."""

    # --- reconnecting, and ending ----------------------------------------------------------

    async def _reconnect(self) -> None:
        """MTProtoSender._reconnect: dial again, then re-send every request still waiting."""
        await self._close_link()
        try:
            if not self._auto_reconnect:
                raise ConnectionError("Connection to Telegram lost (auto_reconnect is off)")
            await self._dial()
        except (OSError, EOFError) as error:  # ConnectionError; IncompleteReadError (junk)
            self._log.info("%s: reconnecting failed: %r", self._log_prefix, error)
            self._fail(error)
            return
        self._reconnecting = False
        self.reconnects += 1
        self._resend()

    async def disconnect(self) -> None:
        """The user's disconnect: waiting requests are cancelled, as Telethon's are."""
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if not self._user_connected:
            return
        self._user_connected = False
        self._reconnecting = False
        await self._close_link()
        self._drop_waiting(None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._disconnected_future is not None and not self._disconnected_future.done():
            self._disconnected_future.set_result(None)

    def _fail(self, error: Exception) -> None:
        """MTProtoSender._disconnect(error): waiting requests and `disconnected` fail."""
        self._user_connected = False
        self._reconnecting = False
        self._drop_waiting(error)
        done = self._disconnected_future
        if done is not None and not done.done():
            done.set_exception(error)
            done.add_done_callback(lambda f: f.exception())  # nobody need be listening

    # --- answers ---------------------------------------------------------------------------

    def _deliver(self, future: asyncio.Future[Any], result: Any, new_key: bytes | None) -> None:
        """Resolve ``future``; an answer that made a key (the login's) first hands it to the
        client, which stores it in its session, as MTProtoSender does after generating one."""
        if new_key is None:
            future.set_result(result)
            return
        self.auth_key.key = new_key
        task = asyncio.get_running_loop().create_task(self._report_key(future, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_key(self, future: asyncio.Future[Any], result: Any) -> None:
        if self._auth_key_callback is not None:
            await self._auth_key_callback(self.auth_key)
        if not future.done():
            future.set_result(result)

    # --- what TelegramClient calls ---------------------------------------------------------

    def send(self, request: Any, ordered: bool = False) -> Any:
        """A future per request, like MTProtoSender."""
        if not self._user_connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if is_list_like(request):
            return [self._enqueue(item) for item in request]
        return self._enqueue(request)

    def is_connected(self) -> bool:
        return self._user_connected

    def _transport_connected(self) -> bool:
        return self._user_connected and not self._reconnecting

    def _keepalive_ping(self, rnd_id: int) -> None:
        """MTProtoSender's: a ping still unanswered at the next keep-alive means a dead link."""
        if self._ping is None:
            self._ping = rnd_id
            future = self._enqueue(PingRequest(rnd_id))
            future.add_done_callback(self._pong)
        else:
            self._start_reconnect()

    def _pong(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        if getattr(future.result(), "ping_id", None) == self._ping:
            self._ping = None

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected_future is None:
            self._disconnected_future = asyncio.get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return asyncio.shield(self._disconnected_future)
