"""The websockets server: routing, the per-connection loop, revocation, shutdown.

- The websocket lives at [server] path (default /ws/telegram/); GET /healthz answers JSON;
  every other path gets HTTP 404, a browser Origin not in [server] allowed_origins HTTP
  403, and a server with max_connections *logged-in* connections HTTP 503, before any
  upgrade. Connections that have not logged in have their own pool (tgws.wsguard,
  tgws.admission): they can never cause a 503.
- One handler coroutine per connection reads frames and dispatches them:
      frame -> protocol.parse -> state.check -> HANDLERS[event]
  users/chats run as a separate task (Connection.start_stream) so the loop keeps reading
  and `cancel` can reach a running stream.
- Whatever one connection does, the exception stops in Connection.guarded: other
  connections never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tgws import fastpath, forwarding, protocol, tls
from tgws.admission import client_address, origin_allowed
from tgws.context import App, Connection
from tgws.descriptors import AcceptErrorLog, Capacity
from tgws.errors import CloseCode, Refusal
from tgws.handlers import HANDLERS
from tgws.logging_setup import bind_connection
from tgws.metrics import METRICS_PATH
from tgws.wsguard import CLOSE_TIMEOUT, GuardedConnection

log = logging.getLogger("tgws.server")
# websockets logs frame contents at DEBUG, and a `telegram login` frame holds a code or a
# password: that logger never goes below INFO, whatever [log] level says.
_ws_log = logging.getLogger("tgws.websockets")
_ws_log.setLevel(logging.INFO)

HEALTH_PATH = "/healthz"
REVOCATION_CHECK_INTERVAL = 2.0  # seconds between checks that connected API keys still exist


class TgwsServer:
    def __init__(self, app: App, capacity: Capacity | None = None) -> None:
        self.app = app
        self.capacity = capacity or Capacity.of(app.config.server)
        self._server: Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._accept_log = AcceptErrorLog()
        self.tls: ssl.SSLContext | None = None  # wss:// ([server] tls_cert; tgws.tls)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    async def start(self) -> None:
        cfg = self.app.config.server
        edge = self.app.edge
        self.tls = tls.server_context(cfg, self.app.config.source)
        edge.configure(cfg, max_connections=self.capacity.max_connections,
                       max_unverified=self.capacity.max_unverified)
        self._accept_log.install(asyncio.get_running_loop())
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            create_connection=edge.connection_class(),
            open_timeout=min(10.0, cfg.login_timeout),
            close_timeout=CLOSE_TIMEOUT,
            process_request=self._route,
            max_size=cfg.max_message_size,
            write_limit=cfg.write_limit,
            compression="deflate" if cfg.compression else None,
            ping_interval=cfg.ping_interval or None,
            ping_timeout=cfg.ping_timeout or None,
            logger=_ws_log,
            server_header="tgws",
            ssl=self.tls,
        )
        self._watcher = asyncio.get_running_loop().create_task(self._watch_revocations())
        log.info("listening on %s://%s:%d%s", cfg.scheme, cfg.host, self.port, cfg.path)

    # -- HTTP routing ---------------------------------------------------------------------
    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            return await self._health()
        if path == METRICS_PATH:
            return self.app.metrics.respond(self.app, connection, request)
        if path != self.app.config.server.path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if self.app.shutting_down:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Shutting down\n")
        cfg = self.app.config.server
        headers = request.headers
        if isinstance(connection, GuardedConnection) and self.app.edge.trusted:
            client = client_address(connection.tcp_peer, headers.get_all("Forwarded"),
                                    headers.get_all("X-Forwarded-For"), self.app.edge.trusted)
            self.app.edge.client_known(connection, client)
        origins = headers.get_all("Origin")
        hosts = headers.get_all("Host")
        host = hosts[0] if len(hosts) == 1 else None
        if len(origins) > 1 or not origin_allowed(origins[0] if origins else None,
                                                  host, cfg.allowed_origins):
            log.warning("refusing a connection: Origin %r not allowed (allowed_origins)",
                        origins[0] if len(origins) == 1 else origins)
            return connection.respond(http.HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        if self.app.edge.verified_full:
            log.warning("refusing a connection: %d logged in (max_connections)",
                        self.app.edge.pools.verified)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "Too many connections\n")
        return None

    async def _health(self) -> Response:
        store_ok = await self.app.store.healthy()
        # Accounts whose Telegram calls pass their deadlines (or cannot reach Telegram):
        # the daemon still serves, so "degraded" keeps HTTP 200.
        stuck = self.app.gateway.stuck_accounts
        healthy = "ok" if stuck == 0 else "degraded"
        body = {
            "status": healthy if store_ok and not self.app.shutting_down else "unavailable",
            "store": store_ok,
            "uptime": round(time.monotonic() - self.app.started_at, 3),
            "connections": len(self.app.connections),
            # The edge's pools (tgws.wsguard): logged in, and not (handshakes included).
            "logged_in": self.app.edge.pools.verified,
            "not_logged_in": self.app.edge.pools.unverified,
            "dropped_not_logged_in": self.app.edge.dropped,
            "accounts": self.app.gateway.connected_accounts,
            "accounts_stuck": stuck,
        }
        status = http.HTTPStatus.OK if body["status"] != "unavailable" else \
            http.HTTPStatus.SERVICE_UNAVAILABLE
        data = json.dumps(body).encode()
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(data))),
                           ("Cache-Control", "no-store")])
        return Response(status.value, status.phrase, headers, data)

    # -- one connection -------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.client if isinstance(ws, GuardedConnection) else \
            str(ws.remote_address[0]) if ws.remote_address else "?"
        conn = Connection(self.app, ws, peer)
        bind_connection(conn)  # JSON log lines from this task and its children name it
        self.app.connections.add(conn)
        self.app.metrics.connection_opened()
        log.info("%s: opened from %s", conn.label(), peer)
        try:
            await self._read_loop(conn)
        finally:
            await self._cleanup(conn)
            code, reason = fastpath.close_code_and_reason(ws)
            log.info("%s: closed (code %s%s)", conn.label(), code,
                     f", {reason!r}" if reason else "")

    async def _read_loop(self, conn: Connection) -> None:
        idle = self.app.config.server.idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle or None):
                    frame = await conn.ws.recv()
            except TimeoutError:
                if conn.state.streaming:
                    continue  # a long stream is activity, not idleness
                log.info("%s: idle for %.0f s; closing", conn.label(), idle)
                await conn.close(CloseCode.NORMAL, "idle timeout")
                return
            except ConnectionClosed:
                return
            await self._dispatch(conn, frame)
            if conn.ws.close_code is not None or conn.ws.state.name in ("CLOSING", "CLOSED"):
                return

    async def _dispatch(self, conn: Connection, frame: str | bytes) -> None:
        try:
            request = protocol.parse(frame)
            event = protocol.event_of(request)
            canned = conn.state.check(request)
        except Refusal as refusal:
            await conn.guarded(refusal.event, _raise(refusal))
            return
        log.info("%s: %s", conn.label(), event)
        if canned is not None:
            with contextlib.suppress(ConnectionClosed):
                await conn.success(canned.event, canned.message)
            return
        if conn.api_key is not None and not await self.app.store.api_key_active(conn.api_key.id):
            await self._revoked(conn)
            return
        await self._run_until_closed(conn, event, HANDLERS[event](conn, request))
        guard = self.app.gateway.guard
        if (guard is not None and event == protocol.LOGIN and conn.api_key is not None
                and conn.ws.close_code is None):
            # Several daemons (PostgreSQL): served here, or forwarded to the key's owner.
            await forwarding.place(conn, guard, frame)

    async def _run_until_closed(self, conn: Connection, event: str,
                                work: Coroutine[Any, Any, None]) -> None:
        """Run one request's handler, and stop it if the client closes meanwhile.

        Handlers run inside the read loop (replies keep the order of requests), so one
        waiting on Telegram would otherwise hide the client's close until Telegram answers:
        the connection stays counted and its handler keeps working for nobody.
        """
        handler = asyncio.get_running_loop().create_task(conn.guarded(event, work))
        closed = asyncio.get_running_loop().create_task(conn.ws.wait_closed())
        try:
            await asyncio.wait((handler, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (handler, closed):
                task.cancel()
            await asyncio.gather(handler, closed, return_exceptions=True)

    async def _cleanup(self, conn: Connection) -> None:
        self.app.connections.discard(conn)
        task = conn.stream
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if conn.account is not None:
            self.app.gateway.release(conn.account)
            conn.account = None

    # -- revocation -----------------------------------------------------------------------
    async def _revoked(self, conn: Connection) -> None:
        log.info("%s: api key revoked; closing", conn.label())
        with contextlib.suppress(ConnectionClosed):
            await conn.close(CloseCode.POLICY, protocol.API_KEY_REVOKED)

    async def check_revocations(self) -> None:
        """Close every connection whose API key was revoked (possibly by another process)."""
        key_ids = {c.api_key.id for c in self.app.connections if c.api_key is not None}
        revoked = [k for k in key_ids if not await self.app.store.api_key_active(k)]
        conns = [c for k in revoked for c in self.app.by_api_key(k)]
        # All at once: a client that ignores the close frame must not hold up the others.
        await asyncio.gather(*(self._revoked(c) for c in conns),
                             *(self.app.gateway.forget(k) for k in revoked))
        # Revoked keys' sessions, connected or not, are logged out at Telegram and then
        # deleted, in the background (the first check after start covers a stopped daemon).
        self.app.gateway.sweep_revoked()

    async def _watch_revocations(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_CHECK_INTERVAL)
            try:
                await self.check_revocations()
            except Exception:
                log.exception("revocation check failed")

    # -- shutdown -------------------------------------------------------------------------
    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close every connection with 1001, wait at most `grace` s."""
        self.app.shutting_down = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        server = self._server
        self._accept_log.uninstall()
        if server is None:
            return
        server.close(close_connections=False)
        conns = list(self.app.connections)
        # Streams stop first: what clients confirmed is already committed (streaming.py
        # commits after each acknowledged batch), so cancelling loses nothing.
        streams = [c.stream for c in conns if c.stream is not None]
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*(_close_quietly(c) for c in conns),
                                     return_exceptions=True)
                await server.wait_closed()
        except TimeoutError:
            # A client that stopped reading cannot take the close frame: drop it.
            log.warning("shutdown: connections still open after %.1f s; aborting them", grace)
            for conn in self.app.connections:
                fastpath.abort(conn.ws)


async def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        await conn.close(CloseCode.GOING_AWAY, "server shutting down")


async def _raise(refusal: Refusal) -> None:
    raise refusal
