"""`tgws demo --hostile` as a newcomer runs it: the banner says what is hostile, and the demo's
logins (one through USER_MIGRATE, the 2FA one through PHONE_MIGRATE) and chats still work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import timeout


class HostileDemo:
    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "demo.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tgws", "demo", "--hostile", "--seed", "3", "--port", "0",
             "--tick", "0", "--db", str(self.db)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env)
        self.banner: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.banner.append(line)
                if line.startswith("Ctrl-C stops"):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout(60)):
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
            input=stdin, capture_output=True, text=True, env=self.env, timeout=timeout(120))

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


@pytest.fixture
def hostile_demo(tmp_path: Path) -> Iterator[HostileDemo]:
    running = HostileDemo(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_hostile_demo_banner_logins_and_streams(hostile_demo: HostileDemo) -> None:
    text = hostile_demo.text
    assert text.startswith("tgws demo --hostile")
    for expected in ("holeyhistory1", "churnygroup1", "biggroup12k", "upgradedgroup1",
                     "5% of calls (seed 3)", "+19995550002 on DC 4", "+919876543210 on DC 5",
                     "testgroup00001 (250 members, 1000 messages)"):
        assert expected in text, expected

    login = hostile_demo.client("login", "--phone", "+919876543210", stdin="12345\n")
    assert login.returncode == 0, login.stderr
    assert "logged in successfully" in login.stderr + login.stdout

    members = hostile_demo.client("users", "testgroup00002")
    assert members.returncode == 0, members.stderr
    assert len({json.loads(line)["id"] for line in members.stdout.splitlines()}) == 40

    created = subprocess.run(
        [sys.executable, "-m", "tgws", "apikey", "--db", str(hostile_demo.db), "create",
         "twofa"], capture_output=True, text=True, env=hostile_demo.env,
        timeout=timeout(30), check=True)
    twofa = hostile_demo.client("login", "--phone", "+19995550002",
                                key=created.stdout.splitlines()[-1], stdin="12345\nhunter2\n")
    assert twofa.returncode == 0, twofa.stderr
    assert "logged in successfully" in twofa.stderr + twofa.stdout
