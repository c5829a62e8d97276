"""Group members: a Telethon User, with `.participant` when it came from a member listing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any, Final

from telethon.tl import types

from tgws.serialize.common import (
    DateFormat,
    Lenient,
    envelope,
    envelopes,
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
    """user_envelope(group, u) for each member, byte for byte: the hot path of `users`."""
    return envelopes("users", group, "user", map(_member, users))
