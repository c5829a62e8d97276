"""Telegram's RPC errors, grouped by what the gateway tells its caller about them.

Telethon raises one class per RPC error name; the gateway catches these groups and raises
tgws.errors.GatewayError subclasses instead, so no Telethon error leaves the gateway.
"""

from __future__ import annotations

from telethon import errors

from tgws.errors import NotAuthorized, TelegramFailure

# Telegram refused the phone number (malformed, banned, unknown, or too many attempts).
PHONE_ERRORS: tuple[type[BaseException], ...] = (
    errors.PhoneNumberInvalidError,
    errors.PhoneNumberBannedError,
    errors.PhoneNumberUnoccupiedError,
    errors.PhoneNumberFloodError,
    errors.PhoneNumberAppSignupForbiddenError,
)
# Too many login attempts: the user must wait, not fix the number or the password.
PHONE_FLOOD_ERRORS: tuple[type[BaseException], ...] = (errors.PhoneNumberFloodError,)
PASSWORD_FLOOD_ERRORS: tuple[type[BaseException], ...] = (errors.PhonePasswordFloodError,)
# Telegram refused the login code.
CODE_ERRORS: tuple[type[BaseException], ...] = (
    errors.PhoneCodeInvalidError,
    errors.PhoneCodeEmptyError,
    errors.PhoneCodeExpiredError,
    errors.PhoneCodeHashEmptyError,
)
# Telegram refused the 2FA password.
PASSWORD_ERRORS: tuple[type[BaseException], ...] = (
    errors.PasswordHashInvalidError,
    errors.SrpIdInvalidError,
    errors.PasswordEmptyError,
)
# Telegram says no account or chat has this username: the only "does not exist".
PEER_ERRORS: tuple[type[BaseException], ...] = (
    errors.UsernameInvalidError,
    errors.UsernameNotOccupiedError,
)
# A cached id and access hash no longer lead to the chat: drop the entry, resolve again.
STALE_PEER_ERRORS: tuple[type[BaseException], ...] = (
    errors.ChannelPrivateError,
    errors.ChannelInvalidError,
    errors.PeerIdInvalidError,
)
# Telegram asks us to wait; both carry .seconds.
FLOOD_ERRORS: tuple[type[errors.RPCError], ...] = (
    errors.FloodWaitError,
    errors.FloodPremiumWaitError,
)
# The session no longer works: logged out elsewhere, revoked, or the account is gone. Also
# AUTH_KEY_DUPLICATED: Telegram saw the key used from two connections at once and
# invalidated it (only a new login helps).
_UNAUTHORIZED: tuple[type[BaseException], ...] = (
    errors.AuthKeyUnregisteredError,
    errors.AuthKeyInvalidError,
    errors.AuthKeyDuplicatedError,
    errors.SessionRevokedError,
    errors.SessionExpiredError,
    errors.UserDeactivatedError,
    errors.UserDeactivatedBanError,
)


def translate(err: errors.RPCError) -> Exception:
    """Any other RPC error: NotAuthorized for a dead session, else TelegramFailure(message)."""
    if isinstance(err, _UNAUTHORIZED):
        return NotAuthorized(type(err).__name__)
    message = getattr(err, "message", None) or type(err).__name__
    return TelegramFailure(str(message))
