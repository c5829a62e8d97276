"""Messages and service messages, their entities, forwards and actions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from telethon.tl import types

from tgws.serialize.common import (
    CHANNEL_MARK,
    DateFormat,
    Lenient,
    envelope,
    envelopes,
    fields,
    iso,
    marked_id,
    snake,
    utc_or_iso,
)
from tgws.serialize.media import media


# --- service actions ---------------------------------------------------------------------
def _action(a: Any) -> dict[str, Any] | None:
    if a is None:
        return None
    cls = type(a)
    out = fields(a, {"type": snake(cls, "MessageAction")})
    # Migration actions carry bare ids of the other group; mark them so they compare
    # equal to the chat_id of messages in that group.
    if cls is types.MessageActionChatMigrateTo and type(out.get("channel_id")) is int:
        out["channel_id"] = -(CHANNEL_MARK + out["channel_id"])
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


# Entities are the one per-message list; names resolved up front skip snake's tuple key.
_ENTITY_NAMES: Final[dict[type, str]] = {
    cls: snake(cls, "MessageEntity")
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
            "type": _ENTITY_NAMES.get(cls) or snake(cls, "MessageEntity"),
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
        "from_id": marked_id(f.from_id),
        "from_name": f.from_name,
        "date": iso(f.date),
        "channel_post": f.channel_post,
        "post_author": f.post_author,
    }


def _message(m: Any, date: DateFormat = iso) -> dict[str, Any]:
    sender_id = m.sender_id
    if sender_id is None and m.from_id is not None:
        sender_id = marked_id(m.from_id)  # not a Telethon custom Message: derive it ourselves
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
        "chat_id": marked_id(m.peer_id),
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
        "media": media(m.media),
        "action": _action(m.action),
    }


def message(m: Any) -> dict[str, Any]:
    """A Telethon Message or MessageService as a JSON-native dict."""
    try:
        return _message(m)
    except AttributeError:
        return _message(Lenient(m))


def is_migrate_to(m: Any) -> bool:
    """Whether `m` is the last message of an upgraded basic group (MessageActionChatMigrateTo):
    the supergroup's first message (MessageActionChannelMigrateFrom) marks the same upgrade."""
    return type(getattr(m, "action", None)) is types.MessageActionChatMigrateTo


def message_envelope(group: str, m: Any) -> bytes:
    """The seed's "chats" reply for one message, as UTF-8 JSON bytes.

    The hot path of a `chats` stream: the message's own dates stay datetimes and are
    formatted by the one orjson call (byte-identical to message(), checked in tests).
    """
    return envelope("chats", group, "chat", _chat(m))


def _chat(m: Any) -> dict[str, Any]:
    try:
        return _message(m, utc_or_iso)
    except AttributeError:
        return message(m)


def message_frames(group: str, messages: Iterable[Any]) -> list[bytes]:
    """message_envelope(group, m) for each message, byte for byte: the hot path of `chats`."""
    return envelopes("chats", group, "chat", map(_chat, messages))
