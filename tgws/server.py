"""The websockets server: routing, the per-connection loop, revocation, shutdown.

- The websocket lives at [server] path (default /ws/telegram/); GET /healthz answers JSON;
  every other path gets HTTP 404, and a full server HTTP 503, before any upgrade.
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
import time

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tgws import protocol
from tgws.context import App, Connection
from tgws.errors import CloseCode, Refusal
from tgws.handlers import HANDLERS

log = logging.getLogger("tgws.server")
# websockets logs frame contents at DEBUG, and a `telegram login` frame holds a code or a
# password: that logger never goes below INFO, whatever [log] level says.
_ws_log = logging.getLogger("tgws.websockets")
_ws_log.setLevel(logging.INFO)

HEALTH_PATH = "/healthz"
REVOCATION_CHECK_INTERVAL = 2.0  # seconds between checks that connected API keys still exist


class TgwsServer:
    def __init__(self, app: App) -> None:
        self.app = app
        self._server: Server | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    async def start(self) -> None:
        cfg = self.app.config.server
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._route,
            max_size=cfg.max_message_size,
            write_limit=cfg.write_limit,
            compression="deflate" if cfg.compression else None,
            ping_interval=cfg.ping_interval or None,
            ping_timeout=cfg.ping_timeout or None,
            logger=_ws_log,
            server_header="tgws",
        )
        self._watcher = asyncio.get_running_loop().create_task(self._watch_revocations())
        log.info("listening on ws://%s:%d%s", cfg.host, self.port, cfg.path)

    # -- HTTP routing ---------------------------------------------------------------------
    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            return await self._health()
        if path != self.app.config.server.path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if self.app.shutting_down:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Shutting down\n")
        if len(self.app.connections) >= self.app.config.server.max_connections:
            log.warning("refusing a connection: %d open (max_connections)",
                        len(self.app.connections))
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "Too many connections\n")
        return None

    async def _health(self) -> Response:
        store_ok = await self.app.store.healthy()
        body = {
            "status": "ok" if store_ok and not self.app.shutting_down else "unavailable",
            "store": store_ok,
            "uptime": round(time.monotonic() - self.app.started_at, 3),
            "connections": len(self.app.connections),
            "accounts": self.app.gateway.connected_accounts,
        }
        status = http.HTTPStatus.OK if body["status"] == "ok" else \
            http.HTTPStatus.SERVICE_UNAVAILABLE
        data = json.dumps(body).encode()
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(data))),
                           ("Cache-Control", "no-store")])
        return Response(status.value, status.phrase, headers, data)

    # -- one connection -------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = str(ws.remote_address[0]) if ws.remote_address else "?"
        conn = Connection(self.app, ws, peer)
        self.app.connections.add(conn)
        log.info("%s: opened from %s", conn.label(), peer)
        try:
            await self._read_loop(conn)
        finally:
            await self._cleanup(conn)
            log.info("%s: closed (code %s%s)", conn.label(), ws.close_code,
                     f", {ws.close_reason}" if ws.close_reason else "")

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
        await conn.guarded(event, HANDLERS[event](conn, request))

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
        for key_id in key_ids:
            if not await self.app.store.api_key_active(key_id):
                await self.app.gateway.forget(key_id)
                for conn in self.app.by_api_key(key_id):
                    await self._revoked(conn)

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
                conn.ws.transport.abort()


async def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        await conn.close(CloseCode.GOING_AWAY, "server shutting down")


async def _raise(refusal: Refusal) -> None:
    raise refusal
