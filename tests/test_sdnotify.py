"""tgws.sdnotify against a real datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tgws.sdnotify import Notifier

# sockaddr_un.sun_path is 108 bytes including the NUL; pytest's tmp_path can be longer
# on some machines (deep $TMPDIR, long test names), so fall back to a short directory.
_SUN_PATH_MAX = 107


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    candidate = tmp_path / "notify.sock"
    if len(os.fsencode(candidate)) <= _SUN_PATH_MAX:
        yield candidate
        return
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as short:
        yield Path(short) / "n.sock"


@pytest.fixture
def receiver(sock_path: Path) -> Iterator[socket.socket]:
    """The 'systemd' end: a bound datagram socket in tmp_path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(sock_path))
        sock.settimeout(2.0)
        yield sock


def recv_fields(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def assert_nothing_queued(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_ready_with_status(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    assert n.enabled
    assert n.ready("serving on :8000") is True
    assert recv_fields(receiver) == ["READY=1", "STATUS=serving on :8000"]


def test_ready_without_status(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    n.ready()
    assert recv_fields(receiver) == ["READY=1"]


def test_status_newline_cannot_inject_assignments(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    n.status("bad\nREADY=1")
    assert recv_fields(receiver) == ["STATUS=bad READY=1"]


def test_stopping(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    n.stopping()
    assert recv_fields(receiver) == ["STOPPING=1"]


def test_watchdog(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    n.watchdog()
    assert recv_fields(receiver) == ["WATCHDOG=1"]


def test_reloading_carries_monotonic_usec(receiver: socket.socket, sock_path: Path) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = recv_fields(receiver)
    assert fields[0] == "RELOADING=1"
    key, _, value = fields[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket_address() -> None:
    name = f"tgws-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        n = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert n.ready("abstract") is True
        assert recv_fields(sock) == ["READY=1", "STATUS=abstract"]


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}], ids=["unset", "empty"])
def test_noop_when_unset(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_environ(env)
    assert not n.enabled
    assert n.ready("x") is False
    assert n.stopping() is False
    assert n.reloading() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert caplog.records == []


def test_from_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier.from_environ()
    assert not n.enabled
    assert n.watchdog_interval == 2.0


def test_missing_socket_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(tmp_path / "gone.sock")})
    assert n.enabled
    with caplog.at_level(logging.WARNING, logger="tgws.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.stopping() is False
    warnings = [r for r in caplog.records if r.name == "tgws.sdnotify"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("usec", "expected"),
    [
        ("30000000", 15.0),
        ("20000", 0.01),
        ("0", None),
        ("-5", None),
        ("", None),
        ("soon", None),
    ],
)
def test_watchdog_interval_parsing(usec: str, expected: float | None) -> None:
    n = Notifier.from_environ({"WATCHDOG_USEC": usec})
    assert n.watchdog_interval == expected


def test_watchdog_interval_unset() -> None:
    assert Notifier.from_environ({}).watchdog_interval is None


def test_watchdog_pid_matching_keeps_it() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(env).watchdog_interval == 15.0


@pytest.mark.parametrize("pid", ["1", "garbage"])
def test_watchdog_pid_mismatch_disables_it(pid: str) -> None:
    # "1" can never be a pytest process's pid outside a container's init; if it somehow
    # is, the comparison is still what we test.
    if pid == str(os.getpid()):
        pytest.skip("running as pid 1")
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}
    assert Notifier.from_environ(env).watchdog_interval is None


async def test_watchdog_loop_sends_pings(sock_path: Path) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(sock_path))
        # The loop under test runs on this event loop, so receive asynchronously.
        sock.setblocking(False)
        n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path), "WATCHDOG_USEC": "20000"})
        assert n.watchdog_interval == 0.01
        task = asyncio.create_task(n.watchdog_loop())
        try:
            for _ in range(3):
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=2.0)
                assert data == b"WATCHDOG=1"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_watchdog_loop_returns_when_not_armed(sock_path: Path) -> None:
    # No WATCHDOG_USEC: nothing to do, so the task finishes instead of idling forever.
    n = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(sock_path)})
    await asyncio.wait_for(n.watchdog_loop(), timeout=1.0)
    # Armed but outside systemd: likewise.
    await asyncio.wait_for(
        Notifier.from_environ({"WATCHDOG_USEC": "20000"}).watchdog_loop(), timeout=1.0
    )
