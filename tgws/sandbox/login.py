"""Logging in: codes, two-step passwords (real SRP), log-out; the requests and their state.

Phone rules (Telegram's behaviour where the sandbox has a choice):
- a well-formed phone is "+" (optional) and 7 to 15 digits; anything else: PHONE_NUMBER_INVALID;
- a phone marked with World.ban_phone(): PHONE_NUMBER_BANNED, on SendCode and SignIn;
- auth.sendCode to a phone without an account succeeds, as on Telegram (the code would be for
  signing up). With World.accept_any_phone (the default) the account is then created on the fly
  at auth.signIn; without it, auth.signIn with the right code answers
  auth.authorizationSignUpRequired, which Telethon raises as PhoneNumberUnoccupiedError;
- the code is World.login_code ("12345") for everyone. Empty: PHONE_CODE_EMPTY; wrong:
  PHONE_CODE_INVALID; a hash that World.expire_codes() expired, that this world never issued
  (e.g. before a restart) or that belongs to another phone: PHONE_CODE_EXPIRED; no hash:
  PHONE_CODE_HASH_EMPTY;
- an account with a password answers the right code with SESSION_PASSWORD_NEEDED (401); the
  key may then call account.getPassword and auth.checkPassword, which runs the server side of
  SRP (srp.py) and answers a wrong proof with PASSWORD_HASH_INVALID.
Data centres (dcs.py): auth.sendCode for a phone whose account lives on another DC answers
PHONE_MIGRATE_X; a phone without an account gets its code on any DC, and auth.signIn sent to
a DC other than the phone's answers USER_MIGRATE_X (before consuming the code, so Telethon's
retry on DC X signs in with the same hash).
A successful login asks the sender to replace the client's auth key with one bound to the
account (keys.py); auth.logOut revokes the key in use.

Code delivery: auth.sendCode answers the first way of `LoginDesk.delivery` (default: SMS,
then a call; ("app", "sms", "call") sends it to the logged-in app first, as Telegram does for a
phone with an account — a phone without one skips "app"), with the next way as `next_type`;
each auth.resendCode moves one step along; past the last: SEND_CODE_UNAVAILABLE.

QR login (qr.py): auth.exportLoginToken, auth.importLoginToken, auth.acceptLoginToken and
`world.login.qr.accept(url_or_token, user)`, the scan from another device.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from tgws.sandbox import srp
from tgws.sandbox.call import Call, Handler
from tgws.sandbox.derive import derive, signed64
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.qr import HANDLERS as QR_HANDLERS
from tgws.sandbox.qr import QrDesk

if TYPE_CHECKING:
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World

_PHONE = re.compile(r"\+?(\d{7,15})")


def normalize_phone(phone: str) -> str | None:
    """The digits of a well-formed phone number, or None."""
    match = _PHONE.fullmatch(phone.strip())
    return match.group(1) if match else None


@dataclass(slots=True)
class _Code:
    phone: str
    expired: bool = False
    step: int = 0  # how far along LoginDesk.delivery this code has been (re)sent


@dataclass(frozen=True, slots=True)
class _SrpRound:
    user_id: int
    key: bytes
    server: srp.Challenge


class LoginDesk:
    """Login state that is not in the keys: sent codes, password rounds, revoked keys."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.banned: set[str] = set()
        self.revoked: set[bytes] = set()
        self._codes: dict[str, _Code] = {}
        self.awaiting_password: dict[bytes, int] = {}  # auth key -> account
        self.rounds: dict[int, _SrpRound] = {}
        self._verifiers: dict[int, tuple[str, bytes, bytes, int]] = {}
        self._sent = 0
        # How codes are delivered, first to last (see _SENT_TYPES); tests change it.
        self.delivery: tuple[str, ...] = ("sms", "call")
        self.qr = QrDesk(world)  # login tokens (qr.py)

    def expire_codes(self) -> int:
        live = [code for code in self._codes.values() if not code.expired]
        for code in live:
            code.expired = True
        return len(live)

    def issue_code(self, phone: str) -> str:
        self._sent += 1
        code_hash = f"{derive(self.world.secret, 'code', phone, self._sent):016x}"
        self._codes[code_hash] = _Code(phone)
        return code_hash

    def code_for(self, code_hash: str, phone: str) -> _Code:
        if not code_hash:
            raise SandboxRpcError(400, "PHONE_CODE_HASH_EMPTY")
        code = self._codes.get(code_hash)
        if code is None or code.expired or code.phone != phone:
            raise SandboxRpcError(400, "PHONE_CODE_EXPIRED")
        return code

    def consume(self, code_hash: str) -> None:
        self._codes.pop(code_hash, None)

    def algo(self, user: SandboxUser | None) -> tuple[Any, int | None]:
        """(the KDF parameters, the verifier v) for `user`'s password (v None: no password)."""
        if user is None or not user.password:
            salt = derive(self.world.secret, "salt", 0).to_bytes(8, "big")
            return _kdf(salt, salt[::-1]), None
        cached = self._verifiers.get(user.id)
        if cached is None or cached[0] != user.password:
            # Telegram's salt1 is a server prefix plus 32 client bytes; any bytes work here.
            salt1 = derive(self.world.secret, "salt1", user.id).to_bytes(8, "big") * 5
            salt2 = derive(self.world.secret, "salt2", user.id).to_bytes(8, "big") * 2
            cached = (user.password, salt1, salt2, srp.verifier(user.password, salt1, salt2))
            self._verifiers[user.id] = cached
        _password, salt1, salt2, v = cached
        return _kdf(salt1, salt2), v


def _kdf(salt1: bytes, salt2: bytes) -> Any:
    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=srp.G, p=srp.P_BYTES)


def _phone(raw: str, desk: LoginDesk) -> str:
    digits = normalize_phone(raw or "")
    if digits is None:
        raise SandboxRpcError(400, "PHONE_NUMBER_INVALID")
    if digits in desk.banned:
        raise SandboxRpcError(400, "PHONE_NUMBER_BANNED")
    return digits


def _sent_type(way: str, length: int) -> Any:
    """The auth.SentCodeType Telegram answers for one way of delivering the code."""
    if way == "app":
        return types.auth.SentCodeTypeApp(length=length)
    if way == "sms":
        return types.auth.SentCodeTypeSms(length=length)
    if way == "call":
        return types.auth.SentCodeTypeCall(length=length)
    if way == "flash_call":
        return types.auth.SentCodeTypeFlashCall(pattern="*")
    if way == "missed_call":
        return types.auth.SentCodeTypeMissedCall(prefix="+1555", length=length)
    if way == "email":
        return types.auth.SentCodeTypeEmailCode(email_pattern="s***@example.com",
                                               length=length)
    if way == "fragment":
        return types.auth.SentCodeTypeFragmentSms(url="https://fragment.com/numbers",
                                                 length=length)
    raise ValueError(f"unknown code delivery {way!r}")


# The auth.CodeType a SentCode names as `next_type` (the app and email have none).
_NEXT_TYPES: dict[str, Any] = {
    "sms": types.auth.CodeTypeSms, "call": types.auth.CodeTypeCall,
    "flash_call": types.auth.CodeTypeFlashCall, "missed_call": types.auth.CodeTypeMissedCall,
    "fragment": types.auth.CodeTypeFragmentSms,
}


def _ways(desk: LoginDesk, phone: str) -> tuple[str, ...]:
    ways = desk.delivery
    if desk.world.by_phone(phone) is None:  # no app to send it to
        ways = tuple(way for way in ways if way != "app") or ways
    return ways


def _sent_code(call: Call, code_hash: str, code: _Code) -> Any:
    ways = _ways(call.world.login, code.phone)
    if code.step >= len(ways):
        raise SandboxRpcError(400, "SEND_CODE_UNAVAILABLE")
    following = ways[code.step + 1] if code.step + 1 < len(ways) else None
    next_type = _NEXT_TYPES.get(following) if following else None
    return types.auth.SentCode(
        type=_sent_type(ways[code.step], len(call.world.login_code)),
        phone_code_hash=code_hash, next_type=next_type() if next_type else None, timeout=120)


def authorize(call: Call, user: SandboxUser) -> Any:
    call.new_key = call.world.issue_key(user)
    return types.auth.Authorization(user=user.tl(is_self=True))


def send_code(call: Call, request: Any) -> Any:
    world, desk = call.world, call.world.login
    phone = _phone(request.phone_number, desk)
    if world.by_phone(phone) is not None:
        home = world.dcs.of_phone(phone)
        if home != call.dc:
            raise SandboxRpcError(303, f"PHONE_MIGRATE_{home}")
    code_hash = desk.issue_code(phone)
    return _sent_code(call, code_hash, desk.code_for(code_hash, phone))


def resend_code(call: Call, request: Any) -> Any:
    desk = call.world.login
    phone = _phone(request.phone_number, desk)
    code = desk.code_for(request.phone_code_hash, phone)
    if code.step + 1 >= len(_ways(desk, phone)):
        raise SandboxRpcError(400, "SEND_CODE_UNAVAILABLE")
    code.step += 1
    return _sent_code(call, request.phone_code_hash, code)


def sign_in(call: Call, request: Any) -> Any:
    world, desk = call.world, call.world.login
    phone = _phone(request.phone_number, desk)
    desk.code_for(request.phone_code_hash, phone)
    if not request.phone_code:
        raise SandboxRpcError(400, "PHONE_CODE_EMPTY")
    if request.phone_code != world.login_code:
        raise SandboxRpcError(400, "PHONE_CODE_INVALID")
    home = world.dcs.of_phone(phone)
    if home != call.dc:
        raise SandboxRpcError(303, f"USER_MIGRATE_{home}")
    user = world.account_for_phone(phone, create=world.accept_any_phone)
    if user is None:
        return types.auth.AuthorizationSignUpRequired(terms_of_service=types.help.TermsOfService(
            id=types.DataJSON(data="{}"), text="Sandbox terms.", entities=[]))
    desk.consume(request.phone_code_hash)
    if user.password:
        desk.awaiting_password[call.key] = user.id
        raise SandboxRpcError(401, "SESSION_PASSWORD_NEEDED")
    return authorize(call, user)


def _password_user(call: Call) -> SandboxUser | None:
    if call.user is not None:
        return call.user
    user_id = call.world.login.awaiting_password.get(call.key)
    return None if user_id is None else call.world.users.get(user_id)


def get_password(call: Call, request: Any) -> Any:
    desk = call.world.login
    user = _password_user(call)
    algo, v = desk.algo(user)
    if user is None or v is None:
        return types.account.Password(
            new_algo=algo, new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
            secure_random=os.urandom(32), has_password=None)
    server = srp.challenge(v)
    srp_id = signed64(int.from_bytes(os.urandom(8), "big"))
    desk.rounds[srp_id] = _SrpRound(user.id, call.key, server)
    return types.account.Password(
        new_algo=algo, new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
        secure_random=os.urandom(32), has_password=True, current_algo=algo,
        srp_B=server.B, srp_id=srp_id)


def check_password(call: Call, request: Any) -> Any:
    desk = call.world.login
    proof = request.password
    if not isinstance(proof, types.InputCheckPasswordSRP):
        raise SandboxRpcError(400, "PASSWORD_HASH_INVALID")
    # A challenge answers once, and only for the key and account it was issued to.
    pending = desk.rounds.pop(proof.srp_id, None)
    user = _password_user(call)
    if pending is None or pending.key != call.key or user is None or user.id != pending.user_id:
        raise SandboxRpcError(400, "SRP_ID_INVALID")
    algo, v = desk.algo(user)
    if v is None or not srp.check(v, pending.server, algo.salt1, algo.salt2, proof.A, proof.M1):
        raise SandboxRpcError(400, "PASSWORD_HASH_INVALID")
    desk.awaiting_password.pop(call.key, None)
    return authorize(call, user)


def log_out(call: Call, request: Any) -> Any:
    call.world.revoke_key(call.key)
    return types.auth.LoggedOut()


# request class -> (handler, needs a logged-in key)
HANDLERS: dict[type, tuple[Handler, bool]] = {
    functions.auth.SendCodeRequest: (send_code, False),
    functions.auth.ResendCodeRequest: (resend_code, False),
    functions.auth.SignInRequest: (sign_in, False),
    functions.account.GetPasswordRequest: (get_password, False),
    functions.auth.CheckPasswordRequest: (check_password, False),
    functions.auth.LogOutRequest: (log_out, True),
    **QR_HANDLERS,
}
