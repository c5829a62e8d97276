"""A client whose account another daemon runs is forwarded there (PostgreSQL, several daemons).

After `login` verified the key, the server asks :func:`place`: if this daemon holds the key's
lease, or nobody holds a live one, the client is served here (tgws/ownership_guard.py): the
lease is taken at once, before the client's first request, and the connection holds the
account, so the lease goes when the account idles out. If another daemon holds a live lease,
the websocket is proxied to that daemon's registered internal address: the `login` frame is
replayed there, then frames are copied both ways until either side closes. So an account's
session stays on one daemon while it lives, whichever daemon the load balancer picked
(docs/scaling.md).

If the owner cannot be reached (it died; its lease has not expired yet), the client waits,
polling the lease, until it expires (at most the lease time) and is then served here: the
takeover. A connection that cannot be placed within that time is closed 1013 (try again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tgws import fastpath
from tgws.context import Connection
from tgws.errors import CloseCode, StoreError, TelegramUnavailable
from tgws.ownership_guard import AccountMoved, OwnershipGuard

log = logging.getLogger("tgws.forwarding")

OWNER_GONE: Final = "the daemon running this account went away; reconnect"
NOT_PLACED: Final = "this account's daemon cannot be reached yet; reconnect"


class _Unreachable(Exception):
    """The owner's address did not answer a websocket handshake and a login in time."""


async def place(conn: Connection, guard: OwnershipGuard, login_frame: str | bytes) -> None:
    """Serve the logged-in connection here (return at once) or forward it until it closes."""
    assert conn.api_key is not None
    key = conn.api_key.id
    loop = asyncio.get_running_loop()
    # The owner's lease expires at most ttl after its last heartbeat: wait that, and an
    # attempt more.
    give_up = loop.time() + guard.ttl * 2
    while True:
        try:
            address = await guard.route(key)
        except (AccountMoved, StoreError) as err:
            address, why = "", str(err)
        if address is None:
            if await _hold_here(conn, guard, key):
                return  # served here, under our lease
            why = "the lease could not be taken yet"
        elif address:
            try:
                await _forward(conn, address, login_frame, guard.ttl)
                return
            except _Unreachable as err:
                why = str(err)
        if loop.time() >= give_up:
            log.warning("%s: cannot place key #%d (%s); closing", conn.label(), key, why)
            with contextlib.suppress(ConnectionClosed):
                await conn.close(CloseCode.TRY_AGAIN, NOT_PLACED)
            return
        await asyncio.sleep(guard.ttl / 10)  # poll the lease until its owner renews or it expires


async def _hold_here(conn: Connection, guard: OwnershipGuard, key: int) -> bool:
    """Take the key's lease now, before the client's first request: False if another daemon
    took it first, or the database could not say (the caller tries again). The connection
    holds the account from here on, so the lease is released with it when it goes idle."""
    try:
        await guard.hold(key)
    except TelegramUnavailable as err:  # AccountMoved included
        log.info("%s: key #%d not taken yet (%s)", conn.label(), key, err)
        return False
    if conn.account is None:
        conn.account = conn.app.gateway.acquire(key)
    return True


async def _open(conn: Connection, address: str, login_frame: str | bytes,
                ttl: float) -> tuple[ClientConnection, str | bytes]:
    config = conn.app.config.server
    url = address.rstrip("/") + config.path
    # A live owner answers at once; a stopped one (its TCP backlog still accepts) must not
    # hold the client past its lease: a third of it per attempt.
    limit = min(10.0, config.login_timeout, ttl / 3)
    try:
        async with asyncio.timeout(limit):
            upstream = await connect(url, max_size=config.max_message_size,
                                     open_timeout=None, ping_interval=config.ping_interval,
                                     ping_timeout=config.ping_timeout or None,
                                     additional_headers={"X-Forwarded-For": conn.peer},
                                     create_connection=fastpath.held_pong_connection())
            try:
                await upstream.send(login_frame)
                return upstream, await upstream.recv()
            except BaseException:
                await upstream.close()
                raise
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as err:
        raise _Unreachable(f"{url}: {type(err).__name__}: {err}") from None


async def _forward(conn: Connection, address: str, login_frame: str | bytes,
                   ttl: float) -> None:
    upstream, first = await _open(conn, address, login_frame, ttl)
    log.info("%s: forwarded to %s", conn.label(), address)
    if '"success"' not in (first if isinstance(first, str) else first.decode()):
        # The owner refused what we accepted (its own limits): the client hears the owner.
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(first)
    # else: the client has our login reply already; the owner's says the same.

    # Messages of the owner's handled for the client: its login reply (read by _open, and
    # sent on or not: either way the client has a reply to its login), then each one copied.
    delivered = [1]

    async def copy(source: object, target: object, count: list[int] | None = None) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await target.send(await source.recv())  # type: ignore[attr-defined]
                if count is not None:
                    count[0] += 1
                    held = getattr(upstream, "ping_held", None)
                    if held is not None:
                        held.set()

    down = asyncio.create_task(copy(upstream, conn.ws, delivered))
    up = asyncio.create_task(copy(conn.ws, upstream))
    tasks = [down, up]
    if getattr(upstream, "held_pings", None) is not None:
        tasks.append(asyncio.create_task(_relay_pings(upstream, conn, delivered)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
    if conn.ws.close_code is None:
        # The owner closed (or died): its code when it sent one, else "try again".
        code = upstream.close_code
        reason = upstream.close_reason or ""
        if code is None or code in (1005, 1006):
            code, reason = int(CloseCode.TRY_AGAIN), OWNER_GONE
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.close(code, reason)


async def _relay_pings(upstream: Any, conn: Connection, delivered: list[int]) -> None:
    """Answer each of the owner's pings only once the client has every message the owner
    sent before it: a ping of our own goes to the client after those messages, and the
    owner's pong follows the client's. The owner's acknowledgements (tgws/acks.py) then
    mean what they mean on a direct connection, "the client's websocket has read them",
    and a client that drops loses no item the owner has committed. (Keep-alive pings take
    the same way: the owner then hears of a client that stopped reading.)"""
    held = upstream.held_pings  # fastpath.held_pong_connection(): (data, messages before)
    wake: asyncio.Event = upstream.ping_held
    with contextlib.suppress(ConnectionClosed):
        while True:
            await wake.wait()
            wake.clear()
            while held and held[0][1] <= delivered[0]:
                data, _ = held.popleft()
                await (await conn.ws.ping())
                await upstream.pong(data)
