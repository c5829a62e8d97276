"""Which Telegram the gateway's clients reach: Telegram itself, or the sandbox.

`telegram` (the default, production): real TelegramClients against Telegram's servers, or
the MTProto server named in [telegram.server].
`sandbox`: the same unmodified TelegramClient with the in-process sandbox Telegram below
it (tgws.sandbox), holding the fixed demo world; [sandbox] tick makes that world live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tgws.config import Config
from tgws.telegram_clients import ClientFactory, client_options, telegram_client_factory

log = logging.getLogger("tgws.backends")


class TelegramBackend:
    def __init__(self, config: Config) -> None:
        self.factory: ClientFactory = telegram_client_factory(config.telegram)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SandboxBackend:
    """The demo world behind unmodified Telethon clients, ticking when asked to."""

    def __init__(self, config: Config) -> None:
        from tgws.sandbox import build_demo_world, make_sandbox_client

        self.config = config
        self.world = build_demo_world(seed=config.sandbox.seed)
        self.world.wire = config.sandbox.wire
        options = client_options(config.telegram)
        world = self.world

        def make(session: Any) -> Any:
            return make_sandbox_client(world, session, **options)

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


def build_backend(config: Config) -> TelegramBackend | SandboxBackend:
    if config.telegram.backend == "sandbox":
        return SandboxBackend(config)
    return TelegramBackend(config)
