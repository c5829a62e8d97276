"""Every connection pays its way: the asyncio side of the edge (docs/security.md).

`GuardedConnection` is the websockets `ServerConnection` tgws serves with (passed to
`serve()` through its public `create_connection` hook). It adds, per TCP connection:

* a place in `Edge`'s pools from the moment the socket is accepted (handshakes included),
  and a login deadline: unverified after `[server] login_timeout` -> closed 1008
  "login timeout" (or aborted, when the handshake is not even done);
* a write-buffer ceiling, checked each time the client sends something: the server writes
  a pong for every ping it reads, so a client that pings and never reads would grow our
  buffer without bound. Past `[server] max_write_buffer` unread bytes the connection is
  aborted. Streams cannot get there: they wait whenever the buffer passes write_limit;
* a stall timer: output above write_limit that does not drain for `[server]
  write_timeout` seconds aborts the connection. Without it, the keepalive ping, the idle
  timeout's close frame and a stream all wait forever in drain() for a client that
  never reads.

Only asyncio.Protocol's public callbacks (connection_made, data_received, pause_writing,
resume_writing, connection_lost) are overridden, each calling websockets' own first; the
transport is the one asyncio hands to connection_made. That websockets' ServerConnection
has those callbacks is checked at start-up (tgws/fastpath.py's check_required).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from tgws import fastpath
from tgws.admission import Networks, Pools, close_reason
from tgws.auth import peer_key
from tgws.config import ServerConfig
from tgws.errors import CloseCode

log = logging.getLogger("tgws.server")

# websockets' close_timeout (seconds to wait for the peer's close frame), and the bound on
# a whole close of ours: a close that cannot even be written (the client does not read)
# ends with transport.abort() after CLOSE_WAIT.
CLOSE_TIMEOUT = 5.0
CLOSE_WAIT = CLOSE_TIMEOUT + 1.0

LOGIN_TIMEOUT_REASON = "login timeout"
EVICTED_REASON = "too many connections not logged in"
REPORT_INTERVAL = 10.0  # seconds between two log lines about dropped connections
# A dropped connection (never logged in) gets its close frame and this long to answer it:
# each one still holds a descriptor, so a churning attacker must not make us wait 6 s.
DROP_CLOSE_WAIT = 1.0


class Edge:
    """One per server: the pools, and what happens to connections that overstay."""

    def __init__(self) -> None:
        self.pools: Pools[GuardedConnection] = Pools(64, 8)
        self.max_connections = 1000
        self.login_timeout = 10.0
        self.max_write_buffer = 1 << 20
        self.write_timeout = 60.0
        self.trusted = Networks()
        self.dropped = 0  # unverified connections closed by the deadline or to make room
        self._closing: set[asyncio.Task[None]] = set()
        self._unreported: dict[str, int] = {}
        self._next_report = 0.0

    def configure(self, cfg: ServerConfig, *, max_connections: int,
                  max_unverified: int) -> None:
        self.pools.max_unverified = max_unverified
        self.pools.per_address = min(cfg.max_unverified_per_address, max_unverified)
        self.max_connections = max_connections
        self.login_timeout = cfg.login_timeout
        self.max_write_buffer = cfg.max_write_buffer
        self.write_timeout = cfg.write_timeout
        self.trusted = Networks(cfg.trusted_proxies)

    def connection_class(self) -> type[GuardedConnection]:
        """The class serve() builds connections with, bound to this edge."""
        return cast(type[GuardedConnection],
                    type("TgwsConnection", (GuardedConnection,), {"edge": self}))

    @property
    def verified_full(self) -> bool:
        return self.pools.verified >= self.max_connections

    # -- life of a connection -----------------------------------------------------------
    def accepted(self, conn: GuardedConnection) -> None:
        # Behind a trusted proxy the client is not known before the handshake (rebucket).
        address = None if self.trusted.contains(conn.tcp_peer) else peer_key(conn.tcp_peer)
        for victim in self.pools.admit(conn, address):
            self.drop(victim, EVICTED_REASON)
        conn.deadline = asyncio.get_running_loop().call_later(
            self.login_timeout, self._deadline_passed, conn)

    def client_known(self, conn: GuardedConnection, client: str) -> None:
        """The handshake named the client behind a trusted proxy."""
        conn.client = client
        for victim in self.pools.rebucket(conn, peer_key(client)):
            self.drop(victim, EVICTED_REASON)

    def verified(self, conn: GuardedConnection) -> None:
        self.pools.verify(conn)
        conn.cancel_deadline()

    def lost(self, conn: GuardedConnection) -> None:
        self.pools.gone(conn)
        conn.cancel_deadline()

    def _deadline_passed(self, conn: GuardedConnection) -> None:
        conn.deadline = None
        if self.pools.is_unverified(conn):
            self.drop(conn, LOGIN_TIMEOUT_REASON)

    def drop(self, conn: GuardedConnection, reason: str) -> None:
        """Close an unverified connection: 1008 if the websocket is open, else abort."""
        self.pools.gone(conn)
        self.dropped += 1
        self._report(reason)
        if conn.state is State.OPEN:
            task = asyncio.get_running_loop().create_task(
                close_within(conn, CloseCode.POLICY, reason, DROP_CLOSE_WAIT))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            conn.abort()

    def _report(self, reason: str) -> None:
        """One log line per REPORT_INTERVAL, however many connections are dropped."""
        self._unreported[reason] = self._unreported.get(reason, 0) + 1
        now = asyncio.get_running_loop().time()
        if now < self._next_report:
            return
        self._next_report = now + REPORT_INTERVAL
        log.warning("dropped connections that did not log in: %s",
                    ", ".join(f"{n} ({why})" for why, n in self._unreported.items()))
        self._unreported.clear()


class GuardedConnection(ServerConnection):
    """A ServerConnection that counts in its Edge's pools and cannot hoard memory."""

    edge: ClassVar[Edge]
    # Slots, not five more keys in websockets' ~30-key instance dict: that resize alone
    # cost ~1.5 KiB per connection (issue 12: <= 16 KiB per idle connection).
    __slots__ = ("_io", "_stall", "client", "deadline", "tcp_peer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tcp_peer = "?"
        self.client = "?"  # the client's address: tcp_peer, or what a trusted proxy says
        self.deadline: asyncio.TimerHandle | None = None
        self._io: asyncio.Transport | None = None
        self._stall: asyncio.TimerHandle | None = None

    @property
    def write_paused(self) -> bool:
        """Whether the output is above write_limit (asyncio paused our writing)."""
        return self._stall is not None

    def abort(self) -> None:
        if self._io is not None:
            self._io.abort()

    def cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    # -- asyncio.Protocol callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._io = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.tcp_peer = self.client = str(peer[0]) if isinstance(peer, tuple) else "?"
        self.edge.accepted(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        io = self._io
        if io is not None and not io.is_closing() \
                and io.get_write_buffer_size() > self.edge.max_write_buffer:
            log.warning("aborting a connection from %s: %d bytes unread (max_write_buffer)",
                        self.client, io.get_write_buffer_size())
            io.abort()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = asyncio.get_running_loop().call_later(
                self.edge.write_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.edge.lost(self)

    def _stalled(self) -> None:
        self._stall = None
        log.warning("aborting a connection from %s: output not read for %.0f s "
                    "(write_timeout)", self.client, self.edge.write_timeout)
        self.abort()


async def close_within(ws: ServerConnection, code: int, reason: str,
                       wait: float = CLOSE_WAIT) -> None:
    """Close with `code` and `reason` (cut to fit a close frame); abort after `wait` s.

    websockets' own close waits for the output buffer to drain before its close timeout
    even starts, so a client that does not read would keep it waiting forever.
    """
    try:
        async with asyncio.timeout(wait):
            await ws.close(code, close_reason(reason))
    except TimeoutError:
        if isinstance(ws, GuardedConnection):
            ws.abort()
        else:
            fastpath.abort(ws)
