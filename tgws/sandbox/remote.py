"""RemoteSandboxSender: a TelegramClient's sender that reaches a shared sandbox server.

Where SandboxSender (sender.py) answers from a World in the same process, this sender sends
each request's TL bytes (`bytes(request)`, as MTProtoSender serializes it) over TCP to a
`tgws sandbox serve` process (serve.py; framing in link.py) and resolves the request's future
with `request.read_result()` on the answer's bytes, or with Telethon's own exception for the
RPC error the server sent (rpc_message_to_error). Pushed updates arrive as TL bytes and go on
the client's updates queue, as MTProtoSender._handle_update puts them there.

It behaves as MTProtoSender does where Telegram's faults meet it:
- connect() dials the DC the Connection names (dcs.py), `retries` attempts `delay` seconds
  apart, each within `timeout` seconds (TCP connect plus hello; the hello carries the auth
  key, or asks the server for one: the key exchange), then ConnectionError;
- a lost connection (the server dropped it, or nothing arrived for the heartbeat deadline, or
  a keep-alive ping went unanswered) loses every answer in flight: the sender reconnects in
  the background and re-sends every request still waiting, then runs the client's
  auto-reconnect callback (Telethon's _handle_auto_reconnect: a get_me) as MTProtoSender
  does; if reconnecting fails `retries` times the waiting requests fail with
  ConnectionError, and so does `disconnected`.

`origin` stands for the IP address Telegram sees: one per process by default (ORIGIN), so the
server answers AUTH_KEY_DUPLICATED when two processes use one auth key at once; a test may
give two senders in one process different origins to play two hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telethon import TelegramClient
from telethon.extensions import BinaryReader
from telethon.helpers import retry_range

from tgws.sandbox.dcs import DataCentres
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.link import (
    ID,
    KEY_SIZE,
    PROTOCOL_VERSION,
    FrameError,
    frame,
    json_frame,
    parse_address,
    read_frame,
)
from tgws.sandbox.sender_face import AuthKeyCallback, SenderFace

log = logging.getLogger("tgws.sandbox.remote")

ORIGIN = f"pid{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process's "IP address"
Address = tuple[str, int]


@dataclass(slots=True)
class _Pending:
    request: Any
    future: asyncio.Future[Any]
    sent: bool = False  # on the current connection


class _Refused(ConnectionError):
    """The server refused this connection attempt (FaultPlan.refuse)."""


class RemoteSandboxSender(SenderFace):
    _log = log
    _log_prefix = "sandbox link"

    def __init__(self, address: Address, auth_key: Any = None, *,
                 auth_key_callback: AuthKeyCallback | None = None, retries: int = 5,
                 delay: float = 1.0, auto_reconnect: bool = True, timeout: float = 10.0,
                 updates_queue: asyncio.Queue[Any] | None = None,
                 origin: str | None = None,
                 auto_reconnect_callback: Callable[[], Awaitable[Any]] | None = None) -> None:
        super().__init__(auth_key, auth_key_callback, retries, delay, auto_reconnect,
                         updates_queue)
        self.address = address
        self._timeout = timeout
        # MTProtoSender's: the client's _handle_auto_reconnect (a get_me) after each reconnect.
        self._auto_reconnect_callback = auto_reconnect_callback
        self.origin = origin or ORIGIN
        self.session_id = uuid.uuid4().hex  # MTProto's session id: one per sender
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._writer: asyncio.StreamWriter | None = None
        self._link_tasks: list[asyncio.Task[None]] = []

    # --- connecting ------------------------------------------------------------------------

    async def connect(self, connection: Any) -> bool:
        if self._user_connected:
            return False
        self._connection = connection
        await self._dial()
        self._user_connected = True
        self._disconnected_future = asyncio.get_running_loop().create_future()
        return True

    async def _dial(self) -> None:
        """MTProtoSender._connect: reach the DC (retrying), with a key (made if there is none)."""
        for attempt in retry_range(self._retries):
            dc = DataCentres.identify(self._connection)
            try:
                if dc is None:
                    raise _Refused(f"{self._connection!r} names no sandbox DC")
                async with asyncio.timeout(self._timeout):
                    reader, writer = await asyncio.open_connection(*self.address)
                    try:
                        heartbeat = await self._hello(reader, writer, dc)
                    except BaseException:
                        writer.close()
                        raise
            except FrameError as error:  # junk instead of a hello (FaultPlan.garble)
                if not self.auth_key:  # a key exchange reading junk: what escapes Telethon
                    raise asyncio.IncompleteReadError(b"", None) from error
                log.info("sandbox link: attempt %d: %r", attempt, error)
            except (OSError, TimeoutError, EOFError) as error:
                log.info("sandbox link: attempt %d failed: %r", attempt, error)
            else:
                self.dc = dc
                self._writer = writer
                loop = asyncio.get_running_loop()
                self._link_tasks = [loop.create_task(self._read_loop(reader, heartbeat)),
                                    loop.create_task(self._heartbeat(writer, heartbeat))]
                return
            await asyncio.sleep(self._delay)
        raise ConnectionError(f"Connection to Telegram failed {self._retries} time(s)")

    async def _hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     dc: int) -> float:
        key: bytes | None = self.auth_key.key
        writer.write(json_frame(b"H", {"v": PROTOCOL_VERSION, "key": key.hex() if key else None,
                                       "dc": dc, "origin": self.origin,
                                       "session": self.session_id}))
        await writer.drain()
        kind, body = await read_frame(reader)
        if kind != b"h":
            raise FrameError(f"expected a hello, got {kind!r}")
        answer = json.loads(body)
        if answer.get("refused"):
            raise _Refused("the sandbox refuses connections")
        if not key:  # the key exchange's result; the client stores it in its session
            self.auth_key.key = bytes.fromhex(answer["key"])
            if self._auth_key_callback is not None:
                await self._auth_key_callback(self.auth_key)
        return float(answer.get("heartbeat", 2.5))

    async def _close_link(self) -> None:
        tasks, self._link_tasks = self._link_tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await writer.wait_closed()
        await asyncio.gather(*(t for t in tasks if t is not current), return_exceptions=True)

    # --- losing the connection -------------------------------------------------------------

    def _start_reconnect(self) -> None:
        if self._user_connected and not self._reconnecting:
            self._reconnecting = True
            for entry in self._pending.values():
                entry.sent = False  # their answers are lost with the connection
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    def _resend(self) -> None:
        for msg_id, entry in list(self._pending.items()):
            if not entry.sent:
                self._transmit(msg_id, entry)
        if self._auto_reconnect_callback is not None:
            task = asyncio.get_running_loop().create_task(self._after_reconnect())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _after_reconnect(self) -> None:
        assert self._auto_reconnect_callback is not None
        await self._auto_reconnect_callback()

    def _drop_waiting(self, error: Exception | None) -> None:
        for entry in self._pending.values():
            if error is None:
                entry.future.cancel()
            elif not entry.future.done():
                entry.future.set_exception(error)
        self._pending.clear()

    async def _heartbeat(self, writer: asyncio.StreamWriter, every: float) -> None:
        """Tell the server this end is alive (it closes connections silent for 4 beats)."""
        with contextlib.suppress(OSError):
            while not writer.is_closing():
                await asyncio.sleep(every)
                writer.write(frame(b"p"))

    async def _read_loop(self, reader: asyncio.StreamReader, heartbeat: float) -> None:
        try:
            while True:
                async with asyncio.timeout(heartbeat * 4):  # the server beats every `heartbeat`
                    kind, body = await read_frame(reader)
                self._receive(kind, body)
        except (EOFError, OSError, TimeoutError) as error:
            log.info("sandbox link: connection lost: %r", error)
        self._start_reconnect()

    def _receive(self, kind: bytes, body: bytes) -> None:
        if kind == b"u":
            if self._updates_queue is not None:
                with BinaryReader(body) as reader:
                    self._updates_queue.put_nowait(reader.tgread_object())
            return
        if kind not in (b"r", b"k", b"e"):
            return  # heartbeats, and anything a newer server adds
        (msg_id,) = ID.unpack_from(body)
        entry = self._pending.pop(msg_id, None)
        if entry is None or entry.future.done():
            return
        data = body[ID.size:]
        if kind == b"e":
            error = json.loads(data)
            exception = SandboxRpcError(int(error["code"]), str(error["message"]))
            entry.future.set_exception(exception.to_telethon(entry.request))
            return
        new_key = None
        if kind == b"k":
            new_key, data = data[:KEY_SIZE], data[KEY_SIZE:]
        try:
            with BinaryReader(data) as reader:
                result = entry.request.read_result(reader)
        except Exception as error:  # a malformed answer: fail loudly on the caller
            entry.future.set_exception(error)
            return
        self._deliver(entry.future, result, new_key)

    # --- requests --------------------------------------------------------------------------

    def _enqueue(self, request: Any) -> asyncio.Future[Any]:
        bytes(request)  # a malformed request fails right here, as in MTProtoSender
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._next_id += 1
        entry = _Pending(request, future)
        self._pending[self._next_id] = entry
        if not self._reconnecting:  # else it goes out when the connection is back
            self._transmit(self._next_id, entry)
        return future

    def _transmit(self, msg_id: int, entry: _Pending) -> None:
        if self._writer is None or self._writer.is_closing():
            self._start_reconnect()
            return
        self._writer.write(frame(b"R", ID.pack(msg_id) + bytes(entry.request)))
        entry.sent = True


def make_remote_client(address: Address | str, session: Any, api_id: int = 1,
                       api_hash: str = "0" * 32, *, origin: str | None = None,
                       **client_kwargs: Any) -> TelegramClient:
    """A real TelegramClient whose sender reaches the shared sandbox at `address`
    ("tcp://127.0.0.1:PORT", or (host, port)); other keyword arguments go to TelegramClient."""
    where = parse_address(address) if isinstance(address, str) else address
    client = TelegramClient(session, api_id, api_hash, **client_kwargs)
    client._sender = RemoteSandboxSender(
        where, client.session.auth_key, auth_key_callback=client._auth_key_callback,
        retries=client._connection_retries, delay=client._retry_delay,
        auto_reconnect=client._auto_reconnect, timeout=client._timeout,
        updates_queue=client._updates_queue, origin=origin,
        auto_reconnect_callback=client._handle_auto_reconnect)
    return client


async def admin(address: Address | str, op: str, *, wait: float = 10.0,
                **arguments: Any) -> dict[str, Any]:
    """One admin op on a sandbox server (serve.py lists them), within `wait` seconds."""
    host, port = parse_address(address) if isinstance(address, str) else address
    async with asyncio.timeout(wait):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(json_frame(b"A", {"op": op, **arguments}))
            await writer.drain()
            kind, body = await read_frame(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if kind != b"a":
        raise FrameError(f"expected an admin answer, got {kind!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def remote_banner(*, url: str, key: str, sandbox_url: str) -> str:
    """What `tgws demo --sandbox-url` prints: the world (its chats, ticks, faults) is the
    server's, so only what this daemon knows is named."""
    return "\n".join([
        "tgws demo: a daemon on the shared sandbox Telegram, no account needed.",
        "",
        f"  websocket  {url}",
        f"  api key    {key}",
        f"  sandbox    {sandbox_url} (`tgws sandbox serve`: its world, ticks and faults)",
        "  login      any phone (e.g. +919876543210), code 12345",
        "",
        f"  try:  tgws client --url {url} --api-key {key} login --phone +919876543210",
        f"        tgws client --url {url} --api-key {key} users testgroup00001",
        "Ctrl-C stops.",
    ])
