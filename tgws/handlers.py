"""One coroutine per event: HANDLERS maps the event name to it.

Each handler runs after `state.check` allowed the request; it talks to the store and the
gateway, replies, and reports the outcome to the state machine. Refusals are raised, never
sent here: tgws.server turns them into the failed reply and the close the seed asks for.
A handler never touches Telethon or SQL directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tgws import protocol as p
from tgws.context import Connection
from tgws.errors import (
    CloseCode,
    CodeInvalid,
    FloodWait,
    NotAuthorized,
    PasswordInvalid,
    PasswordNeeded,
    PhoneInvalid,
    Refusal,
    TelegramFailure,
)
from tgws.gateway import Account
from tgws.state import Outcome
from tgws.streaming import stream_chats, stream_users

log = logging.getLogger("tgws.handlers")

Handler = Callable[[Connection, Any], Coroutine[Any, Any, None]]


def account_of(conn: Connection) -> Account:
    if conn.account is None:
        assert conn.api_key is not None  # state.check guarantees a verified key
        conn.account = conn.app.gateway.acquire(conn.api_key.id)
    return conn.account


async def login(conn: Connection, request: p.Login) -> None:
    app = conn.app
    if app.limiter.peer_blocked(conn.peer):
        raise Refusal(p.LOGIN, p.TOO_MANY_FAILURES, close=CloseCode.POLICY)
    record = await app.store.verify_api_key(request.api_key)
    if record is None:
        conn.failed_logins += 1
        app.limiter.record_failure(conn.peer)
        # Slow down guessing: each failure on this connection waits longer.
        await asyncio.sleep(app.limiter.delay_for(conn.peer, conn.failed_logins))
        if (app.limiter.connection_blocked(conn.failed_logins)
                or app.limiter.peer_blocked(conn.peer)):
            log.warning("%s: too many failed logins from %s; closing", conn.label(), conn.peer)
            raise Refusal(p.LOGIN, p.UNAUTHORIZED, close=CloseCode.POLICY)
        raise Refusal(p.LOGIN, p.UNAUTHORIZED)
    conn.api_key = record
    log.info("%s: api key %r verified", conn.label(), record.name)
    if await app.store.has_session(record.id):
        conn.state.advance(Outcome.KEY_ACCEPTED_WITH_SESSION)
        await conn.success(p.LOGIN, p.SESSION_EXISTS_LOGIN)
    else:
        conn.state.advance(Outcome.KEY_ACCEPTED)
        await conn.success(p.LOGIN, p.SEND_PHONE_NUMBER)


async def telegram_login(conn: Connection, request: p.TelegramLogin) -> None:
    event = p.TELEGRAM_LOGIN
    account = account_of(conn)
    if await account.has_session():
        # Another connection of this API key finished logging in meanwhile.
        conn.state.advance(Outcome.SIGNED_IN)
        await conn.success(event, p.SESSION_EXISTS_TELEGRAM)
        return
    notify = conn.flood_notifier(event)
    try:
        if request.phone is not None:
            await account.send_code(request.phone, notify)
            conn.state.advance(Outcome.CODE_SENT)
            await conn.success(event, p.SEND_CODE)
        elif request.code is not None:
            await account.sign_in(request.code, notify)
            conn.state.advance(Outcome.SIGNED_IN)
            log.info("%s: telegram session created", conn.label())
            await conn.success(event, p.LOGGED_IN)
        else:
            assert request.password is not None
            await account.check_password(request.password, notify)
            conn.state.advance(Outcome.SIGNED_IN)
            log.info("%s: telegram session created (2FA)", conn.label())
            await conn.success(event, p.LOGGED_IN)
    except PasswordNeeded:
        conn.state.advance(Outcome.PASSWORD_NEEDED)
        await conn.success(event, p.SEND_PASSWORD)
    except PhoneInvalid:
        raise Refusal(event, p.INVALID_PHONE, close=CloseCode.NORMAL) from None
    except CodeInvalid:
        raise Refusal(event, p.INVALID_CODE, close=CloseCode.NORMAL) from None
    except PasswordInvalid:
        raise Refusal(event, p.INVALID_PASSWORD, close=CloseCode.NORMAL) from None
    except (FloodWait, TelegramFailure, NotAuthorized) as err:
        raise p.gateway_refusal(event, err) from None


async def logout(conn: Connection, request: p.Logout) -> None:
    account = account_of(conn)
    if not await account.has_session():
        raise Refusal(p.LOGOUT, p.NO_SESSION)
    # Every connection of this key loses its Telegram session, not only this one.
    for other in conn.app.by_api_key(account.api_key_id):
        if other.stream is not None:
            other.stream.cancel()
    await account.log_out()
    conn.app.session_ended(account.api_key_id)
    log.info("%s: telegram session logged out", conn.label())
    await conn.success(p.LOGOUT, p.LOGGED_OUT)


async def cancel(conn: Connection, request: p.Cancel) -> None:
    task = conn.stream
    if task is None or task.done():
        raise Refusal(p.CANCEL, p.NOTHING_TO_CANCEL)
    task.cancel()
    # Wait for the stream to stop so "cancelled" is the last reply of that stream.
    await asyncio.gather(task, return_exceptions=True)
    await conn.success(p.CANCEL, p.CANCELLED)


async def users(conn: Connection, request: p.Users) -> None:
    conn.start_stream(p.USERS, stream_users(conn, account_of(conn), request))


async def chats(conn: Connection, request: p.Chats) -> None:
    conn.start_stream(p.CHATS, stream_chats(conn, account_of(conn), request))


HANDLERS: dict[str, Handler] = {
    p.LOGIN: login,
    p.TELEGRAM_LOGIN: telegram_login,
    p.USERS: users,
    p.CHATS: chats,
    p.LOGOUT: logout,
    p.CANCEL: cancel,
}
