"""Unmodified TelegramClients wired to a sandbox world."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

from telethon import TelegramClient
from telethon.sessions import StringSession

from tgws.sandbox.sender import SandboxSender
from tgws.sandbox.world import World


def make_sandbox_client(world: World, session: Any, api_id: int = 1, api_hash: str = "0" * 32,
                        *, wire: bool | None = None, **client_kwargs: Any) -> TelegramClient:
    """A real TelegramClient whose MTProtoSender is replaced by a SandboxSender on `world`.

    `session` is anything TelegramClient accepts (a Session, a file name, None).
    `wire` overrides World.wire for this client. Other keyword arguments go to TelegramClient
    (e.g. flood_sleep_threshold=0, receive_updates=False, connection_retries=2, retry_delay=0).
    Switching data centres works (Telethon's _switch_dc reuses this sender); downloads from
    other DCs do not: Telethon would build real senders for them.
    With receive_updates=True (Telethon's default) the world pushes updates onto the client's
    own updates queue, so event handlers and Telethon's gap handling run (updates.py).
    """
    client = TelegramClient(session, api_id, api_hash, **client_kwargs)
    # The sender reconnects the way Telethon's would, with the client's own settings.
    client._sender = SandboxSender(world, client.session.auth_key,
                                   auth_key_callback=client._auth_key_callback, wire=wire,
                                   retries=client._connection_retries,
                                   delay=client._retry_delay,
                                   auto_reconnect=client._auto_reconnect,
                                   updates_queue=client._updates_queue,
                                   auto_reconnect_callback=functools.partial(
                                       _after_reconnect, client))
    return client


async def _after_reconnect(client: TelegramClient) -> None:
    """Telethon's _handle_auto_reconnect (a get_me, so Telegram pushes again), for a client
    that receives updates; one that does not skips that request, so the calls (and faults)
    a receive_updates=False client meets after a drop stay what they were."""
    if not client._no_updates:
        await client._handle_auto_reconnect()


@contextlib.asynccontextmanager
async def sandbox_client(world: World, session: Any = None, *, wire: bool | None = None,
                         **client_kwargs: Any) -> AsyncIterator[TelegramClient]:
    """A connected sandbox client (a fresh StringSession by default), disconnected on exit."""
    client = make_sandbox_client(world, StringSession() if session is None else session,
                                 wire=wire, **client_kwargs)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()
