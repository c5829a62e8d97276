"""PostgreSQL connections for the store: an asyncpg pool, per-task transactions, deadlines.

Connections and transactions
    A small asyncpg pool (:data:`POOL_SIZE` connections). A call outside a transaction borrows
    a connection for its statement; :meth:`Pool.transaction` keeps one connection for the
    whole block and remembers it for the task that opened it, so every Store call of that task
    inside the block runs on it (nested blocks are SAVEPOINTs), while other tasks' calls run
    on other connections meanwhile and see the block's writes only once it commits (READ
    COMMITTED). The connection is found by the *task*, not a context variable: a task started
    inside the block inherits the context but must not share its connection.

Deadlines
    Every statement has asyncpg's ``command_timeout``; connecting and borrowing a connection
    have the same deadline. A passing deadline is a StoreError like any other failure of the
    database: the caller sees "the database did not answer in time", never a hang.

Split from tgws/store/postgres.py, which keeps the store's SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tgws.errors import StoreError
from tgws.store.base import redact_url, url_password

log = logging.getLogger("tgws.store")

POOL_SIZE: Final = 4
"""Connections per daemon. Statements are short (one round trip each); four let a slow one
(a revocation, a reseal) run beside the streams' offset commits without queueing them."""

Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# asyncpg's own errors, the socket's, and a passing command_timeout: everything the database
# can do to a call. Anything else is a bug of ours and propagates as it is.
DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Inside a caller's transaction block only the driver's own errors are ours to translate: a
# TimeoutError there may be the caller's.
_DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError)


def describe(exc: BaseException, secret: str | None) -> str:
    """The error for a message: its text, or its kind when it has none (a timeout); never
    the password, should a driver ever echo the URL."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "the database did not answer in time"
    if secret:
        text = text.replace(secret, "***")
    return text


class Pool:
    """The pool, the transaction of each task, and the deadline of every call."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], where: str, deadline: float,
                 secret: str | None) -> None:
        self._pool: asyncpg.Pool[asyncpg.Record] | None = pool
        self.where = where
        self._deadline = deadline
        self._secret = secret
        # The connection of each task inside transaction().
        self._tx: dict[asyncio.Task[Any], Conn] = {}

    @classmethod
    async def open(cls, url: str, deadline: float) -> Pool:
        """Connect. StoreError when the server cannot be reached in ``deadline`` seconds or
        refuses us; the message names the URL without its password."""
        where = redact_url(url)
        secret = url_password(url)
        try:
            async with asyncio.timeout(deadline):
                pool = await asyncpg.create_pool(
                    url, min_size=1, max_size=POOL_SIZE, timeout=deadline,
                    command_timeout=deadline, server_settings={"application_name": "tgws"})
        except (*DB_ERRORS, ValueError) as exc:
            raise StoreError(f"cannot open store {where}: {describe(exc, secret)}") from None
        return cls(pool, where, deadline, secret)

    @property
    def closed(self) -> bool:
        return self._pool is None

    async def close(self) -> None:
        """Close, waiting for borrowed connections (a running transaction). Idempotent."""
        if self._pool is None:
            return
        if asyncio.current_task() in self._tx:
            raise StoreError("Store.close() called inside one of its own transactions")
        pool, self._pool = self._pool, None
        # A transaction that outlives a generous deadline is cut off rather than hanging the
        # shutdown.
        try:
            async with asyncio.timeout(4 * self._deadline):
                await pool.close()
        except TimeoutError:
            log.warning("store %s: a transaction outlived close(); its connection was cut",
                        self.where)
            pool.terminate()

    def abandon(self) -> None:
        """Drop every connection at once (opening failed half-way)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    @contextlib.contextmanager
    def errors(self, what: str, kinds: tuple[type[BaseException], ...] = DB_ERRORS,
               ) -> Iterator[None]:
        """Turn the database's errors into StoreError naming ``what``."""
        try:
            yield
        except kinds as exc:
            raise StoreError(f"{what}: {describe(exc, self._secret)}") from exc

    @contextlib.asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[Conn]:
        """A connection for the caller's statements: its own transaction's, or a pooled one
        (each statement then commits by itself). Errors become StoreError naming ``what``."""
        task = asyncio.current_task()
        own = self._tx.get(task) if task is not None else None
        if own is not None:
            with self.errors(what):
                yield own
            return
        if self._pool is None:
            raise StoreError(f"store {self.where} is closed")
        with self.errors(what):
            async with self._pool.acquire(timeout=self._deadline) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction on one connection, pinned to the calling task (see the module
        docstring); nested use by the same task is a SAVEPOINT."""
        task = asyncio.current_task()
        assert task is not None, "Store.transaction() outside a task"
        own = self._tx.get(task)
        if own is not None:
            # asyncpg makes a nested transaction a SAVEPOINT: an exception undoes the inner
            # block and propagates; the outer transaction decides about the rest.
            with self.errors("in a transaction", _DRIVER_ERRORS):
                async with own.transaction():
                    yield
            return
        if self._pool is None:
            raise StoreError(f"store {self.where} is closed")
        pool = self._pool
        with self.errors("starting a transaction"):
            conn = await pool.acquire(timeout=self._deadline)
        try:
            tx = conn.transaction()
            with self.errors("starting a transaction"):
                await tx.start()
            self._tx[task] = conn
            try:
                with self.errors("in a transaction", _DRIVER_ERRORS):
                    yield
            except BaseException:
                del self._tx[task]
                # A failed rollback (the connection died) rolls back by itself at the server;
                # release() then resets or discards the connection.
                with contextlib.suppress(*DB_ERRORS):
                    await tx.rollback()
                raise
            del self._tx[task]
            with self.errors("committing a transaction"):
                await tx.commit()
        finally:
            with contextlib.suppress(*DB_ERRORS):
                await pool.release(conn, timeout=self._deadline)
