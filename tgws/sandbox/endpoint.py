"""One client connection of the shared sandbox server (serve.py), as the world sees it.

To the World a RemoteEndpoint is what an in-process SandboxSender is (sender.py): a fault-plan
Endpoint (drop_connection, release_held) and an updates Subscriber (push_target,
listening_key, push). It reads the client's frames (link.py), decides each request with the
world's FaultPlan, answers it through the same `rpc.answer` in wire mode, and writes the
result's TL bytes, the RPC error, or a login's new key back; pushed updates go out as TL bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from telethon.extensions import BinaryReader

from tgws.sandbox.call import Call
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.faults import Decision
from tgws.sandbox.link import ID, KEY_SIZE, FrameError, frame, json_frame, read_frame
from tgws.sandbox.rpc import answer
from tgws.sandbox.sender import _describe, _without_updates
from tgws.sandbox.updates import HeldPush
from tgws.sandbox.wire import encode

if TYPE_CHECKING:
    from tgws.sandbox.serve import SandboxServer

log = logging.getLogger("tgws.sandbox.serve")

DUPLICATED = SandboxRpcError(406, "AUTH_KEY_DUPLICATED")
_JUNK = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"  # FaultPlan.garble()


class RemoteEndpoint:
    """One client connection: a fault-plan Endpoint and an updates Subscriber to the world."""

    def __init__(self, server: SandboxServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.world = server.world
        self.reader = reader
        self.writer = writer
        self.key: bytes = b""
        self.dc = 2
        self.origin = ""
        self.session = ""
        self.used = False  # sent a request with its key (what makes a key "in use")
        self.closed = False
        self.wants_updates = False
        self._handles: dict[int, asyncio.Handle] = {}  # scheduled arrivals, by request id
        self._held: list[tuple[int, Any, Decision]] = []
        self._held_push = HeldPush(self.send)  # a push waiting to be overtaken (reorder_rate)

    # --- the connection's life -------------------------------------------------------------

    async def run(self) -> None:
        idle = self.server.idle_timeout
        try:
            async with asyncio.timeout(idle):
                kind, body = await read_frame(self.reader)
            if kind == b"A":
                self.send(json_frame(b"a", self.server.admin(json.loads(body))))
                await self.writer.drain()
                return
            if kind != b"H" or not await self._hello(json.loads(body)):
                return
            self.world.faults.attach(self)
            self.world.updates.attach(self)
            beat = self.server.loop.create_task(self._heartbeat())
            try:
                while not self.closed:
                    async with asyncio.timeout(idle):  # silent this long: dead (or paused)
                        kind, body = await read_frame(self.reader)
                    if kind == b"R":
                        self._request(body)
                    elif kind != b"p":
                        log.warning("sandbox server: unexpected frame %r", kind)
                        return
            finally:
                beat.cancel()
        except (EOFError, OSError, TimeoutError, ValueError, TypeError, KeyError,
                FrameError) as error:  # a closed, silent or confused client
            log.debug("sandbox server: connection ends: %r", error)
        finally:
            self.close()

    async def _hello(self, hello: dict[str, Any]) -> bool:
        faults = self.world.faults
        if not faults.accepts_connection():
            self.send(json_frame(b"h", {"refused": True}))
            return False
        if faults.garbage:
            self.send(_JUNK)
            return False
        self.dc = int(hello.get("dc", 2))
        self.origin = str(hello.get("origin", ""))
        self.session = str(hello.get("session", ""))
        key = hello.get("key")
        if key:
            self.key = bytes.fromhex(key)
        else:
            await faults.until_answering()  # a stalled endpoint never finishes the exchange
            self.key = os.urandom(KEY_SIZE)  # what a Diffie-Hellman exchange yields
        self.server.register(self)
        self.send(json_frame(b"h", {"key": self.key.hex(),
                                    "heartbeat": self.server.idle_timeout / 4}))
        return True

    async def _heartbeat(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.server.idle_timeout / 4)
            self.send(frame(b"p"))

    def send(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.world.faults.detach(self)
        self.world.updates.detach(self)
        self.server.unregister(self)
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._held.clear()
        self._held_push.clear()
        self.writer.close()

    # --- Endpoint (faults.py) --------------------------------------------------------------

    def drop_connection(self) -> None:
        """The connection dies: answers in flight are lost; the sender reconnects."""
        transport = self.writer.transport
        self.close()
        transport.abort()

    def release_held(self) -> None:
        held, self._held = self._held, []
        for msg_id, request, decision in held:
            self._schedule(0.0, msg_id, request, decision)

    # --- requests ----------------------------------------------------------------------------

    def _request(self, body: bytes) -> None:
        (msg_id,) = ID.unpack_from(body)
        try:
            with BinaryReader(body[ID.size:]) as reader:
                request = reader.tgread_object()
        except Exception:  # not TL Telethon knows: Telegram answers an error, not a close
            log.warning("sandbox server: unreadable request", exc_info=True)
            self._error(msg_id, SandboxRpcError(400, "INPUT_REQUEST_INVALID"))
            return
        if not self.wants_updates and not _without_updates(request):
            self.wants_updates = True  # Telegram subscribes a connection on such a request
        if self.server.in_use(self):
            self._error(msg_id, DUPLICATED)
            return
        name, exempt = _describe(request)
        decision = self.world.faults.decide(name, exempt=exempt)
        self._schedule(decision.delay, msg_id, request, decision)

    def _schedule(self, delay: float, msg_id: int, request: Any, decision: Decision) -> None:
        loop = self.server.loop
        handle: asyncio.Handle
        if delay > 0:
            handle = loop.call_later(delay, self._arrive, msg_id, request, decision)
        else:
            handle = loop.call_soon(self._arrive, msg_id, request, decision)
        self._handles[msg_id] = handle

    def _arrive(self, msg_id: int, request: Any, decision: Decision) -> None:
        self._handles.pop(msg_id, None)
        if self.closed:
            return
        faults = self.world.faults
        if faults.stalled:
            self._held.append((msg_id, request, decision))
            return
        if decision.kind == "drop" or faults.garbage:
            self.drop_connection()
            return
        if decision.error is not None:
            self._error(msg_id, decision.error)
            return
        call = Call(self.world, self.key, self.world.user_for_key(self.key), True, dc=self.dc)
        try:
            data = encode(answer(call, request))
        except SandboxRpcError as error:
            self._error(msg_id, error)
            return
        except Exception:  # a sandbox bug: the caller sees an error, the log the traceback
            log.exception("sandbox server: answering %s failed", type(request).__name__)
            self._error(msg_id, SandboxRpcError(500, "SANDBOX_BUG"))
            return
        if call.new_key is None:
            self.send(frame(b"r", ID.pack(msg_id) + data))
            return
        self.server.unregister(self)
        self.key = call.new_key
        self.server.register(self)
        self.send(frame(b"k", ID.pack(msg_id) + self.key + data))

    def _error(self, msg_id: int, error: SandboxRpcError) -> None:
        self.send(_error_frame(msg_id, error))

    # --- Subscriber (updates.py) -----------------------------------------------------------

    def _listening(self) -> bool:
        return (self.wants_updates and not self.closed and self.world.faults.mode == "up"
                and self.key not in self.server.duplicated)

    def push_target(self) -> Any:
        if not self._listening():
            return None
        user = self.world.user_for_key(self.key)
        if user is None or self.world.dcs.of_user(user) != self.dc:
            return None
        return user

    def listening_key(self) -> bytes | None:
        return self.key if self._listening() else None

    def push(self, updates: Any, *, hold: bool) -> str:
        return self._held_push.push(frame(b"u", bytes(updates)), hold=hold,
                                    loop=self.server.loop,
                                    window=self.world.updates.reorder_window)


def _error_frame(msg_id: int, error: SandboxRpcError) -> bytes:
    body = json.dumps({"code": error.code, "message": error.message}).encode()
    return frame(b"e", ID.pack(msg_id) + body)
