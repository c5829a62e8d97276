"""The daemon's life: open the store, build the gateway, serve, reload, shut down.

Signals:
  SIGTERM, SIGINT  graceful shutdown: stop accepting, close connections with 1001 (streams
                   stop; offsets the clients confirmed are already committed), disconnect
                   Telethon, close the store, exit 0 within [server] shutdown_timeout.
                   A second signal exits at once (exit code 1).
  SIGHUP           re-read the config: log level, login limits and the API key check apply
                   live; anything else is logged as "needs a restart".

systemd: READY=1 once listening with the store open, STOPPING=1 on shutdown, RELOADING=1
around a reload, WATCHDOG=1 pings when WatchdogSec is set (tgws.sdnotify).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tgws import config as config_mod
from tgws import descriptors, fastpath, tls
from tgws.auth import LoginLimiter
from tgws.backends import build_backend
from tgws.config import Config
from tgws.config_sections import StoreConfig
from tgws.context import App
from tgws.errors import CloseCode, ConfigError, StoreError
from tgws.gateway import Gateway
from tgws.logging_setup import set_log_format, set_log_level
from tgws.metrics import Metrics
from tgws.ownership_guard import OwnershipGuard, fenced
from tgws.sdnotify import Notifier
from tgws.sealing import load_keyring
from tgws.server import TgwsServer
from tgws.store import Store
from tgws.store.ownership import Ownership
from tgws.store.postgres import PostgresStore
from tgws.wsguard import close_within

log = logging.getLogger("tgws")


def limiter_settings(config: Config) -> dict[str, Any]:
    lim = config.limits
    return {"max_failures_per_connection": lim.failed_logins_per_connection,
            "max_failures_per_peer": lim.failed_logins_per_peer,
            "window": lim.failed_login_window,
            "base_delay": lim.failed_login_delay,
            "max_delay": lim.failed_login_delay * 16}


def limiter_for(config: Config) -> LoginLimiter:
    return LoginLimiter(**limiter_settings(config))


def tune_gc(threshold: int) -> None:
    """Raise the young-generation GC threshold and freeze what start-up allocated.

    Streaming allocates ~30 short-lived objects per message, nearly all freed by reference
    counting; CPython's default threshold (700) still runs a young collection every ~20
    messages. Freezing start-up objects (imports, config, the world of a sandbox) keeps
    them out of every later collection. Done in run() only: tests run daemons in-process
    and must not change their own process's collector.
    """
    if threshold:
        _, second, third = gc.get_threshold()
        gc.set_threshold(threshold, second, third)
    gc.collect()
    gc.freeze()


ACCOUNT_MOVED = "this account moved to another daemon; reconnect"


def store_description(store: StoreConfig) -> str:
    """Which database the daemon opens, for its start-up log line: the sqlite file's absolute
    path (and whether this start creates it), or the PostgreSQL URL without its password."""
    if store.url:
        # The query is left out: asyncpg also takes `?password=…` there. The host and port
        # stay as written (IPv6 brackets included).
        base = store.url.split("?", 1)[0].split("#", 1)[0]
        url = urlsplit(base)
        if url.password is not None:
            host = url.netloc.rpartition("@")[2]
            base = base.replace(url.netloc, f"{url.username or ''}:***@{host}", 1)
        return f"PostgreSQL {base}"
    path = os.path.abspath(store.path)
    return f"sqlite {path}" + ("" if os.path.exists(path) else " (new: created now)")


def ownership_guard_for(config: Config, store: Store) -> OwnershipGuard | None:
    """The leases of a daemon on PostgreSQL (several daemons may share it); None on sqlite."""
    if not isinstance(store, PostgresStore):
        return None
    daemon_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return OwnershipGuard(Ownership(store, daemon_id, "", ttl=config.store.lease_ttl))


def internal_address(config: Config, port: int) -> str:
    """Where the other daemons reach this one ([store] internal_address, else derived)."""
    if config.store.internal_address:
        return config.store.internal_address
    host = config.server.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "wss" if config.server.tls_cert else "ws"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class Daemon:
    """Everything `tgws serve` runs; also used in-process by tests and `tgws demo`."""

    def __init__(self, config: Config, *, reload_loader: Callable[[], Config] | None = None,
                 on_ready: Callable[[Daemon], Any] | None = None) -> None:
        self.config = config
        self.reload_loader = reload_loader
        self.on_ready = on_ready
        self.notifier = Notifier.from_environ()
        self.server: TgwsServer | None = None
        self.app: App | None = None
        self.backend: Any = None
        self._stop = asyncio.Event()
        self._signals = 0
        self.guard: OwnershipGuard | None = None  # PostgreSQL only: this daemon's leases

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def start(self) -> None:
        self.config.telegram.require_credentials()
        fastpath.check_required()  # internals with no public twin, before anything opens
        where = store_description(self.config.store)
        store = await Store.open(self.config.store.target,
                                 keyring=load_keyring(self.config.store.secret_key_file),
                                 deadline=self.config.store.timeout)
        # Said once at start-up, so an operator who started in the wrong folder (a relative
        # [store] path, `tgws serve --sandbox` with no config) sees which database this is.
        log.info("store: %s", where)
        try:
            self.backend = build_backend(self.config)
            metrics = Metrics()
            self.guard = ownership_guard_for(self.config, store)
            if self.guard is not None:
                store = fenced(store, self.guard)  # type: ignore[arg-type]
            gateway = Gateway(self.config.telegram, store,
                              metrics.count_requests(self.backend.factory))
            gateway.guard = self.guard
            self.app = App(self.config, store, gateway, limiter_for(self.config),
                           metrics=metrics)
            # Start-up warning when RLIMIT_NOFILE cannot hold the connection pools.
            self.server = TgwsServer(self.app, descriptors.fit(self.config.server))
            await self.server.start()
            if self.guard is not None:
                self.guard.on_lost = self._lease_lost
                await self.guard.start(internal_address(self.config, self.server.port))
        except BaseException:
            await store.close()
            raise
        await self.backend.start()

    async def run(self) -> int:
        """Serve until a signal asks to stop; returns the exit code."""
        await self.start()
        tune_gc(self.config.server.gc_threshold)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        watchdog = loop.create_task(self.notifier.watchdog_loop())
        self.notifier.ready(f"listening on port {self.port}")
        if self.on_ready is not None:
            self.on_ready(self)
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            loop.add_signal_handler(signal.SIGTERM, self._exit_now)
            loop.add_signal_handler(signal.SIGINT, self._exit_now)
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            self.notifier.stopping()
            await self.stop()
        return 0

    def _on_stop_signal(self, sig: int) -> None:
        log.info("received %s; shutting down", signal.Signals(sig).name)
        self._stop.set()

    @staticmethod
    def _exit_now() -> None:
        log.warning("second signal; exiting at once")
        os._exit(1)

    async def stop(self) -> None:
        timeout = self.config.server.shutdown_timeout
        if self.backend is not None:
            await self.backend.stop()
        if self.server is not None:
            await self.server.shutdown(timeout)
        if self.app is not None:
            await self.app.gateway.close()
            if self.guard is not None:
                with contextlib.suppress(StoreError):  # unreleased leases expire anyway
                    await self.guard.stop()
            await self.app.store.close()
        log.info("stopped")

    async def _lease_lost(self, api_key_id: int) -> None:
        """Another daemon runs the account now (or will): stop its session here at once and
        close its connections, which reconnect and are forwarded to the new owner."""
        if self.app is None:
            return
        conns = self.app.by_api_key(api_key_id)
        await asyncio.gather(
            self.app.gateway.forget(api_key_id),
            *(close_within(c.ws, int(CloseCode.TRY_AGAIN), ACCOUNT_MOVED) for c in conns),
            return_exceptions=True)

    # -- reload ---------------------------------------------------------------------------
    def _on_reload_signal(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        if self.reload_loader is None or self.app is None or self.server is None:
            return
        self.notifier.reloading()
        try:
            new = self.reload_loader()
        except ConfigError as err:
            log.error("reload refused, keeping the running config: %s", err)
            self.notifier.ready()
            return
        old = self.config
        applied, restart = diff_config(old, new)
        if self.server.tls is not None:
            try:
                tls.reload(self.server.tls, new.server, new.source)
            except ConfigError as err:
                log.error("reload: keeping the running TLS certificate: %s", err)
            else:
                # Same files or new ones: the chain is re-read either way (a renewal keeps
                # the paths), and the next handshakes present it.
                applied.append("server.tls_cert (certificate chain re-read)")
                restart = [k for k in restart if k not in TLS_KEYS]
        set_log_level(new.log.level)
        set_log_format(new.log.format)
        self.app.limiter.configure(**limiter_settings(new))
        live = dataclasses.replace(old, log=new.log, limits=new.limits,
                                   streaming=new.streaming, metrics=new.metrics)
        self.config = live
        self.app.config = live
        await self.server.check_revocations()
        log.info("reloaded config: applied %s; needs a restart: %s",
                 ", ".join(applied) or "nothing", ", ".join(restart) or "nothing")
        self.notifier.ready()


LIVE_SECTIONS = ("log", "limits", "streaming", "metrics")
TLS_KEYS = ("server.tls_cert", "server.tls_key")  # re-read on reload while TLS is on


def diff_config(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Keys that changed, split into applied-live and needs-restart."""
    flat_old = _flatten(config_mod.effective_settings(old))
    flat_new = _flatten(config_mod.effective_settings(new))
    changed = sorted(k for k in flat_old.keys() | flat_new.keys()
                     if flat_old.get(k) != flat_new.get(k) and k != "source")
    applied = [k for k in changed if k.split(".")[0] in LIVE_SECTIONS]
    restart = [k for k in changed if k.split(".")[0] not in LIVE_SECTIONS]
    return applied, restart


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
