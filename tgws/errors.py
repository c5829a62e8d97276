"""Every error tgws raises on purpose, in one tree.

    TgwsError
    ├── ConfigError          bad config file/key/value; the CLI prints one line, exits 2
    ├── StoreError           the sqlite store cannot be opened or is newer than this code
    ├── Refusal              a request answered with a failed reply (+ optional close code)
    └── GatewayError         Telegram said no; raised only behind tgws.gateway
        ├── PhoneInvalid         malformed, unregistered or banned phone
        ├── CodeInvalid          wrong, expired or empty login code
        ├── PasswordNeeded       the account has 2FA; ask for the password
        ├── PasswordInvalid      wrong 2FA password
        ├── NotAuthorized        the stored session is no longer valid (revoked elsewhere)
        ├── SessionLocked        the stored session is sealed with a key we do not have
        ├── FloodWait(seconds)   Telegram asks us to wait longer than we are willing to
        ├── LoginFlood           too many login attempts (PHONE_NUMBER_FLOOD, ...)
        ├── PeerNotFound         no such username
        ├── NotAGroup            resolved, but not a group or channel
        ├── MembersHidden        the group's admins hide the member list
        └── TelegramFailure      any other RPC error (carries Telegram's error string)
            └── TelegramUnavailable  no answer in time, a 5xx, a dropped or non-MTProto
                                     endpoint: worth retrying later

Handlers and state.check raise Refusal; only tgws.server catches it and turns it into
a reply and, when `close` is set, a websocket close. Telethon's own exceptions never
leave the gateway (tgws.gateway and the Account modules it is built from: account_calls,
account_login, peers).
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Websocket close codes tgws uses (documented in docs/protocol.md)."""

    NORMAL = 1000  # the seed's "(socket closed)" replies
    GOING_AWAY = 1001  # daemon shutting down
    POLICY = 1008  # too many failed logins, or the API key was revoked
    INTERNAL = 1011  # our bug; logged with a traceback
    TRY_AGAIN = 1013  # `login` while [server] max_connections are logged in (a race)
    # 1009 (a frame over [server] max_message_size) is sent by websockets itself (max_size).


class TgwsError(Exception):
    """Base of every error tgws raises deliberately."""


class ConfigError(TgwsError):
    """The configuration cannot be used. str(err) is the single line shown to the operator."""


class StoreError(TgwsError):
    """The store cannot be opened, migrated or written."""


class Refusal(TgwsError):
    """A request answered with a failed reply; `close` says whether the socket closes after it."""

    def __init__(self, event: str, message: str, *, close: CloseCode | None = None,
                 **extra: object) -> None:
        super().__init__(message)
        self.event = event
        self.message = message
        self.close = close
        self.extra = extra  # more keys of the reply's data, e.g. retry_after

    def __repr__(self) -> str:
        return f"Refusal({self.event!r}, {self.message!r}, close={self.close!r})"


class GatewayError(TgwsError):
    """Telegram refused or failed a call. Raised only behind tgws.gateway (see above)."""


class PhoneInvalid(GatewayError):
    pass


class CodeInvalid(GatewayError):
    pass


class PasswordNeeded(GatewayError):
    pass


class PasswordInvalid(GatewayError):
    pass


class NotAuthorized(GatewayError):
    pass


class SessionLocked(GatewayError):
    """The stored session is encrypted at rest with a key this daemon was not given."""


class FloodWait(GatewayError):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"Telegram asks to wait {seconds} s")
        self.seconds = seconds


class LoginFlood(GatewayError):
    """Telegram refuses login attempts for a while, and never says how long: `seconds` is
    tgws's own cool-down left (tgws/login_guard.py LoginFloods), once the handler holds it."""

    def __init__(self, what: str, seconds: int | None = None) -> None:
        super().__init__(what)
        self.what = what  # 'phone' | 'password'
        self.seconds = seconds


class PeerNotFound(GatewayError):
    pass


class NotAGroup(GatewayError):
    pass


class MembersHidden(GatewayError):
    pass


class TelegramFailure(GatewayError):
    """Any other RPC error; str(err) is Telegram's error string (e.g. CHANNEL_PRIVATE)."""


class TelegramUnavailable(TelegramFailure):
    """Telegram did not answer in time, failed with a 5xx, dropped the connection, or the
    endpoint does not speak MTProto. Transient: a stream retries it, a request reports it."""
