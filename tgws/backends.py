"""Which Telegram the gateway's clients reach: Telegram itself, or the sandbox.

`telegram` (the default, production): real TelegramClients against Telegram's servers, or
the MTProto server named in [telegram.server].
`sandbox`: the same unmodified TelegramClient with the in-process sandbox Telegram below
it (tgws.sandbox), holding the fixed demo world; [sandbox] tick makes that world live.
[sandbox] hostile = true holds the hostile world instead (docs/sandbox.md), with the fault
plan the [sandbox] fault keys describe. [sandbox] url = "tcp://127.0.0.1:PORT" reaches the
shared world of `tgws sandbox serve` instead (several daemons, one world).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tgws.config import Config, SandboxConfig
from tgws.telegram_clients import (
    ClientFactory,
    client_options,
    skip_listed_entities,
    telegram_client_factory,
)

log = logging.getLogger("tgws.backends")


class TelegramBackend:
    def __init__(self, config: Config) -> None:
        self.factory: ClientFactory = telegram_client_factory(config.telegram)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SandboxBackend:
    """The demo (or hostile) world behind unmodified Telethon clients, ticking when asked to."""

    def __init__(self, config: Config) -> None:
        from tgws.sandbox import make_sandbox_client

        self.config = config
        self.world = build_world(config.sandbox)
        options = client_options(config.telegram)
        world = self.world

        def make(session: Any) -> Any:
            return make_sandbox_client(world, skip_listed_entities(session), **options)

        self.factory: ClientFactory = make
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.config.sandbox.tick > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sandbox.tick)
            self.world.tick()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


class RemoteSandboxBackend:
    """The shared sandbox of `tgws sandbox serve` ([sandbox] url): one world for several
    daemons. Clients are unmodified TelegramClients whose sender sends the TL bytes over TCP
    (tgws/sandbox/remote.py); the world, its ticks and its faults live in the server."""

    def __init__(self, config: Config) -> None:
        from tgws.sandbox.link import parse_address
        from tgws.sandbox.remote import make_remote_client

        self.config = config
        self.address = parse_address(config.sandbox.url)
        options = client_options(config.telegram)
        address = self.address

        def make(session: Any) -> Any:
            return make_remote_client(address, skip_listed_entities(session), **options)

        self.factory: ClientFactory = make

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def build_world(settings: SandboxConfig) -> Any:
    """The sandbox World [sandbox] describes: the calm demo world, or the hostile one with its
    fault plan switched on (faults are data: the world code never asks whether it is hostile)."""
    from tgws.sandbox import build_demo_world, build_hostile_world

    world = (build_hostile_world(settings.seed) if settings.hostile
             else build_demo_world(seed=settings.seed))
    world.wire = settings.wire
    world.latency = settings.latency
    qr = world.login.qr  # QR login: token lifetime and the demo's scan (sandbox/qr.py)
    qr.ttl, qr.accept_after, qr.accept_as = (settings.qr_token_ttl, settings.qr_accept_after,
                                             settings.qr_accept_as)
    if settings.hostile:
        world.faults.set(rate=settings.fault_rate, kinds=settings.fault_kinds,
                         flood_wait=settings.flood_wait)
        # Pushed updates meet the same unkindness: dropped, or overtaken by the next one.
        world.updates.set(drop_rate=settings.fault_rate, reorder_rate=settings.fault_rate)
    return world


def build_backend(config: Config) -> TelegramBackend | SandboxBackend | RemoteSandboxBackend:
    if config.telegram.backend == "sandbox":
        if config.sandbox.url:
            return RemoteSandboxBackend(config)
        return SandboxBackend(config)
    return TelegramBackend(config)
