"""Run `tgws serve` as a subprocess with a fake NOTIFY_SOCKET the test owns."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import timeout

_PORT = re.compile(r"listening on port (\d+)")


class DaemonProcess:
    """`python -m tgws serve …` with stderr collected and sd_notify messages received."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.tmp = tmp
        self.notify_path = str(tmp / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        environ = {**os.environ, "NOTIFY_SOCKET": self.notify_path,
                   "PYTHONUNBUFFERED": "1"}
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tgws", "serve", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ, text=True,
            preexec_fn=preexec_fn)  # e.g. lower RLIMIT_NOFILE (tests/test_abuse_soak.py)
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.port = 0

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_notify(self, wanted: str, wait: float = 20.0) -> str:
        """The first sd_notify datagram containing `wanted` (they are kept in .messages)."""
        deadline = time.monotonic() + timeout(wait)
        for message in self.messages:
            if wanted in message:
                return message
        while time.monotonic() < deadline:
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    break
                continue
            self.messages.append(data)
            if wanted in data:
                return data
        raise AssertionError(f"no {wanted!r} from the daemon; stderr:\n{self.stderr}")

    def wait_ready(self) -> int:
        ready = self.wait_notify("READY=1")
        match = _PORT.search(ready)
        assert match, ready
        self.port = int(match.group(1))
        return self.port

    def wait_log(self, text: str, wait: float = 10.0) -> None:
        deadline = time.monotonic() + timeout(wait)
        while time.monotonic() < deadline:
            if text in self.stderr:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged; stderr:\n{self.stderr}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, wait: float = 20.0) -> int:
        code = self.proc.wait(timeout(wait))
        self._reader.join(timeout(5))
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self._reader.join(timeout(5))
            self.proc.stderr.close()
        self.notify.close()


def start_daemon(tmp_path: Path, config_file: Path, started: list[DaemonProcess],
                 name: str) -> DaemonProcess:
    """`tgws serve --config config_file` in its own folder tmp_path/name, once ready.

    It joins `started`, which the test's fixture closes (kills) whatever happens."""
    (tmp_path / name).mkdir()
    proc = DaemonProcess(tmp_path / name, "--config", str(config_file))
    started.append(proc)
    proc.wait_ready()
    return proc


def create_key(config_file: Path, label: str) -> str:
    """`tgws apikey create` from another process while a daemon runs (WAL makes it safe)."""
    out = subprocess.run([sys.executable, "-m", "tgws", "apikey", "--config", str(config_file),
                          "create", label], capture_output=True, text=True, check=True,
                         timeout=timeout(30))
    return out.stdout.strip().splitlines()[-1]
