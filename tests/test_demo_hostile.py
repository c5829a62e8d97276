"""`tgws demo --hostile` as a newcomer runs it: the banner says what is hostile, and the demo's
logins (one through USER_MIGRATE, the 2FA one through PHONE_MIGRATE) and chats still work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_process import DemoProcess
from tests.support import timeout

HostileDemo = DemoProcess


@pytest.fixture
def hostile_demo(tmp_path: Path) -> Iterator[HostileDemo]:
    running = HostileDemo(tmp_path, "--hostile", "--seed", "3", "--tick", "0",
                          start_wait=60, client_wait=120)
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
