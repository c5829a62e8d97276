"""SandboxSender: what TelegramClient sees in place of its MTProtoSender ("seam A").

TelegramClient 1.45 touches its `_sender` only through: connect(connection) -> bool,
disconnect(), is_connected(), _transport_connected(), _keepalive_ping(id), the `disconnected`
future, send(request | list, ordered=False) -> future | list of futures, the `auth_key` object
(shared with the session), and `_connection` (set_proxy pokes it). The real sender's other
duties (DH key exchange, encryption, acks, reconnects) have no counterpart here.

Answers arrive on a later loop iteration (`call_soon`, or `call_later` with World.latency), never
inside send(): a caller that awaits a request yields to the event loop as it does against
Telegram, so a long history stream cannot starve the rest of the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from telethon.crypto import AuthKey
from telethon.extensions import BinaryReader
from telethon.utils import is_list_like

from tgws.sandbox.call import Call
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.rpc import answer
from tgws.sandbox.wire import encode
from tgws.sandbox.world import World

log = logging.getLogger("tgws.sandbox")

AuthKeyCallback = Callable[[Any], Awaitable[None]]


class SandboxSender:
    def __init__(self, world: World, auth_key: Any = None, *,
                 auth_key_callback: AuthKeyCallback | None = None,
                 wire: bool | None = None) -> None:
        self.world = world
        # The same AuthKey object the session holds: replacing its bytes in place after a
        # login is what makes StringSession.save() return the logged-in key.
        self.auth_key: Any = auth_key if auth_key is not None else AuthKey(None)
        self._auth_key_callback = auth_key_callback
        self._wire = wire
        self._connection: Any = None
        self._user_connected = False
        self._disconnected_future: asyncio.Future[None] | None = None
        self._pending: dict[asyncio.Future[Any], asyncio.Handle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def wire(self) -> bool:
        """Serialize every answer and parse it back with Telethon (per client, else the world's)."""
        return self.world.wire if self._wire is None else self._wire

    async def connect(self, connection: Any) -> bool:
        if self._user_connected:
            return False
        self._connection = connection
        if not self.auth_key:
            # What a Diffie-Hellman exchange yields: a random key nobody is logged in with.
            self.auth_key.key = os.urandom(256)
            if self._auth_key_callback is not None:
                await self._auth_key_callback(self.auth_key)
        self._user_connected = True
        self._disconnected_future = asyncio.get_running_loop().create_future()
        return True

    def is_connected(self) -> bool:
        return self._user_connected

    def _transport_connected(self) -> bool:
        return self._user_connected

    def _keepalive_ping(self, rnd_id: int) -> None:
        """Nothing to keep alive in-process."""

    async def disconnect(self) -> None:
        if not self._user_connected:
            return
        self._user_connected = False
        for future, handle in list(self._pending.items()):
            handle.cancel()
            future.cancel()
        self._pending.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._disconnected_future is not None and not self._disconnected_future.done():
            self._disconnected_future.set_result(None)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected_future is None:
            self._disconnected_future = asyncio.get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return asyncio.shield(self._disconnected_future)

    def send(self, request: Any, ordered: bool = False) -> Any:
        """A future per request, like MTProtoSender; answers keep the order of sending."""
        if not self._user_connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if is_list_like(request):
            return [self._enqueue(item) for item in request]
        return self._enqueue(request)

    def _enqueue(self, request: Any) -> asyncio.Future[Any]:
        bytes(request)  # MTProtoSender serializes on send: a malformed request fails right here
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        latency = self.world.latency
        handle: asyncio.Handle = (loop.call_later(latency, self._answer, request, future)
                                  if latency > 0 else loop.call_soon(self._answer, request, future))
        self._pending[future] = handle
        return future

    def _answer(self, request: Any, future: asyncio.Future[Any]) -> None:
        self._pending.pop(future, None)
        if future.done():
            return
        key = self.auth_key.key or b""
        call = Call(self.world, key, self.world.user_for_key(key), self.wire)
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
        if call.new_key is None:
            future.set_result(result)
            return
        self.auth_key.key = call.new_key
        task = asyncio.get_running_loop().create_task(self._report_key(future, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_key(self, future: asyncio.Future[Any], result: Any) -> None:
        """Tell the client about the new key (it stores it in the session) before answering,
        as MTProtoSender does after generating a key."""
        if self._auth_key_callback is not None:
            await self._auth_key_callback(self.auth_key)
        if not future.done():
            future.set_result(result)
