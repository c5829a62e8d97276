"""The daemon as a process: readiness, signals, reload, exit codes."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.daemon_process import DaemonProcess
from tests.support import timeout


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tgws.toml"
    path.write_text(f'[server]\nport = 0\n[store]\npath = "{tmp_path / "t.db"}"\n'
                    '[telegram]\nbackend = "sandbox"\n[log]\nlevel = "INFO"\n')
    return path


@pytest.fixture
def daemon_proc(tmp_path: Path, config_file: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path, "--config", str(config_file))
    try:
        yield proc
    finally:
        proc.close()


def test_ready_is_sent_after_listening_and_stopping_on_sigterm(
        daemon_proc: DaemonProcess) -> None:
    port = daemon_proc.wait_ready()
    # READY=1 came after the socket listens: a client can connect right away.
    with connect(f"ws://127.0.0.1:{port}/ws/telegram/", open_timeout=timeout(10)) as ws:
        ws.send(json.dumps({"event": "login", "data": {"apiKey": "x"}}))
        assert json.loads(ws.recv(timeout=timeout(10)))["data"]["message"] == "unauthorized"
    daemon_proc.signal(signal.SIGTERM)
    assert daemon_proc.wait_exit() == 0
    daemon_proc.wait_notify("STOPPING=1")
    assert "Traceback" not in daemon_proc.stderr


def test_sigterm_closes_open_connections_with_1001(daemon_proc: DaemonProcess) -> None:
    port = daemon_proc.wait_ready()
    with connect(f"ws://127.0.0.1:{port}/ws/telegram/", open_timeout=timeout(10)) as ws:
        daemon_proc.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=timeout(15))
        assert ws.close_code == 1001
    assert daemon_proc.wait_exit() == 0


def test_sighup_changes_the_log_level(daemon_proc: DaemonProcess, config_file: Path) -> None:
    daemon_proc.wait_ready()
    config_file.write_text(config_file.read_text().replace('level = "INFO"',
                                                           'level = "DEBUG"'))
    daemon_proc.signal(signal.SIGHUP)
    daemon_proc.wait_notify("RELOADING=1")
    daemon_proc.wait_log("reloaded config: applied log.level")
    assert daemon_proc.proc.poll() is None
    daemon_proc.signal(signal.SIGTERM)
    assert daemon_proc.wait_exit() == 0


def test_sighup_with_a_broken_config_keeps_running(
        daemon_proc: DaemonProcess, config_file: Path) -> None:
    daemon_proc.wait_ready()
    config_file.write_text("[server]\nport = 'eighty'\n")
    daemon_proc.signal(signal.SIGHUP)
    daemon_proc.wait_log("reload refused, keeping the running config")
    assert daemon_proc.proc.poll() is None
    daemon_proc.signal(signal.SIGINT)
    assert daemon_proc.wait_exit() == 0


def test_sighup_names_what_needs_a_restart(
        daemon_proc: DaemonProcess, config_file: Path) -> None:
    daemon_proc.wait_ready()
    config_file.write_text(config_file.read_text().replace("[server]\n",
                                                           "[server]\nmax_connections = 7\n"))
    daemon_proc.signal(signal.SIGHUP)
    daemon_proc.wait_log("needs a restart: server.max_connections")
    daemon_proc.signal(signal.SIGTERM)
    assert daemon_proc.wait_exit() == 0
