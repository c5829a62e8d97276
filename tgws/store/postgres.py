"""The PostgreSQL dialect of the store ([store] url = "postgresql://..."), through asyncpg.

For operators who run many accounts or several daemons on one database they already back up
(issue 15). The same interface and guarantees as sqlite (see :mod:`tgws.store.base`); what
differs is written here.

Connections, transactions, deadlines
    tgws.store.postgres_conn: a small pool; a transaction pins one connection to its task
    (nested: SAVEPOINTs) while other tasks' calls run on other connections; every call has
    a deadline, and every failure of the database is a StoreError.

Races that sqlite's single writer ruled out
    A write that must not land for a revoked key (a session, an offset, the entity cache)
    checks the key with ``FOR SHARE`` on its api_keys row: a revocation in flight (its UPDATE
    holds the row) makes the write wait and then see the key revoked, and a write that got the
    share lock first is committed before the revocation's DELETEs run, which then remove it.
    Two creations of one name race to the unique index on lower(name); the loser gets the same
    "already exists" StoreError.

Secrets
    The URL may carry a password: it never appears in a log line or an error message (see
    :func:`tgws.store.base.redact_url`). PostgreSQL keeps deleted rows until VACUUM and copies
    them into its WAL and backups; sqlite's secure_delete and WAL scrubbing have no equivalent
    here, so with PostgreSQL, configure [store] secret_key_file: sealed sessions are worth
    nothing without it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

import asyncpg

from tgws.auth import hash_api_key, keys_match, new_api_key
from tgws.errors import StoreError
from tgws.sealing import Keyring, open_session
from tgws.store.base import DEFAULT_DEADLINE, Store
from tgws.store.postgres_conn import Conn, Pool
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
from tgws.store.schema import migrate_postgres

log = logging.getLogger("tgws.store")

# The key must be active, checked under a share lock on its row: see "Races" above.
_KEY_ACTIVE: Final = "SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL FOR SHARE"

_SAVE_SESSION: Final = f"""
INSERT INTO tg_sessions (api_key_id, session, user_id, updated_at)
SELECT $1::bigint, $2::text, $3::bigint, $4::bigint
WHERE EXISTS ({_KEY_ACTIVE})
ON CONFLICT (api_key_id) DO UPDATE SET
    session = excluded.session, user_id = excluded.user_id, updated_at = excluded.updated_at
RETURNING 1
"""

_CACHE_ENTITY: Final = """
INSERT INTO entities
    (api_key_id, username_lc, username, peer_id, access_hash, kind, title, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (api_key_id, username_lc) DO UPDATE SET
    username = excluded.username, peer_id = excluded.peer_id,
    access_hash = excluded.access_hash, kind = excluded.kind, title = excluded.title,
    updated_at = excluded.updated_at
"""

# The monotonic merge in one statement, as in sqlite: a lower value is ignored (the WHERE on DO
# UPDATE, evaluated on the row as it is once this statement holds its lock, so concurrent
# commits serialize and the highest wins), an equal value unions the tie ids, a higher value
# replaces them. The union is written back as sqlite writes it: "[1,2,3]", sorted, no spaces.
_COMMIT_OFFSET: Final = f"""
INSERT INTO offsets (api_key_id, kind, group_id, value, tie_ids, updated_at)
SELECT $1::bigint, $2::text, $3::bigint, $4::bigint, $5::text, $6::bigint
WHERE EXISTS ({_KEY_ACTIVE})
ON CONFLICT (api_key_id, kind, group_id) DO UPDATE SET
    tie_ids = CASE
        WHEN excluded.value > offsets.value THEN excluded.tie_ids
        ELSE (SELECT '[' || coalesce(string_agg(tie::text, ',' ORDER BY tie), '') || ']'
              FROM (SELECT jsonb_array_elements_text(offsets.tie_ids::jsonb)::bigint AS tie
                    UNION
                    SELECT jsonb_array_elements_text(excluded.tie_ids::jsonb)::bigint) AS ties)
    END,
    value = excluded.value,
    updated_at = excluded.updated_at
WHERE excluded.value >= offsets.value
"""


class PostgresStore(Store):
    """The store in a PostgreSQL database. Open with ``Store.open("postgresql://...")``."""

    def __init__(self, pool: Pool, version: int, clock: Callable[[], float],
                 keyring: Keyring | None) -> None:
        """Internal: use :meth:`Store.open`."""
        super().__init__(clock, keyring)
        self._p = pool
        self._version = version

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        keyring: Keyring | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> PostgresStore:
        """Connect, migrate and check sessions at rest. StoreError when the server cannot be
        reached in ``deadline`` seconds, refuses us, or holds a newer schema. ``deadline`` is
        also every later statement's."""
        pool = await Pool.open(url, deadline)
        store = cls(pool, 0, clock, keyring)
        try:
            async with pool.connection(f"cannot open store {pool.where}") as conn:
                store._version = await migrate_postgres(conn, pool.where)
            await store._check_sessions_at_rest()
        except BaseException:
            pool.abandon()
            raise
        return store

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        await self._p.close()

    @property
    def schema_version(self) -> int:
        return self._version

    @property
    def path(self) -> str:
        return self._p.where

    @property
    def closed(self) -> bool:
        return self._p.closed

    async def healthy(self) -> bool:
        if self._p.closed:
            return False
        try:
            async with self._p.connection("health check") as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (StoreError, ValueError):
            return False

    # -- connections (tgws.store.postgres_conn) ------------------------------------------

    def connection(self, what: str) -> contextlib.AbstractAsyncContextManager[Conn]:
        """For the store package's other modules (tgws.store.ownership): a connection as the
        Store's own methods get one (the task's transaction's, or a pooled one), with errors
        turned into StoreError naming ``what``."""
        return self._p.connection(what)

    _conn = connection

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._p.transaction()

    # -- API keys -------------------------------------------------------------------------

    async def create_api_key(self, name: str) -> str:
        check_api_key_name(name)
        key = new_api_key()
        async with self.transaction(), self._conn("creating an API key") as conn:
            row = await conn.fetchrow(
                "SELECT name, revoked_at FROM api_keys WHERE lower(name) = lower($1)", name)
            if row is not None:
                why = " (revoked; names are not reused)" if row[1] is not None else ""
                raise StoreError(f"an API key named {row[0]!r} already exists{why}")
            try:
                await conn.execute(
                    "INSERT INTO api_keys (name, key_hash, created_at) VALUES ($1, $2, $3)",
                    name, hash_api_key(key), self._now())
            except asyncpg.UniqueViolationError:
                # Another process created the name between our SELECT and INSERT.
                raise StoreError(f"an API key named {name!r} already exists") from None
        return key

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async with self._conn("listing API keys") as conn:
            rows = await conn.fetch(
                "SELECT id, name, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id")
        return [api_key_record(row) for row in rows]

    async def revoke_api_key(self, name: str) -> bool:
        async with self.transaction(), self._conn("revoking an API key") as conn:
            key_id = await conn.fetchval(
                "UPDATE api_keys SET revoked_at = $1 "
                "WHERE lower(name) = lower($2) AND revoked_at IS NULL RETURNING id",
                self._now(), name)
            if key_id is None:
                return False
            for table in ("entities", "offsets"):
                await conn.execute(f"DELETE FROM {table} WHERE api_key_id = $1", key_id)
        return True

    async def verify_api_key(self, key: str) -> ApiKeyRecord | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_api_key(key)
        async with self._conn("verifying an API key") as conn:
            row = await conn.fetchrow(
                "SELECT id, name, key_hash, created_at FROM api_keys "
                "WHERE key_hash = $1 AND revoked_at IS NULL", digest)
            if row is None or not keys_match(row[2], key):
                return None
            now = self._now()
            # Guarded again: the CLI may have revoked the key between the two statements.
            updated = await conn.fetchval(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL "
                "RETURNING id", now, row[0])
        if updated is None:
            return None
        return api_key_record((row[0], row[1], row[3], now, None))

    async def api_key_active(self, api_key_id: int) -> bool:
        async with self._conn("checking an API key") as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL", api_key_id)
        return bool(found == 1)

    # -- Telegram sessions ----------------------------------------------------------------

    async def load_session(self, api_key_id: int, *, revoked: bool = False) -> str | None:
        sql = ("SELECT s.session FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id "
               "WHERE s.api_key_id = $1")
        if not revoked:
            sql += " AND k.revoked_at IS NULL"
        async with self._conn("loading a Telegram session") as conn:
            value = await conn.fetchval(sql, api_key_id)
        if value is None:
            return None
        return open_session(self._keyring, api_key_id, str(value))

    async def save_session(self, api_key_id: int, session: str, user_id: int | None) -> None:
        if not session:
            raise ValueError("empty Telegram session; use delete_session() to forget one")
        stored = self._seal(api_key_id, session)
        async with self._conn("saving a Telegram session") as conn:
            saved = await conn.fetchval(_SAVE_SESSION, api_key_id, stored, user_id, self._now())
        if saved is None:
            raise StoreError(f"API key {api_key_id} is unknown or revoked; session not saved")

    async def delete_session(self, api_key_id: int) -> None:
        """As in sqlite, minus the WAL scrub: PostgreSQL keeps dead rows until VACUUM (see the
        module docstring on secrets)."""
        async with self.transaction(), self._conn("deleting a Telegram session") as conn:
            await conn.execute("DELETE FROM tg_sessions WHERE api_key_id = $1", api_key_id)
            await conn.execute("DELETE FROM entities WHERE api_key_id = $1", api_key_id)

    async def has_session(self, api_key_id: int) -> bool:
        async with self._conn("checking a Telegram session") as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id "
                "WHERE s.api_key_id = $1 AND k.revoked_at IS NULL", api_key_id)
        return bool(found == 1)

    async def sessions_to_log_out(self) -> list[int]:
        async with self._conn("listing revoked sessions") as conn:
            rows = await conn.fetch(
                "SELECT s.api_key_id FROM tg_sessions s JOIN api_keys k ON k.id = s.api_key_id "
                "WHERE k.revoked_at IS NOT NULL ORDER BY s.api_key_id")
        return [int(row[0]) for row in rows]

    async def reseal_sessions(self) -> tuple[int, int]:
        keyring = self._keyring
        if keyring is None:
            return 0, 0
        async with self.transaction(), self._conn("resealing sessions") as conn:
            # FOR UPDATE: a daemon sealing at start and the CLI's reseal do not interleave.
            rows = await conn.fetch("SELECT api_key_id, session FROM tg_sessions FOR UPDATE")
            updates, unreadable = self._resealed(keyring, rows)
            if updates:
                await conn.executemany(
                    "UPDATE tg_sessions SET session = $1 WHERE api_key_id = $2", updates)
        return len(updates), unreadable

    async def _count_sealed_sessions(self) -> int:
        async with self._conn("counting sealed sessions") as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM tg_sessions WHERE session LIKE 'tgws-sealed:%'")
        return int(count)

    # -- entity cache ---------------------------------------------------------------------

    async def cache_entities(self, api_key_id: int, records: Iterable[EntityRecord]) -> None:
        rows = entity_rows(api_key_id, records, self._now())
        if not rows:
            return
        async with self.transaction(), self._conn("caching entities") as conn:
            if await conn.fetchval(_KEY_ACTIVE, api_key_id) == 1:
                await conn.executemany(_CACHE_ENTITY, rows)

    async def lookup_entity(
        self, api_key_id: int, username: str, *, max_age: float | None = None
    ) -> EntityRecord | None:
        username_lc = normalize_username(username).lower()
        oldest = self._now() - max_age if max_age else 0
        async with self._conn("looking up an entity") as conn:
            row = await conn.fetchrow(
                "SELECT peer_id, access_hash, kind, username, title FROM entities "
                "WHERE api_key_id = $1 AND username_lc = $2 AND updated_at >= $3",
                api_key_id, username_lc, int(oldest))
        return None if row is None else EntityRecord(*row)  # the columns in the record's order

    async def forget_entity(self, api_key_id: int, username: str) -> bool:
        async with self._conn("forgetting an entity") as conn:
            gone = await conn.fetchval(
                "DELETE FROM entities WHERE api_key_id = $1 AND username_lc = $2 RETURNING 1",
                api_key_id, normalize_username(username).lower())
        return bool(gone == 1)

    # -- offsets --------------------------------------------------------------------------

    async def get_offset(self, api_key_id: int, kind: str, group_id: int) -> Offset | None:
        check_offset_kind(kind)
        async with self._conn("reading an offset") as conn:
            row = await conn.fetchrow(
                "SELECT value, tie_ids FROM offsets "
                "WHERE api_key_id = $1 AND kind = $2 AND group_id = $3",
                api_key_id, kind, group_id)
        if row is None:
            return None
        return Offset(value=int(row[0]), tie_ids=decode_ties(row[1]))

    async def commit_offset(
        self, api_key_id: int, kind: str, group_id: int, offset: Offset
    ) -> None:
        check_offset_kind(kind)
        async with self._conn("committing an offset") as conn:
            await conn.execute(_COMMIT_OFFSET, api_key_id, kind, group_id, offset.value,
                               encode_ties(offset.tie_ids), self._now())

