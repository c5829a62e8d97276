"""One sandbox Telegram for many processes: a World served on a loopback TCP port.

`tgws sandbox serve` runs a SandboxServer; daemons reach it through RemoteSandboxSender
(remote.py) with the TL bytes Telethon serializes (link.py has the framing). Each connection
(endpoint.py) is, to the world, what an in-process SandboxSender is: the fault plan decides
every request (errors, drops, latency, stalls, refusal), the world answers through the same
`rpc.answer`, and updates are pushed to the connections that follow them (updates.py).

AUTH_KEY_DUPLICATED (406): Telegram kills an auth key that is used from two IP addresses at
once. Here a connection's `origin` (one per process, see remote.py) stands for the address:
when a request arrives with a key that another *live* connection from another origin has
also sent requests with, the key is marked duplicated for good (every later request with it,
on any connection, answers 406 AUTH_KEY_DUPLICATED) and the event is recorded: the `stats`
admin op returns it, and a line "AUTH_KEY_DUPLICATED ..." goes to stderr. A connection is
live until it closes or stays silent for `idle_timeout` seconds (senders send a heartbeat
every idle_timeout / 4), so a paused (SIGSTOPped) process's connection is closed, as Telegram
closes idle ones, and does not count against the process that took its account over —
unless the paused one sends with the key again while the other still does.

Admin ops (an `A` frame, JSON): {"op": "stats"} (connections, calls, duplicates, update
stats, requests_by_origin: every request received, counted by the sending process's
origin), {"op": "tick"}, {"op": "post", "chat": username, "text": ...} (the chat's creator
posts), {"op": "session", "phone": "+..."} (a logged-in StringSession for the account),
{"op": "faults", "mode": "stall" | "resume" | "refuse" | "drop" | "calm"},
{"op": "script", "method": "GetHistory", "kind": "drop", "after": 0, "times": 1},
{"op": "fail", "method": "GetParticipants", "error": "CHANNEL_PRIVATE", "after": 0,
"times": 1} (World.fail: any RPC error).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import sys
import time
from typing import Any

from tgws.config import Config, SandboxConfig
from tgws.errors import ConfigError
from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.endpoint import RemoteEndpoint
from tgws.sandbox.world import World

log = logging.getLogger("tgws.sandbox.serve")


def key_id(key: bytes) -> str:
    """A short name for a key in logs and stats (never the key)."""
    return hashlib.sha256(key).hexdigest()[:16]


class SandboxServer:
    """A World served to many processes; `duplicates` records every AUTH_KEY_DUPLICATED."""

    def __init__(self, world: World, *, idle_timeout: float = 10.0, tick: float = 0.0) -> None:
        self.world = world
        self.idle_timeout = idle_timeout
        self.tick = tick
        self.duplicates: list[dict[str, Any]] = []
        self.duplicated: set[bytes] = set()  # keys Telegram killed
        self.answered_duplicated = 0  # requests answered 406 AUTH_KEY_DUPLICATED
        # Requests received, by origin (one per process): a test can tell that a fenced
        # daemon sent nothing at all, not merely nothing while another process used its key.
        self.requests_by_origin: dict[str, int] = {}
        self._by_key: dict[bytes, set[RemoteEndpoint]] = {}
        self._connections: set[RemoteEndpoint] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (port 0: one the system picks)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accept, host, port)
        if self.tick > 0:
            self._spawn(self._tick_forever())
        port_: int = self._server.sockets[0].getsockname()[1]
        return port_

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.world.tick()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = RemoteEndpoint(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            try:  # a client that reads nothing (paused) must not hold this task for ever
                async with asyncio.timeout(self.idle_timeout):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except OSError:
                pass

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.drop_connection()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # --- who uses which key ------------------------------------------------------------------

    def register(self, connection: RemoteEndpoint) -> None:
        if connection.key:
            self._by_key.setdefault(connection.key, set()).add(connection)

    def unregister(self, connection: RemoteEndpoint) -> None:
        users = self._by_key.get(connection.key)
        if users is not None:
            users.discard(connection)
            if not users:
                del self._by_key[connection.key]

    def in_use(self, connection: RemoteEndpoint) -> bool:
        """Note that `connection` sends with its key; True when that key is duplicated (now,
        or before): another live connection from another origin has sent with it."""
        key = connection.key
        connection.used = True
        origin = connection.origin
        self.requests_by_origin[origin] = self.requests_by_origin.get(origin, 0) + 1
        if key in self.duplicated:
            self.answered_duplicated += 1
            return True
        others = sorted({other.origin for other in self._by_key.get(key, ())
                         if other is not connection and other.used and not other.closed
                         and other.origin != connection.origin})
        if not others:
            return False
        self.duplicated.add(key)
        self.answered_duplicated += 1
        event = {"key": key_id(key), "origin": connection.origin, "others": others,
                 "at": time.time()}
        self.duplicates.append(event)
        log.error("AUTH_KEY_DUPLICATED key=%s origins=%s", event["key"],
                  ",".join([connection.origin, *others]))
        print(f"AUTH_KEY_DUPLICATED key={event['key']} origin={connection.origin} "
              f"others={','.join(others)}", file=sys.stderr, flush=True)
        return True

    # --- admin ----------------------------------------------------------------------------

    def admin(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one admin op (module docstring); errors come back as {"error": text}."""
        try:
            return self._admin(request)
        except (KeyError, ValueError, TypeError, RuntimeError) as error:
            return {"error": f"{type(error).__name__}: {error}"}

    def _admin(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        world = self.world
        if op == "stats":
            return {"connections": len(self._connections), "calls": world.faults.calls,
                    "duplicates": self.duplicates,
                    "answered_duplicated": self.answered_duplicated,
                    "requests_by_origin": dict(self.requests_by_origin),
                    "updates": dict(world.updates.stats), "mode": world.faults.mode}
        if op == "tick":
            world.tick()
            return {"ok": True}
        if op == "post":
            chat = world.resolve(str(request["chat"]))
            if not isinstance(chat, SandboxChat):
                raise KeyError(f"no chat {request['chat']!r}")
            message = chat.post(chat.creator, str(request["text"]))
            return {"ok": True, "id": getattr(message, "id", None)}
        if op == "session":
            user = world.account_for_phone(str(request["phone"]).lstrip("+"), create=True)
            if user is None:
                raise KeyError(f"no account for {request['phone']!r}")
            return {"session": world.session_string(user), "user_id": user.id}
        if op == "script":  # one fault exactly where wanted (FaultPlan.script)
            world.faults.script(str(request["method"]), str(request["kind"]),
                                times=request.get("times", 1), after=int(request.get("after", 0)))
            return {"ok": True}
        if op == "fail":  # any RPC error (World.fail)
            world.fail(str(request["method"]), str(request["error"]),
                       times=request.get("times", 1), after=int(request.get("after", 0)))
            return {"ok": True}
        if op == "faults":
            mode = request["mode"]
            actions = {"stall": world.faults.stall, "resume": world.faults.resume,
                       "refuse": world.faults.refuse, "drop": world.faults.drop_connections,
                       "calm": world.faults.calm}
            actions[mode]()
            return {"ok": True, "mode": world.faults.mode}
        raise ValueError(f"unknown op {op!r}")


def cmd_sandbox_serve(config: Config, *, port: int, idle_timeout: float) -> int:
    """`tgws sandbox serve`: the world [sandbox] describes, on 127.0.0.1:port, until SIGINT
    or SIGTERM. Prints "sandbox listening on tcp://127.0.0.1:PORT" once it listens."""
    from tgws.logging_setup import setup_logging

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: {port} is not a port number")
    if idle_timeout <= 0:
        raise ConfigError("--idle-timeout: seconds > 0")
    setup_logging(config.log.level, config.log.format)
    return asyncio.run(_serve(config.sandbox, port, idle_timeout))


async def _serve(settings: SandboxConfig, port: int, idle_timeout: float) -> int:
    from tgws.backends import build_world

    world = build_world(settings)
    server = SandboxServer(world, idle_timeout=idle_timeout, tick=settings.tick)
    bound = await server.start("127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    world_name = "hostile" if settings.hostile else "demo"
    print(f"sandbox listening on tcp://127.0.0.1:{bound} ({world_name} world, seed "
          f"{settings.seed}, tick {settings.tick:g} s)", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
    print(f"sandbox stopped; AUTH_KEY_DUPLICATED {len(server.duplicates)} time(s)", flush=True)
    return 0
