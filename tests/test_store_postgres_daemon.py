"""The daemon on the PostgreSQL store ([store] url): the CLI, a stream, a kill and a resume.

The store suite (tests/test_store.py) proves the interface on both dialects; this proves the
wiring: `tgws apikey create` and `tgws serve` open the database the config's URL names, the
daemon commits offsets there, and a second daemon on the same database (after the first was
SIGKILLed mid-stream) resumes `latest` with no gap, the way a standby takes over.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.daemon_process import DaemonProcess
from tests.daemon_process import start_daemon as start
from tests.pgserver import PASSWORD
from tests.support import timeout
from tests.test_crash_recovery import assert_no_gap, drain, resume, start_stream


@pytest.fixture
def config_file(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "tgws.toml"
    path.write_text('[server]\nport = 0\nshutdown_timeout = 5.0\n'
                    f'[store]\nurl = "{database}"\n'
                    '[telegram]\nbackend = "sandbox"\n')
    return path


def cli(config_file: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tgws", "apikey", "--config", str(config_file),
                           *args], capture_output=True, text=True, timeout=timeout(30))
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return done.stdout


async def wait_committed(database: str, wait: float = 10.0) -> int:
    """The chats offset the daemon committed, read from PostgreSQL as another client would."""
    deadline = time.monotonic() + timeout(wait)
    conn = await asyncpg.connect(database)
    try:
        while True:
            value = await conn.fetchval("SELECT max(value) FROM offsets WHERE kind = 'chats'")
            if value is not None:
                return int(value)
            assert time.monotonic() < deadline, "the daemon committed no offset"
            await asyncio.sleep(0.02)  # poll interval
    finally:
        await conn.close()


async def test_cli_keys_live_in_postgresql_and_the_url_password_is_never_printed(
        config_file: Path, database: str) -> None:
    created = cli(config_file, "create", "client")
    key = created.strip().splitlines()[-1]
    assert "postgresql://tgws:***@" in created
    assert "client" in cli(config_file, "list")
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT name FROM api_keys") == "client"
        assert key not in repr(await conn.fetch("SELECT * FROM api_keys"))
    finally:
        await conn.close()


async def test_sigkill_mid_stream_then_another_daemon_on_the_database_resumes_without_a_gap(
        tmp_path: Path, config_file: Path, database: str,
        processes: list[DaemonProcess]) -> None:
    first = start(tmp_path, config_file, processes, "first")
    key = cli(config_file, "create", "client").strip().splitlines()[-1]
    ws, seen = await start_stream(first.port, key)
    committed = await wait_committed(database)
    assert committed >= 1
    first.proc.kill()
    first.proc.wait(timeout(10))
    more, _ = await drain(ws)
    second = start(tmp_path, config_file, processes, "second")
    resumed = await resume(second.port, key)
    assert resumed[0] > 1, "confirmed items were committed before the kill"
    assert_no_gap(seen + more, resumed)
    assert PASSWORD not in first.stderr + second.stderr
