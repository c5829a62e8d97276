"""`tgws demo` as a newcomer runs it, driven by `tgws client`, both as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo_process import DemoProcess
from tests.support import timeout

TICK = 1.0
Demo = DemoProcess


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path, "--tick", str(TICK), start_wait=30, client_wait=60)
    try:
        yield running
    finally:
        running.close()


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_demo_end_to_end_with_the_client(demo: Demo) -> None:
    login = demo.client("login", "--phone", "+919876543210", stdin="12345\n")
    assert login.returncode == 0, login.stderr
    assert "logged in successfully" in login.stderr + login.stdout

    members = lines(demo.client("users", "testgroup00001"))
    assert len(members) == 250
    assert len({m["id"] for m in members}) == 250

    posts = lines(demo.client("chats", "UnderWorld4444"))
    ids = [p["id"] for p in posts]
    elapsed_ticks = (time.monotonic() - demo.started) / TICK
    # 300 posts at start, one more per tick since: all of them, in order, each once.
    assert ids == list(range(1, len(ids) + 1))
    assert 300 <= len(ids) <= 300 + elapsed_ticks + 1

    refused = demo.client("users", "UnderWorld4444")
    assert refused.returncode != 0
    assert "UnderWorld4444 is a channel name" in refused.stderr

    # The world posts once per tick: fetch `--latest` until at least two new posts came.
    # Only the new posts, each once: every fetch goes on where the one before it stopped,
    # after the last id the full fetch delivered.
    fresh: list[int] = []
    deadline = time.monotonic() + timeout(10 * TICK)
    while len(fresh) < 2:
        assert time.monotonic() < deadline, f"fewer than 2 new posts in {10 * TICK} s: {fresh}"
        got = [p["id"] for p in lines(demo.client("chats", "UnderWorld4444", "--latest"))]
        if not got:
            time.sleep(TICK / 4)  # poll interval, not a wait for the outcome
        fresh += got
    assert fresh == list(range(ids[-1] + 1, ids[-1] + 1 + len(fresh)))


def test_demo_two_step_account_logs_in_through_the_client(demo: Demo) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "tgws", "apikey", "--db", str(demo.db), "create", "twofa"],
        capture_output=True, text=True, env=demo.env, timeout=timeout(30), check=True)
    key = created.stdout.splitlines()[-1]
    result = demo.client("login", "--phone", "+19995550002", key=key, stdin="12345\nhunter2\n")
    assert result.returncode == 0, result.stderr
    assert "logged in successfully" in result.stderr + result.stdout
    members = lines(demo.client("users", "testgroup00002", key=key))
    assert len(members) == 40
