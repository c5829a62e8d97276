"""Account keys at rest: sealed sessions, secure delete, private files, the key file and its CLI.

A stored session is a full takeover of a Telegram account, so these tests look at the bytes
on disk (the database and its WAL), not only at what the Store API returns.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from telethon.sessions import StringSession

from tests.support import (
    ask,
    collect_stream,
    expect,
    logged_in,
    make_config,
    open_ws,
    started,
    started_with_key,
)
from tgws import protocol as p
from tgws.cli import main as tgws_main
from tgws.config import Config
from tgws.errors import ConfigError
from tgws.sealing import (
    Keyring,
    SessionUnreadable,
    create_key_file,
    load_keyring,
    sealed_key_id,
)
from tgws.store import Store
from tgws.store.sqlite import SqliteStore

# A plaintext session long enough that any surviving copy is unmistakable.
PLAIN = "1" + base64.urlsafe_b64encode(bytes(range(256))).decode()


def disk_bytes(db: Path) -> bytes:
    """Everything sqlite has on disk for this database: main file, WAL and shared memory."""
    return b"".join(Path(f"{db}{suffix}").read_bytes() for suffix in ("", "-wal", "-shm")
                    if Path(f"{db}{suffix}").exists())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def make_file(path: Path, mode: int) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, mode))
    os.chmod(path, mode)


def raw_sessions(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT api_key_id, session FROM tg_sessions ORDER BY 1"))
    finally:
        conn.close()


def sealed_config(tmp_path: Path, key_file: Path | None) -> Config:
    extra = {"store.secret_key_file": str(key_file)} if key_file is not None else {}
    return make_config(tmp_path, **extra)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "tgws.key"
    path.parent.mkdir()
    create_key_file(str(path))
    return path


# -- sealed sessions, end to end ------------------------------------------------------------


async def test_a_logged_in_session_never_reaches_the_disk_in_plaintext(
        tmp_path: Path, key_file: Path) -> None:
    # The bytes of the sqlite file are what this test reads, whatever TGWS_TEST_STORE says
    # (sealed rows on PostgreSQL are checked in test_store.py).
    config = make_config(tmp_path, **{"store.secret_key_file": str(key_file), "store.url": ""})
    async with started_with_key(config, "sealed") as (daemon, app, key):
        async with await logged_in(daemon, key):
            pass
        record = await app.store.verify_api_key(key)
        assert record is not None
        session = await app.store.load_session(record.id)
        assert session is not None and session.startswith("1")
        db = Path(daemon.config.store.path)
        # While the daemon runs (WAL not yet checkpointed) and after it stopped.
        on_disk = disk_bytes(db)
        assert b"SQLite format 3" in on_disk
    auth_key = StringSession(session).auth_key.key
    for blob in (on_disk, disk_bytes(db)):
        assert session.encode() not in blob
        assert session[1:40].encode() not in blob
        assert auth_key not in blob
    [(_, stored)] = raw_sessions(db)
    assert sealed_key_id(stored) == load_keyring(str(key_file)).primary_id  # type: ignore[union-attr]


async def test_sealed_sessions_are_refused_clearly_without_the_key_and_work_with_it(
        tmp_path: Path, key_file: Path) -> None:
    async with started_with_key(sealed_config(tmp_path, key_file), "sealed") as (daemon, _, key):
        async with await logged_in(daemon, key):
            pass

    for config in (sealed_config(tmp_path, None), _other_key_config(tmp_path)):
        async with started(config) as locked, await open_ws(locked) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   p.SESSION_EXISTS_LOGIN)
            expect(await ask(ws, "users", {"group": ["testgroup00002"]}), "users", "failed",
                   p.SESSION_LOCKED)
            # A clear refusal, not an internal error: the connection stays usable.
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   p.ALREADY_VERIFIED)

    async with started(sealed_config(tmp_path, key_file)) as unlocked:
        async with await logged_in(unlocked, key) as ws:
            await ws.send('{"event": "users", "data": {"group": ["testgroup00002"]}}')
            items, done = await collect_stream(ws, "users")
        assert len(items) == 40 and done["count"] == 40


def _other_key_config(tmp_path: Path) -> Config:
    other = tmp_path / "other.key"
    if not other.exists():
        create_key_file(str(other))
    return sealed_config(tmp_path, other)


async def test_plaintext_sessions_are_sealed_when_a_key_is_configured(
        tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "tgws.db"
    async with await Store.open(db) as store:
        await store.create_api_key("old")
        [record] = await store.list_api_keys()
        await store.save_session(record.id, PLAIN, 7)
    assert PLAIN.encode() in disk_bytes(db)

    keyring = load_keyring(str(key_file))
    with caplog.at_level(logging.INFO, logger="tgws.store"):
        async with await Store.open(db, keyring=keyring) as store:
            assert await store.load_session(record.id) == PLAIN
            # The plaintext is gone from every file sqlite keeps, WAL included.
            assert PLAIN.encode() not in disk_bytes(db)
            assert PLAIN[1:40].encode() not in disk_bytes(db)
    assert "sealed 1 stored Telegram session(s)" in caplog.text
    [(_, stored)] = raw_sessions(db)
    assert stored.startswith("tgws-sealed:v1:")


async def test_a_sealed_session_moved_to_another_api_key_does_not_open(
        tmp_path: Path, key_file: Path) -> None:
    keyring = load_keyring(str(key_file))
    db = tmp_path / "tgws.db"
    async with await Store.open(db, keyring=keyring) as store:
        await store.create_api_key("alice")
        await store.create_api_key("mallory")
        alice, mallory = (r.id for r in await store.list_api_keys())
        await store.save_session(alice, PLAIN, 1)
        await store.save_session(mallory, "1" + "M" * 300, 2)
        # Copy Alice's sealed row over Mallory's: the associated data (the key id) differs.
        assert isinstance(store, SqliteStore)
        await store._conn().execute(
            "UPDATE tg_sessions SET session = (SELECT session FROM tg_sessions "
            "WHERE api_key_id = ?) WHERE api_key_id = ?", (alice, mallory))
        with pytest.raises(SessionUnreadable, match="moved from another API key"):
            await store.load_session(mallory)
        assert await store.load_session(alice) == PLAIN


# -- the key file and rotation --------------------------------------------------------------


def test_secret_key_create_writes_a_private_key_file_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tgws.key"
    assert tgws_main(["secret-key", "create", str(path)]) == 0
    assert mode_of(path) == 0o600
    keyring = load_keyring(str(path))
    assert keyring is not None and len(keyring.keys) == 1
    assert keyring.primary_id in capsys.readouterr().out
    before = path.read_bytes()
    assert tgws_main(["secret-key", "create", str(path)]) == 1
    assert path.read_bytes() == before


def test_a_key_file_others_can_read_or_a_bad_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tgws.key"
    create_key_file(str(path))
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="must be readable by its owner only"):
        load_keyring(str(path))
    os.chmod(path, 0o600)
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match="line 1 is not a 32-byte key"):
        load_keyring(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_keyring(str(tmp_path / "missing.key"))
    assert load_keyring("") is None


async def _save_plain(db: Path, keyring: Keyring) -> int:
    async with await Store.open(db, keyring=keyring) as store:
        await store.create_api_key("bot")
        [record] = await store.list_api_keys()
        await store.save_session(record.id, PLAIN, 1)
        return record.id


async def _load(db: Path, keyring: Keyring, key_id: int) -> str | None:
    async with await Store.open(db, keyring=keyring) as store:
        return await store.load_session(key_id)


def test_rotation_new_key_seals_old_keys_open_reseal_then_prune(
        tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Synchronous: the CLI runs its own event loop, as it does for an operator.
    db = tmp_path / "tgws.db"
    old = load_keyring(str(key_file))
    assert old is not None
    key_id = asyncio.run(_save_plain(db, old))

    assert tgws_main(["secret-key", "rotate", str(key_file)]) == 0
    rotated = load_keyring(str(key_file))
    assert rotated is not None and rotated.keys[1:] == old.keys
    assert mode_of(key_file) == 0o600

    config = tmp_path / "tgws.toml"
    config.write_text(f'[store]\npath = "{db}"\nsecret_key_file = "{key_file}"\n')
    assert tgws_main(["secret-key", "reseal", "--config", str(config)]) == 0
    assert rotated.primary_id in capsys.readouterr().out
    [(_, stored)] = raw_sessions(db)
    assert sealed_key_id(stored) == rotated.primary_id

    assert tgws_main(["secret-key", "prune", str(key_file)]) == 0
    pruned = load_keyring(str(key_file))
    assert pruned is not None and pruned.keys == rotated.keys[:1]
    assert asyncio.run(_load(db, pruned, key_id)) == PLAIN
    # The old key alone no longer opens it.
    with pytest.raises(SessionUnreadable, match="not in \\[store\\] secret_key_file"):
        Keyring(old.keys).open(key_id, stored)


# -- deleted secrets and file modes ---------------------------------------------------------


async def test_a_deleted_session_leaves_no_copy_in_the_files(tmp_path: Path) -> None:
    db = tmp_path / "tgws.db"
    async with await Store.open(db) as store:
        await store.create_api_key("bot")
        [record] = await store.list_api_keys()
        await store.save_session(record.id, PLAIN, 1)
        assert isinstance(store, SqliteStore)
        await store._conn().execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        assert PLAIN.encode() in disk_bytes(db)
        await store.delete_session(record.id)
        # secure_delete zeroes the freed row; the WAL copy is checkpointed away.
        assert PLAIN.encode() not in disk_bytes(db)
        assert PLAIN[1:40].encode() not in disk_bytes(db)
    assert PLAIN[1:40].encode() not in disk_bytes(db)


async def test_loose_database_files_are_made_private_at_start_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "tgws.db"
    async with await Store.open(db) as store:
        await store.create_api_key("bot")
    os.chmod(db, 0o644)
    wal = Path(f"{db}-wal")
    shm = Path(f"{db}-shm")
    make_file(wal, 0o666)
    make_file(shm, 0o644)
    with caplog.at_level(logging.WARNING, logger="tgws.store"):
        async with await Store.open(db):
            assert mode_of(db) == mode_of(wal) == mode_of(shm) == 0o600
    messages = [r.getMessage() for r in caplog.records if r.name == "tgws.store"]
    assert f"store file {db} had mode 0644; made it 0600 (it holds Telegram sessions)" \
        in messages
    assert any(f"{wal} had mode 0666" in m for m in messages)
    assert any(f"{shm} had mode 0644" in m for m in messages)
