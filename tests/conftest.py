"""Shared fixtures: a real tgws daemon on 127.0.0.1 (port 0). Helpers are in tests/support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_process import DaemonProcess
from tests.pgserver import PgServer, shared_server
from tests.support import ThreadedDaemon, make_config, started
from tgws.config import Config
from tgws.daemon import Daemon
from tgws.store import Store


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def sandbox_wire(request: pytest.FixtureRequest) -> bool:
    """[sandbox] wire, both ways, for modules that ask for it.

    wire = true makes the sandbox encode every answer to TL bytes and Telethon parse them, as
    it parses Telegram's; false hands Telethon ready-made objects (faster).
    """
    wire: bool = request.param
    return wire


@pytest.fixture(params=["calm", "hostile"])
def sandbox_world(request: pytest.FixtureRequest) -> str:
    """The sandbox world, both ways, for modules that ask for it (support.world_settings):
    the calm demo world, or `[sandbox] hostile = true` with 1 % of calls meeting a 5xx, a
    timeout, a flood wait or a dropped connection (support.HOSTILE_E2E_FAULT_RATE says why
    not the default 5 %; docs/sandbox.md)."""
    world: str = request.param
    return world


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def daemon(config: Config) -> AsyncIterator[Daemon]:
    async with started(config) as d:
        yield d


@pytest.fixture
async def api_key(daemon: Daemon) -> str:
    assert daemon.app is not None
    return await daemon.app.store.create_api_key("test")


@pytest.fixture(scope="module")
def threaded_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedDaemon]:
    # Random frames include failed logins: no slow-down, no blocking, for this fixture.
    config = make_config(tmp_path_factory.mktemp("threaded"), **{
        "limits.failed_login_delay": 0.0,
        "limits.failed_logins_per_connection": 10**6,
        "limits.failed_logins_per_peer": 10**6,
    })
    with ThreadedDaemon(config) as td:
        yield td


@pytest.fixture
def processes() -> Iterator[list[DaemonProcess]]:
    """The `tgws serve` processes a test starts (tests/daemon_process.py): each is closed
    (killed if need be) after the test, whatever happens."""
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session (tests/pgserver.py); each test takes a fresh
    schema with pg_server.new_schema() (or a database, new_database()). If it cannot start,
    every test that needs it errors with the reason: the PostgreSQL store is part of what the
    suite proves, never skipped."""
    yield shared_server()  # stopped when the test process exits


# --- one PostgreSQL database, store and key; a file may define its own ---------------------
@pytest.fixture
def database(pg_server: PgServer) -> str:
    """A fresh schema on the shared PostgreSQL server: its connection URL."""
    return pg_server.new_schema()


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    """A PostgreSQL Store on `database` (test_store.py's own `store` covers both dialects)."""
    async with await Store.open(database) as opened:
        yield opened


@pytest.fixture
async def key_id(store: Store) -> int:
    """The id of a new API key in `store`."""
    key = await store.create_api_key("owner")
    record = await store.verify_api_key(key)
    assert record is not None
    return record.id


Start = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Start]:
    """`await start_daemon(**overrides)`: a daemon on make_config(tmp_path, **overrides),
    started; every one started is stopped at the end of the test."""
    daemons: list[Daemon] = []

    async def start(**overrides: Any) -> Daemon:
        daemon = Daemon(make_config(tmp_path, **overrides))
        await daemon.start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop()
