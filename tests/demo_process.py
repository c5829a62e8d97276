"""`tgws demo` as a subprocess, read the way a newcomer reads it (tests/test_demo*.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support import timeout


class DemoProcess:
    """`tgws demo <args>` on port 0; its banner's url and api key; `tgws client` against it."""

    def __init__(self, tmp: Path, *args: str, start_wait: float, client_wait: float) -> None:
        self.db = tmp / "demo.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.client_wait = client_wait
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tgws", "demo", *args, "--port", "0", "--db", str(self.db)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env)
        self.banner: list[str] = []
        self.started = time.monotonic()
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.banner.append(line)
                if line.startswith("Ctrl-C stops"):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout(start_wait)):
            self.close()
            raise AssertionError(f"no demo banner: {self.banner}")
        self.text = "".join(self.banner)
        url = re.search(r"websocket\s+(ws://\S+)", self.text)
        key = re.search(r"api key\s+(\S+)", self.text)
        assert url and key, self.text
        self.url, self.key = url.group(1), key.group(1)

    def client(self, *args: str, key: str | None = None,
               stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tgws", "client", "--url", self.url,
             "--api-key", key or self.key, *args],
            input=stdin, capture_output=True, text=True, env=self.env,
            timeout=timeout(self.client_wait))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout(15))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
