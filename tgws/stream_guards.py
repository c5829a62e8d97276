"""What surrounds every users/chats stream, apart from the items themselves.

Progress replies, flood-wait and retry notices, the (API key, kind, group) offset lock, the
deadline on a client that stops reading, and Telegram's failures turned into replies.
tgws/streaming.py is the request logic that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tgws import fastpath
from tgws import protocol as p
from tgws.context import Connection
from tgws.errors import GatewayError, NotAuthorized, Refusal
from tgws.gateway import Account, OnRetry
from tgws.peers import Peer

log = logging.getLogger("tgws.streaming")


@dataclass(slots=True)
class Progress:
    """Progress replies every N items or T seconds, when the client asked for them."""

    conn: Connection
    event: str
    enabled: bool
    every: int
    interval: float
    next_count: int = 0
    next_time: float = 0.0

    def start(self) -> None:
        self.next_count = self.every
        self.next_time = time.monotonic() + self.interval

    async def update(self, group: str, sent: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if sent < self.next_count and now < self.next_time:
            return
        self.next_count = sent + self.every
        self.next_time = now + self.interval
        await self.conn.send(p.reply(self.event, p.PROGRESS,
                                     {"group": group, "sent": sent, "total": total}))


def progress_for(conn: Connection, event: str, enabled: bool) -> Progress:
    cfg = conn.app.config.streaming
    return Progress(conn, event, enabled, cfg.progress_every, cfg.progress_interval)


async def session_lost(conn: Connection, account: Account, event: str) -> Refusal:
    await account.forget_session()
    conn.app.session_ended(account.api_key_id)
    return Refusal(event, p.SESSION_EXPIRED)


# --- when Telegram or the client fails, stalls or floods ---------------------------------------
Notify = Callable[[int], Awaitable[None]]


def notices(conn: Connection, event: str, enabled: bool) -> tuple[Notify | None, OnRetry | None]:
    """Flood-wait and retry notices (progress replies), only when the request asked for
    progress: a client that said "progress": false gets items and the final reply only."""
    if not enabled:
        return None, None

    async def retrying(pause: float) -> None:
        await conn.send(p.reply(event, p.PROGRESS,
                                p.RETRYING.format(seconds=f"{pause:g}"), wait=pause))

    return conn.flood_notifier(event), retrying


@contextlib.asynccontextmanager
async def group_turn(conn: Connection, progress: Progress, kind: str, peer: Peer,
                      group: str) -> AsyncIterator[None]:
    """Hold the (API key, kind, group) offset lock; say so when another stream holds it."""
    lock = conn.app.offset_locks.get(api_key_id(conn), kind, peer.id)
    if lock.locked() and progress.enabled:
        await conn.send(p.reply(progress.event, p.PROGRESS,
                                p.WAITING_FOR_STREAM.format(group=group), group=group))
    async with lock:
        yield


@contextlib.asynccontextmanager
async def client_keeps_up(conn: Connection, event: str) -> AsyncIterator[None]:
    """Writes to the client (draining a full buffer) and its pongs, within ack_timeout.

    A client that stops reading would otherwise hold the stream, its offset lock and the
    Telegram iterator for ever (with [server] ping_interval = 0 nothing else notices). It
    cannot take a reply or a close frame either, so the connection is aborted.
    """
    limit = conn.app.config.streaming.ack_timeout
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        log.warning("%s: the client read nothing for %g s; dropping it", conn.label(), limit)
        fastpath.abort(conn.ws)
        raise Refusal(event, p.CLIENT_STALLED) from None


@contextlib.asynccontextmanager
async def telegram_errors(conn: Connection, account: Account, event: str) -> AsyncIterator[None]:
    try:
        yield
    except NotAuthorized:
        raise await session_lost(conn, account, event) from None
    except GatewayError as err:
        raise p.gateway_refusal(event, err) from None


def api_key_id(conn: Connection) -> int:
    assert conn.api_key is not None
    return conn.api_key.id
