"""One coroutine per event: HANDLERS maps the event name to it.

Each handler runs after `state.check` allowed the request; it talks to the store and the
gateway, replies, and reports the outcome to the state machine. Refusals are raised, never
sent here: tgws.server turns them into the failed reply and the close the seed asks for.
A handler never touches Telethon or SQL directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tgws import live
from tgws import protocol as p
from tgws.context import Connection
from tgws.errors import (
    CloseCode,
    CodeInvalid,
    GatewayError,
    LoginFlood,
    PasswordInvalid,
    PasswordNeeded,
    PhoneInvalid,
    Refusal,
)
from tgws.gateway import Account
from tgws.login_guard import Cooldowns, compact_phone, phone_key
from tgws.qr_login import (
    LoginToken,
    OnFlood,
    QrNotScanned,
    ResendUnavailable,
    pending_phone,
    qr_login,
    resend_code,
)
from tgws.serialize.common import iso
from tgws.state import Outcome
from tgws.streaming import stream_chats, stream_users
from tgws.wsguard import GuardedConnection

log = logging.getLogger("tgws.handlers")

Handler = Callable[[Connection, Any], Coroutine[Any, Any, None]]
K = TypeVar("K")


def account_of(conn: Connection) -> Account:
    if conn.account is None:
        assert conn.api_key is not None  # state.check guarantees a verified key
        conn.account = conn.app.gateway.acquire(conn.api_key.id)
    return conn.account


async def login(conn: Connection, request: p.Login) -> None:
    app = conn.app
    # A correct key proves itself: it is checked first and never refused for failures it
    # did not make (a neighbour behind the same NAT or proxy). Only guessing is slowed down
    # and blocked, per connection and per address (docs/security.md).
    record = await app.store.verify_api_key(request.api_key)
    if record is None:
        was_blocked = app.limiter.peer_blocked(conn.peer)
        conn.failed_logins += 1
        app.metrics.failed_login()
        app.limiter.record_failure(conn.peer)
        # Slow down guessing: each failure on this connection waits longer.
        await asyncio.sleep(app.limiter.delay_for(conn.peer, conn.failed_logins))
        if was_blocked:
            raise Refusal(p.LOGIN, p.TOO_MANY_FAILURES, close=CloseCode.POLICY)
        if (app.limiter.connection_blocked(conn.failed_logins)
                or app.limiter.peer_blocked(conn.peer)):
            log.warning("%s: too many failed logins from %s; closing", conn.label(), conn.peer)
            raise Refusal(p.LOGIN, p.UNAUTHORIZED, close=CloseCode.POLICY)
        raise Refusal(p.LOGIN, p.UNAUTHORIZED)
    if len(app.by_api_key(record.id)) >= app.config.server.max_connections_per_key:
        log.warning("%s: api key %r already has %d connections (max_connections_per_key)",
                    conn.label(), record.name, len(app.by_api_key(record.id)))
        raise Refusal(p.LOGIN, p.TOO_MANY_KEY_CONNECTIONS, close=CloseCode.POLICY)
    if app.edge.verified_full:
        raise Refusal(p.LOGIN, p.TOO_MANY_CONNECTIONS, close=CloseCode.TRY_AGAIN)
    conn.api_key = record
    if isinstance(conn.ws, GuardedConnection):
        app.edge.verified(conn.ws)  # out of the not-logged-in pool; no login deadline
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
    # The phone a PHONE_NUMBER_FLOOD is held for: the new one, or the pending code's.
    flood_phone = (compact_phone(request.phone) if request.phone is not None
                   else pending_phone(account))
    try:
        if request.phone is not None:
            _may_send_code(conn, account, flood_phone)
            delivery = await account.send_code(request.phone, notify, owner=conn)
            conn.state.advance(Outcome.CODE_SENT)
            if request.delivery:  # opted in: the seed's reply plus how the code was sent
                await conn.success(event, p.SEND_CODE, delivery=delivery.way,
                                   next=delivery.next)
            else:
                await conn.success(event, p.SEND_CODE)
        elif request.qr:
            await _qr_login(conn, account, notify)
        elif request.resend:
            await _resend_code(conn, account, notify)
        elif request.code is not None:
            if account.login_owner not in (None, conn):
                raise Refusal(event, p.CODE_ELSEWHERE)
            await account.sign_in(request.code, notify, owner=conn)
            conn.state.advance(Outcome.SIGNED_IN)
            log.info("%s: telegram session created", conn.label())
            await conn.success(event, p.LOGGED_IN)
        else:
            assert request.password is not None
            _refuse_while_held("password", conn.app.login_floods.password, account.api_key_id)
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
    except QrNotScanned:
        raise Refusal(event, p.QR_EXPIRED) from None
    except ResendUnavailable:
        raise Refusal(event, p.RESEND_UNAVAILABLE) from None
    except LoginFlood as err:
        raise _hold_flood(conn, account, err, flood_phone) from None
    except GatewayError as err:
        # Floods (the wait, when Telegram names it), "telegram unavailable" after a
        # deadline or a 5xx, a lost session: a failed reply, and the socket stays open.
        raise p.gateway_refusal(event, err) from None


async def _qr_login(conn: Connection, account: Account, notify: OnFlood) -> None:
    """{"qr": true}: a "scan the QR code" reply per code (Telegram refreshes them), then
    "logged in successfully" (or PasswordNeeded: "send password"). The request runs until
    the scan or [telegram] qr_login_timeout; closing the socket stops it."""
    event = p.TELEGRAM_LOGIN
    owner = account.login_owner
    if owner is not None and owner is not conn and owner in conn.app.connections:
        raise Refusal(event, p.CODE_ELSEWHERE)

    async def show(token: LoginToken) -> None:
        await conn.success(event, p.SCAN_QR, url=token.url, expires=iso(token.expires))

    await qr_login(account, show, notify, owner=conn)
    conn.state.advance(Outcome.SIGNED_IN)
    log.info("%s: telegram session created (QR)", conn.label())
    await conn.success(event, p.LOGGED_IN)


async def _resend_code(conn: Connection, account: Account, notify: OnFlood) -> None:
    """{"resend": true}: auth.resendCode; "send code" with how it was sent this time."""
    event = p.TELEGRAM_LOGIN
    if account.login_owner is not conn:
        raise Refusal(event, p.CODE_ELSEWHERE)
    phone = pending_phone(account)
    if phone is not None:  # a resend sends an SMS or a call too: the same [limits]
        _refuse_while_held("phone", conn.app.login_floods.phone, phone_key(phone))
        _take_code_allowance(conn, account, phone)
    delivery = await resend_code(account, notify, owner=conn)
    conn.state.advance(Outcome.CODE_RESENT)
    await conn.success(event, p.SEND_CODE, delivery=delivery.way, next=delivery.next)


def _may_send_code(conn: Connection, account: Account, compact: str | None) -> None:
    """Refuse a code request that another connection's pending login or a limit forbids.

    `compact` is the requested phone as compact_phone gives it (None: malformed).
    No await before account.send_code claims the login for `conn`: the check and the claim
    are one step, so two connections asking at once cannot both pass.
    """
    owner = account.login_owner
    if owner is not None and owner is not conn and owner in conn.app.connections:
        raise Refusal(p.TELEGRAM_LOGIN, p.CODE_ELSEWHERE)
    if compact is None:
        return  # malformed: the gateway refuses it without asking Telegram
    # A held flood is refused before the allowance: waiting it out costs no code.
    _refuse_while_held("phone", conn.app.login_floods.phone, phone_key(compact))
    _take_code_allowance(conn, account, compact)


def _take_code_allowance(conn: Connection, account: Account, compact: str) -> None:
    """Count one code sent to `compact` against [limits]; refuse when none is left."""
    limits = conn.app.config.limits
    wait = conn.app.send_codes.take(
        account.api_key_id, phone_key(compact), per_key=limits.send_code_per_key,
        per_phone=limits.send_code_per_phone, window=limits.send_code_window,
        now=time.monotonic())
    if wait:
        log.warning("%s: send code refused by [limits] for %d s", conn.label(), wait)
        raise Refusal(p.TELEGRAM_LOGIN, p.SEND_CODE_LIMITED.format(seconds=wait),
                      retry_after=wait)


def _refuse_while_held(what: str, held: Cooldowns[K], key: K) -> None:
    """Refuse, before it reaches Telegram, an attempt that a login flood still holds:
    each one made during Telegram's flood would make it last longer."""
    wait = held.left(key, now=time.monotonic())
    if wait:
        raise p.gateway_refusal(p.TELEGRAM_LOGIN, LoginFlood(what, wait))


def _hold_flood(conn: Connection, account: Account, err: LoginFlood,
                phone: str | None) -> Refusal:
    """Telegram answered a login flood, naming no wait: hold it for [limits]
    phone_flood_cooldown (that phone, whichever key asks) or password_flood_cooldown
    (this API key's passwords); the failed reply names the seconds."""
    limits, floods, now = conn.app.config.limits, conn.app.login_floods, time.monotonic()
    if err.what == "password":
        seconds = floods.password.hold(account.api_key_id, limits.password_flood_cooldown,
                                       now=now)
    elif phone is not None:
        seconds = floods.phone.hold(phone_key(phone), limits.phone_flood_cooldown, now=now)
    else:  # a phone flood with no phone to hold (no call raises one today): Telegram's words
        return p.gateway_refusal(p.TELEGRAM_LOGIN, err)
    log.warning("%s: Telegram answered a %s flood; %s attempts held for %d s",
                conn.label(), err.what, err.what, seconds)
    return p.gateway_refusal(p.TELEGRAM_LOGIN, LoginFlood(err.what, seconds))


async def logout(conn: Connection, request: p.Logout) -> None:
    account = account_of(conn)
    if not await account.has_session():
        raise Refusal(p.LOGOUT, p.NO_SESSION)
    # Every connection of this key loses its Telegram session, not only this one: their
    # streams stop, and each ends with a failed reply on its own event that says why.
    stopped = [(other, other.stream, other.stream_event)
               for other in conn.app.by_api_key(account.api_key_id)
               if other is not conn and other.stream is not None]
    for _, task, _ in stopped:
        task.cancel()
    await asyncio.gather(*(task for _, task, _ in stopped), return_exceptions=True)
    for other, _, stream_event in stopped:
        # Not awaited: the other client may have stopped reading (its stream was waiting on
        # its socket), and this logout must not wait for it.
        other.send_soon(p.failed(stream_event, p.LOGGED_OUT_ELSEWHERE))
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
    # Names that are not usernames or t.me links never reach Telegram.
    refused = p.unusable_group(request)
    if refused is not None:
        raise refused
    conn.start_stream(p.USERS, stream_users(conn, account_of(conn), request))


async def chats(conn: Connection, request: p.Chats) -> None:
    refused = p.unusable_group(request)
    if refused is not None:
        raise refused
    conn.start_stream(p.CHATS, stream_chats(conn, account_of(conn), request))


async def watch(conn: Connection, request: p.Watch) -> None:
    refused = p.unusable_group(request)
    if refused is not None:
        raise refused
    conn.start_stream(p.WATCH, live.watch(conn, account_of(conn), request))


async def ack(conn: Connection, request: p.Ack) -> None:
    """The client processed every item up to `seq` ("ack": "client"): no reply when that is
    so, since acks are many; a failed one when no such item was sent on this connection."""
    if request.seq > conn.acks.last_sent:
        raise Refusal(p.ACK, p.ACK_NEVER_SENT.format(seq=request.seq))
    # Shielded: a client that acks and closes at once (its last words) has its ack
    # committed, though the close stops this handler.
    await asyncio.shield(conn.acks.ack(request.seq))


HANDLERS: dict[str, Handler] = {
    p.LOGIN: login,
    p.TELEGRAM_LOGIN: telegram_login,
    p.USERS: users,
    p.CHATS: chats,
    p.LOGOUT: logout,
    p.CANCEL: cancel,
    p.WATCH: watch,
    p.ACK: ack,
}
