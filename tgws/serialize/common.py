"""What every serializer shares: dates, marked peer ids, class-derived names, the
reflective path for rare objects, and the envelope encoder.

Names here are the package's internal API (no leading underscore, since the sibling
modules import them); nothing outside tgws.serialize uses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from telethon.tl import types

SCHEMA_VERSION: Final = 1

_UTC: Final = UTC  # the very object Telethon attaches (timezone.utc)
CHANNEL_MARK: Final = 1_000_000_000_000  # Telethon/Bot API: channel -> -(10**12 + id)
I64_MIN: Final = -(2**63)
U64_MAX: Final = 2**64 - 1  # orjson encodes ints in [-2**63, 2**64) and refuses the rest

# orjson formats a datetime ~3x faster than isoformat() (measured on the dev box: ~300 ns
# per date against ~950 ns for d.isoformat().replace("+00:00", "Z"); f-strings: ~1.1 us).
# OMIT_MICROSECONDS keeps every date the same 20-character shape; Telegram has none anyway.
DATE_OPTS: Final = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS | orjson.OPT_NAIVE_UTC
_dumps: Final = orjson.dumps

DateFormat = Callable[[Any], Any]  # iso, or utc_or_iso on the envelope path


def iso(d: Any) -> str | None:
    """A datetime as "YYYY-MM-DDTHH:MM:SSZ" (UTC); None stays None."""
    if d is None:
        return None
    tz = d.tzinfo
    if tz is not _UTC and tz is not None:
        # Telethon always attaches timezone.utc itself; other zones only come from callers.
        off = d.utcoffset()
        if off:
            try:
                d = d.astimezone(_UTC)
            except OverflowError:
                # Year 1 or 9999 shifted out of datetime's range: keep the offset form,
                # still valid ISO 8601, rather than fail the whole item.
                fallback: str = d.isoformat(timespec="seconds")
                return fallback
        else:
            d = d.replace(tzinfo=None)  # a zero-offset zone: same instant, and orjson's Z
    # orjson yields b'"...Z"'; strip the quotes. ASCII only, so decode cannot fail.
    return _dumps(d, option=DATE_OPTS)[1:-1].decode()


def utc_or_iso(d: Any) -> Any:
    """For the envelope path: a UTC datetime stays a datetime, for orjson to format.

    orjson writes a UTC datetime as "YYYY-MM-DDTHH:MM:SSZ" under DATE_OPTS, exactly what
    iso returns, in the same pass that encodes the envelope: two fewer orjson calls and
    string copies per message. Anything unusual still goes through iso.
    """
    if d is None or d.tzinfo is _UTC:
        return d
    return iso(d)


_PeerUser: Final = types.PeerUser
_PeerChat: Final = types.PeerChat
_PeerChannel: Final = types.PeerChannel


def marked_id(p: Any) -> int | None:
    """A Peer* object as a marked id (see the package docstring); None for None or non-peers."""
    cls = type(p)
    marked: int  # typed local: the TL side is Any, and int() calls would cost on the hot path
    if cls is _PeerUser:
        marked = p.user_id
    elif cls is _PeerChannel:
        marked = -(CHANNEL_MARK + p.channel_id)
    elif cls is _PeerChat:
        marked = -p.chat_id
    else:
        return None
    return marked


# --- names derived from class names ------------------------------------------------------
_SNAKE_RE: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_name_cache: dict[tuple[type, str], str] = {}


def snake(cls: type, prefix: str) -> str:
    """'MessageActionChatAddUser' minus `prefix` -> 'chat_add_user'; cached per class."""
    key = (cls, prefix)
    name = _name_cache.get(key)
    if name is None:
        raw = cls.__name__
        if raw.startswith(prefix) and len(raw) > len(prefix):
            raw = raw[len(prefix) :]
        name = _SNAKE_RE.sub("_", raw).lower()
        _name_cache[key] = name
    return name


# --- the reflective path, for rare and unknown objects -----------------------------------
_SKIP: Final = object()


def _value(v: Any) -> Any:
    """One TL field value as JSON-native, or _SKIP when it has no simple form."""
    if v is None or v is True or v is False:
        return v
    cls = type(v)
    if cls is str or cls is float:
        return v
    if cls is int:
        # TL has int128/int256 fields; orjson refuses anything outside 64 bits.
        return v if I64_MIN <= v <= U64_MAX else str(v)
    if isinstance(v, datetime):
        return iso(v)
    if cls is list or cls is tuple:
        items = [x for x in map(_value, v) if x is not _SKIP]
        return items if items or not v else _SKIP
    marked = marked_id(v)
    if marked is not None:
        return marked
    if cls is types.TextWithEntities:
        return v.text
    return _SKIP  # bytes, nested TL objects: not "simple", left out


def fields(obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Add obj's simple TL fields to `out` (never overwriting a key already there)."""
    attrs = getattr(obj, "__dict__", None)
    if attrs:
        for key, v in attrs.items():
            if key[0] == "_" or key in out:
                continue
            conv = _value(v)
            if conv is not _SKIP:
                out[key] = conv
    return out


class Lenient:
    """A read-only view whose missing attributes read as None (UserEmpty, partial objects)."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name, None)


# --- envelopes ---------------------------------------------------------------------------
def _clean(v: Any) -> Any:
    """Copy of `v` that orjson accepts: lone surrogates replaced, >64-bit ints as str.

    Only used after orjson refused the fast attempt. Strings off the wire cannot hold
    surrogates (Telethon decodes with errors='replace'), but strings from elsewhere can:
    json.loads turns "\\ud800" into a lone surrogate, and telethon.helpers.add_surrogate
    output holds pairs. UTF-16 with surrogatepass re-joins pairs and replaces lone halves.
    """
    cls = type(v)
    if cls is str:
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if cls is dict:
        return {_clean(k): _clean(x) for k, x in v.items()}
    if cls is list:
        return [_clean(x) for x in v]
    if cls is int and not I64_MIN <= v <= U64_MAX:
        return str(v)
    return v


def _encode(obj: dict[str, Any], option: int = 0) -> bytes:
    try:
        return _dumps(obj, option=option)
    except TypeError:  # orjson.JSONEncodeError subclasses TypeError
        return _dumps(_clean(obj), option=option)


def envelope(event: str, group: str, key: str, item: dict[str, Any] | None) -> bytes:
    """{"event": E, "data": {"status": "success", "message": {"group": G, KEY: item}}}."""
    return _encode(
        {"event": event, "data": {"status": "success", "message": {"group": group, key: item}}},
        DATE_OPTS,
    )


_ENVELOPE_END: Final = b"}}}"


def envelopes(event: str, group: str, key: str, items: Iterable[dict[str, Any]]) -> list[bytes]:
    """envelope(event, group, key, item) for each item, byte for byte, built faster.

    A stream's items share everything but the item itself: the bytes before it are
    encoded once (from the envelope of a null item, so they are exactly what envelope()
    writes), and each item costs one orjson call and one join instead of three more dicts.
    """
    head = envelope(event, group, key, None)[: -len(b"null") - len(_ENVELOPE_END)]
    end = _ENVELOPE_END
    join = b"".join
    dumps = _dumps
    out = []
    for item in items:
        try:
            body = dumps(item, option=DATE_OPTS)
        except TypeError:  # orjson.JSONEncodeError: see _clean
            body = dumps(_clean(item), option=DATE_OPTS)
        out.append(join((head, body, end)))
    return out
