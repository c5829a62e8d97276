"""TL bytes the sandbox assembles itself, so a page costs a splice instead of a serialization.

Telegram's answer to messages.getHistory is a `messages.ChannelMessages` whose bulk is 100
serialized messages. Each message's bytes are cached (or rendered from a template, lazy.py), so
the page is built by joining them between a header and the chats/users vectors. Tests check the
result byte-for-byte against Telethon's own `bytes(ChannelMessages(...))`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from telethon.tl import types

_VECTOR = struct.pack("<I", 0x1CB5C415)
_BOOL_TRUE = struct.pack("<I", 0x997275B5)
_BOOL_FALSE = struct.pack("<I", 0xBC799737)
_CHANNEL_MESSAGES = struct.pack("<I", types.messages.ChannelMessages.CONSTRUCTOR_ID)
_CHANNEL_PARTICIPANTS = struct.pack("<I", types.channels.ChannelParticipants.CONSTRUCTOR_ID)
_EMPTY_VECTOR = _VECTOR + struct.pack("<i", 0)


def vector(items: Sequence[bytes]) -> bytes:
    """A boxed TL Vector of already serialized objects."""
    return b"".join((_VECTOR, struct.pack("<i", len(items)), *items))


def channel_messages(*, pts: int, count: int, messages: Sequence[bytes], chats: Sequence[bytes],
                     users: Sequence[bytes]) -> bytes:
    """`messages.channelMessages` (no inexact, no offset_id_offset, no topics)."""
    return b"".join((_CHANNEL_MESSAGES, struct.pack("<Iii", 0, pts, count), vector(messages),
                     _EMPTY_VECTOR, vector(chats), vector(users)))


def channel_participants(*, count: int, participants: Sequence[bytes], chats: Sequence[bytes],
                         users: Sequence[bytes]) -> bytes:
    return b"".join((_CHANNEL_PARTICIPANTS, struct.pack("<i", count), vector(participants),
                     vector(chats), vector(users)))


def encode(result: Any) -> bytes:
    """Whatever a handler answered, as the bytes Telegram would have sent."""
    if isinstance(result, bytes):
        return result
    if isinstance(result, bool):
        return _BOOL_TRUE if result else _BOOL_FALSE
    if isinstance(result, list):
        return vector([bytes(item) for item in result])
    return bytes(result)
