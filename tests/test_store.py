"""tgws.store: file safety, migrations, API keys, sessions, entity cache, offsets, concurrency.

The tests of the interface run against both dialects (the ``target`` fixture: a sqlite file, or
a fresh database on a real PostgreSQL server started for the session, tests/pgserver.py);
tests of one dialect's own machinery (sqlite's files and locks, PostgreSQL's deadlines and
URL secrets) say so in their names.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tgws.store.schema as schema_module
from tests.pgserver import PASSWORD, PgServer
from tests.support import timeout
from tgws.auth import hash_api_key
from tgws.errors import StoreError
from tgws.sealing import Keyring
from tgws.store import SCHEMA_VERSION, EntityRecord, Offset, Store
from tgws.store.sqlite import SqliteStore

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


class FakeClock:
    """Unix seconds that only move when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tgws.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Where a store lives: a new sqlite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(db_path)
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_schema()


@pytest.fixture
async def store(target: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with await Store.open(target, clock=clock) as opened:
        yield opened


@pytest.fixture
async def sqlite_store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with await Store.open(db_path, clock=clock) as opened:
        yield opened


def is_postgres(target: str) -> bool:
    return target.startswith("postgresql://")


async def raw_fetch(target: str, sql: str) -> list[tuple[object, ...]]:
    """Read the store with a connection of its own, as another tool would."""
    if not is_postgres(target):
        return raw_query(Path(target), sql)
    conn = await asyncpg.connect(target)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def raw_write(target: str, sql: str) -> None:
    """One statement on a connection of its own (sqlite: with foreign keys enforced)."""
    if not is_postgres(target):
        with contextlib_closing(sqlite3.connect(target, isolation_level=None)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(sql)
        return
    pg = await asyncpg.connect(target)
    try:
        await pg.execute(sql)
    finally:
        await pg.close()


async def stored_version(target: str) -> int:
    sql = "SELECT version FROM tgws_schema" if is_postgres(target) else "PRAGMA user_version"
    [(version,)] = await raw_fetch(target, sql)
    assert isinstance(version, int)
    return version


async def set_stored_version(target: str, version: int) -> None:
    sql = (f"UPDATE tgws_schema SET version = {version}" if is_postgres(target)
           else f"PRAGMA user_version = {version}")
    await raw_write(target, sql)


async def table_exists(target: str, name: str) -> bool:
    sql = (f"SELECT 1 FROM pg_tables WHERE tablename = '{name}' "
           "AND schemaname = current_schema()" if is_postgres(target)
           else f"SELECT 1 FROM sqlite_master WHERE name = '{name}'")
    return bool(await raw_fetch(target, sql))


def sqlite_conn(store: Store) -> aiosqlite.Connection:
    """The sqlite dialect's connection, for tests that look below the interface."""
    assert isinstance(store, SqliteStore)
    return store._conn()


async def new_key(store: Store, name: str = "bot") -> tuple[str, int]:
    """Create a key and return (plaintext, id)."""
    key = await store.create_api_key(name)
    record = await store.verify_api_key(key)
    assert record is not None
    return key, record.id


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sqlite_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def make_file(path: Path, mode: int, data: bytes = b"") -> None:
    path.write_bytes(data)
    path.chmod(mode)


def disk_bytes(path: Path) -> bytes:
    """Everything sqlite has on disk for ``path``: main file, WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sqlite_files(path))


def raw_query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with plain sqlite3, as another tool would."""
    with contextlib_closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(sql))


def raw_execute(path: Path, sql: str) -> None:
    with contextlib_closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(sql)


@contextmanager
def contextlib_closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- opening, files, migrations ---------------------------------------------------------------


async def test_new_database_and_its_wal_files_are_private(
    sqlite_store: Store, db_path: Path
) -> None:
    store = sqlite_store
    await new_key(store)  # make sure the WAL has been written to
    files = sqlite_files(db_path)
    assert [p.name for p in files] == ["tgws.db", "tgws.db-wal", "tgws.db-shm"]
    assert {p.name: file_mode(p) for p in files} == {p.name: 0o600 for p in files}


async def test_new_database_is_private_even_under_a_permissive_umask(db_path: Path) -> None:
    with umask(0):
        opened = await Store.open(db_path)
    try:
        assert {file_mode(p) for p in sqlite_files(db_path)} == {0o600}
    finally:
        await opened.close()


async def test_loose_wal_side_files_are_tightened_on_open(
    sqlite_store: Store, db_path: Path
) -> None:
    store = sqlite_store
    await store.close()
    wal = Path(f"{db_path}-wal")
    make_file(wal, 0o644)
    reopened = await Store.open(db_path)
    try:
        assert file_mode(wal) == 0o600
    finally:
        await reopened.close()


async def test_open_sets_wal_and_the_connection_pragmas(sqlite_store: Store, db_path: Path) -> None:
    store = sqlite_store
    db = sqlite_conn(store)
    pragmas = {}
    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
        rows = list(await db.execute_fetchall(f"PRAGMA {name}"))
        pragmas[name] = rows[0][0]
    # synchronous 1 = NORMAL
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }
    assert raw_query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert store.schema_version == SCHEMA_VERSION == 2


async def test_reopening_keeps_data_and_does_not_migrate_again(store: Store, target: str) -> None:
    key, _ = await new_key(store)
    await store.close()
    for _ in range(2):
        async with await Store.open(target) as reopened:
            assert reopened.schema_version == SCHEMA_VERSION
            assert await reopened.verify_api_key(key) is not None
    assert await stored_version(target) == SCHEMA_VERSION


async def test_a_newer_schema_is_refused_with_a_clear_message(target: str) -> None:
    async with await Store.open(target):
        pass
    await set_stored_version(target, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, but this "
                                         rf"tgws only knows .* {SCHEMA_VERSION}"):
        await Store.open(target)
    # Refused without touching it.
    assert await stored_version(target) == SCHEMA_VERSION + 1


async def test_a_failing_migration_leaves_the_previous_version_intact(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(target):
        pass
    statements = ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL")
    broken_v2 = schema_module.Migration(sqlite=statements, postgres=statements)
    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS, broken_v2))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="cannot open store"):
        await Store.open(target)
    assert await stored_version(target) == SCHEMA_VERSION
    assert not await table_exists(target, "half_done")


async def test_migrations_run_forward_one_version_at_a_time(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(target) as v1:
        key, _ = await new_key(v1)

    add_note = ("ALTER TABLE api_keys ADD COLUMN note TEXT NOT NULL DEFAULT ''",)
    following = schema_module.Migration(sqlite=add_note, postgres=add_note)
    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS, following))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    async with await Store.open(target) as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION + 1
        assert await upgraded.verify_api_key(key) is not None
    assert await raw_fetch(target, "SELECT note FROM api_keys") == [("",)]
    assert await stored_version(target) == SCHEMA_VERSION + 1


async def test_missing_parent_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "no" / "such" / "tgws.db")


async def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        await Store.open(tmp_path)


async def test_a_file_that_is_not_sqlite_is_a_store_error(db_path: Path) -> None:
    make_file(db_path, 0o600, b"this is not a database, just some text " * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        await Store.open(db_path)


# -- API keys ---------------------------------------------------------------------------------


async def test_create_returns_a_key_that_verifies(store: Store, clock: FakeClock) -> None:
    key = await store.create_api_key("bot")
    assert key.startswith("tgws_")
    [listed] = await store.list_api_keys()
    assert listed.name == "bot"
    assert listed.created_at == datetime.fromtimestamp(T0, tz=UTC)
    assert listed.last_used_at is None and listed.revoked_at is None and listed.active

    clock.now = T0 + 60
    record = await store.verify_api_key(key)
    assert record is not None
    assert (record.id, record.name, record.active) == (listed.id, "bot", True)
    assert record.last_used_at == datetime.fromtimestamp(T0 + 60, tz=UTC)
    [listed] = await store.list_api_keys()
    assert listed.last_used_at == datetime.fromtimestamp(T0 + 60, tz=UTC)


async def test_timestamps_are_aware_utc(store: Store) -> None:
    await new_key(store)
    [record] = await store.list_api_keys()
    assert record.created_at.tzinfo is UTC
    assert record.last_used_at is not None and record.last_used_at.tzinfo is UTC


@pytest.mark.parametrize("wrong", ["", "tgws_", "x" * 10_000, "tgws_" + "A" * 43])
async def test_wrong_keys_do_not_verify(store: Store, wrong: str) -> None:
    await new_key(store)
    assert await store.verify_api_key(wrong) is None


async def test_keys_list_in_creation_order(store: Store) -> None:
    for name in ("b", "a", "c"):
        await store.create_api_key(name)
    assert [r.name for r in await store.list_api_keys()] == ["b", "a", "c"]


async def test_revoked_key_no_longer_verifies_and_is_listed_as_revoked(
    store: Store, clock: FakeClock
) -> None:
    key, key_id = await new_key(store)
    clock.now = T0 + 3600
    assert await store.revoke_api_key("bot") is True
    assert await store.verify_api_key(key) is None
    assert await store.api_key_active(key_id) is False
    [record] = await store.list_api_keys()
    assert record.revoked_at == datetime.fromtimestamp(T0 + 3600, tz=UTC)
    assert not record.active


async def test_revoking_twice_or_an_unknown_name_returns_false(store: Store) -> None:
    await new_key(store)
    assert await store.revoke_api_key("nobody") is False
    assert await store.revoke_api_key("bot") is True
    assert await store.revoke_api_key("bot") is False


async def test_revoke_ignores_letter_case(store: Store) -> None:
    await new_key(store, "Bot")
    assert await store.revoke_api_key("BOT") is True


async def test_api_key_active_for_unknown_id_is_false(store: Store) -> None:
    _, key_id = await new_key(store)
    assert await store.api_key_active(key_id) is True
    assert await store.api_key_active(key_id + 1) is False


async def test_the_plaintext_key_is_never_written_to_disk(
    sqlite_store: Store, db_path: Path
) -> None:
    store = sqlite_store
    key, key_id = await new_key(store)
    await store.save_session(key_id, "1SESSION", 42)
    on_disk = disk_bytes(db_path)
    assert hash_api_key(key).encode() in on_disk  # we are reading the right bytes
    assert key.encode() not in on_disk
    assert key.removeprefix("tgws_").encode() not in on_disk
    await store.close()
    on_disk = disk_bytes(db_path)
    assert key.encode() not in on_disk


async def test_a_taken_name_is_refused_in_any_case(store: Store) -> None:
    await store.create_api_key("bot")
    with pytest.raises(StoreError, match="already exists"):
        await store.create_api_key("bot")
    with pytest.raises(StoreError, match="already exists"):
        await store.create_api_key("BOT")
    assert len(await store.list_api_keys()) == 1


async def test_a_revoked_name_is_never_reused(store: Store) -> None:
    await store.create_api_key("bot")
    await store.revoke_api_key("bot")
    with pytest.raises(StoreError, match="revoked"):
        await store.create_api_key("bot")


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "has space", "ключ", "a/b", "a\n", "x;DROP TABLE api_keys", "é"]
)
async def test_invalid_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match="invalid API key name"):
        await store.create_api_key(name)
    assert await store.list_api_keys() == []


@pytest.mark.parametrize("name", ["a", "A-b_c.9", "x" * 64, "..", "-"])
async def test_valid_names_are_accepted(store: Store, name: str) -> None:
    await store.create_api_key(name)
    assert [r.name for r in await store.list_api_keys()] == [name]


# -- Telegram sessions ------------------------------------------------------------------------


async def test_session_save_load_replace(store: Store) -> None:
    _, key_id = await new_key(store)
    assert await store.load_session(key_id) is None
    assert await store.has_session(key_id) is False
    await store.save_session(key_id, "1AAAA", 111)
    assert await store.load_session(key_id) == "1AAAA"
    assert await store.has_session(key_id) is True
    await store.save_session(key_id, "1BBBB", 111)
    assert await store.load_session(key_id) == "1BBBB"


async def test_empty_session_is_refused(store: Store) -> None:
    _, key_id = await new_key(store)
    with pytest.raises(ValueError, match="delete_session"):
        await store.save_session(key_id, "", None)


async def test_session_for_an_unknown_or_revoked_key_is_refused(store: Store) -> None:
    _, key_id = await new_key(store)
    with pytest.raises(StoreError, match="unknown or revoked"):
        await store.save_session(key_id + 1, "1AAAA", None)
    await store.revoke_api_key("bot")
    with pytest.raises(StoreError, match="unknown or revoked"):
        await store.save_session(key_id, "1AAAA", None)
    assert await store.load_session(key_id) is None


async def test_delete_session_clears_entities_but_keeps_offsets(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.save_session(key_id, "1AAAA", 111)
    await store.cache_entities(key_id, [EntityRecord(5, 6, "megagroup", "grp", "G")])
    await store.commit_offset(key_id, "chats", 5, Offset(100))
    await store.delete_session(key_id)
    assert await store.load_session(key_id) is None
    assert await store.lookup_entity(key_id, "grp") is None
    assert await store.get_offset(key_id, "chats", 5) == Offset(100)


async def test_revoke_hides_the_session_until_log_out_and_deletes_entities_and_offsets(
        store: Store) -> None:
    _, key_id = await new_key(store)
    await store.save_session(key_id, "1AAAA", 111)
    await store.cache_entities(key_id, [EntityRecord(5, 6, "megagroup", "grp", "G")])
    await store.commit_offset(key_id, "chats", 5, Offset(100))
    await store.revoke_api_key("bot")
    assert await store.load_session(key_id) is None
    assert await store.lookup_entity(key_id, "grp") is None
    assert await store.has_session(key_id) is False
    # Kept for the daemon's revocation sweep, which logs it out at Telegram and deletes it.
    assert await store.sessions_to_log_out() == [key_id]
    assert await store.load_session(key_id, revoked=True) == "1AAAA"
    await store.delete_session(key_id)
    assert await store.sessions_to_log_out() == []
    assert await store.get_offset(key_id, "chats", 5) is None
    # Late writers (a stream still finishing) cannot bring anything back.
    await store.commit_offset(key_id, "chats", 5, Offset(200))
    await store.cache_entities(key_id, [EntityRecord(5, 6, "megagroup", "grp", "G")])
    assert await store.get_offset(key_id, "chats", 5) is None
    assert await store.lookup_entity(key_id, "grp") is None


async def test_foreign_keys_cascade_when_a_key_row_is_deleted(store: Store, target: str) -> None:
    _, key_id = await new_key(store)
    await store.save_session(key_id, "1AAAA", 111)
    await store.cache_entities(key_id, [EntityRecord(5, 6, "megagroup", "grp", "G")])
    await store.commit_offset(key_id, "users", 5, Offset(100, frozenset({1})))
    # No Store method deletes key rows (revocation keeps a tombstone); an operator might.
    await raw_write(target, f"DELETE FROM api_keys WHERE id = {key_id}")
    for table in ("tg_sessions", "entities", "offsets"):
        assert await raw_fetch(target, f"SELECT count(*) FROM {table}") == [(0,)], table


# -- entity cache -----------------------------------------------------------------------------


async def test_entity_lookup_ignores_case_and_at_sign(store: Store) -> None:
    _, key_id = await new_key(store)
    record = EntityRecord(-1001234, 987654321, "megagroup", "PyTelegram", "Py Chat")
    await store.cache_entities(key_id, [record])
    for spelling in ("PyTelegram", "pytelegram", "PYTELEGRAM", "@pyTelegram"):
        assert await store.lookup_entity(key_id, spelling) == record
    assert await store.lookup_entity(key_id, "other") is None


async def test_entity_cache_upserts_and_keeps_64_bit_access_hashes(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.cache_entities(key_id, [EntityRecord(1, 2, "user", "alice", "Alice")])
    newer = EntityRecord(3, -(2**63), "broadcast", "Alice", "Alice's channel")
    await store.cache_entities(key_id, [newer, EntityRecord(4, 2**63 - 1, "user", "bob", "B")])
    assert await store.lookup_entity(key_id, "alice") == newer
    bob = await store.lookup_entity(key_id, "bob")
    assert bob is not None and bob.access_hash == 2**63 - 1


async def test_entity_cache_accepts_a_generator_and_an_empty_batch(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.cache_entities(key_id, [])
    await store.cache_entities(
        key_id, (EntityRecord(i, i, "user", f"user{i}", "") for i in range(250))
    )
    assert await store.lookup_entity(key_id, "USER249") == EntityRecord(
        249, 249, "user", "user249", ""
    )


async def test_invalid_entities_are_refused_and_nothing_is_cached(store: Store) -> None:
    _, key_id = await new_key(store)
    good = EntityRecord(1, 2, "user", "alice", "")
    with pytest.raises(ValueError, match="kind"):
        await store.cache_entities(key_id, [good, EntityRecord(1, 2, "planet", "x", "")])
    with pytest.raises(ValueError, match="username"):
        await store.cache_entities(key_id, [good, EntityRecord(1, 2, "user", "@", "")])
    assert await store.lookup_entity(key_id, "alice") is None


async def test_entity_older_than_max_age_counts_as_missing_until_refreshed(
    store: Store, clock: FakeClock
) -> None:
    _, key_id = await new_key(store)
    record = EntityRecord(1, 2, "megagroup", "grp", "Group")
    await store.cache_entities(key_id, [record])
    clock.now += 50
    assert await store.lookup_entity(key_id, "grp", max_age=100) == record
    clock.now += 100
    assert await store.lookup_entity(key_id, "grp", max_age=100) is None
    assert await store.lookup_entity(key_id, "grp") == record  # no max_age: kept forever
    await store.cache_entities(key_id, [record])  # re-resolved: fresh again
    assert await store.lookup_entity(key_id, "grp", max_age=100) == record


async def test_forget_entity(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.cache_entities(key_id, [EntityRecord(1, 2, "user", "alice", "")])
    assert await store.forget_entity(key_id, "ALICE") is True
    assert await store.forget_entity(key_id, "alice") is False
    assert await store.lookup_entity(key_id, "alice") is None


# -- offsets ----------------------------------------------------------------------------------


async def test_chat_offsets_only_move_forward(store: Store) -> None:
    _, key_id = await new_key(store)
    assert await store.get_offset(key_id, "chats", 7) is None
    await store.commit_offset(key_id, "chats", 7, Offset(100))
    await store.commit_offset(key_id, "chats", 7, Offset(50))
    assert await store.get_offset(key_id, "chats", 7) == Offset(100)
    await store.commit_offset(key_id, "chats", 7, Offset(150))
    assert await store.get_offset(key_id, "chats", 7) == Offset(150)


async def test_user_offsets_union_ties_and_reset_them_on_a_newer_date(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.commit_offset(key_id, "users", 7, Offset(T0, frozenset({3, 1})))
    await store.commit_offset(key_id, "users", 7, Offset(T0, frozenset({2, 3})))
    assert await store.get_offset(key_id, "users", 7) == Offset(T0, frozenset({1, 2, 3}))
    await store.commit_offset(key_id, "users", 7, Offset(T0 - 1, frozenset({9})))
    assert await store.get_offset(key_id, "users", 7) == Offset(T0, frozenset({1, 2, 3}))
    await store.commit_offset(key_id, "users", 7, Offset(T0 + 1, frozenset({4})))
    assert await store.get_offset(key_id, "users", 7) == Offset(T0 + 1, frozenset({4}))
    await store.commit_offset(key_id, "users", 7, Offset(T0 + 1))
    assert await store.get_offset(key_id, "users", 7) == Offset(T0 + 1, frozenset({4}))


async def test_offsets_are_per_kind_and_per_group(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.commit_offset(key_id, "chats", 1, Offset(10))
    await store.commit_offset(key_id, "users", 1, Offset(20))
    await store.commit_offset(key_id, "chats", 2, Offset(30))
    assert await store.get_offset(key_id, "chats", 1) == Offset(10)
    assert await store.get_offset(key_id, "users", 1) == Offset(20)
    assert await store.get_offset(key_id, "chats", 2) == Offset(30)
    assert await store.get_offset(key_id, "users", 2) is None


async def test_unknown_offset_kind_is_a_value_error(store: Store) -> None:
    _, key_id = await new_key(store)
    with pytest.raises(ValueError, match="offset kind"):
        await store.commit_offset(key_id, "messages", 1, Offset(1))
    with pytest.raises(ValueError, match="offset kind"):
        await store.get_offset(key_id, "messages", 1)


offset_steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),
        st.frozensets(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    ),
    min_size=1,
    max_size=12,
)


_groups = iter(range(1, 1_000_000))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=offset_steps)
def test_offset_commits_match_the_monotonic_model(
    target: str, steps: list[tuple[int, frozenset[int]]],
) -> None:
    # One database for the test, a group of its own for each example: a fresh offset each time.
    group = next(_groups)

    async def scenario() -> None:
        async with await Store.open(target) as store:
            existing = await store.list_api_keys()
            key = existing[0].id if existing else (await new_key(store))[1]
            model: Offset | None = None
            for value, ties in steps:
                await store.commit_offset(key, "users", group, Offset(value, ties))
                if model is None or value > model.value:
                    model = Offset(value, ties)
                elif value == model.value:
                    model = Offset(value, model.tie_ids | ties)
                assert await store.get_offset(key, "users", group) == model

    asyncio.run(scenario())


# -- isolation between API keys ---------------------------------------------------------------


async def test_one_keys_state_is_invisible_to_another(store: Store) -> None:
    _, alice = await new_key(store, "alice")
    _, bob = await new_key(store, "bob")
    await store.save_session(alice, "1ALICE", 1)
    await store.cache_entities(alice, [EntityRecord(5, 6, "megagroup", "grp", "G")])
    await store.commit_offset(alice, "chats", 5, Offset(100))
    await store.commit_offset(alice, "users", 5, Offset(T0, frozenset({1})))

    assert await store.load_session(bob) is None
    assert await store.has_session(bob) is False
    assert await store.lookup_entity(bob, "grp") is None
    assert await store.get_offset(bob, "chats", 5) is None
    assert await store.get_offset(bob, "users", 5) is None

    # Bob's own writes to the same group do not touch Alice's.
    await store.cache_entities(bob, [EntityRecord(5, 999, "megagroup", "grp", "G")])
    await store.commit_offset(bob, "chats", 5, Offset(1))
    await store.delete_session(bob)
    alice_grp = await store.lookup_entity(alice, "grp")
    assert alice_grp is not None and alice_grp.access_hash == 6
    assert await store.get_offset(alice, "chats", 5) == Offset(100)
    assert await store.load_session(alice) == "1ALICE"

    await store.revoke_api_key("bob")
    assert await store.load_session(alice) == "1ALICE"
    assert await store.lookup_entity(alice, "grp") == alice_grp


# -- transactions -----------------------------------------------------------------------------


async def test_a_transaction_that_fails_midway_leaves_nothing(store: Store) -> None:
    _, key_id = await new_key(store)
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction():
            await store.commit_offset(key_id, "chats", 1, Offset(100))
            await store.save_session(key_id, "1AAAA", 1)
            await store.create_api_key("second")
            raise RuntimeError("boom")
    assert await store.get_offset(key_id, "chats", 1) is None
    assert await store.load_session(key_id) is None
    assert [r.name for r in await store.list_api_keys()] == ["bot"]


async def test_a_store_error_inside_a_transaction_rolls_back_earlier_writes(
    store: Store,
) -> None:
    _, key_id = await new_key(store)
    with pytest.raises(StoreError, match="unknown or revoked"):
        async with store.transaction():
            await store.commit_offset(key_id, "chats", 1, Offset(100))
            await store.save_session(key_id + 100, "1AAAA", 1)
    assert await store.get_offset(key_id, "chats", 1) is None


async def test_a_transaction_commits_all_its_writes(store: Store, target: str) -> None:
    _, key_id = await new_key(store)
    async with store.transaction():
        await store.commit_offset(key_id, "chats", 1, Offset(100))
        await store.save_session(key_id, "1AAAA", 1)
    # Visible to another connection: committed, not just in our connection's view.
    assert await raw_fetch(target, "SELECT value FROM offsets") == [(100,)]
    assert await raw_fetch(target, "SELECT session FROM tg_sessions") == [("1AAAA",)]


async def test_a_nested_failure_undoes_only_the_inner_block(store: Store) -> None:
    _, key_id = await new_key(store)
    async with store.transaction():
        await store.commit_offset(key_id, "chats", 1, Offset(100))
        with pytest.raises(RuntimeError):
            async with store.transaction():
                await store.commit_offset(key_id, "chats", 2, Offset(200))
                raise RuntimeError("inner")
        await store.commit_offset(key_id, "chats", 3, Offset(300))
    assert await store.get_offset(key_id, "chats", 1) == Offset(100)
    assert await store.get_offset(key_id, "chats", 2) is None
    assert await store.get_offset(key_id, "chats", 3) == Offset(300)


async def test_other_tasks_wait_for_a_transaction_and_survive_its_rollback(
    store: Store, target: str
) -> None:
    _, key_id = await new_key(store)
    inside = asyncio.Event()
    calling = asyncio.Event()
    order: list[str] = []

    async def failing_transaction() -> None:
        async with store.transaction():
            await store.commit_offset(key_id, "chats", 1, Offset(100))
            inside.set()
            await calling.wait()  # the bystander's call is under way while we are inside
            order.append("rolling back")
            raise RuntimeError("rolled back")

    async def bystander() -> None:
        await inside.wait()
        order.append("calling")
        calling.set()
        await store.commit_offset(key_id, "chats", 2, Offset(200))
        order.append("written")

    results = await asyncio.gather(failing_transaction(), bystander(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    if is_postgres(target):
        # Its own pooled connection: it need not wait, and the rollback does not touch it.
        assert sorted(order) == ["calling", "rolling back", "written"]
    else:
        # One connection: called during the transaction, finished only after it.
        assert order == ["calling", "rolling back", "written"]
    assert await store.get_offset(key_id, "chats", 1) is None
    assert await store.get_offset(key_id, "chats", 2) == Offset(200)


async def test_a_cancelled_transaction_rolls_back_and_frees_the_store(store: Store) -> None:
    _, key_id = await new_key(store)
    inside = asyncio.Event()

    async def slow() -> None:
        async with store.transaction():
            await store.commit_offset(key_id, "chats", 1, Offset(100))
            inside.set()
            await asyncio.Event().wait()  # held open until the test cancels us

    task = asyncio.create_task(slow())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_offset(key_id, "chats", 1) is None
    await store.commit_offset(key_id, "chats", 1, Offset(5))
    assert await store.get_offset(key_id, "chats", 1) == Offset(5)


async def test_many_concurrent_offset_commits_keep_the_maximum(store: Store) -> None:
    _, key_id = await new_key(store)
    values = list(range(200))
    await asyncio.gather(
        *(store.commit_offset(key_id, "chats", 1, Offset(v)) for v in reversed(values))
    )
    assert await store.get_offset(key_id, "chats", 1) == Offset(199)


# -- two connections, two processes -----------------------------------------------------------


async def test_two_stores_on_one_database_see_each_others_writes(target: str) -> None:
    async with await Store.open(target) as daemon, await Store.open(target) as cli:
        key = await cli.create_api_key("from-cli")
        record = await daemon.verify_api_key(key)
        assert record is not None and record.name == "from-cli"
        assert await cli.revoke_api_key("from-cli")
        assert await daemon.verify_api_key(key) is None
        assert await daemon.api_key_active(record.id) is False


async def test_a_second_writer_waits_for_the_first_instead_of_failing(db_path: Path) -> None:
    async with await Store.open(db_path) as daemon, await Store.open(db_path) as cli:
        _, key_id = await new_key(daemon)
        inside = asyncio.Event()
        writing = asyncio.Event()

        async def cli_write() -> str:
            await inside.wait()
            writing.set()
            return await cli.create_api_key("second")  # blocks on sqlite's busy_timeout

        cli_task = asyncio.create_task(cli_write())

        async def long_daemon_transaction() -> None:
            async with daemon.transaction():
                await daemon.commit_offset(key_id, "chats", 1, Offset(100))
                inside.set()
                await writing.wait()
                # The behaviour under test needs a window of time: while we hold sqlite's
                # write lock the CLI's write neither completes nor fails ("database is
                # locked"); it is still waiting when the window closes.
                done, _ = await asyncio.wait({cli_task}, timeout=timeout(0.2))
                assert not done, "the second writer did not wait for the first"

        await long_daemon_transaction()
        key2 = await cli_task
        assert await daemon.verify_api_key(key2) is not None
        assert await cli.get_offset(key_id, "chats", 1) == Offset(100)


async def test_cancelled_while_waiting_for_the_write_lock_leaves_no_open_transaction(
    db_path: Path,
) -> None:
    async with (
        asyncio.timeout(30),  # a regression here used to hang, not fail
        await Store.open(db_path) as daemon,
        await Store.open(db_path) as cli,
    ):
        _, key_id = await new_key(daemon)
        cli_inside = asyncio.Event()
        release_cli = asyncio.Event()

        async def cli_holds_the_write_lock() -> None:
            async with cli.transaction():
                await cli.commit_offset(key_id, "chats", 1, Offset(1))
                cli_inside.set()
                await release_cli.wait()

        async def daemon_waits() -> None:
            async with daemon.transaction():  # BEGIN IMMEDIATE blocks on busy_timeout
                await daemon.commit_offset(key_id, "chats", 2, Offset(2))

        holder = asyncio.create_task(cli_holds_the_write_lock())
        await cli_inside.wait()
        waiter = asyncio.create_task(daemon_waits())
        # Give the waiter time to get into BEGIN IMMEDIATE, where sqlite's busy_timeout holds
        # it; that it is still waiting there when the window closes is part of what is tested.
        done, _ = await asyncio.wait({waiter}, timeout=timeout(0.1))
        assert not done, "BEGIN IMMEDIATE did not wait for the other connection's write lock"
        waiter.cancel()
        release_cli.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The daemon's connection is not stuck inside a transaction its BEGIN opened late:
        # a later write commits and another connection sees it.
        await daemon.commit_offset(key_id, "chats", 3, Offset(3))
        async with daemon.transaction():
            await daemon.commit_offset(key_id, "chats", 4, Offset(4))
        assert await cli.get_offset(key_id, "chats", 2) is None
        assert await cli.get_offset(key_id, "chats", 3) == Offset(3)
        assert await cli.get_offset(key_id, "chats", 4) == Offset(4)


async def test_a_key_created_by_another_process_verifies_in_the_daemon(
    store: Store, target: str
) -> None:
    script = (
        "import asyncio, sys\n"
        "from tgws.store import Store\n"
        "async def main():\n"
        "    async with await Store.open(sys.argv[1]) as s:\n"
        "        print(await s.create_api_key('other-process'))\n"
        "asyncio.run(main())\n"
    )
    await new_key(store)  # the daemon's store is open and has written
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        target,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    record = await store.verify_api_key(out.decode().strip())
    assert record is not None and record.name == "other-process"


# -- lifecycle --------------------------------------------------------------------------------


async def test_healthy_while_open_and_not_after_close(store: Store) -> None:
    assert await store.healthy() is True
    await store.close()
    assert store.closed
    assert await store.healthy() is False


async def test_close_is_idempotent(store: Store) -> None:
    assert not store.closed
    await store.close()
    assert store.closed
    await store.close()  # a second close neither raises nor reopens
    assert store.closed
    with pytest.raises(StoreError):
        await store.list_api_keys()


async def test_close_waits_for_a_running_transaction(store: Store, target: str) -> None:
    _, key_id = await new_key(store)
    inside = asyncio.Event()
    closing = asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            inside.set()
            await closing.wait()  # close() has been called while we are inside
            await store.commit_offset(key_id, "chats", 1, Offset(100))

    task = asyncio.create_task(writer())
    await inside.wait()
    closing.set()
    await store.close()
    await task
    async with await Store.open(target) as reopened:
        assert await reopened.get_offset(key_id, "chats", 1) == Offset(100)


async def test_close_inside_own_transaction_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="inside"):
        async with store.transaction():
            await store.close()
    assert await store.healthy()


CALLS: list[tuple[str, Callable[[Store], object]]] = [
    ("create_api_key", lambda s: s.create_api_key("x")),
    ("list_api_keys", lambda s: s.list_api_keys()),
    ("revoke_api_key", lambda s: s.revoke_api_key("x")),
    ("verify_api_key", lambda s: s.verify_api_key("tgws_x")),
    ("api_key_active", lambda s: s.api_key_active(1)),
    ("load_session", lambda s: s.load_session(1)),
    ("save_session", lambda s: s.save_session(1, "1A", None)),
    ("delete_session", lambda s: s.delete_session(1)),
    ("has_session", lambda s: s.has_session(1)),
    ("cache_entities", lambda s: s.cache_entities(1, [EntityRecord(1, 1, "user", "u", "")])),
    ("lookup_entity", lambda s: s.lookup_entity(1, "u")),
    ("forget_entity", lambda s: s.forget_entity(1, "u")),
    ("get_offset", lambda s: s.get_offset(1, "chats", 1)),
    ("commit_offset", lambda s: s.commit_offset(1, "chats", 1, Offset(1))),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
async def test_a_closed_store_raises_store_error(
    store: Store, name: str, call: Callable[[Store], object]
) -> None:
    await store.close()
    coro = call(store)
    assert asyncio.iscoroutine(coro), name
    with pytest.raises(StoreError, match="closed"):
        await coro


async def test_a_closed_store_refuses_transactions(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        async with store.transaction():
            pass


# -- both dialects: one schema, the same secrets at rest ----------------------------------------


async def test_both_dialects_build_the_same_tables_and_columns(
    db_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.new_schema()
    async with await Store.open(db_path), await Store.open(url):
        pass
    sqlite_tables = {
        str(name): [str(col[1]) for col in raw_query(db_path, f"PRAGMA table_info({name})")]
        for (name,) in raw_query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    pg_rows = await raw_fetch(
        url, "SELECT table_name, column_name FROM information_schema.columns "
             "WHERE table_schema = current_schema() AND table_name <> 'tgws_schema' "
             "ORDER BY table_name, ordinal_position")
    pg_tables: dict[str, list[str]] = {}
    for table, column in pg_rows:
        pg_tables.setdefault(str(table), []).append(str(column))
    assert sqlite_tables == pg_tables
    assert set(pg_tables) == {"api_keys", "tg_sessions", "entities", "offsets", "daemons",
                              "leases"}


def test_every_migration_is_written_for_both_dialects() -> None:
    for version, migration in enumerate(schema_module.MIGRATIONS, start=1):
        assert migration.sqlite and migration.postgres, f"version {version}"


async def test_sessions_are_sealed_in_the_database_with_a_keyring(target: str) -> None:
    keyring = Keyring((os.urandom(32),))
    session = "1" + "S" * 300
    async with await Store.open(target, keyring=keyring) as store:
        _, key_id = await new_key(store)
        await store.save_session(key_id, session, 1)
        assert await store.load_session(key_id) == session
    [(stored,)] = await raw_fetch(target, "SELECT session FROM tg_sessions")
    assert isinstance(stored, str) and stored.startswith("tgws-sealed:v1:")
    assert "S" * 40 not in stored


async def test_keys_are_stored_only_as_their_hash(store: Store, target: str) -> None:
    key, _ = await new_key(store)
    [(stored,)] = await raw_fetch(target, "SELECT key_hash FROM api_keys")
    assert stored == hash_api_key(key)
    everything = repr(await raw_fetch(target, "SELECT * FROM api_keys"))
    assert key.removeprefix("tgws_") not in everything


async def test_revocation_racing_offset_commits_leaves_nothing_behind(store: Store) -> None:
    _, key_id = await new_key(store)
    await store.commit_offset(key_id, "chats", 0, Offset(1))

    async def committer(group: int) -> None:
        for value in range(20):
            await store.commit_offset(key_id, "chats", group, Offset(value))

    await asyncio.gather(*(committer(g) for g in range(1, 5)), store.revoke_api_key("bot"))
    for group in range(5):
        assert await store.get_offset(key_id, "chats", group) is None


async def test_concurrent_opens_of_a_fresh_database_migrate_it_once(target: str) -> None:
    stores = await asyncio.gather(*(Store.open(target) for _ in range(3)))
    try:
        assert {s.schema_version for s in stores} == {SCHEMA_VERSION}
        assert await stored_version(target) == SCHEMA_VERSION
        key = await stores[0].create_api_key("bot")
        assert await stores[2].verify_api_key(key) is not None
    finally:
        for opened in stores:
            await opened.close()


# -- PostgreSQL's own: deadlines, errors, the URL's password ------------------------------------


async def test_postgres_wrong_password_is_a_store_error_that_never_shows_a_password(
    pg_server: PgServer,
) -> None:
    url = pg_server.new_schema()
    wrong = "not-the-" + PASSWORD
    with pytest.raises(StoreError, match="cannot open store") as caught:
        await Store.open(url.replace(PASSWORD, wrong))
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    async with await Store.open(url) as store:
        assert PASSWORD not in store.path and "***" in store.path


async def test_postgres_nobody_listening_is_a_store_error(pg_server: PgServer) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = pg_server.url().replace(f":{pg_server.port}/", f":{port}/")
    with pytest.raises(StoreError, match="cannot open store"):
        await Store.open(url, deadline=timeout(2))


async def test_postgres_a_silent_server_is_a_store_error_at_the_deadline() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(timeout(10)):  # the store's deadline, not this, must end it
            with pytest.raises(StoreError, match="did not answer in time"):
                await Store.open(f"postgresql://u:p@127.0.0.1:{port}/db", deadline=0.3)
        assert accepted, "the store never connected"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_postgres_a_statement_blocked_past_the_deadline_is_a_store_error(
    pg_server: PgServer,
) -> None:
    url = pg_server.new_schema()
    async with await Store.open(url, deadline=timeout(1.0)) as store:
        _, key_id = await new_key(store)
        holder = await asyncpg.connect(url)
        try:
            # Another session holds the key's row: an offset commit must wait for it (it
            # checks the key under a share lock) and gives up at its deadline.
            tx = holder.transaction()
            await tx.start()
            await holder.execute(f"SELECT 1 FROM api_keys WHERE id = {key_id} FOR UPDATE")
            async with asyncio.timeout(timeout(10)):
                with pytest.raises(StoreError, match=r"committing an offset: .*in time"):
                    await store.commit_offset(key_id, "chats", 1, Offset(5))
            await tx.rollback()
        finally:
            await holder.close()
        # The store is still usable afterwards.
        await store.commit_offset(key_id, "chats", 1, Offset(6))
        assert await store.get_offset(key_id, "chats", 1) == Offset(6)
        assert await store.healthy()


async def test_postgres_a_stopped_server_makes_calls_fail_and_health_false(
    pg_server: PgServer,
) -> None:
    url = pg_server.new_database()
    async with await Store.open(url, deadline=timeout(2)) as store:
        _, key_id = await new_key(store)
        # Every session of this database is ended by the server (as a restart would).
        db = url.rsplit("/", 1)[1]
        pg_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{db}' AND pid <> pg_backend_pid()")
        pg_server.sql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        try:
            with pytest.raises(StoreError):
                await store.get_offset(key_id, "chats", 1)
            assert await store.healthy() is False
        finally:
            pg_server.sql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        # The pool reconnects once the database takes connections again.
        assert await store.healthy() is True


async def test_a_version_1_store_is_upgraded_with_its_data(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:1])
        patched.setattr(schema_module, "SCHEMA_VERSION", 1)
        async with await Store.open(target) as v1:
            key, key_id = await new_key(v1)
            await v1.commit_offset(key_id, "chats", 1, Offset(7))
        assert await stored_version(target) == 1
        assert not await table_exists(target, "leases")
    async with await Store.open(target) as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION
        assert await upgraded.verify_api_key(key) is not None
        assert await upgraded.get_offset(key_id, "chats", 1) == Offset(7)
    assert await table_exists(target, "leases") and await table_exists(target, "daemons")


async def test_commit_offsets_commits_many_groups_at_once_with_commit_offsets_rules(
        store: Store) -> None:
    _, key_id = await new_key(store)
    await store.commit_offset(key_id, "chats", 7, Offset(50))
    await store.commit_offsets(key_id, [
        ("chats", 5, Offset(100)), ("chats", 7, Offset(40)),  # 7: never backwards
        ("users", 5, Offset(9, frozenset({3}))), ("chats", 6, Offset(1))])
    assert await store.get_offset(key_id, "chats", 5) == Offset(100)
    assert await store.get_offset(key_id, "chats", 6) == Offset(1)
    assert await store.get_offset(key_id, "chats", 7) == Offset(50)
    assert await store.get_offset(key_id, "users", 5) == Offset(9, frozenset({3}))
    await store.commit_offsets(key_id, [])
    with pytest.raises(ValueError):
        await store.commit_offsets(key_id, [("chats", 8, Offset(1)), ("nope", 8, Offset(1))])
    assert await store.get_offset(key_id, "chats", 8) is None  # all or nothing
