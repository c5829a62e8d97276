"""One aiosqlite connection used by many tasks: a lock, transactions, savepoints; opening it.

Transactions
    aiosqlite runs statements one at a time on its thread, but nothing stops another task's
    statement from landing between our ``BEGIN`` and ``COMMIT`` and becoming part of (or being
    rolled back with) our transaction. So every use of the connection goes through one
    ``asyncio.Lock``: :meth:`SerializedConnection.transaction` holds it from ``BEGIN
    IMMEDIATE`` to ``COMMIT``, and single statements (reads, one-statement writes) hold it for
    that statement (:meth:`SerializedConnection.locked`). The task holding a transaction may
    call any other Store method inside it (nested transactions become SAVEPOINTs); a different
    task waits.

    The connection runs in sqlite's autocommit mode (``isolation_level=None``): Python's
    sqlite3 module opens no implicit transactions, so a single statement outside
    ``transaction()`` commits by itself in one thread hop (~35 µs, see perf-physics.md §6),
    and multi-statement writes say ``BEGIN IMMEDIATE``/``COMMIT`` explicitly.

Split from tgws/store/sqlite.py, which keeps the store's SQL: this module is the concurrency
and the connection's settings, the part that must be right once for every statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiosqlite

from tgws.dbfile import prepare_path, tighten_files
from tgws.errors import StoreError
from tgws.store.schema import migrate_sqlite, rollback_quietly

log = logging.getLogger("tgws.store")


@contextlib.contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    """Turn sqlite's exceptions into StoreError, naming what we were doing."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


async def open_database(path: str, deadline: float) -> tuple[aiosqlite.Connection, int]:
    """Open (creating it 0600 if needed), configure and migrate the file: (connection,
    schema version). ``deadline`` is sqlite's busy timeout: how long a write waits for
    another process's write lock."""
    # A few stat() calls, once at startup: not worth a thread hop.
    prepare_path(path)
    for name, mode in tighten_files(path):
        log.warning("store file %s had mode %04o; made it 0600 (it holds Telegram "
                    "sessions)", name, mode)

    try:
        db = await aiosqlite.connect(path, isolation_level=None, timeout=deadline)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    try:
        with sqlite_errors(f"cannot open store {path}"):
            # busy_timeout first, so that switching to WAL waits for another process.
            await db.execute(f"PRAGMA busy_timeout = {int(deadline * 1000)}")
            rows = await _switch_to_wal(db, deadline)
            if str(rows[0][0]).lower() != "wal":
                raise StoreError(
                    f"store {path}: sqlite refused WAL mode (journal_mode={rows[0][0]}); "
                    "put the store on a local filesystem"
                )
            # NORMAL in WAL mode: no fsync per commit (perf-physics.md §6); a power cut can
            # lose the last commits but never corrupts the database.
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            # Deleted rows (sessions of logged-out or revoked keys) are overwritten with
            # zeros, not left readable in free pages until sqlite reuses them.
            await db.execute("PRAGMA secure_delete = ON")
            # The offset merge needs sqlite's JSON functions; fail at startup, not mid-stream.
            await db.execute_fetchall("SELECT json_group_array(value) FROM json_each('[1]')")
            version = await migrate_sqlite(db, path)
    except BaseException:
        await db.close()
        raise
    return db, version


class SerializedConnection:
    """The aiosqlite connection and the lock every use of it goes through."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db: aiosqlite.Connection | None = db
        self._path = path
        self._lock = asyncio.Lock()
        # The task that holds self._lock (in transaction() or locked()), so that the same
        # task can call other Store methods inside its transaction without deadlocking.
        self._owner: asyncio.Task[Any] | None = None
        self._savepoints = 0

    @property
    def closed(self) -> bool:
        return self._db is None

    async def close(self) -> None:
        """Close (waiting for a running transaction). Idempotent."""
        if self._db is None:
            return
        if self.owns_lock():
            raise StoreError("Store.close() called inside one of its own transactions")
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                with sqlite_errors(f"closing store {self._path}"):
                    await db.close()

    def conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"store {self._path} is closed")
        return self._db

    def owns_lock(self) -> bool:
        return self._owner is not None and self._owner is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def locked(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for statements outside an explicit transaction.

        A single statement here commits by itself (autocommit). Inside the caller's own
        transaction() it simply joins that transaction.
        """
        if self.owns_lock():
            with sqlite_errors(what):
                yield self.conn()
            return
        async with self._lock:
            db = self.conn()  # checked after waiting: close() may have won the lock first
            self._owner = asyncio.current_task()
            try:
                with sqlite_errors(what):
                    yield db
            finally:
                self._owner = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction (BEGIN IMMEDIATE .. COMMIT) holding the lock; the same task's
        nested use is a SAVEPOINT. sqlite errors surface as StoreError."""
        if self.owns_lock():
            async with self._savepoint():
                yield
            return
        async with self._lock:
            db = self.conn()
            self._owner = asyncio.current_task()
            try:
                with sqlite_errors("starting a transaction"):
                    await db.execute("BEGIN IMMEDIATE")
                with sqlite_errors("in a transaction"):
                    yield
                with sqlite_errors("committing a transaction"):
                    await db.execute("COMMIT")
            except BaseException:
                # Whatever failed (BEGIN, the block, or COMMIT), leave the connection outside
                # any transaction before the next task gets the lock. A cancelled await does not
                # cancel the statement: aiosqlite still runs it, in queue order, so a BEGIN that
                # was waiting on busy_timeout when we were cancelled runs before this ROLLBACK.
                # If there is nothing to roll back (BEGIN failed, COMMIT completed), the
                # ROLLBACK fails harmlessly.
                await rollback_quietly(db)
                raise
            finally:
                self._owner = None

    @contextlib.asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        db = self.conn()
        self._savepoints += 1
        name = f"tgws_sp{self._savepoints}"
        try:
            with sqlite_errors("starting a savepoint"):
                await db.execute(f"SAVEPOINT {name}")
            with sqlite_errors("in a transaction"):
                yield
            with sqlite_errors("releasing a savepoint"):
                await db.execute(f"RELEASE {name}")
        except BaseException:
            # Undo the inner block only; the outer transaction decides about the rest. Errors
            # are ignored for the same reasons as in transaction().
            for statement in (f"ROLLBACK TO {name}", f"RELEASE {name}"):
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await db.execute(statement)
            raise
        finally:
            self._savepoints -= 1


async def _switch_to_wal(db: aiosqlite.Connection, deadline: float) -> list[sqlite3.Row]:
    """PRAGMA journal_mode = WAL, retried while another connection holds the lock.

    Switching a fresh file to WAL can answer SQLITE_BUSY at once, without sqlite's busy
    handler, when several processes open it together (seen in CI); retry within `deadline`.
    """
    give_up = time.monotonic() + deadline
    while True:
        try:
            return list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= give_up:
                raise
            await asyncio.sleep(0.01)
