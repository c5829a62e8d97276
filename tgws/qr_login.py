"""Logging in by QR code, resending the code, and how Telegram delivered it.

Part of the boundary to Telegram (beside the gateway's Account, whose calls it makes through
`Account._call`: deadlines, flood waits and "telegram unavailable" work as for every call).
Telethon/RPC errors are translated here into tgws.errors.GatewayError.

QR login, as Telethon's own QRLogin does it (telethon/tl/custom/qrlogin.py) but in a loop that
also refreshes the code and reads every answer auth.exportLoginToken can give:
1. auth.exportLoginToken -> auth.loginToken(token, expires): the caller shows
   `tg://login?token=<base64url>` (on_token), and we wait for updateLoginToken (the scan) or
   the token's expiry, whichever comes first, then export again;
2. after the scan, the same export answers auth.loginTokenSuccess (logged in), or
   auth.loginTokenMigrateTo(dc, token) when the account lives on another DC (switch DC, then
   auth.importLoginToken there), or SESSION_PASSWORD_NEEDED (two-step verification: the
   password goes through Account.check_password, as after a code);
3. an export after an expiry is simply the refreshed code; the whole wait is bounded by
   [telegram] qr_login_timeout.
tgws's clients ask Telegram for no updates (receive_updates=False wraps every request in
invokeWithoutUpdates); Telegram only sends updateLoginToken to a connection that receives
updates, so the client receives them while a QR login runs (set_receive_updates). Even if the
update is lost, the export at the token's expiry finds the scan.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from telethon import errors, events, functions, types, utils

from tgws import fastpath
from tgws.errors import GatewayError, LoginFlood, PasswordNeeded, PhoneInvalid
from tgws.rpc_errors import PHONE_ERRORS, PHONE_FLOOD_ERRORS
from tgws.rpc_errors import translate as _translate

if TYPE_CHECKING:
    from tgws.gateway import Account

log = logging.getLogger("tgws.gateway")

OnFlood = Callable[[int], Awaitable[None]]
# Seconds to wait at least on a token that our clock says has expired (no busy re-asking).
MIN_TOKEN_WAIT: Final = 0.5

# Telegram's auth.SentCodeType -> the "delivery" a client sees (docs/protocol.md).
DELIVERY: Final[dict[type, str]] = {
    types.auth.SentCodeTypeApp: "app",
    types.auth.SentCodeTypeSms: "sms",
    types.auth.SentCodeTypeFirebaseSms: "sms",
    types.auth.SentCodeTypeSmsWord: "sms_word",
    types.auth.SentCodeTypeSmsPhrase: "sms_phrase",
    types.auth.SentCodeTypeCall: "call",
    types.auth.SentCodeTypeFlashCall: "flash_call",
    types.auth.SentCodeTypeMissedCall: "missed_call",
    types.auth.SentCodeTypeEmailCode: "email",
    types.auth.SentCodeTypeSetUpEmailRequired: "email_setup",
    types.auth.SentCodeTypeFragmentSms: "fragment",
}
# Telegram's auth.CodeType (how a resend would deliver it) -> the same names.
NEXT_DELIVERY: Final[dict[type, str]] = {
    types.auth.CodeTypeSms: "sms",
    types.auth.CodeTypeCall: "call",
    types.auth.CodeTypeFlashCall: "flash_call",
    types.auth.CodeTypeMissedCall: "missed_call",
    types.auth.CodeTypeFragmentSms: "fragment",
}


class QrNotScanned(GatewayError):
    """Nobody scanned the QR code within [telegram] qr_login_timeout."""


class ResendUnavailable(GatewayError):
    """Telegram has no other way to send the code (SEND_CODE_UNAVAILABLE)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How Telegram sent a login code, and how a resend would send it (None: it cannot)."""

    way: str
    next: str | None


def delivery_of(sent: Any) -> Delivery:
    """The Delivery of an auth.SentCode (anything else: "unknown")."""
    way = DELIVERY.get(type(getattr(sent, "type", None)), "unknown")
    return Delivery(way, NEXT_DELIVERY.get(type(getattr(sent, "next_type", None))))


@dataclass(frozen=True, slots=True)
class LoginToken:
    """One QR code: the URL to encode, and when Telegram expires it."""

    url: str
    expires: datetime.datetime

    @classmethod
    def of(cls, answer: Any) -> LoginToken:
        token = base64.urlsafe_b64encode(answer.token).decode().rstrip("=")
        expires = answer.expires
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)
        return cls(f"tg://login?token={token}", expires)

    def seconds_left(self) -> float:
        return (self.expires - datetime.datetime.now(datetime.UTC)).total_seconds()


OnToken = Callable[[LoginToken], Awaitable[None]]


async def request_new_code(client: Any, phone: str) -> Any:
    """auth.sendCode for `phone`: a new code, even when this client asked for one before.

    Telethon's send_code_request turns a second request for the same phone into
    auth.resendCode (the next, slower way: SMS, then a call, then SEND_CODE_UNAVAILABLE);
    a new "phone" request means a new login, so Telethon's remembered code hash goes first.
    resend_code is the one that walks the delivery chain.
    """
    fastpath.forget_code_hash(client, utils.parse_phone(phone) or phone)
    return await client.send_code_request(phone)


def pending_phone(account: Account) -> str | None:
    """The phone (digits) of the code `account` is waiting for, or None."""
    return account._login_phone


async def resend_code(account: Account, on_flood: OnFlood | None = None, *,
                      owner: object = None) -> Delivery:
    """auth.resendCode for the code this connection asked for; the new Delivery."""
    phone = account._login_phone
    if phone is None or owner is not account._login_owner:
        raise ResendUnavailable("no code was sent on this connection")
    try:
        # Telethon resends (auth.resendCode) when it holds a code hash for the phone, and
        # asks for a new code when Telegram says the old one expired.
        sent = await account._call(lambda c: c.send_code_request(phone), on_flood)
    except errors.SendCodeUnavailableError:
        raise ResendUnavailable("SEND_CODE_UNAVAILABLE") from None
    except PHONE_FLOOD_ERRORS:
        raise LoginFlood("phone") from None
    except PHONE_ERRORS:
        raise PhoneInvalid("Telegram refused the phone number") from None
    except errors.RPCError as err:
        raise _translate(err) from None
    return delivery_of(sent)


async def qr_login(account: Account, on_token: OnToken, on_flood: OnFlood | None = None, *,
                   owner: object = None) -> None:
    """Log `account` in by QR code: on_token(...) for each code, until it is scanned.

    Returns once logged in (the session is stored); raises PasswordNeeded (send the password
    next, Account.check_password), QrNotScanned, or another GatewayError.
    """
    account._login_phone, account._login_owner = None, owner
    scanned = asyncio.Event()

    async def on_update(update: Any) -> None:
        scanned.set()

    listening: list[Any] = []  # the client the handler is on (a dropped one is replaced)

    async def listen(client: Any) -> None:
        if listening and listening[0] is client:
            return
        client.add_event_handler(on_update, events.Raw(types.UpdateLoginToken))
        listening[:] = [client]
        # Telegram sends updateLoginToken only to a connection that takes updates; the
        # getState this sends fails before the login (401), which is expected.
        with contextlib.suppress(errors.UnauthorizedError):
            await client.set_receive_updates(True)

    async def export(client: Any) -> Any:
        await listen(client)
        return await client(functions.auth.ExportLoginTokenRequest(
            client.api_id, client.api_hash, except_ids=[]))

    password_needed = False
    try:
        async with asyncio.timeout(account.config.qr_login_timeout):
            while True:
                scanned.clear()
                answer = await _ask(account, export, on_flood)
                if isinstance(answer, types.auth.LoginTokenMigrateTo):
                    answer = await _ask(account, _importer(answer), on_flood)
                if answer is None:
                    continue  # the token died on the way: a fresh export starts over
                if isinstance(answer, types.auth.LoginTokenSuccess):
                    # What Telethon's QRLogin.wait does after a success (self user, state).
                    await _ask(account, functools.partial(_on_login, answer), on_flood)
                    break
                token = LoginToken.of(answer)
                await on_token(token)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(MIN_TOKEN_WAIT, token.seconds_left())):
                        await scanned.wait()
    except PasswordNeeded:
        password_needed = True
        raise
    except TimeoutError:
        raise QrNotScanned(f"not scanned within {account.config.qr_login_timeout:g} s") \
            from None
    finally:
        if listening:
            client = listening[0]
            client.remove_event_handler(on_update)
            await client.set_receive_updates(False)  # no request: a flag for the next ones
        if not password_needed and account._login_owner is owner:
            account._login_owner = None  # the claim ends unless a password is pending
    await account._logged_in()


async def _on_login(success: Any, client: Any) -> Any:
    return await fastpath.on_login(client, success.authorization.user)


def _importer(migrate: Any) -> Callable[[Any], Awaitable[Any]]:
    async def run(client: Any) -> Any:
        # As Telethon's QRLogin.wait: move the client to the account's DC (a new auth key
        # there), then import the token on it.
        if client.session.dc_id != migrate.dc_id:
            await fastpath.switch_dc(client, migrate.dc_id)
        return await client(functions.auth.ImportLoginTokenRequest(migrate.token))

    return run


async def _ask(account: Account, request: Callable[[Any], Awaitable[Any]],
               on_flood: OnFlood | None) -> Any:
    try:
        return await account._call(request, on_flood)
    except errors.SessionPasswordNeededError:
        raise PasswordNeeded() from None
    except (errors.AuthTokenExpiredError, errors.AuthTokenInvalidError):
        # The token died between the scan and our import: the next export starts over.
        return None
    except errors.RPCError as err:
        raise _translate(err) from None
