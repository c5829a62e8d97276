"""Prometheus metrics: the one module through which tgws counts (docs/metrics.md).

Every daemon has its own Metrics (and CollectorRegistry): tests run many daemons in one
process, and prometheus-client's global registry would mix their numbers. The rest of
tgws calls the small methods below at its choke points, once per event or per page,
never per item, so the streaming hot path stays as cheap as it was:

  server.py      GET /metrics (respond), connections opened
  context.py     a stream starts (stream_started)
  streaming.py   a page of items sent (items_sent), an offset commit timed (commit)
  live.py        the same for watch (its items, its commits)
  handlers.py    a login with a wrong API key (failed_login)
  daemon.py      every Telethon client the gateway builds counts its requests
                 (count_requests): by TL method, errors by type, flood waits

Gauges that describe the present (connections, accounts, running streams) are read from
the App when scraped, not kept in step by hand.
"""

from __future__ import annotations

import http
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tgws import fastpath
from tgws.admission import Networks, client_address

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from tgws.context import App

METRICS_PATH = "/metrics"
# The classic text format that generate_latest() writes (what every Prometheus reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STREAM_KINDS = ("users", "chats", "watch")  # the events Connection.start_stream runs
# Offset commits are one sqlite statement: sub-millisecond unless the disk stalls.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

_T = TypeVar("_T")


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # CPU, memory, descriptors of this process
        self.connections = Gauge("tgws_connections", "Open websocket connections.",
                                 registry=registry)
        self.logged_in = Gauge("tgws_connections_logged_in",
                               "Websocket connections that passed `login`.", registry=registry)
        self.opened = Counter("tgws_connections_opened", "Websocket connections accepted.",
                              registry=registry)
        self.accounts = Gauge("tgws_accounts", "Telegram accounts with a live client.",
                              registry=registry)
        self.streams = Gauge("tgws_streams", "Streams running, by kind (users, chats, watch).",
                             ["kind"], registry=registry)
        self.streams_started = Counter("tgws_streams_started", "Streams started, by kind.",
                                       ["kind"], registry=registry)
        self.items = Counter("tgws_items_sent",
                             "Items (members, messages, watch items) sent, by kind.",
                             ["kind"], registry=registry)
        self.requests = Counter("tgws_telegram_requests",
                                "Telegram API requests sent, by TL method.",
                                ["method"], registry=registry)
        self.request_errors = Counter(
            "tgws_telegram_request_errors",
            "Telegram API requests that failed, by TL method and error type.",
            ["method", "error"], registry=registry)
        self.flood_waits = Counter("tgws_flood_waits", "FLOOD_WAIT errors from Telegram.",
                                   registry=registry)
        self.flood_wait_seconds = Counter(
            "tgws_flood_wait_seconds", "Seconds Telegram asked to wait, summed.",
            registry=registry)
        self.commits = Histogram("tgws_offset_commit_seconds",
                                 "Offset commits to the store and their latency.",
                                 buckets=COMMIT_BUCKETS, registry=registry)
        self.failed_logins = Counter("tgws_failed_logins",
                                     "`login` requests with an unknown or revoked API key.",
                                     registry=registry)
        for kind in STREAM_KINDS:  # shown at 0 before the first stream
            self.streams.labels(kind)
            self.streams_started.labels(kind)
            self.items.labels(kind)

    # -- the calls the rest of tgws makes -------------------------------------------------
    def connection_opened(self) -> None:
        self.opened.inc()

    def stream_started(self, kind: str) -> None:
        self.streams_started.labels(kind).inc()

    def items_sent(self, kind: str, count: int) -> None:
        if count:
            self.items.labels(kind).inc(count)

    def failed_login(self) -> None:
        self.failed_logins.inc()

    async def commit(self, work: Awaitable[_T]) -> _T:
        """Await an offset commit, timing it."""
        started = time.perf_counter()
        result = await work
        self.commits.observe(time.perf_counter() - started)
        return result

    def count_requests(self, factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap a Telethon client factory: each client counts the requests it sends.

        Telethon sends every request (its own high-level methods' too) through the
        client's `_call`, so one wrapper per client sees them all, on any sender.
        """

        def make(session: Any) -> Any:
            client = factory(session)
            _count_calls(client, self)
            return client

        return make

    # -- GET /metrics ---------------------------------------------------------------------
    def respond(self, app: App, connection: ServerConnection, request: Request) -> Response:
        """The scrape: 404 when [metrics] is off, 403 for a client outside [metrics] allow."""
        cfg = app.config.metrics
        if not cfg.enabled:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        peer = getattr(connection, "tcp_peer", None) or _remote(connection)
        if app.edge.trusted.contains(peer):
            headers = request.headers
            peer = client_address(peer, headers.get_all("Forwarded"),
                                  headers.get_all("X-Forwarded-For"), app.edge.trusted)
        if not Networks(cfg.allow).contains(_unmapped(peer)):
            return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        self._read_present(app)
        body = generate_latest(self.registry)
        headers = Headers([("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])
        return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, body)

    def _read_present(self, app: App) -> None:
        self.connections.set(len(app.connections))
        self.logged_in.set(sum(1 for c in app.connections if c.api_key is not None))
        self.accounts.set(app.gateway.connected_accounts)
        running = dict.fromkeys(STREAM_KINDS, 0)
        for conn in app.connections:
            if conn.stream is not None and conn.stream_event in running:
                running[conn.stream_event] += 1
        for kind, count in running.items():
            self.streams.labels(kind).set(count)


def method_name(request: Any) -> str:
    """`messages.GetHistory` for telethon.tl.functions.messages.GetHistoryRequest."""
    name = type(request).__name__.removesuffix("Request")
    module = type(request).__module__.rsplit(".", 1)[-1]
    return name if module == "functions" else f"{module}.{name}"


def _count_calls(client: Any, metrics: Metrics) -> None:
    from telethon.errors import FloodWaitError  # Telethon stays out of the import path

    def wrap(original: Any) -> Any:
        async def counted(sender: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            names = [method_name(r) for r in request] if isinstance(request, list) \
                else [method_name(request)]
            for name in names:
                metrics.requests.labels(name).inc()
            try:
                return await original(sender, request, *args, **kwargs)
            except Exception as err:
                metrics.request_errors.labels(names[0], type(err).__name__).inc()
                if isinstance(err, FloodWaitError):
                    metrics.flood_waits.inc()
                    metrics.flood_wait_seconds.inc(err.seconds)
                raise

        return counted

    fastpath.wrap_calls(client, wrap)


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"


def _unmapped(address: str) -> str:
    """::ffff:127.0.0.1 (a dual-stack socket's IPv4 peer) is 127.0.0.1."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address
