"""`tgws client`: the progress bar on a terminal (a pty), silence elsewhere, the close code
after a failed reply, and `login --qr` drawing (and redrawing) the QR code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support import eventually, logged_in, make_config, timeout, ws_url
from tests.test_client import clean_env, tgws_client
from tgws.client.output import bar_line
from tgws.config import Config
from tgws.daemon import Daemon

PHONE = "+919876543210"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, **{"streaming.progress_every": 100,
                                    "sandbox.qr_token_ttl": 0.5})


@pytest.fixture
async def session_key(daemon: Daemon, api_key: str) -> str:
    ws = await logged_in(daemon, api_key, PHONE)
    await ws.close()
    return api_key


def against(daemon: Daemon, key: str) -> list[str]:
    return ["--url", ws_url(daemon), "--api-key", key]


class PtyRun:
    """The client with stderr on a pseudo-terminal (as in a terminal) and stdout on a pipe."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.terminal = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every holder of the slave side closed it
                return
            if not chunk:
                return
            self.terminal += chunk

    async def run(self, *args: str, on_terminal: Any = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgws", "client", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=self.slave,
            env=clean_env(COLUMNS="200", LINES="50"))
        os.close(self.slave)
        self._reader.start()
        try:
            async with asyncio.timeout(timeout(60)):
                if on_terminal is not None:
                    await on_terminal(self)
                out, _ = await proc.communicate()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self._reader.join(timeout(10))
            os.close(self.master)
        assert proc.returncode is not None
        return proc.returncode, out.decode()


def test_the_bar_line_shows_count_rate_and_eta_once_a_total_is_known() -> None:
    assert bar_line("users", 50, "g", (0, None), 10.0) == "users g: 50 received, 5/s"
    line = bar_line("chats", 500, "g", (250, 1000), 10.0)
    # 250 of 1000 after 10 s: 25/s of the walk, 750 left: 30 s.
    assert line == "chats g [######------------------]  25% 250/1,000, 50/s, ETA 0:30"
    assert bar_line("chats", 1000, "g", (1000, 1000), 4.0).endswith("100% 1,000/1,000, "
                                                                     "250/s, ETA 0:00")
    assert "ETA 1:01:40" in bar_line("chats", 1, "g", (1, 3701), 1.0)


async def test_a_terminal_gets_a_real_progress_bar(daemon: Daemon, session_key: str) -> None:
    pty = PtyRun()
    code, out = await pty.run(*against(daemon, session_key), "chats", "testgroup00001")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1000 and all(line.startswith("{") for line in lines)
    screen = pty.terminal.decode()
    assert "\r\x1b[K" in screen  # redrawn in place
    final = [row for row in re.split(r"\r\n|\r\x1b\[K|\n", screen) if row.startswith("chats ")]
    assert final, screen
    assert re.fullmatch(r"chats testgroup00001 \[#{24}\] 100% 1,000/1,000, [\d,]+/s, ETA 0:00",
                        final[-1]), final[-1]
    assert "done: 1000 messages from testgroup00001" in screen


async def test_no_bar_when_stderr_is_not_a_terminal(daemon: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(daemon, session_key), "chats", "testgroup00001")
    assert run.code == 0 and len(run.lines) == 1000
    assert "\r" not in run.stderr and "\x1b" not in run.stderr
    assert run.stderr == "done: 1000 messages from testgroup00001\n"


async def test_a_failed_reply_closes_with_1000_not_1011(
        daemon: Daemon, session_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tgws.server")
    run = await tgws_client(*against(daemon, session_key), "chats", "nosuchgroup404")
    assert run.code == 1 and "chats failed: invalid request" in run.stderr
    closes = [r.getMessage() for r in caplog.records if "closed (code" in r.getMessage()]
    assert closes and all("closed (code 1000" in c for c in closes), closes


async def test_login_qr_draws_each_new_code_and_logs_in_once_scanned(
        daemon: Daemon, api_key: str) -> None:
    world = daemon.backend.world
    owner = world.by_phone("+15550000001")

    async def scan_the_second_code(pty: PtyRun) -> None:
        # Telegram renews the code every 0.5 s here: scan the second one.
        await eventually(lambda: world.login.qr.exported >= 2, "a second QR code")
        world.login.qr.accept(world.login.qr.latest_url(), owner)

    pty = PtyRun()
    code, out = await pty.run(*against(daemon, api_key), "login", "--qr",
                              on_terminal=scan_the_second_code)
    assert (code, out) == (0, "logged in successfully\n")
    screen = pty.terminal.decode()
    assert screen.count("tg://login?token=") >= 2
    assert "▀" in screen or "▄" in screen  # the code, in half blocks
    assert re.search(r"\x1b\[\d+F\x1b\[J", screen)  # the second code replaced the first


async def test_login_qr_then_the_password_of_a_2fa_account(tmp_path: Path) -> None:
    # The demo's own scan ([sandbox] qr_accept_after), by the 2FA account's app.
    daemon = Daemon(make_config(tmp_path, **{"sandbox.qr_accept_after": 0.05,
                                             "sandbox.qr_accept_as": "+19995550002"}))
    await daemon.start()
    try:
        assert daemon.app is not None
        key = await daemon.app.store.create_api_key("qr2fa")
        run = await tgws_client(*against(daemon, key), "login", "--qr", stdin="hunter2\n")
        assert (run.code, run.stdout) == (0, "logged in successfully\n"), run.stderr
        assert "tg://login?token=" in run.stderr and "\x1b[" not in run.stderr  # not a tty
        users = await tgws_client(*against(daemon, key), "users", "testgroup00002")
        assert users.code == 0 and len(users.lines) == 40
    finally:
        await daemon.stop()
