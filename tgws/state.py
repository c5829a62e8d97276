"""The per-connection state machine: which request is legal when, and where it leads.

Design (after h11's _state.py):

Rule 1: everything that decides whether a request may run lives here: `check` (which
    request is legal in which phase) and the TRANSITIONS table (where an outcome leads).
    Handlers never test the phase themselves; they call `check(request)` first and
    `advance(outcome)` after Telegram or the store has answered.
Rule 2: no I/O, no asyncio. The machine is a plain object, tested without sockets.
Rule 3: the seed's replies are reproduced exactly: a refusal that the seed marks
    "(socket closed)" carries close=NORMAL; refusals tgws adds keep the socket open.

Phases of one connection:

    NEW ──login ok──▶ VERIFIED ──phone ok──▶ CODE_SENT ──code ok──────────────▶ LOGGED_IN
     │                   │ ▲                  │ ▲ └──code ok, 2FA──▶ PASSWORD_NEEDED ──┘
     │                   │ │                  └─┘ resend ok                 ▲
     │                   ├─┼── QR scanned ──────────────────────────────────┼──▶ LOGGED_IN
     │                   └─┼── QR scanned, 2FA ─────────────────────────────┘
     └──login ok, the API key already has a Telegram session────────────────────▶ LOGGED_IN
                           └───────────────── logout / session lost ◀───────────────┘

A QR login ({"qr": true}) runs inside one request: its handler sends each new QR code and
returns when the code is scanned (SIGNED_IN or PASSWORD_NEEDED) or the wait ends (a refusal,
the phase stays VERIFIED). So it needs no phase of its own.

A stream (users/chats/watch) runs inside LOGGED_IN; while it runs, a second stream or a logout is
refused and `cancel` is the way out. `check` returns a canned success reply for the seed's
"already" answers, so those never reach Telegram.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tgws import protocol as p
from tgws.errors import CloseCode, Refusal


class Phase(enum.Enum):
    NEW = "new"
    VERIFIED = "verified"  # API key accepted, no Telegram session yet
    CODE_SENT = "code sent"
    PASSWORD_NEEDED = "password needed"
    LOGGED_IN = "logged in"  # the API key has a Telegram session


class Outcome(enum.Enum):
    KEY_ACCEPTED = "key accepted"
    KEY_ACCEPTED_WITH_SESSION = "key accepted, session exists"
    CODE_SENT = "code sent"
    PASSWORD_NEEDED = "password needed"
    SIGNED_IN = "signed in"
    CODE_RESENT = "code resent"  # auth.resendCode: the same login, another way
    LOGGED_OUT = "logged out"  # also: the session turned out to be revoked elsewhere


TRANSITIONS: dict[tuple[Phase, Outcome], Phase] = {
    (Phase.NEW, Outcome.KEY_ACCEPTED): Phase.VERIFIED,
    (Phase.NEW, Outcome.KEY_ACCEPTED_WITH_SESSION): Phase.LOGGED_IN,
    (Phase.VERIFIED, Outcome.CODE_SENT): Phase.CODE_SENT,
    (Phase.CODE_SENT, Outcome.SIGNED_IN): Phase.LOGGED_IN,
    (Phase.CODE_SENT, Outcome.PASSWORD_NEEDED): Phase.PASSWORD_NEEDED,
    (Phase.CODE_SENT, Outcome.CODE_RESENT): Phase.CODE_SENT,
    # A QR login starts and ends in one request, from VERIFIED (see the module docstring);
    # (VERIFIED, SIGNED_IN) below serves it too.
    (Phase.VERIFIED, Outcome.PASSWORD_NEEDED): Phase.PASSWORD_NEEDED,
    (Phase.PASSWORD_NEEDED, Outcome.SIGNED_IN): Phase.LOGGED_IN,
    # Another connection of the same API key may log in or out meanwhile; the store is the
    # truth, so a handler that finds a session (or loses it) moves this connection along.
    (Phase.VERIFIED, Outcome.SIGNED_IN): Phase.LOGGED_IN,
    (Phase.CODE_SENT, Outcome.LOGGED_OUT): Phase.VERIFIED,
    (Phase.PASSWORD_NEEDED, Outcome.LOGGED_OUT): Phase.VERIFIED,
    (Phase.LOGGED_IN, Outcome.LOGGED_OUT): Phase.VERIFIED,
    (Phase.VERIFIED, Outcome.LOGGED_OUT): Phase.VERIFIED,
}


@dataclass(frozen=True, slots=True)
class Canned:
    """A success reply decided by the state alone (no handler runs)."""

    event: str
    message: str


def _refuse(event: str, message: str, close: CloseCode | None = None) -> Refusal:
    return Refusal(event, message, close=close)


class ConnectionState:
    """Phase of one connection plus whether a stream is running on it."""

    def __init__(self) -> None:
        self.phase = Phase.NEW
        self.streaming = False

    @property
    def verified(self) -> bool:
        return self.phase is not Phase.NEW

    def advance(self, outcome: Outcome) -> Phase:
        try:
            self.phase = TRANSITIONS[(self.phase, outcome)]
        except KeyError:
            raise RuntimeError(f"no transition from {self.phase} on {outcome}") from None
        return self.phase

    def check(self, request: p.Request) -> Canned | None:
        """Refuse (raise Refusal) or answer (return Canned) or allow (return None)."""
        event = p.event_of(request)
        phase = self.phase
        if isinstance(request, p.Login):
            return None if phase is Phase.NEW else Canned(event, p.ALREADY_VERIFIED)
        if isinstance(request, p.Cancel):
            if not self.streaming:
                raise _refuse(event, p.NOTHING_TO_CANCEL)
            return None
        if phase is Phase.NEW:
            # The seed closes the socket for every request made before the API key.
            raise _refuse(event, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL)
        if isinstance(request, p.TelegramLogin):
            return self._check_telegram_login(request)
        if isinstance(request, p.Ack):
            return None  # acks flow while streams run; an ack of nothing sent is refused
        if isinstance(request, p.Users | p.Chats | p.Watch):
            if phase is not Phase.LOGGED_IN:
                raise _refuse(event, p.TELEGRAM_LOGIN_FIRST)
            if self.streaming:
                raise _refuse(event, p.STREAM_IN_PROGRESS)
            return None
        if isinstance(request, p.Logout):
            if self.streaming:
                raise _refuse(event, p.STREAM_IN_PROGRESS)
            return None
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _check_telegram_login(self, request: p.TelegramLogin) -> Canned | None:
        event = p.TELEGRAM_LOGIN
        phase = self.phase
        if phase is Phase.LOGGED_IN:
            return Canned(event, p.SESSION_EXISTS_TELEGRAM)
        if request.phone is not None or request.qr:
            if phase is Phase.CODE_SENT:
                raise _refuse(event, p.CODE_PENDING)
            if phase is Phase.PASSWORD_NEEDED:
                raise _refuse(event, p.PASSWORD_PENDING)
            return None
        if request.code is not None or request.resend:
            if phase is Phase.VERIFIED:
                raise _refuse(event, p.SEND_PHONE_FIRST)
            if phase is Phase.PASSWORD_NEEDED:
                raise _refuse(event, p.PASSWORD_PENDING)
            return None
        # password
        if phase is not Phase.PASSWORD_NEEDED:
            raise _refuse(event, p.NOT_EXPECTING_PASSWORD)
        return None
