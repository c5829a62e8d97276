"""The wire protocol, free of I/O: frames in, typed requests out; replies as JSON text.

Whole on purpose (~490 lines): the reply strings, the requests and their parser are the one
place docs/protocol.md is checked against, all pure (no I/O); apart, a change would touch two.

Every reply string the seed protocol (the user's API document) defines lives here as a
named constant, byte for byte, quirks included ("alreay", the period after "'users'." in
one reply and not the other): existing clients match on them. Strings tgws adds are here
too, so docs/protocol.md can be checked against one place.

`parse(frame)` returns a Request or raises Refusal; it never raises anything else, whatever
the frame holds (a hypothesis test throws arbitrary text and bytes at it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tgws.errors import (
    CloseCode,
    FloodWait,
    GatewayError,
    LoginFlood,
    NotAuthorized,
    Refusal,
    SessionLocked,
    TelegramUnavailable,
)

# --- event names -------------------------------------------------------------------------
LOGIN: Final = "login"
TELEGRAM_LOGIN: Final = "telegram login"
USERS: Final = "users"
CHATS: Final = "chats"
LOGOUT: Final = "logout"  # added by tgws
CANCEL: Final = "cancel"  # added by tgws
WATCH: Final = "watch"  # added by tgws (live push, tgws/live.py)
ACK: Final = "ack"  # added by tgws (client acks, tgws/acks.py)
ERROR: Final = "error"  # event name of replies to frames whose event cannot be known
EVENTS: Final = (LOGIN, TELEGRAM_LOGIN, USERS, CHATS, LOGOUT, CANCEL, WATCH, ACK)

SUCCESS: Final = "success"
FAILED: Final = "failed"
PROGRESS: Final = "progress"

# --- the seed's reply strings (do not edit: clients match on them) -----------------------
SEND_PHONE_NUMBER: Final = "send phone number"
UNAUTHORIZED: Final = "unauthorized"
ALREADY_VERIFIED: Final = "Already verified. Send data to 'telegram login' or 'users'."
SESSION_EXISTS_LOGIN: Final = "session already exists, call 'users'."
SEND_CODE: Final = "send code"
INVALID_PHONE: Final = "invalid phone number"
LOGGED_IN: Final = "logged in successfully"
INVALID_CODE: Final = "invalid code provided"
VERIFY_API_KEY_FIRST: Final = "verify your api key first"
SESSION_EXISTS_TELEGRAM: Final = "session alreay exists, call 'users'"
SENDING_USERS: Final = "sending users"
SENDING_CHATS: Final = "sending chats"
IS_A_CHANNEL: Final = "{group} is a channel name"
DOES_NOT_EXIST: Final = "{group} does not exist"
INVALID_REQUEST: Final = "invalid request"

# --- strings tgws adds (documented in docs/protocol.md) ----------------------------------
SEND_PASSWORD: Final = "send password"
INVALID_PASSWORD: Final = "invalid password"
SEND_PHONE_FIRST: Final = "send your phone number first"
CODE_PENDING: Final = "a code was already sent; send the code (or reconnect to start over)"
PASSWORD_PENDING: Final = "this account has two-step verification; send the password"
NOT_EXPECTING_PASSWORD: Final = "no password was asked for; send your phone number first"
TELEGRAM_LOGIN_FIRST: Final = "no telegram session; log in with 'telegram login' first"
LOGGED_OUT: Final = "logged out"
NO_SESSION: Final = "no telegram session to log out"
CANCELLED: Final = "cancelled"
NOTHING_TO_CANCEL: Final = "no stream in progress"
STREAM_IN_PROGRESS: Final = "a stream is in progress; wait for 'done' or send 'cancel'"
DONE: Final = "done"
TOO_MANY_FAILURES: Final = "too many failed logins"
API_KEY_REVOKED: Final = "api key revoked"
# The edge's limits on login ([server] max_connections_per_key, max_connections).
TOO_MANY_KEY_CONNECTIONS: Final = "too many connections for this API key"
TOO_MANY_CONNECTIONS: Final = "too many connections; try again later"
MEMBERS_HIDDEN: Final = "{group} hides its member list; only its admins can list members"
FLOOD_WAITING: Final = "telegram asks to wait {seconds} s; waiting"
FLOOD_TOO_LONG: Final = "telegram asks to wait {seconds} s; try again later"
TELEGRAM_ERROR: Final = "telegram error: {error}"
SESSION_EXPIRED: Final = "the telegram session is no longer valid; log in again"
BINARY_FRAME: Final = "binary frames are not supported; send JSON text"
NOT_JSON: Final = "invalid JSON: {error}"
NOT_AN_OBJECT: Final = "a request must be a JSON object"
NO_EVENT: Final = "missing or non-string 'event'"
UNKNOWN_EVENT: Final = "unknown event {event!r}; known events: {known}"
BAD_FIELD: Final = "'data.{field}' must be {expected}"
INTERNAL_ERROR: Final = "internal error"
# Account keys and Telegram protected from us (docs/protocol.md, docs/security.md).
SESSION_LOCKED: Final = ("the stored telegram session is encrypted with a key this server "
                         "does not have; ask its operator")
CODE_ELSEWHERE: Final = ("a login code for this api key is pending on another connection; "
                         "send the code there, or close it and start over")
SEND_CODE_LIMITED: Final = "too many login codes requested; try again in {seconds} s"
LOGGED_OUT_ELSEWHERE: Final = "logged out on another connection"
# When Telegram fails, stalls or floods (docs/protocol.md, "When Telegram fails").
TELEGRAM_UNAVAILABLE: Final = "telegram unavailable, try again later"
RETRYING: Final = "telegram unavailable; retrying in {seconds} s"
WAITING_FOR_STREAM: Final = "waiting for another stream of {group} to finish"
# Telegram's login floods, held by tgws for [limits] *_flood_cooldown (tgws/login_guard.py).
PHONE_FLOOD: Final = "too many login attempts for this phone number; try again in {seconds} s"
PASSWORD_FLOOD: Final = "too many password attempts; try again in {seconds} s"
# QR login and code delivery (docs/protocol.md, "telegram login").
SCAN_QR: Final = "scan the QR code"
QR_EXPIRED: Final = "the QR code was not scanned in time; send {\"qr\": true} to get a new one"
RESEND_UNAVAILABLE: Final = ("telegram has no other way to send the code; "
                             "use the code already sent")
CLIENT_STALLED: Final = "the client stopped reading; connection dropped"  # logged, not seen
# watch and ack (docs/protocol.md, "watch").
WATCHING: Final = "watching"
ACK_NEVER_SENT: Final = "no item with seq {seq} was sent on this connection"
# The item kinds of a watch ("kind") and the path that produced an item ("path").
KIND_MESSAGE: Final = "message"
KIND_EDIT: Final = "edit"
KIND_DELETION: Final = "deletion"
KIND_MEMBER: Final = "member"
KIND_MEMBER_LEFT: Final = "member_left"
PATH_CATCH_UP: Final = "catch-up"
PATH_LIVE: Final = "live"
PATH_RECONCILE: Final = "reconcile"


# --- requests ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Login:
    api_key: str


@dataclass(frozen=True, slots=True)
class TelegramLogin:
    """Exactly one of phone, code, password, qr, resend is set (parse guarantees it)."""

    phone: str | None = None
    code: str | None = None
    password: str | None = None
    qr: bool = False  # {"qr": true}: log in by scanning a QR code
    resend: bool = False  # {"resend": true}: auth.resendCode
    delivery: bool = False  # {"phone": ..., "delivery": true}: say how the code was sent


@dataclass(frozen=True, slots=True)
class Users:
    groups: tuple[str, ...]
    latest: bool
    progress: bool = False
    client_acks: bool = False  # "ack": "client": items carry "seq"; offsets wait for `ack`


@dataclass(frozen=True, slots=True)
class ChatTarget:
    name: str
    latest: bool


@dataclass(frozen=True, slots=True)
class Chats:
    groups: tuple[ChatTarget, ...]
    progress: bool = False
    client_acks: bool = False  # "ack": "client"


@dataclass(frozen=True, slots=True)
class Watch:
    """Live push of the groups' new messages (and edits, deletions, members when asked)."""

    groups: tuple[str, ...]
    messages: bool = True
    edits: bool = False
    deletions: bool = False
    members: bool = False
    client_acks: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


Request = Login | TelegramLogin | Users | Chats | Logout | Cancel | Watch | Ack


def event_of(request: Request) -> str:
    return _EVENT_OF[type(request)]


_EVENT_OF: dict[type[Any], str] = {
    Login: LOGIN, TelegramLogin: TELEGRAM_LOGIN, Users: USERS, Chats: CHATS,
    Logout: LOGOUT, Cancel: CANCEL, Watch: WATCH, Ack: ACK,
}


# --- parsing -----------------------------------------------------------------------------
def parse(frame: str | bytes) -> Request:
    """Turn one websocket frame into a Request, or raise Refusal (never anything else)."""
    if isinstance(frame, bytes | bytearray | memoryview):
        raise Refusal(ERROR, BINARY_FRAME)
    try:
        payload = json.loads(frame)
    except ValueError as err:  # JSONDecodeError, and lone surrogates in odd input
        raise Refusal(ERROR, NOT_JSON.format(error=_short(str(err)))) from None
    except RecursionError:
        raise Refusal(ERROR, NOT_JSON.format(error="nested too deeply")) from None
    if not isinstance(payload, dict):
        raise Refusal(ERROR, NOT_AN_OBJECT)
    event = payload.get("event")
    if not isinstance(event, str):
        raise Refusal(ERROR, NO_EVENT)
    parser = _PARSERS.get(event)
    if parser is None:
        known = ", ".join(repr(e) for e in EVENTS)
        raise Refusal(ERROR, UNKNOWN_EVENT.format(event=_short(event, 60), known=known))
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise Refusal(event, "'data' must be a JSON object")
    request: Request = parser(event, data)
    return request


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bad(event: str, field: str, expected: str) -> Refusal:
    return Refusal(event, BAD_FIELD.format(field=field, expected=expected))


def _unicode(event: str, value: str, field: str) -> str:
    """JSON escapes can smuggle lone surrogates ("\\udfff") that no UTF-8 text can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(event, field, "valid Unicode text") from None
    return value


def _string(event: str, data: Mapping[str, Any], field: str, *, limit: int = 4096) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise _bad(event, field, "a string")
    if len(value) > limit:
        raise _bad(event, field, f"at most {limit} characters")
    return _unicode(event, value, field)


def _flag(event: str, data: Mapping[str, Any], field: str) -> bool:
    value = data.get(field, False)
    if not isinstance(value, bool):
        raise _bad(event, field, "true or false")
    return value


def _status(event: str, value: Any, label: str = "status") -> bool | None:
    """The seed's status: "latest", or "" (everything). None when empty or missing."""
    if value is None or value == "":
        return None
    if value != "latest":
        raise _bad(event, label, "\"\" or \"latest\"")
    return True


def _parse_login(event: str, data: Mapping[str, Any]) -> Request:
    return Login(api_key=_string(event, data, "apiKey", limit=512))


def _parse_telegram_login(event: str, data: Mapping[str, Any]) -> Request:
    present = [f for f in ("phone", "code", "password", "qr", "resend") if f in data]
    if len(present) != 1:
        raise Refusal(event, "'data' must hold exactly one of 'phone', 'code', 'password', "
                             "'qr' or 'resend'")
    field = present[0]
    if field in ("qr", "resend"):
        if data[field] is not True:
            raise _bad(event, field, "true")
        return TelegramLogin(qr=field == "qr", resend=field == "resend")
    # "delivery": true beside a phone opts in to the "delivery" key of the "send code" reply
    # (the seed's reply stays byte for byte otherwise).
    delivery = _flag(event, data, "delivery") if field == "phone" else False
    value = data[field]
    # Codes are digits and some clients send them as numbers; accept both.
    if field == "code" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _bad(event, field, "a string")
    if len(value) > 256:
        raise _bad(event, field, "at most 256 characters")
    text = _unicode(event, value, field)
    if field == "phone":
        return TelegramLogin(phone=text, delivery=delivery)
    return TelegramLogin(code=text) if field == "code" else TelegramLogin(password=text)


def _group_names(event: str, value: Any) -> list[Any]:
    # The seed sends a list; a single name as a string is accepted as a one-element list.
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise _bad(event, "group", "a non-empty list")
    if len(value) > 100:
        raise _bad(event, "group", "a list of at most 100 groups")
    return value


def _name(event: str, value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise _bad(event, field, "a non-empty group name (a string)")
    return _unicode(event, value, field)


# A Telegram username: 4-32 of A-Z a-z 0-9 _, starting with a letter (4 for collectible
# names). "me" and "self" are Telethon's words for the account itself, not usernames.
_USERNAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_LINK_PREFIXES: Final = ("https://t.me/", "http://t.me/", "t.me/", "@")
_NOT_USERNAMES: Final = frozenset({"me", "self"})


def username_of(name: str) -> str | None:
    """The username a group name stands for ('x', '@x', 't.me/x', 'https://t.me/x/'), or None.

    Anything else (numeric ids, phone numbers, 'me'/'self', display titles, invite links) is
    not sent to Telegram: an id or phone resolves to whatever Telegram finds, and a title is
    not unique, so caching its answer as a username would be wrong.
    """
    bare = name.strip()
    for prefix in _LINK_PREFIXES:
        if bare.lower().startswith(prefix):
            bare = bare[len(prefix):]
            break
    bare = bare.removesuffix("/")
    if bare.lower() in _NOT_USERNAMES or not _USERNAME.fullmatch(bare):
        return None
    return bare


def _group_key(name: str) -> str:
    """Names of one group compare equal: '@X', 't.me/x' and 'x' are one group."""
    return (username_of(name) or name.strip()).lower()


def unusable_group(request: Users | Chats | Watch) -> Refusal | None:
    """The seed's refusal for the first name that is not a username or t.me link, if any.

    The replies are the seed's for a group that does not exist (users: "<name> does not
    exist", chats: "invalid request"), and the socket closes as the seed's does.
    """
    if isinstance(request, Users | Watch):
        event = USERS if isinstance(request, Users) else WATCH
        for name in request.groups:
            if username_of(name) is None:
                return Refusal(event, DOES_NOT_EXIST.format(group=name),
                               close=CloseCode.NORMAL, group=name)
        return None
    for target in request.groups:
        if username_of(target.name) is None:
            return Refusal(CHATS, INVALID_REQUEST, close=CloseCode.NORMAL, group=target.name)
    return None


def _parse_users(event: str, data: Mapping[str, Any]) -> Request:
    names = _group_names(event, data.get("group"))
    # A group named twice (in any spelling) is fetched and sent once, under its first name.
    unique: dict[str, str] = {}
    for name in names:
        name = _name(event, name, "group[]")
        unique.setdefault(_group_key(name), name)
    latest = _status(event, data.get("status")) or False
    return Users(groups=tuple(unique.values()), latest=latest,
                 progress=_flag(event, data, "progress"), client_acks=_acks(event, data))


def _acks(event: str, data: Mapping[str, Any]) -> bool:
    """"ack": "client" (the application acks) or "pong" / absent (the default barrier)."""
    value = data.get("ack", "pong")
    if value not in ("client", "pong"):
        raise _bad(event, "ack", "\"client\" or \"pong\"")
    return bool(value == "client")


def _parse_watch(event: str, data: Mapping[str, Any]) -> Request:
    unique: dict[str, str] = {}
    for name in _group_names(event, data.get("group")):
        name = _name(event, name, "group[]")
        unique.setdefault(_group_key(name), name)
    kinds = {kind: data.get(kind, kind == "messages") for kind in
             ("messages", "edits", "deletions", "members")}
    for kind, value in kinds.items():
        if not isinstance(value, bool):
            raise _bad(event, kind, "true or false")
    return Watch(groups=tuple(unique.values()), **kinds, client_acks=_acks(event, data))


def _parse_ack(event: str, data: Mapping[str, Any]) -> Request:
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise _bad(event, "seq", "a non-negative integer")
    return Ack(seq)


def _parse_chats(event: str, data: Mapping[str, Any]) -> Request:
    default_latest = _status(event, data.get("status")) or False
    targets: dict[str, ChatTarget] = {}
    for item in _group_names(event, data.get("group")):
        if isinstance(item, str):
            name, latest = _name(event, item, "group[]"), default_latest
        elif isinstance(item, dict):
            name = _name(event, item.get("name"), "group[].name")
            # The group's own status wins; an empty one falls back to the request's.
            own = _status(event, item.get("status"), "group[].status")
            latest = default_latest if own is None else own
        else:
            raise _bad(event, "group[]", "an object {\"name\": …, \"status\": …}")
        # A group named twice is sent once, under its first name; if any of its entries
        # asks for everything (status ""), everything is sent (it includes the latest).
        key = _group_key(name)
        first = targets.get(key)
        targets[key] = ChatTarget(name, latest) if first is None else \
            ChatTarget(first.name, first.latest and latest)
    return Chats(groups=tuple(targets.values()), progress=_flag(event, data, "progress"),
                 client_acks=_acks(event, data))


def _parse_empty(cls: type[Logout] | type[Cancel]) -> Callable[[str, Mapping[str, Any]], Request]:
    def parse_it(event: str, data: Mapping[str, Any]) -> Request:
        return cls()

    return parse_it


_PARSERS: dict[str, Callable[[str, Mapping[str, Any]], Request]] = {
    LOGIN: _parse_login,
    TELEGRAM_LOGIN: _parse_telegram_login,
    USERS: _parse_users,
    CHATS: _parse_chats,
    LOGOUT: _parse_empty(Logout),
    CANCEL: _parse_empty(Cancel),
    WATCH: _parse_watch,
    ACK: _parse_ack,
}


# --- replies -----------------------------------------------------------------------------
def reply(event: str, status: str, message: Any, **extra: Any) -> str:
    """One reply in the seed's shape: {"event": E, "data": {"status": S, "message": M, ...}}."""
    data: dict[str, Any] = {"status": status, "message": message}
    data.update(extra)
    return json.dumps({"event": event, "data": data}, ensure_ascii=False, indent=None)


def success(event: str, message: Any, **extra: Any) -> str:
    return reply(event, SUCCESS, message, **extra)


def failed(event: str, message: str, **extra: Any) -> str:
    return reply(event, FAILED, message, **extra)


def gateway_refusal(event: str, err: GatewayError) -> Refusal:
    """The failed reply for Telegram errors that every request treats alike."""
    if isinstance(err, FloodWait):
        return Refusal(event, FLOOD_TOO_LONG.format(seconds=err.seconds))
    if isinstance(err, NotAuthorized):
        return Refusal(event, SESSION_EXPIRED)
    if isinstance(err, SessionLocked):
        return Refusal(event, SESSION_LOCKED)
    if isinstance(err, TelegramUnavailable):
        return Refusal(event, TELEGRAM_UNAVAILABLE)
    if isinstance(err, LoginFlood):
        # Telegram names no wait: the seconds are tgws's own cool-down, which the
        # `telegram login` handler holds and fills in (tgws/login_guard.py LoginFloods).
        if err.seconds is None:
            return Refusal(event, TELEGRAM_ERROR.format(
                error="PHONE_NUMBER_FLOOD" if err.what == "phone" else "PHONE_PASSWORD_FLOOD"))
        template = PHONE_FLOOD if err.what == "phone" else PASSWORD_FLOOD
        return Refusal(event, template.format(seconds=err.seconds), retry_after=err.seconds)
    return Refusal(event, TELEGRAM_ERROR.format(error=str(err) or type(err).__name__))


def refusal_reply(refusal: Refusal) -> str:
    return failed(refusal.event, refusal.message, **refusal.extra)
