"""The store's interface: what every dialect promises, and the parts they share.

:class:`Store` is abstract. ``await Store.open(target)`` picks the dialect from ``target``: a
``postgresql://`` (or ``postgres://``) URL opens :class:`tgws.store.postgres.PostgresStore`,
anything else is a file path for :class:`tgws.store.sqlite.SqliteStore`. The rest of tgws only
ever sees ``Store``.

Guarantees every dialect keeps (tests/test_store.py runs the same tests against each)
    - API keys are stored only as their SHA-256; a presented key is found by its hash and
      confirmed with a constant-time comparison (:mod:`tgws.auth`). Names are unique without
      regard to case, and a revoked key's row stays as a tombstone, its name never reused.
    - Telegram sessions are secrets: sealed with AES-256-GCM when a keyring is configured
      (:mod:`tgws.sealing`), readable by no key but their own, never logged.
    - Offsets only move forward, in one atomic statement (a lower value is ignored, an equal
      value unions the tie ids), and no write revives what revocation deleted.
    - Forward-only migrations, one history for every dialect (:mod:`tgws.store.schema`); a
      database newer than this code is refused.
    - Every failure of the database (including a deadline passing) is a :class:`StoreError`;
      invalid arguments that only a programming error produces (an unknown offset kind, an
      empty session string) raise ValueError. After :meth:`close`, every method but
      :meth:`healthy` raises StoreError.

What differs: sqlite serializes every call of one Store on one connection (a transaction makes
other tasks wait), PostgreSQL runs other tasks' calls on other pooled connections meanwhile.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final, Self

from tgws.sealing import Keyring, SessionUnreadable, sealed_key_id
from tgws.store.records import ApiKeyRecord, EntityRecord, Offset

log = logging.getLogger("tgws.store")

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

DEFAULT_DEADLINE: Final = 5.0
"""Seconds a database call may wait ([store] timeout)."""


def is_postgres_url(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password (and without a query, which may hold one), for logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "postgresql://(unparseable URL)"


def url_password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


class Store(abc.ABC):
    """The daemon's persistent state. Create with ``await Store.open(target)``; close it.

    One instance per process, shared by every connection handler.
    """

    def __init__(self, clock: Callable[[], float], keyring: Keyring | None) -> None:
        self._clock = clock
        self._keyring = keyring

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        keyring: Keyring | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> Store:
        """Open (creating and migrating as needed) the store at ``target``.

        ``target`` is a sqlite file path or a ``postgresql://`` URL. ``clock`` returns unix
        seconds; tests pass a fake one. With ``keyring`` (from [store] secret_key_file)
        sessions are sealed at rest, and any session not yet sealed with its first key is
        sealed now. ``deadline`` ([store] timeout) bounds every database call: sqlite's wait
        for another process's write lock; PostgreSQL's connect, pool wait and each statement.
        Raises StoreError when the store cannot be opened or its schema is newer than this
        code.
        """
        where = os.fspath(target)
        # Imported here: the dialects import this module.
        if is_postgres_url(where):
            from tgws.store.postgres import PostgresStore

            return await PostgresStore.connect(where, clock=clock, keyring=keyring,
                                               deadline=deadline)
        from tgws.store.sqlite import SqliteStore

        return await SqliteStore.connect(where, clock=clock, keyring=keyring, deadline=deadline)

    @abc.abstractmethod
    async def close(self) -> None:
        """Close (waiting for a running transaction). Idempotent. StoreError when called
        inside one of this store's own transactions."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    @abc.abstractmethod
    def schema_version(self) -> int:
        """The schema version of the open database (== SCHEMA_VERSION once open)."""

    @property
    @abc.abstractmethod
    def path(self) -> str:
        """Where the store is, fit for a log line: the file path, or the URL without its
        password."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """Whether ``SELECT 1`` succeeds (for /healthz). Never raises."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Run the Store calls inside the block as one transaction: all of them or none.

        ``async with store.transaction(): await store.save_session(...); ...``. An exception
        rolls everything back and propagates. Keep it short and await nothing but this Store
        inside it (in particular, do not wait for another task that uses the Store: with
        sqlite that deadlocks). Nested use by the same task is a SAVEPOINT: an exception
        caught inside the outer block undoes only the inner block. Database errors surface
        as StoreError.
        """

    # -- API keys -------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_api_key(self, name: str) -> str:
        """Create an API key called ``name`` and return its plaintext, the only time it exists.

        Raises StoreError if the name is invalid (1-64 of ``A-Z a-z 0-9 _ . -``) or taken, in
        any letter case, by an active or a revoked key (revoked names are never reused, so a
        name in a log always means one key).
        """

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every API key, revoked ones included, oldest first."""

    @abc.abstractmethod
    async def revoke_api_key(self, name: str) -> bool:
        """Revoke the active key ``name``; False if there is none (unknown or already revoked).

        One transaction: the key's row gets ``revoked_at`` and stays as a tombstone; its entity
        cache and offsets are deleted. Its Telegram session is kept, unusable by the key (every
        session read and write checks ``revoked_at``), until the daemon's revocation sweep has
        sent auth.LogOut with it and deleted it (:meth:`sessions_to_log_out`): deleting it here
        would leave the authorization alive at Telegram with nobody able to end it, and a copy
        of the session (a backup, another host) would keep working.
        """

    @abc.abstractmethod
    async def verify_api_key(self, key: str) -> ApiKeyRecord | None:
        """The active key whose plaintext is ``key``, or None. Records ``last_used_at``.

        Found by an indexed lookup of the key's SHA-256 (which reveals nothing useful even if
        its timing leaks: the hash of a 256-bit random key cannot be inverted), then confirmed
        with a constant-time comparison. A failed attempt costs one read and no write.
        """

    @abc.abstractmethod
    async def api_key_active(self, api_key_id: int) -> bool:
        """Whether the key exists and is not revoked (polled to close revoked keys' sockets)."""

    # -- Telegram sessions ----------------------------------------------------------------

    @abc.abstractmethod
    async def load_session(self, api_key_id: int, *, revoked: bool = False) -> str | None:
        """The key's Telethon StringSession string, or None if it has not logged in.

        A revoked key has no session, unless ``revoked`` is set: the revocation sweep reads
        the session that waits to be logged out at Telegram (see :meth:`revoke_api_key`).
        Raises :class:`SessionUnreadable` (a StoreError) for a session sealed with a key
        this store was not given.
        """

    @abc.abstractmethod
    async def save_session(self, api_key_id: int, session: str, user_id: int | None) -> None:
        """Store (replace) the key's Telegram session, sealed when a keyring is configured.

        One statement, one commit. Raises StoreError if the key is unknown or revoked, so a
        login racing a revocation cannot leave a session behind a revoked key. An empty session
        is a ValueError: to forget a session use :meth:`delete_session`.
        """

    @abc.abstractmethod
    async def delete_session(self, api_key_id: int) -> None:
        """Forget the key's Telegram session and, in the same transaction, its entity cache
        (access hashes belong to the account that resolved them, and the next login may be
        another account). Offsets are kept: a re-login of the same account resumes its streams.
        """

    @abc.abstractmethod
    async def has_session(self, api_key_id: int) -> bool:
        """Whether the (active) key has a stored session, readable or not."""

    @abc.abstractmethod
    async def sessions_to_log_out(self) -> list[int]:
        """Ids of revoked keys whose session still waits for its auth.LogOut at Telegram."""

    @abc.abstractmethod
    async def reseal_sessions(self) -> tuple[int, int]:
        """Seal every session that is not sealed with the keyring's first key.

        Plaintext sessions (stored before encryption was switched on) and sessions sealed with
        an older key are rewritten under the first key, in one transaction. Returns (resealed,
        unreadable): unreadable ones are sealed with a key this keyring lacks and are left as
        they are. Without a keyring, returns (0, 0).
        """

    @abc.abstractmethod
    async def _count_sealed_sessions(self) -> int:
        """How many stored sessions are sealed (to warn when no keyring can open them)."""

    def _seal(self, api_key_id: int, session: str) -> str:
        return session if self._keyring is None else self._keyring.seal(api_key_id, session)

    @staticmethod
    def _resealed(keyring: Keyring, rows: Iterable[Iterable[Any]]
                  ) -> tuple[list[tuple[str, int]], int]:
        """For :meth:`reseal_sessions`, given the stored (api_key_id, session) rows: the
        (sealed session, api_key_id) updates to write, and how many sessions are unreadable."""
        updates: list[tuple[str, int]] = []
        unreadable = 0
        for api_key_id, value in rows:
            if sealed_key_id(value) == keyring.primary_id:
                continue
            try:
                plain = keyring.open(api_key_id, value)
            except SessionUnreadable:
                unreadable += 1
                continue
            updates.append((keyring.seal(api_key_id, plain), api_key_id))
        return updates, unreadable

    async def _check_sessions_at_rest(self) -> None:
        """At open: seal what is not sealed yet, and say which sessions cannot be opened."""
        if self._keyring is not None:
            resealed, unreadable = await self.reseal_sessions()
            if resealed:
                log.info("sealed %d stored Telegram session(s) with key %s", resealed,
                         self._keyring.primary_id)
            if unreadable:
                log.error("%d stored Telegram session(s) are sealed with a key that is not in "
                          "[store] secret_key_file; those API keys cannot reach Telegram",
                          unreadable)
            return
        sealed = await self._count_sealed_sessions()
        if sealed:
            log.error("%d stored Telegram session(s) are encrypted at rest and no [store] "
                      "secret_key_file is configured; those API keys cannot reach Telegram",
                      sealed)

    # -- entity cache ---------------------------------------------------------------------

    @abc.abstractmethod
    async def cache_entities(self, api_key_id: int, records: Iterable[EntityRecord]) -> None:
        """Upsert resolved usernames for this key: one transaction.

        Silently caches nothing for an unknown or revoked key (it is only a cache, and a
        revoked key's cache must stay empty). ValueError for an empty username or a kind
        outside ENTITY_KINDS; nothing is written then.
        """

    @abc.abstractmethod
    async def lookup_entity(
        self, api_key_id: int, username: str, *, max_age: float | None = None
    ) -> EntityRecord | None:
        """The cached entity for ``username`` (any case, with or without '@'), or None.

        With ``max_age`` (seconds), an entry older than that counts as missing: usernames
        change hands, so a long-running daemon re-resolves now and then.
        """

    @abc.abstractmethod
    async def forget_entity(self, api_key_id: int, username: str) -> bool:
        """Drop one cached username (its access hash went stale, or it changed hands).

        Returns whether there was one.
        """

    # -- offsets --------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_offset(self, api_key_id: int, kind: str, group_id: int) -> Offset | None:
        """Where this key's ``latest`` stream of ``kind`` ('chats'|'users') for the group
        stopped, or None if it never delivered anything."""

    @abc.abstractmethod
    async def commit_offset(
        self, api_key_id: int, kind: str, group_id: int, offset: Offset
    ) -> None:
        """Advance the offset, never backwards. One statement, one commit: call per batch.

        A value below the stored one is ignored; an equal value adds ``tie_ids`` to the stored
        ones; a greater value replaces both. Ignored too for an unknown or revoked key.
        """

    async def commit_offsets(
        self, api_key_id: int, offsets: Iterable[tuple[str, int, Offset]]
    ) -> None:
        """commit_offset for each (kind, group id, offset), as one transaction: what a
        `watch` confirmation covering many groups commits at once (tgws/live.py)."""
        async with self.transaction():
            for kind, group_id, offset in offsets:
                await self.commit_offset(api_key_id, kind, group_id, offset)

    def _now(self) -> int:
        return int(self._clock())
