"""The store: API keys, Telegram sessions, the entity cache and stream offsets.

What the rest of tgws sees. ``await Store.open(target)`` opens the dialect ``target`` names
(a sqlite file path, or a ``postgresql://`` URL); every dialect keeps the guarantees written
in :mod:`tgws.store.base`. The package's rooms:

    base.py     the interface (abstract :class:`Store`) and what the dialects share
    records.py  the records and value rules (names, usernames, tie ids); pure
    schema.py   forward-only migrations, one history for every dialect
    sqlite.py   the aiosqlite dialect (the default: one file, one daemon)
    sqlite_conn.py  its one connection: the lock, transactions, savepoints, opening
    postgres.py the asyncpg dialect ([store] url): several daemons on one database
    postgres_conn.py  its pool: per-task transactions, deadlines, errors
    ownership.py which daemon runs each key's Telegram session: leases, fencing tokens
"""

from tgws.sealing import SessionUnreadable
from tgws.store.base import Store
from tgws.store.records import (
    ENTITY_KINDS,
    OFFSET_KINDS,
    ApiKeyRecord,
    EntityRecord,
    Offset,
    normalize_username,
    valid_api_key_name,
)
from tgws.store.schema import SCHEMA_VERSION

__all__ = [
    "ENTITY_KINDS",
    "OFFSET_KINDS",
    "SCHEMA_VERSION",
    "ApiKeyRecord",
    "EntityRecord",
    "Offset",
    "SessionUnreadable",
    "Store",
    "normalize_username",
    "valid_api_key_name",
]
