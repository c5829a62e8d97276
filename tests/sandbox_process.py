"""`tgws sandbox serve` as a subprocess: one shared sandbox Telegram for daemons under test.

    server = SandboxProcess("--hostile", idle_timeout=2.0)   # started, its address read
    ... [sandbox] url = "{server.url}" in each daemon's config ...
    await tgws.sandbox.remote.admin(server.url, "stats")      # duplicates, calls, ...
    server.stop()
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from typing import Any

from tests.support import timeout


class SandboxProcess:
    """`python -m tgws sandbox serve --port 0 ...`, its address read from its first line."""

    def __init__(self, *args: str, idle_timeout: float = 2.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tgws", "sandbox", "serve", "--port", "0",
             "--idle-timeout", str(timeout(idle_timeout)), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self._ready = threading.Event()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                          daemon=True)]
        for reader in self._readers:
            reader.start()
        match = (re.search(r"listening on (tcp://\S+)", "".join(self.out))
                 if self._ready.wait(timeout(30)) else None)
        if match is None:
            self.stop()
            raise AssertionError(f"no address from the sandbox: {self.out} {self.err}")
        self.url = match.group(1)

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if "listening on" in line:
                self._ready.set()

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout(20))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for reader in self._readers:
            reader.join(timeout(5))
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code
