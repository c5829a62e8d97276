"""QR login: login tokens, and the scan from "another device".

What Telegram does, and what unmodified Telethon 1.45 (`client.qr_login()`, QRLogin) expects:
- auth.exportLoginToken from a client that is not logged in: `auth.loginToken(expires, token)`,
  a fresh token each time (a token lives `QrDesk.ttl` seconds, Telegram's 30 by default). The
  client shows `tg://login?token=<base64url(token)>` as a QR code.
- A logged-in app scans it: auth.acceptLoginToken(token) (or, here, `world.login.qr.accept(url,
  user)`). Telegram then pushes `updateLoginToken` (in an updateShort) to the connection that
  exported the token — here only when that connection receives updates (it sent a request not
  wrapped in invokeWithoutUpdates, the rule for every sandbox push, updates.py).
- The exporting client calls auth.exportLoginToken again: `auth.loginTokenSuccess` (its key now
  logged in as the scanner), or `auth.loginTokenMigrateTo(dc_id, token)` when the account lives
  on another DC: the client switches DC and calls auth.importLoginToken(token) there. An
  account with two-step verification answers 401 SESSION_PASSWORD_NEEDED instead (then
  account.getPassword / auth.checkPassword, as after a code).
- Errors: an unknown token AUTH_TOKEN_INVALID; an expired one AUTH_TOKEN_EXPIRED; a token
  accepted twice AUTH_TOKEN_ALREADY_ACCEPTED.

The demo scans by itself: with `accept_after > 0` every exported token is accepted by the
account of phone `accept_as`, that many seconds after it was exported ([sandbox]
qr_accept_after / qr_accept_as; `tgws demo` turns it on).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from tgws.sandbox.call import Call, Handler
from tgws.sandbox.derive import derive, when
from tgws.sandbox.errors import SandboxRpcError

if TYPE_CHECKING:
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World

log = logging.getLogger("tgws.sandbox")

URL_PREFIX = "tg://login?token="


@dataclass(slots=True)
class _Token:
    key: bytes  # the auth key of the client that exported it
    expires_at: float  # world clock
    accepted_by: int | None = None  # the scanner's user id
    used: bool = False


def token_of(url_or_token: str | bytes) -> bytes:
    """The token bytes of a `tg://login?token=...` URL (or the bytes themselves)."""
    if isinstance(url_or_token, bytes):
        return url_or_token
    text = url_or_token.removeprefix(URL_PREFIX)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class QrDesk:
    """`world.login.qr`: the login tokens of one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.ttl = 30.0  # seconds a token lives (Telegram's)
        self.accept_after = 0.0  # > 0: the demo's scan, this many seconds after each export
        self.accept_as = "+15550000001"  # whose app scans (the demo's owner)
        self.exported = 0  # tokens exported so far
        self._tokens: dict[bytes, _Token] = {}

    def issue(self, key: bytes) -> tuple[bytes, float]:
        now = self.world.clock()
        # Expired tokens that nobody accepted are of no use to anyone: forget them.
        for stale in [t for t, v in self._tokens.items()
                      if v.expires_at < now - self.ttl and v.accepted_by is None]:
            del self._tokens[stale]
        self.exported += 1
        token = b"".join(derive(self.world.secret, "login token", self.exported, part, key)
                         .to_bytes(8, "big") for part in range(4))
        expires_at = now + self.ttl
        self._tokens[token] = _Token(key, expires_at)
        if self.accept_after > 0:
            self._schedule_scan(token)
        return token, expires_at

    def _schedule_scan(self, token: bytes) -> None:
        def scan() -> None:
            user = self.world.by_phone(self.accept_as)
            if user is None:
                log.warning("sandbox: no account for qr_accept_as %s", self.accept_as)
                return
            try:
                self.accept(token, user)
            except SandboxRpcError as err:  # expired or refreshed meanwhile: nothing to do
                log.info("sandbox: the demo's QR scan was refused: %s", err.message)

        asyncio.get_running_loop().call_later(self.accept_after, scan)

    def known(self, token: bytes) -> _Token:
        found = self._tokens.get(token)
        if found is None:
            raise SandboxRpcError(400, "AUTH_TOKEN_INVALID")
        return found

    def accept(self, url_or_token: str | bytes, user: SandboxUser) -> None:
        """The scan: `user`'s logged-in app accepts the token (auth.acceptLoginToken). Pushes
        updateLoginToken to the exporting client. Raises SandboxRpcError like Telegram."""
        found = self.known(token_of(url_or_token))
        if found.accepted_by is not None:
            raise SandboxRpcError(400, "AUTH_TOKEN_ALREADY_ACCEPTED")
        if found.expires_at < self.world.clock():
            raise SandboxRpcError(400, "AUTH_TOKEN_EXPIRED")
        found.accepted_by = user.id
        self.world.updates.push_login_token(found.key)

    def latest_url(self) -> str | None:
        """The tg://login URL of the newest token (what a scan of the newest QR code reads)."""
        if not self._tokens:
            return None
        token = next(reversed(self._tokens))
        return URL_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")

    def accepted_for(self, key: bytes) -> tuple[bytes, SandboxUser] | None:
        """A token exported by `key`, accepted and not used yet, with its scanner."""
        for token, found in self._tokens.items():
            if found.key == key and found.accepted_by is not None and not found.used:
                user = self.world.users.get(found.accepted_by)
                if user is not None:
                    return token, user
        return None

    def use(self, token: bytes) -> None:
        self._tokens[token].used = True


def _signed_in(call: Call, token: bytes, user: SandboxUser) -> Any:
    """loginTokenSuccess on the account's DC, loginTokenMigrateTo elsewhere, or 2FA."""
    world = call.world
    home = world.dcs.of_user(user)
    if home != call.dc:
        return types.auth.LoginTokenMigrateTo(dc_id=home, token=token)
    world.login.qr.use(token)
    if user.password:
        world.login.awaiting_password[call.key] = user.id
        raise SandboxRpcError(401, "SESSION_PASSWORD_NEEDED")
    call.new_key = world.issue_key(user)
    return types.auth.LoginTokenSuccess(
        authorization=types.auth.Authorization(user=user.tl(is_self=True)))


def export_login_token(call: Call, request: Any) -> Any:
    desk = call.world.login.qr
    accepted = desk.accepted_for(call.key)
    if accepted is not None:
        return _signed_in(call, *accepted)
    token, expires_at = desk.issue(call.key)
    return types.auth.LoginToken(expires=when(math.ceil(expires_at)), token=token)


def import_login_token(call: Call, request: Any) -> Any:
    desk = call.world.login.qr
    found = desk.known(request.token)
    if found.used:
        raise SandboxRpcError(400, "AUTH_TOKEN_INVALID")
    if found.accepted_by is None:
        if found.expires_at < call.world.clock():
            raise SandboxRpcError(400, "AUTH_TOKEN_EXPIRED")
        return types.auth.LoginToken(expires=when(math.ceil(found.expires_at)),
                                     token=request.token)
    user = call.world.users[found.accepted_by]
    return _signed_in(call, request.token, user)


def accept_login_token(call: Call, request: Any) -> Any:
    assert call.user is not None  # rpc.answer checks the login first
    call.world.login.qr.accept(request.token, call.user)
    now = when(call.world.now())
    return types.Authorization(
        hash=derive(call.world.secret, "authorization", request.token) >> 1,
        device_model="tgws", platform="sandbox", system_version="1", api_id=1,
        app_name="tgws", app_version="1", date_created=now, date_active=now,
        ip="127.0.0.1", country="Sandbox", region="Sandbox")


# request class -> (handler, needs a logged-in key)
HANDLERS: dict[type, tuple[Handler, bool]] = {
    functions.auth.ExportLoginTokenRequest: (export_login_token, False),
    functions.auth.ImportLoginTokenRequest: (import_login_token, False),
    functions.auth.AcceptLoginTokenRequest: (accept_login_token, True),
}
