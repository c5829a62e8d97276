"""The store's schema: forward-only migrations under PRAGMA user_version.

MIGRATIONS[n] turns schema version n into n + 1: one small function per version, appended,
never edited once released (after mautrix-python). A fresh database runs them all; an older
one runs what it lacks, each in its own BEGIN IMMEDIATE transaction, re-checking the version
under the write lock because another process (the CLI) may migrate at the same moment. A
database newer than this code is refused, never "downgraded".
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Final

import aiosqlite

from tgws.errors import StoreError

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _migrate_v1(db: aiosqlite.Connection) -> None:
    """The first schema. Timestamps are INTEGER unix seconds."""
    statements = (
        """
        CREATE TABLE api_keys (
            id           INTEGER PRIMARY KEY,
            name         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
            key_hash     TEXT    NOT NULL UNIQUE,
            created_at   INTEGER NOT NULL,
            last_used_at INTEGER,
            revoked_at   INTEGER
        )
        """,
        # session: a Telethon StringSession string, i.e. the account's auth key. A secret.
        """
        CREATE TABLE tg_sessions (
            api_key_id INTEGER PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,
            session    TEXT    NOT NULL,
            user_id    INTEGER,
            updated_at INTEGER NOT NULL
        )
        """,
        # Per API key because access hashes are per Telegram account. `username` keeps the
        # spelling Telegram returned; `username_lc` is the lookup key.
        """
        CREATE TABLE entities (
            api_key_id  INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            username_lc TEXT    NOT NULL,
            username    TEXT    NOT NULL,
            peer_id     INTEGER NOT NULL,
            access_hash INTEGER NOT NULL,
            kind        TEXT    NOT NULL,
            title       TEXT    NOT NULL DEFAULT '',
            updated_at  INTEGER NOT NULL,
            PRIMARY KEY (api_key_id, username_lc)
        ) WITHOUT ROWID
        """,
        # tie_ids: JSON array of user ids, sorted (see Offset).
        """
        CREATE TABLE offsets (
            api_key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            kind       TEXT    NOT NULL,
            group_id   INTEGER NOT NULL,
            value      INTEGER NOT NULL,
            tie_ids    TEXT    NOT NULL DEFAULT '[]',
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (api_key_id, kind, group_id)
        ) WITHOUT ROWID
        """,
    )
    # Not executescript(): Python's sqlite3 commits before running a script, which would split
    # the migration out of its transaction.
    for statement in statements:
        await db.execute(statement)


MIGRATIONS: Final[tuple[Migration, ...]] = (_migrate_v1,)
"""MIGRATIONS[n] turns schema version n into n + 1. Append only; never edit a released one."""

SCHEMA_VERSION: Final = len(MIGRATIONS)


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    """ROLLBACK if a transaction is open; errors are ignored (there may be none open)."""
    with contextlib.suppress(sqlite3.Error, ValueError):
        await db.execute("ROLLBACK")


async def migrate(db: aiosqlite.Connection, path: str) -> int:
    """Bring the schema up to SCHEMA_VERSION; refuse a newer one. Returns the final version."""
    while True:
        version = await _user_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {path} has schema version {version}, but this tgws only knows versions "
                f"up to {SCHEMA_VERSION}: upgrade tgws (or restore a backup made by this version)"
            )
        if version == SCHEMA_VERSION:
            return version
        try:
            await db.execute("BEGIN IMMEDIATE")
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = await _user_version(db)
            if current == version:
                await MIGRATIONS[version](db)
                # PRAGMA takes no parameters; the value is our own int.
                await db.execute(f"PRAGMA user_version = {version + 1}")
            await db.execute("COMMIT")
        except BaseException:
            await rollback_quietly(db)
            raise
