"""The frames of a watch (tgws/live.py): the seed's item shapes, with "kind" and "path".

Messages and members are serialized exactly as `chats` and `users` items (tgws.serialize),
then their event becomes "watch" and two keys are added at the end of `data`; deletions and
departures are new shapes, built here. docs/protocol.md, "watch", documents every field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tgws import account_updates, serialize
from tgws import protocol as p
from tgws.serialize.common import envelope, iso


def retag(frames: Iterable[bytes], source: bytes, kind: str, path: str) -> list[bytes]:
    """`chats`/`users` item frames as watch items: event "watch", "kind" and "path" added."""
    cut = len(b'{"event":"') + len(source) + 1
    tail = b',"kind":"%s","path":"%s"}}' % (kind.encode(), path.encode())
    return [b'{"event":"watch"' + frame[cut:-2] + tail for frame in frames]


def item(group: str, key: str, value: dict[str, Any], kind: str, path: str) -> bytes:
    """A new item shape: {"group": G, key: value} with its kind and path."""
    frame = envelope(p.WATCH, group, key, value)
    return frame[:-2] + b',"kind":"%s","path":"%s"}}' % (kind.encode(), path.encode())


def members(group: str, message: Any, entities: dict[int, Any] | None,
            path: str) -> list[bytes]:
    """The member items a service message stands for: joins in the `users` item format, a
    departure as `member_left`; none for any other message."""
    if entities is None:  # a message from history: the users its action names
        entities = {int(u.id): u for u in (getattr(message, "action_entities", None) or ())
                    if u is not None}
    joined = account_updates.joined(message, entities)
    if joined:
        return retag(serialize.user_frames(group, joined), b"users", p.KIND_MEMBER, path)
    gone = account_updates.left(message)
    if gone is None:
        return []
    value = {"user_id": gone[0], "by": gone[1], "date": iso(message.date)}
    return [item(group, "left", value, p.KIND_MEMBER_LEFT, path)]
