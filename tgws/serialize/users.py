"""Group members: a Telethon User, with `.participant` when it came from a member listing."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC
from typing import Any, Final

import orjson
from telethon.tl import types

from tgws.serialize.common import (
    DATE_OPTS,
    I64_MIN,
    U64_MAX,
    DateFormat,
    Lenient,
    envelope,
    iso,
    snake,
    utc_or_iso,
)


def _status(s: Any, date: DateFormat = iso) -> dict[str, Any]:
    cls = type(s)
    kind = _STATUS_TYPES.get(cls)
    if kind is None:
        # No status at all: bots, and users Telegram gives us without one.
        kind = "hidden" if s is None else snake(cls, "UserStatus")
    return {
        "type": kind,
        "was_online": date(s.was_online) if cls is types.UserStatusOffline else None,
        "expires": date(s.expires) if cls is types.UserStatusOnline else None,
    }


_STATUS_TYPES: Final[dict[type, str]] = {
    types.UserStatusOnline: "online",
    types.UserStatusOffline: "offline",
    types.UserStatusRecently: "recently",
    types.UserStatusLastWeek: "last_week",
    types.UserStatusLastMonth: "last_month",
    types.UserStatusEmpty: "long_ago",  # "status not set": clients show "a long time ago"
}

_ROLES: Final[dict[type, str]] = {
    types.ChannelParticipant: "member",
    types.ChannelParticipantSelf: "self",
    types.ChannelParticipantAdmin: "admin",
    types.ChannelParticipantCreator: "creator",
    types.ChannelParticipantBanned: "banned",  # refined below: banned / left / restricted
    types.ChannelParticipantLeft: "left",
    types.ChatParticipant: "member",
    types.ChatParticipantAdmin: "admin",
    types.ChatParticipantCreator: "creator",
}


def _membership(p: Any, date: DateFormat = iso) -> dict[str, Any] | None:
    if p is None:
        return None
    cls = type(p)
    role = _ROLES.get(cls)
    if role is None:
        prefix = "ChatParticipant" if cls.__name__.startswith("Chat") else "ChannelParticipant"
        role = snake(cls, prefix)
    elif cls is types.ChannelParticipantBanned:
        # ChannelParticipantBanned covers both kicked users and restricted members (e.g.
        # muted): only a ban on view_messages removes someone from the group.
        rights = p.banned_rights
        if rights is not None and rights.view_messages:
            role = "banned"
        elif p.left:
            role = "left"
        else:
            role = "restricted"
    # Field sets differ per participant class; __dict__.get avoids getattr's exception
    # cost on the classes that lack a field (creator has no date, member no inviter...).
    attrs = getattr(p, "__dict__", None) or {}
    get = attrs.get
    return {
        "role": role,
        "joined": date(get("date")),
        "inviter_id": get("inviter_id"),
        "admin_rank": get("rank"),
        "via_request": get("via_request") is True,
    }


def _user(u: Any, date: DateFormat = iso) -> dict[str, Any]:
    username = u.username
    names = u.usernames
    active: list[str] = []
    if names:
        active = [n.username for n in names if n.active]
        if username is None and active:
            # Accounts with collectible usernames carry them only in `usernames`.
            username = active[0]
    return {
        "id": u.id,
        "username": username,
        "usernames": active,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "phone": u.phone,
        "lang_code": u.lang_code,
        # TL flags decode as bool, but objects built in code default them to None.
        "bot": u.bot is True,
        "deleted": u.deleted is True,
        "verified": u.verified is True,
        "premium": u.premium is True,
        "scam": u.scam is True,
        "fake": u.fake is True,
        "restricted": u.restricted is True,
        "support": u.support is True,
        "is_self": u.is_self is True,
        "contact": u.contact is True,
        "mutual_contact": u.mutual_contact is True,
        "status": _status(u.status, date),
        # Set by TelegramClient.iter_participants; absent on users fetched any other way.
        "membership": _membership(getattr(u, "participant", None), date),
    }


def user(u: Any) -> dict[str, Any]:
    """A Telethon User (optionally with `.participant`) as a JSON-native dict."""
    try:
        return _user(u)
    except AttributeError:
        return _user(Lenient(u))


def join_date(u: Any) -> int | None:
    """When the member joined, in unix seconds, from `u.participant`.

    None without a participant or without a date (creators, ChannelParticipantLeft).
    For ChannelParticipantBanned this is the record's date, which Telegram may set to when
    the restriction was applied rather than when the user joined.
    """
    p = getattr(u, "participant", None)
    d = getattr(p, "date", None)
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp())


def _member(u: Any) -> dict[str, Any]:
    # UTC dates are left to the one orjson pass (byte-identical to user(), checked in tests).
    try:
        return _user(u, utc_or_iso)
    except AttributeError:
        return user(u)


def user_envelope(group: str, u: Any) -> bytes:
    """The seed's "users" reply for one member, as UTF-8 JSON bytes."""
    return envelope("users", group, "user", _member(u))


def user_frames(group: str, users: Iterable[Any]) -> list[bytes]:
    """user_envelope(group, u) for each member, byte for byte: the hot path of `users`.

    Members as Telethon parses them are written from a template (_template_frames); any
    member it does not vouch for takes user_envelope's own path.
    """
    users = list(users)
    if not users:
        return []
    head = envelope("users", group, "user", None)[: -len(_NULL_END)].decode()
    texts: list[Any] = []
    frames, general = _template_frames(head, users, texts)
    try:
        text: str | None = "".join(filter(None, texts))  # None and "" dropped
    except TypeError:  # a field that is no str (an object built in code, not parsed)
        text = None
    # isprintable (no control character, no surrogate) and two finds cost half the regex,
    # which is exact: it runs only when they refuse (Cf characters such as U+200D do).
    if text is None or not ((text.isprintable() and '"' not in text and "\\" not in text)
                            or _UNSAFE(text) is None):
        # Some field is not written as it is: find whose, member by member.
        general |= {i for i, u in enumerate(users)
                    if i not in general and not _plain_texts(u)}
    for i in general:
        frames[i] = user_envelope(group, users[i])
    return frames


# --- the template path -------------------------------------------------------------------
# Per member, user_envelope builds three dicts and orjson walks them: ~30,000 instructions
# (callgrind, bench/README.md). Nearly all of a member's JSON is fixed text: the keys, and
# for a plain member, the status and role. The template writes the variable parts into
# that text with one f-string: ~20,000. It takes only what it can write exactly as
# user_envelope would: a types.User with no collectible usernames, a known status and
# participant class, 64-bit ids, dates in UTC (or naive), and str fields that JSON writes
# as they are (no quote, backslash, control character or lone surrogate: checked once per
# page on all of them together). Anything else is left to user_envelope (`general`).
_NULL_END: Final = b"null}}}"
_User: Final = types.User
_Online: Final = types.UserStatusOnline
_Offline: Final = types.UserStatusOffline
_UTC_TZ: Final = UTC
_dumps: Final = orjson.dumps
# What orjson escapes in a str (quote, backslash, U+0000-U+001F) and what UTF-8 cannot
# encode (lone surrogates).
_UNSAFE: Final = re.compile(r'["\\\x00-\x1f\ud800-\udfff]').search

# A status without a date is one fixed text; the two with one are text, date, text.
_ONLINE: Final = '{"type":"online","was_online":null,"expires":'
_OFFLINE: Final = '{"type":"offline","was_online":'
_OFFLINE_END: Final = ',"expires":null}'
_STATUS_TEXT: Final[dict[type, str]] = {
    cls: f'{{"type":"{kind}","was_online":null,"expires":null}}'
    for cls, kind in [*_STATUS_TYPES.items(), (type(None), "hidden")]
    if cls is not _Online and cls is not _Offline
}


def _has_fields(cls: type) -> tuple[bool, bool, bool, bool]:
    """Which of date, inviter_id, rank, via_request the participant class has (its TL
    constructor's arguments, which Telethon sets and nothing else), so the template reads
    them without getattr's default. Unknown: all, and a missing one sends the member to
    user_envelope (AttributeError)."""
    code = getattr(cls.__init__, "__code__", None)  # type: ignore[misc]
    if code is None:
        return True, True, True, True
    names = code.co_varnames[: code.co_argcount]
    return "date" in names, "inviter_id" in names, "rank" in names, "via_request" in names


# Participant class -> (the membership's text up to "joined":, has date, inviter_id, rank,
# via_request). Banned needs its rights read (_membership), Left is never listed.
_ROLE_TEXT: Final[dict[type, tuple[str, bool, bool, bool, bool]]] = {
    cls: (f'{{"role":"{role}","joined":', *_has_fields(cls))
    for cls, role in _ROLES.items()
    if cls is not types.ChannelParticipantBanned and cls is not types.ChannelParticipantLeft
}

_FLAG_NAMES: Final = ("bot", "deleted", "verified", "premium", "scam", "fake", "restricted",
                      "support", "is_self", "contact", "mutual_contact")
_FLAG_TEXT: dict[tuple[Any, ...], str] = {}  # at most 3**11 keys: True, False or None each


def _flags_text(flags: tuple[Any, ...]) -> str:
    text = "".join(f',"{name}":{"true" if value is True else "false"}'
                   for name, value in zip(_FLAG_NAMES, flags, strict=True))
    if all(value is True or value is False or value is None for value in flags):
        _FLAG_TEXT[flags] = text
    return text


class _General(Exception):
    """This member is left to user_envelope."""


def _date_text(d: Any) -> str:
    tz = d.tzinfo
    if tz is not _UTC_TZ and tz is not None:
        raise _General  # iso() converts other zones; orjson alone would keep the offset
    text: str = _dumps(d, option=DATE_OPTS).decode()
    return text


def _quoted(text: str) -> str:
    return f'"{text}"'  # JSON for a str that needs no escapes (the caller checks `texts`)


def _template_frames(head: str, users: list[Any],
                     texts: list[Any]) -> tuple[list[bytes], set[int]]:
    """Each member's frame from the template, b"" where it is left to user_envelope (the
    indexes returned). Every str field written (and the Nones) goes into `texts`: the
    caller checks them all at once, since a str is written here as '"' + it + '"'."""
    frames: list[bytes] = []
    general: set[int] = set()
    add = frames.append
    for u in users:
        try:
            if type(u) is not _User:
                raise _General
            uid = u.id
            if u.usernames or type(uid) is not int or not I64_MIN <= uid <= U64_MAX:
                raise _General
            flags = (u.bot, u.deleted, u.verified, u.premium, u.scam, u.fake, u.restricted,
                     u.support, u.is_self, u.contact, u.mutual_contact)
            try:
                flag_text = _FLAG_TEXT[flags]
            except KeyError:
                flag_text = _flags_text(flags)
            # The status and the membership go into the one f-string below as pieces (a
            # date between two fixed texts): no string of their own to build and copy.
            s = u.status
            cls = type(s)
            if cls is _Online:
                status, status_date, status_end = _ONLINE, _date_text(s.expires), "}"
            elif cls is _Offline:
                status, status_date, status_end = _OFFLINE, _date_text(s.was_online), _OFFLINE_END
            else:
                status, status_date, status_end = _STATUS_TEXT[cls], "", ""
            p = u.participant  # None (never from a listing): KeyError, user_envelope
            role, has_date, has_inviter, has_rank, has_via = _ROLE_TEXT[type(p)]
            joined = "null"
            if has_date and (d := p.date) is not None:
                tz = d.tzinfo  # _date_text(d), inline: nearly every member has this date
                if tz is not _UTC_TZ and tz is not None:
                    raise _General
                joined = _dumps(d, option=DATE_OPTS).decode()
            inviter = p.inviter_id if has_inviter else None
            if inviter is not None and (type(inviter) is not int
                                        or not I64_MIN <= inviter <= U64_MAX):
                raise _General
            rank = p.rank if has_rank else None
            name, first, last, phone, lang = (u.username, u.first_name, u.last_name, u.phone,
                                              u.lang_code)
            texts += (name, first, last, phone, lang, rank)
            name = "null" if name is None else f'"{name}"'
            first = "null" if first is None else f'"{first}"'
            last = "null" if last is None else f'"{last}"'
            phone = "null" if phone is None else f'"{phone}"'
            lang = "null" if lang is None else f'"{lang}"'
            add(f'{head}{{"id":{uid},"username":{name},"usernames":[],"first_name":{first},'
                f'"last_name":{last},"phone":{phone},"lang_code":{lang}{flag_text},'
                f'"status":{status}{status_date}{status_end},"membership":{role}'
                f'{joined},'
                f'"inviter_id":{"null" if inviter is None else inviter},'
                f'"admin_rank":{"null" if rank is None else _quoted(rank)},"via_request":'
                f'{"true" if has_via and p.via_request is True else "false"}}}}}}}}}}}'.encode())
        except (_General, AttributeError, KeyError, TypeError, ValueError):
            # ValueError: UnicodeEncodeError (a lone surrogate); TypeError: what orjson or
            # a dict key refuses. user_envelope handles (or reports) all of it as before.
            general.add(len(frames))
            add(b"")
    return frames, general


def _plain_texts(u: Any) -> bool:
    """Whether the member's str fields are all written as they are (see _UNSAFE)."""
    p = getattr(u, "participant", None)
    for value in (u.username, u.first_name, u.last_name, u.phone, u.lang_code,
                  getattr(p, "rank", None)):
        if value is not None and (type(value) is not str or _UNSAFE(value) is not None):
            return False
    return True
