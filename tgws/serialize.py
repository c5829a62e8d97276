"""Telethon objects to JSON: group members and messages, schema version 1 (SCHEMA_VERSION).

`user(u)` and `message(m)` turn Telethon TL objects into JSON-native dicts (str, int, float,
bool, None, list, dict; no bytes, no datetimes); `user_envelope` / `message_envelope` wrap
one item in the seed protocol's reply shape and encode it with orjson. docs/schemas.md
documents every field; a change that removes or retypes a field bumps SCHEMA_VERSION.

This runs once per streamed item, so it is written for speed rather than generality:
plain attribute access on the classes Telethon 1.4x produces and dispatch on `type(obj)`
through dicts built once at import. Not `to_dict()`: it walks every nested object (file
references, thumbnails, reactions...), costs more than this whole module per message, and
its output still holds datetimes and bytes plus TL's field names rather than our schema.
Only rare objects (service-message actions, unknown media) take the reflective path.

Rules that hold everywhere:

* Dates are ISO 8601 UTC strings with a "Z" suffix, whole seconds ("2024-05-01T12:00:00Z").
  Telegram dates are whole seconds; a naive datetime is taken to be UTC, as Telethon does.
* Peer ids are "marked" the way Telethon's `chat_id`/`sender_id` and the Bot API mark
  them: a user is its positive id, a basic group is -id, a channel/supergroup is
  -(10**12 + id) (the familiar -100... form). Bare user-id fields are copied as they are.
* Nothing here raises on a TL class it does not know: unknown media and actions become
  {"type": <snake_case of the class name>, ...its simple fields}, and objects missing
  attributes (UserEmpty, partial objects) are retried through a lenient view that reads
  missing attributes as None.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from telethon.tl import types

SCHEMA_VERSION: Final = 1

_UTC: Final = UTC  # the very object Telethon attaches (timezone.utc)
_CHANNEL_MARK: Final = 1_000_000_000_000  # Telethon/Bot API: channel -> -(10**12 + id)
_I64_MIN: Final = -(2**63)
_U64_MAX: Final = 2**64 - 1  # orjson encodes ints in [-2**63, 2**64) and refuses the rest

# orjson formats a datetime ~3x faster than isoformat() (measured on the dev box: ~300 ns
# per date against ~950 ns for d.isoformat().replace("+00:00", "Z"); f-strings: ~1.1 us).
# OMIT_MICROSECONDS keeps every date the same 20-character shape; Telegram has none anyway.
_DATE_OPTS: Final = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS | orjson.OPT_NAIVE_UTC
_dumps: Final = orjson.dumps


def _iso(d: Any) -> str | None:
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
    return _dumps(d, option=_DATE_OPTS)[1:-1].decode()


def _utc_or_iso(d: Any) -> Any:
    """For the envelope path: a UTC datetime stays a datetime, for orjson to format.

    orjson writes a UTC datetime as "YYYY-MM-DDTHH:MM:SSZ" under _DATE_OPTS, exactly what
    _iso returns, in the same pass that encodes the envelope: two fewer orjson calls and
    string copies per message. Anything unusual still goes through _iso.
    """
    if d is None or d.tzinfo is _UTC:
        return d
    return _iso(d)


_PeerUser: Final = types.PeerUser
_PeerChat: Final = types.PeerChat
_PeerChannel: Final = types.PeerChannel


def _peer(p: Any) -> int | None:
    """A Peer* object as a marked id (see module docstring); None for None or non-peers."""
    cls = type(p)
    marked: int  # typed local: the TL side is Any, and int() calls would cost on the hot path
    if cls is _PeerUser:
        marked = p.user_id
    elif cls is _PeerChannel:
        marked = -(_CHANNEL_MARK + p.channel_id)
    elif cls is _PeerChat:
        marked = -p.chat_id
    else:
        return None
    return marked


# --- names derived from class names ------------------------------------------------------
_SNAKE_RE: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_name_cache: dict[tuple[type, str], str] = {}


def _snake(cls: type, prefix: str) -> str:
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
        return v if _I64_MIN <= v <= _U64_MAX else str(v)
    if isinstance(v, datetime):
        return _iso(v)
    if cls is list or cls is tuple:
        items = [x for x in map(_value, v) if x is not _SKIP]
        return items if items or not v else _SKIP
    marked = _peer(v)
    if marked is not None:
        return marked
    if cls is types.TextWithEntities:
        return v.text
    return _SKIP  # bytes, nested TL objects: not "simple", left out


def _fields(obj: Any, out: dict[str, Any]) -> dict[str, Any]:
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


class _Lenient:
    """A read-only view whose missing attributes read as None (UserEmpty, partial objects)."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name, None)


# --- users -------------------------------------------------------------------------------
def _status(s: Any, date: Callable[[Any], Any] = _iso) -> dict[str, Any]:
    cls = type(s)
    kind = _STATUS_TYPES.get(cls)
    if kind is None:
        # No status at all: bots, and users Telegram gives us without one.
        kind = "hidden" if s is None else _snake(cls, "UserStatus")
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


def _membership(p: Any, date: Callable[[Any], Any] = _iso) -> dict[str, Any] | None:
    if p is None:
        return None
    cls = type(p)
    role = _ROLES.get(cls)
    if role is None:
        prefix = "ChatParticipant" if cls.__name__.startswith("Chat") else "ChannelParticipant"
        role = _snake(cls, prefix)
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


def _user(u: Any, date: Callable[[Any], Any] = _iso) -> dict[str, Any]:
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
        return _user(_Lenient(u))


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
        d = d.replace(tzinfo=_UTC)
    return int(d.timestamp())


# --- media -------------------------------------------------------------------------------
def _document(media: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "document",
        "mime_type": None,
        "size": None,
        "file_name": None,
        "duration": None,
        "width": None,
        "height": None,
        "title": None,
        "performer": None,
        "emoji": None,
        "spoiler": media.spoiler is True,
    }
    doc = media.document
    if type(doc) is not types.Document:
        return out  # None (self-destructed) or DocumentEmpty
    out["mime_type"] = doc.mime_type
    out["size"] = doc.size
    sticker = gif = round_video = video = voice = audio = False
    for a in doc.attributes:
        cls = type(a)
        if cls is types.DocumentAttributeFilename:
            out["file_name"] = a.file_name
        elif cls is types.DocumentAttributeVideo:
            video = True
            round_video = a.round_message is True
            out["duration"] = a.duration
            out["width"] = a.w
            out["height"] = a.h
        elif cls is types.DocumentAttributeAudio:
            audio = True
            voice = a.voice is True
            out["duration"] = a.duration
            out["title"] = a.title
            out["performer"] = a.performer
        elif cls is types.DocumentAttributeAnimated:
            gif = True
        elif cls is types.DocumentAttributeSticker or cls is types.DocumentAttributeCustomEmoji:
            sticker = True
            out["emoji"] = a.alt
        elif cls is types.DocumentAttributeImageSize:
            out["width"] = a.w
            out["height"] = a.h
    # Precedence matters: video stickers also carry a Video attribute and GIFs (mp4) carry
    # both Animated and Video, so the most specific kind wins.
    if sticker:
        out["type"] = "sticker"
    elif gif:
        out["type"] = "gif"
    elif round_video or media.round is True:
        out["type"] = "video_note"
    elif video:
        out["type"] = "video"
    elif voice or media.voice is True:
        out["type"] = "voice"
    elif audio:
        out["type"] = "audio"
    return out


def _photo(media: Any) -> dict[str, Any]:
    width = height = size = None
    photo = media.photo
    if type(photo) is types.Photo:
        best = -1
        for s in photo.sizes:
            cls = type(s)
            if cls is types.PhotoSize:
                n = s.size
            elif cls is types.PhotoSizeProgressive:
                n = max(s.sizes) if s.sizes else None
            elif cls is types.PhotoCachedSize:
                n = len(s.bytes)
            else:
                continue  # stripped/path thumbnails have no dimensions
            area = s.w * s.h
            if area > best:
                best, width, height, size = area, s.w, s.h, n
    return {
        "type": "photo",
        "width": width,
        "height": height,
        "size": size,
        "spoiler": media.spoiler is True,
    }


def _geo_point(g: Any, out: dict[str, Any]) -> dict[str, Any]:
    if type(g) is types.GeoPoint:
        out["lat"] = g.lat
        out["long"] = g.long
    else:  # GeoPointEmpty: location withheld or unknown
        out["lat"] = None
        out["long"] = None
    return out


def _geo(media: Any) -> dict[str, Any]:
    return _geo_point(media.geo, {"type": "geo"})


def _geo_live(media: Any) -> dict[str, Any]:
    out = _geo_point(media.geo, {"type": "geo_live"})
    out["period"] = media.period
    out["heading"] = media.heading
    return out


def _venue(media: Any) -> dict[str, Any]:
    out = _geo_point(media.geo, {"type": "venue"})
    out["title"] = media.title
    out["address"] = media.address
    out["provider"] = media.provider
    out["venue_id"] = media.venue_id
    out["venue_type"] = media.venue_type
    return out


def _contact(media: Any) -> dict[str, Any]:
    return {
        "type": "contact",
        "phone": media.phone_number,
        "first_name": media.first_name,
        "last_name": media.last_name,
        "user_id": media.user_id or None,  # 0 when the contact has no Telegram account
    }


def _text(t: Any) -> str | None:
    """TextWithEntities (layer 178+) or a plain str (older layers) as str."""
    text: str | None = t if t is None or type(t) is str else getattr(t, "text", None)
    return text


def _poll(media: Any) -> dict[str, Any]:
    poll = media.poll
    results = media.results
    answers = poll.answers or []
    # Vote counts arrive keyed by the answer's opaque `option` bytes, not by position.
    counts: dict[bytes, int | None] = {}
    total = None
    if results is not None:
        total = results.total_voters
        for r in results.results or ():
            counts[r.option] = r.voters
    return {
        "type": "poll",
        "question": _text(poll.question),
        "answers": [_text(a.text) for a in answers],
        "answer_voters": [counts.get(a.option) for a in answers],
        "total_voters": total,
        "closed": poll.closed is True,
        "quiz": poll.quiz is True,
        "multiple_choice": poll.multiple_choice is True,
        "public_voters": poll.public_voters is True,
    }


def _webpage(media: Any) -> dict[str, Any]:
    page = media.webpage
    # WebPagePending/WebPageEmpty may carry just a url; WebPageNotModified carries nothing.
    attrs = getattr(page, "__dict__", None) or {}
    get = attrs.get
    return {
        "type": "webpage",
        "url": get("url"),
        "title": get("title"),
        "site_name": get("site_name"),
        "description": get("description"),
    }


def _dice(media: Any) -> dict[str, Any]:
    return {"type": "dice", "emoticon": media.emoticon, "value": media.value}


def _game(media: Any) -> dict[str, Any]:
    g = media.game
    return {
        "type": "game",
        "short_name": g.short_name,
        "title": g.title,
        "description": g.description,
    }


def _invoice(media: Any) -> dict[str, Any]:
    return {
        "type": "invoice",
        "title": media.title,
        "description": media.description,
        "currency": media.currency,
        "total_amount": media.total_amount,
    }


def _story(media: Any) -> dict[str, Any]:
    return {"type": "story", "peer_id": _peer(media.peer), "story_id": media.id}


def _giveaway(media: Any) -> dict[str, Any]:
    return {
        "type": "giveaway",
        # Bare channel ids in TL; marked here to match chat_id.
        "channels": [-(_CHANNEL_MARK + c) for c in media.channels or ()],
        "quantity": media.quantity,
        "months": media.months,
        "stars": media.stars,
        "until_date": _iso(media.until_date),
        "prize_description": media.prize_description,
    }


def _unsupported(media: Any) -> dict[str, Any]:
    return {"type": "unsupported"}


_MEDIA: Final[dict[type, Any]] = {
    types.MessageMediaPhoto: _photo,
    types.MessageMediaDocument: _document,
    types.MessageMediaGeo: _geo,
    types.MessageMediaGeoLive: _geo_live,
    types.MessageMediaVenue: _venue,
    types.MessageMediaContact: _contact,
    types.MessageMediaPoll: _poll,
    types.MessageMediaWebPage: _webpage,
    types.MessageMediaDice: _dice,
    types.MessageMediaGame: _game,
    types.MessageMediaInvoice: _invoice,
    types.MessageMediaStory: _story,
    types.MessageMediaGiveaway: _giveaway,
    types.MessageMediaUnsupported: _unsupported,
}


def _media(media: Any) -> dict[str, Any] | None:
    if media is None or type(media) is types.MessageMediaEmpty:
        return None
    handler = _MEDIA.get(type(media))
    if handler is not None:
        try:
            out: dict[str, Any] = handler(media)
            return out
        except (AttributeError, TypeError):
            pass  # a layer changed the class's fields: fall back to the reflective form
    return _fields(media, {"type": _snake(type(media), "MessageMedia")})


# --- service actions ---------------------------------------------------------------------
def _action(a: Any) -> dict[str, Any] | None:
    if a is None:
        return None
    cls = type(a)
    out = _fields(a, {"type": _snake(cls, "MessageAction")})
    # Migration actions carry bare ids of the other group; mark them so they compare
    # equal to the chat_id of messages in that group.
    if cls is types.MessageActionChatMigrateTo and type(out.get("channel_id")) is int:
        out["channel_id"] = -(_CHANNEL_MARK + out["channel_id"])
    elif cls is types.MessageActionChannelMigrateFrom and type(out.get("chat_id")) is int:
        out["chat_id"] = -out["chat_id"]
    return out


# --- entities ----------------------------------------------------------------------------
_ENTITY_EXTRA: Final[dict[type, str]] = {
    types.MessageEntityTextUrl: "url",
    types.MessageEntityMentionName: "user_id",
    types.MessageEntityPre: "language",
    types.MessageEntityCustomEmoji: "document_id",
}


# Entities are the one per-message list; names resolved up front skip _snake's tuple key.
_ENTITY_NAMES: Final[dict[type, str]] = {
    cls: _snake(cls, "MessageEntity")
    for name, cls in vars(types).items()
    if name.startswith("MessageEntity") and isinstance(cls, type)
}


def _entities(entities: Any) -> list[dict[str, Any]]:
    if not entities:
        return []
    out = []
    for e in entities:
        cls = type(e)
        d = {
            "type": _ENTITY_NAMES.get(cls) or _snake(cls, "MessageEntity"),
            "offset": getattr(e, "offset", None),
            "length": getattr(e, "length", None),
        }
        extra = _ENTITY_EXTRA.get(cls)
        if extra is not None:
            d[extra] = getattr(e, extra, None)
        out.append(d)
    return out


# --- messages ----------------------------------------------------------------------------
def _forward(f: Any) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "from_id": _peer(f.from_id),
        "from_name": f.from_name,
        "date": _iso(f.date),
        "channel_post": f.channel_post,
        "post_author": f.post_author,
    }


def _message(m: Any, date: Callable[[Any], Any] = _iso) -> dict[str, Any]:
    sender_id = m.sender_id
    if sender_id is None and m.from_id is not None:
        sender_id = _peer(m.from_id)  # not a Telethon custom Message: derive it ourselves
    reply_to_msg_id = reply_to_top_id = topic_id = None
    r = m.reply_to
    if type(r) is types.MessageReplyHeader:
        reply_to_msg_id = r.reply_to_msg_id
        reply_to_top_id = r.reply_to_top_id
        if r.forum_topic:
            # In a forum, a message posted straight into a topic "replies" to the topic's
            # root; a reply inside a topic names the root in reply_to_top_id instead.
            topic_id = reply_to_top_id or reply_to_msg_id
    replies = m.replies
    return {
        "id": m.id,
        "date": date(m.date),
        "edit_date": date(m.edit_date),
        "text": m.message,
        "sender_id": sender_id,
        # Telethon's chat_id is utils.get_peer_id(peer_id) through a generic, slower path.
        "chat_id": _peer(m.peer_id),
        "out": m.out is True,
        "reply_to_msg_id": reply_to_msg_id,
        "reply_to_top_id": reply_to_top_id,
        "topic_id": topic_id,
        "forward": _forward(m.fwd_from),
        "views": m.views,
        "forwards": m.forwards,
        "replies": replies.replies if replies is not None else None,
        "pinned": m.pinned is True,
        "post": m.post is True,
        "silent": m.silent is True,
        "noforwards": m.noforwards is True,
        "grouped_id": m.grouped_id,
        "via_bot_id": m.via_bot_id,
        "post_author": m.post_author,
        "entities": _entities(m.entities),
        "media": _media(m.media),
        "action": _action(m.action),
    }


def message(m: Any) -> dict[str, Any]:
    """A Telethon Message or MessageService as a JSON-native dict."""
    try:
        return _message(m)
    except AttributeError:
        return _message(_Lenient(m))


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
    if cls is int and not _I64_MIN <= v <= _U64_MAX:
        return str(v)
    return v


def _encode(obj: dict[str, Any], option: int = 0) -> bytes:
    try:
        return _dumps(obj, option=option)
    except TypeError:  # orjson.JSONEncodeError subclasses TypeError
        return _dumps(_clean(obj), option=option)


def _envelope(event: str, group: str, key: str, item: dict[str, Any]) -> bytes:
    """{"event": E, "data": {"status": "success", "message": {"group": G, KEY: item}}}."""
    return _encode(
        {"event": event, "data": {"status": "success", "message": {"group": group, key: item}}},
        _DATE_OPTS,
    )


def user_envelope(group: str, u: Any) -> bytes:
    """The seed's "users" reply for one member, as UTF-8 JSON bytes.

    Like message_envelope: UTC dates are left to the one orjson pass (byte-identical to
    encoding user(), checked in tests).
    """
    try:
        member = _user(u, _utc_or_iso)
    except AttributeError:
        member = user(u)
    return _envelope("users", group, "user", member)


def message_envelope(group: str, m: Any) -> bytes:
    """The seed's "chats" reply for one message, as UTF-8 JSON bytes.

    The hot path of a `chats` stream: the message's own dates stay datetimes and are
    formatted by the one orjson call (byte-identical to message(), checked in tests).
    """
    try:
        chat = _message(m, _utc_or_iso)
    except AttributeError:
        chat = message(m)
    return _envelope("chats", group, "chat", chat)
