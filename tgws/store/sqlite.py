"""The sqlite dialect of the store (the default): one file, one daemon, the CLI beside it.

Whole on purpose (~450 lines): one sqlite statement per method of base.py's contract, read
side by side with postgres.py; its connection handling is already apart (sqlite_conn.py).

One :class:`SqliteStore` per process owns one aiosqlite connection (one worker thread). Every
connection handler of the daemon shares it. The CLI (``tgws apikey create``) may open the same
file from another process while the daemon runs: the database is in WAL mode, so readers never
block the writer, and ``busy_timeout`` makes a second writer wait for the first instead of
failing with "database is locked". Writes take the write lock up front (``BEGIN IMMEDIATE``),
which is what lets busy_timeout do its job: a deferred transaction that reads first and writes
later can fail at the upgrade without waiting.

Transactions
    Every use of the one connection is serialized by tgws.store.sqlite_conn: a transaction
    holds it from ``BEGIN IMMEDIATE`` to ``COMMIT`` (nested: SAVEPOINTs), other tasks wait;
    single statements outside a transaction commit by themselves (autocommit).

Timestamps
    Stored as INTEGER unix seconds (UTC by definition), the same unit the ``users`` offsets use
    for join dates; returned to Python as timezone-aware UTC datetimes.

File permissions and secrets at rest
    The database holds Telegram session strings (full account access), so a new database file
    is created with mode 0600 before sqlite opens it; sqlite gives its ``-wal`` and ``-shm``
    files the main file's permissions, and :meth:`Store.open` brings all three back to 0600
    (logging a warning) when something left them looser. The parent directory must already
    exist. ``secure_delete`` zeroes deleted rows, and deleting or resealing a session truncates
    the WAL, so no old copy lingers. With a keyring ([store] secret_key_file) sessions are
    sealed (tgws.sealing) before they reach sqlite.

Migrations (``PRAGMA user_version``) are in tgws.store.schema; what the API key, session and
offset methods promise is in tgws.store.base, the same for both dialects.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import aiosqlite

from tgws.auth import hash_api_key, keys_match, new_api_key
from tgws.errors import StoreError
from tgws.sealing import Keyring, open_session
from tgws.store.base import Store
from tgws.store.records import (
    MAX_KEY_LENGTH,
    ApiKeyRecord,
    EntityRecord,
    Offset,
    api_key_record,
    check_api_key_name,
    check_offset_kind,
    decode_ties,
    encode_ties,
    entity_rows,
    normalize_username,
)
from tgws.store.sqlite_conn import SerializedConnection, open_database

log = logging.getLogger("tgws.store")

# aiosqlite logs every statement with its parameters at DEBUG, and those parameters include
# Telegram session strings: that logger never goes below WARNING, whatever [log] says.
logging.getLogger("aiosqlite").setLevel(logging.WARNING)


BUSY_TIMEOUT_MS: Final = 5_000
"""How long a writer waits for another connection's write lock (the CLI vs the daemon), by
default ([store] timeout sets it)."""

# -- SQL used on hot paths --------------------------------------------------------------------

_SAVE_SESSION: Final = """
INSERT INTO tg_sessions (api_key_id, session, user_id, updated_at)
SELECT ?1, ?2, ?3, ?4
WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?1 AND revoked_at IS NULL)
ON CONFLICT (api_key_id) DO UPDATE SET
    session = excluded.session, user_id = excluded.user_id, updated_at = excluded.updated_at
"""

_CACHE_ENTITY: Final = """
INSERT INTO entities
    (api_key_id, username_lc, username, peer_id, access_hash, kind, title, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (api_key_id, username_lc) DO UPDATE SET
    username = excluded.username, peer_id = excluded.peer_id,
    access_hash = excluded.access_hash, kind = excluded.kind, title = excluded.title,
    updated_at = excluded.updated_at
"""

# The monotonic offset merge in one statement, so a commit costs one thread hop and sqlite's
# autocommit makes it atomic: a lower value is ignored (the WHERE on DO UPDATE), an equal value
# unions the tie ids, a higher value replaces them. In DO UPDATE, `offsets.*` is the stored row.
# The EXISTS guard drops the write if the key was revoked meanwhile (perhaps by the CLI in
# another process), so revocation's cleanup cannot be undone by a stream still finishing.
_COMMIT_OFFSET: Final = """
INSERT INTO offsets (api_key_id, kind, group_id, value, tie_ids, updated_at)
SELECT ?1, ?2, ?3, ?4, ?5, ?6
WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?1 AND revoked_at IS NULL)
ON CONFLICT (api_key_id, kind, group_id) DO UPDATE SET
    tie_ids = CASE
        WHEN ?4 > offsets.value THEN ?5
        ELSE (SELECT json_group_array(tie) FROM (
                  SELECT value AS tie FROM json_each(offsets.tie_ids)
                  UNION
                  SELECT value FROM json_each(?5)
                  ORDER BY 1))
    END,
    value = ?4,
    updated_at = ?6
WHERE ?4 >= offsets.value
"""


class SqliteStore(Store):
    """The store in one sqlite file (see the module docstring). Open with ``Store.open(path)``."""

    def __init__(
        self,
        conn: SerializedConnection,
        path: str,
        version: int,
        clock: Callable[[], float],
        keyring: Keyring | None = None,
    ) -> None:
        """Internal: use :meth:`Store.open`."""
        super().__init__(clock, keyring)
        self._c = conn
        self._path = path
        self._version = version

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        keyring: Keyring | None = None,
        deadline: float = BUSY_TIMEOUT_MS / 1000,
    ) -> SqliteStore:
        """Open (creating if needed, mode 0600) and migrate the database at ``path``.

        Raises StoreError when the parent directory is missing, the file is not a usable
        sqlite database, WAL cannot be enabled (e.g. on a network filesystem), or the schema
        is newer than this code.
        """
        db, version = await open_database(path, deadline)
        store = cls(SerializedConnection(db, path), path, version, clock, keyring)
        try:
            await store._check_sessions_at_rest()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection (waiting for a running transaction). Idempotent."""
        await self._c.close()

    @property
    def schema_version(self) -> int:
        return self._version

    @property
    def path(self) -> str:
        return self._path

    @property
    def closed(self) -> bool:
        return self._c.closed

    async def healthy(self) -> bool:
        if self._c.closed:
            return False
        try:
            rows = await self._rows("health check", "SELECT 1")
        except (StoreError, ValueError):
            return False
        return len(rows) == 1 and rows[0][0] == 1

    # -- the connection (tgws.store.sqlite_conn) ---------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        return self._c.conn()

    def _locked(self, what: str) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        return self._c.locked(what)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        """See :meth:`Store.transaction`. Other tasks' Store calls wait until the block ends
        (one connection), so awaiting another task that uses the Store inside it deadlocks."""
        return self._c.transaction()

    async def _rows(self, what: str, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Every row of one statement, run on the locked connection (errors name ``what``)."""
        async with self._locked(what) as db:
            return list(await db.execute_fetchall(sql, params))

    async def _row(self, what: str, sql: str, params: Sequence[object] = ()) -> Any | None:
        """The first row of one statement, or None."""
        rows = await self._rows(what, sql, params)
        return rows[0] if rows else None

    # -- API keys -------------------------------------------------------------------------

    async def create_api_key(self, name: str) -> str:
        check_api_key_name(name)
        key = new_api_key()
        async with self.transaction():
            db = self._conn()
            rows = list(
                await db.execute_fetchall(
                    "SELECT name, revoked_at FROM api_keys WHERE name = ?", (name,)
                )
            )
            if rows:
                taken, revoked_at = rows[0]
                why = " (revoked; names are not reused)" if revoked_at is not None else ""
                raise StoreError(f"an API key named {taken!r} already exists{why}")
            await db.execute(
                "INSERT INTO api_keys (name, key_hash, created_at) VALUES (?, ?, ?)",
                (name, hash_api_key(key), self._now()),
            )
        return key

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._rows(
            "listing API keys",
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id")
        return [api_key_record(row) for row in rows]

    async def revoke_api_key(self, name: str) -> bool:
        async with self.transaction():
            db = self._conn()
            rows = list(
                await db.execute_fetchall(
                    "SELECT id FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)
                )
            )
            if not rows:
                return False
            key_id = rows[0][0]
            await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (self._now(), key_id)
            )
            for table in ("entities", "offsets"):
                await db.execute(f"DELETE FROM {table} WHERE api_key_id = ?", (key_id,))
        return True

    async def verify_api_key(self, key: str) -> ApiKeyRecord | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_api_key(key)
        async with self._locked("verifying an API key") as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT id, name, key_hash, created_at, last_used_at FROM api_keys "
                    "WHERE key_hash = ? AND revoked_at IS NULL",
                    (digest,),
                )
            )
            if not rows or not keys_match(rows[0][2], key):
                return None
            key_id, name, _, created_at, _ = rows[0]
            now = self._now()
            # Guarded again: the CLI may have revoked the key between the two statements.
            cursor = await db.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            if cursor.rowcount != 1:
                return None
        return api_key_record((key_id, name, created_at, now, None))

    async def api_key_active(self, api_key_id: int) -> bool:
        row = await self._row("checking an API key",
                              "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL",
                              (api_key_id,))
        return row is not None

    # -- Telegram sessions ----------------------------------------------------------------

    async def load_session(self, api_key_id: int, *, revoked: bool = False) -> str | None:
        sql = "SELECT s.session FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id " \
              "WHERE s.api_key_id = ?"
        if not revoked:
            sql += " AND k.revoked_at IS NULL"
        row = await self._row("loading a Telegram session", sql, (api_key_id,))
        if row is None:
            return None
        return open_session(self._keyring, api_key_id, str(row[0]))

    async def save_session(self, api_key_id: int, session: str, user_id: int | None) -> None:
        if not session:
            raise ValueError("empty Telegram session; use delete_session() to forget one")
        stored = self._seal(api_key_id, session)
        async with self._locked("saving a Telegram session") as db:
            cursor = await db.execute(_SAVE_SESSION, (api_key_id, stored, user_id, self._now()))
            saved = cursor.rowcount == 1
        if not saved:
            raise StoreError(f"API key {api_key_id} is unknown or revoked; session not saved")

    async def delete_session(self, api_key_id: int) -> None:
        """Forget the key's Telegram session and, in the same transaction, its entity cache
        (access hashes belong to the account that resolved them, and the next login may be
        another account). Offsets are kept: a re-login of the same account resumes its streams.
        Then the WAL is checkpointed and truncated, so no copy of the session stays in it.
        """
        async with self.transaction():
            db = self._conn()
            await db.execute("DELETE FROM tg_sessions WHERE api_key_id = ?", (api_key_id,))
            await db.execute("DELETE FROM entities WHERE api_key_id = ?", (api_key_id,))
        await self._scrub_wal()

    async def has_session(self, api_key_id: int) -> bool:
        row = await self._row("checking a Telegram session",
                              "SELECT 1 FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id "
                              "WHERE s.api_key_id = ? AND k.revoked_at IS NULL", (api_key_id,))
        return row is not None

    async def sessions_to_log_out(self) -> list[int]:
        rows = await self._rows(
            "listing revoked sessions",
            "SELECT s.api_key_id FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id "
            "WHERE k.revoked_at IS NOT NULL ORDER BY s.api_key_id")
        return [int(row[0]) for row in rows]

    # -- sessions at rest -----------------------------------------------------------------

    async def _scrub_wal(self) -> None:
        """Checkpoint the WAL into the database and truncate it to zero bytes.

        The WAL keeps old page images (a session just deleted or resealed) until they are
        overwritten; truncating it leaves them nowhere but in freed, zeroed pages (secure_delete).
        Best effort: a reader in another process (the CLI) can make the checkpoint partial; the
        next scrub or sqlite's own checkpoints finish the job.
        """
        async with self._locked("checkpointing the WAL") as db:
            await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def reseal_sessions(self) -> tuple[int, int]:
        """Seal every session that is not sealed with the keyring's first key.

        Plaintext sessions (stored before encryption was switched on) and sessions sealed with
        an older key are rewritten under the first key, in one transaction, then the WAL is
        scrubbed. Returns (resealed, unreadable): unreadable ones are sealed with a key this
        keyring lacks and are left as they are. Without a keyring, returns (0, 0).
        """
        keyring = self._keyring
        if keyring is None:
            return 0, 0
        async with self.transaction():
            db = self._conn()
            rows = list(await db.execute_fetchall("SELECT api_key_id, session FROM tg_sessions"))
            updates, unreadable = self._resealed(keyring, rows)
            if updates:
                await db.executemany(
                    "UPDATE tg_sessions SET session = ? WHERE api_key_id = ?", updates)
        if updates:
            await self._scrub_wal()
        return len(updates), unreadable

    async def _count_sealed_sessions(self) -> int:
        rows = await self._rows(
            "counting sealed sessions",
            "SELECT count(*) FROM tg_sessions WHERE session LIKE 'tgws-sealed:%'")
        return int(rows[0][0])

    # -- entity cache ---------------------------------------------------------------------

    async def cache_entities(self, api_key_id: int, records: Iterable[EntityRecord]) -> None:
        rows = entity_rows(api_key_id, records, self._now())
        if not rows:
            return
        async with self.transaction():
            db = self._conn()
            active = list(
                await db.execute_fetchall(
                    "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (api_key_id,)
                )
            )
            if active:
                await db.executemany(_CACHE_ENTITY, rows)

    async def lookup_entity(
        self, api_key_id: int, username: str, *, max_age: float | None = None
    ) -> EntityRecord | None:
        username_lc = normalize_username(username).lower()
        oldest = self._now() - max_age if max_age else 0
        row = await self._row(
            "looking up an entity",
            "SELECT peer_id, access_hash, kind, username, title FROM entities "
            "WHERE api_key_id = ? AND username_lc = ? AND updated_at >= ?",
            (api_key_id, username_lc, oldest))
        return None if row is None else EntityRecord(*row)  # the columns in the record's order

    async def forget_entity(self, api_key_id: int, username: str) -> bool:
        async with self._locked("forgetting an entity") as db:
            cursor = await db.execute(
                "DELETE FROM entities WHERE api_key_id = ? AND username_lc = ?",
                (api_key_id, normalize_username(username).lower()),
            )
            return cursor.rowcount > 0

    # -- offsets --------------------------------------------------------------------------

    async def get_offset(self, api_key_id: int, kind: str, group_id: int) -> Offset | None:
        check_offset_kind(kind)
        row = await self._row(
            "reading an offset",
            "SELECT value, tie_ids FROM offsets WHERE api_key_id = ? AND kind = ? AND group_id = ?",
            (api_key_id, kind, group_id))
        if row is None:
            return None
        return Offset(value=int(row[0]), tie_ids=decode_ties(row[1]))

    async def commit_offset(
        self, api_key_id: int, kind: str, group_id: int, offset: Offset
    ) -> None:
        check_offset_kind(kind)
        params = (api_key_id, kind, group_id, offset.value, encode_ties(offset.tie_ids))
        async with self._locked("committing an offset") as db:
            await db.execute(_COMMIT_OFFSET, (*params, self._now()))

    async def commit_offsets(
        self, api_key_id: int, offsets: Iterable[tuple[str, int, Offset]]
    ) -> None:
        # One statement, executed per row in one transaction: one trip to sqlite's thread
        # and one fsync for hundreds of groups, where commit_offset each would cost both.
        now = self._now()
        rows = []
        for kind, group_id, offset in offsets:
            check_offset_kind(kind)
            rows.append((api_key_id, kind, group_id, offset.value,
                         encode_ties(offset.tie_ids), now))
        if not rows:
            return
        async with self.transaction(), self._locked("committing offsets") as db:
            await db.executemany(_COMMIT_OFFSET, rows)
