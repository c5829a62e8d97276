"""What the store hands out and takes in, the same for every dialect. Pure: no I/O.

Records are frozen dataclasses; the helpers validate and encode the values both dialects store
the same way (API key names, usernames, an offset's tie ids as a sorted JSON array) and turn
their rows into records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from tgws.errors import StoreError

ENTITY_KINDS: Final = frozenset({"megagroup", "broadcast", "chat", "user", "gigagroup"})
OFFSET_KINDS: Final = frozenset({"chats", "users"})

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A key is "tgws_" + 43 characters; anything far longer is not a key, and refusing it early keeps
# a hostile client from making us hash megabytes per attempt.
MAX_KEY_LENGTH: Final = 256


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as listed: never its plaintext nor its hash."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """A resolved username: what Telethon needs to build an InputPeer without resolving again.

    ``username`` keeps Telegram's spelling; lookups ignore case. ``kind`` is one of
    :data:`ENTITY_KINDS`.
    """

    peer_id: int
    access_hash: int
    kind: str
    username: str
    title: str


@dataclass(frozen=True, slots=True)
class Offset:
    """Where a ``latest`` stream of one group stopped.

    For ``chats``: ``value`` is the last message id delivered, ``tie_ids`` is empty.
    For ``users``: ``value`` is the newest join date delivered (unix seconds) and ``tie_ids`` the
    user ids delivered with exactly that join date, so a member who joins in the same second as
    the last one delivered is still delivered next time.
    """

    value: int
    tie_ids: frozenset[int] = frozenset()


def valid_api_key_name(name: str) -> bool:
    """Whether ``name`` is 1-64 characters of ``A-Z a-z 0-9 _ . -``."""
    return _NAME_RE.fullmatch(name) is not None


def check_api_key_name(name: str) -> None:
    """StoreError unless ``name`` may name a new API key (:func:`valid_api_key_name`)."""
    if not valid_api_key_name(name):
        raise StoreError(
            f"invalid API key name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")


class Row(Protocol):
    """A row as either driver returns it (a tuple, an asyncpg Record): read by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def api_key_record(row: Row) -> ApiKeyRecord:
    """The record for a row (id, name, created_at, last_used_at, revoked_at), times in unix
    seconds, as both dialects store them."""
    return ApiKeyRecord(id=row[0], name=row[1], created_at=datetime.fromtimestamp(row[2], tz=UTC),
                        last_used_at=utc(row[3]), revoked_at=utc(row[4]))


_USERNAME_PREFIXES = ("https://t.me/", "http://t.me/", "t.me/", "@")


def normalize_username(name: str) -> str:
    """'@Name', 't.me/Name' and 'Name' all name the same group: 'Name', case kept.

    Telegram usernames are ASCII and case-insensitive, so the entity cache compares them
    by ``normalize_username(name).lower()``; the case is kept for display.
    """
    name = name.strip()
    for prefix in _USERNAME_PREFIXES:
        if name.lower().startswith(prefix):
            name = name[len(prefix):]
    return name.strip("/")


EntityRow = tuple[int, str, str, int, int, str, str, int]
"""(api_key_id, username_lc, username, peer_id, access_hash, kind, title, updated_at)"""


def entity_rows(api_key_id: int, records: Iterable[EntityRecord], now: int) -> list[EntityRow]:
    """The rows to upsert for ``records``; ValueError (nothing written) for a bad record."""
    rows: list[EntityRow] = []
    for record in records:
        username = normalize_username(record.username)
        username_lc = username.lower()
        if not username_lc:
            raise ValueError(f"entity {record.peer_id} has no username to cache it under")
        if record.kind not in ENTITY_KINDS:
            raise ValueError(f"entity kind must be one of {sorted(ENTITY_KINDS)}")
        rows.append((api_key_id, username_lc, username, record.peer_id, record.access_hash,
                     record.kind, record.title, now))
    return rows


def encode_ties(tie_ids: Iterable[int]) -> str:
    return json.dumps(sorted({int(tie) for tie in tie_ids}), separators=(",", ":"))


def decode_ties(text: str) -> frozenset[int]:
    return frozenset(int(tie) for tie in json.loads(text))


def check_offset_kind(kind: str) -> None:
    if kind not in OFFSET_KINDS:
        raise ValueError(f"offset kind must be one of {sorted(OFFSET_KINDS)}, not {kind!r}")


def utc(value: int | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)
