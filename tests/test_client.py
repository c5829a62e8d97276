"""`tgws client` end to end: the real command in a subprocess against a real daemon.

The daemon runs in-process on the test's event loop (sandbox Telegram, port 0), so a test
can change the sandbox world between two client runs (world.tick()). The client runs as
`python -m tgws client ...`, exactly as a user runs it: exit codes, stdout and stderr are
what is checked. Where a behaviour needs a server that misbehaves on cue (a connection
dropped mid-stream, a huge stream at full speed), a small scripted websockets server
stands in, and says so.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support import logged_in, make_config, timeout, ws_url
from tgws import protocol as p
from tgws.client.output import OUT_CHUNK, Output
from tgws.client.session import masked
from tgws.config import Config
from tgws.daemon import Daemon

PHONE = "+919876543210"
PHONE_2FA = "+19995550002"


# --- fixtures and helpers ----------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The conftest daemon, with a world that only changes when a test ticks it."""
    return make_config(tmp_path, **{
        "sandbox.tick": 0,
        "limits.failed_login_delay": 0.0,
        "streaming.progress_every": 100,  # so a 250-member group reports progress
    })


@pytest.fixture
def sandbox(daemon: Daemon) -> Daemon:
    return daemon


@pytest.fixture
def key(api_key: str) -> str:
    return api_key


@pytest.fixture
async def session_key(sandbox: Daemon, key: str) -> str:
    """An API key that already has a Telegram session (logged in over a plain websocket)."""
    ws = await logged_in(sandbox, key, PHONE)
    await ws.close()
    return key


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would steer the client elsewhere."""
    drop = {"TGWS_URL", "TGWS_API_KEY", "http_proxy", "https_proxy", "all_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


async def tgws_client(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                      wait: float = 60.0) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tgws", "client", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else clean_env())
    try:
        async with asyncio.timeout(timeout(wait)):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def against(daemon: Daemon, key: str) -> list[str]:
    return ["--url", ws_url(daemon), "--api-key", key]


# --- login -------------------------------------------------------------------------------
async def test_login_with_phone_reads_the_code_from_stdin(sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", "--phone", PHONE, stdin="12345\n")
    assert (run.code, run.stdout) == (0, "logged in successfully\n"), run.stderr
    # The session is kept: the next login says so and asks for nothing.
    again = await tgws_client(*against(sandbox, key), "login", stdin="")
    assert (again.code, again.stdout) == (0, "session already exists, call 'users'.\n")


async def test_login_without_phone_reads_phone_and_code_from_stdin(
        sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", stdin=f"{PHONE}\n12345\n")
    assert (run.code, run.stdout) == (0, "logged in successfully\n"), run.stderr


async def test_login_with_two_step_verification_reads_the_password_next(
        sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", "--phone", PHONE_2FA,
                            stdin="12345\nhunter2\n")
    assert (run.code, run.stdout) == (0, "logged in successfully\n"), run.stderr
    users = await tgws_client(*against(sandbox, key), "users", "testgroup00002")
    assert users.code == 0 and len(users.lines) == 40


async def test_login_with_a_wrong_password_fails(sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", "--phone", PHONE_2FA,
                            stdin="12345\nhunter3\n")
    assert run.code == 1
    assert "invalid password" in run.stderr


async def test_login_with_a_wrong_code_fails(sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", "--phone", PHONE, stdin="54321\n")
    assert run.code == 1
    assert "telegram login failed: invalid code provided" in run.stderr


async def test_login_without_a_code_on_stdin_says_so(sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, key), "login", "--phone", PHONE, stdin="")
    assert run.code == 1
    assert "no code" in run.stderr


async def test_wrong_api_key_is_unauthorized(sandbox: Daemon, key: str) -> None:
    run = await tgws_client(*against(sandbox, "not-a-key"), "users", "testgroup00001")
    assert run.code == 1
    assert "login failed: unauthorized" in run.stderr
    assert run.stdout == ""


async def test_api_key_and_url_come_from_the_environment(
        sandbox: Daemon, session_key: str) -> None:
    env = clean_env(TGWS_URL=ws_url(sandbox), TGWS_API_KEY=session_key)
    run = await tgws_client("users", "testgroup00002", env=env)
    assert run.code == 0 and len(run.lines) == 40


async def test_options_may_follow_the_action(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client("users", "testgroup00002", *against(sandbox, session_key))
    assert run.code == 0 and len(run.lines) == 40


async def test_missing_api_key_is_a_usage_error() -> None:
    run = await tgws_client("users", "testgroup00001")
    assert run.code == 2
    assert "API key" in run.stderr


async def test_logout_ends_the_session(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "logout")
    assert (run.code, run.stdout) == (0, "logged out\n"), run.stderr
    users = await tgws_client(*against(sandbox, session_key), "users", "testgroup00002")
    assert users.code == 1
    assert "tgws client login" in users.stderr  # the hint after the server's refusal


# --- users and chats ---------------------------------------------------------------------
async def test_users_prints_one_json_line_per_member(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "users", "testgroup00001")
    assert run.code == 0, run.stderr
    lines = run.lines
    assert len(lines) == 250
    assert {line["group"] for line in lines} == {"testgroup00001"}
    assert len({line["id"] for line in lines}) == 250
    assert all(next(iter(line)) == "group" for line in lines)  # "group" comes first
    assert "done: 250 users from testgroup00001" in run.stderr


async def test_users_of_two_groups(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "users",
                            "testgroup00001", "testgroup00002")
    assert run.code == 0, run.stderr
    groups = [line["group"] for line in run.lines]
    assert (groups.count("testgroup00001"), groups.count("testgroup00002")) == (250, 40)


async def test_chats_of_a_channel_come_in_ascending_id_order(
        sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "chats", "UnderWorld4444")
    assert run.code == 0, run.stderr
    ids = [line["id"] for line in run.lines]
    assert len(ids) == 300
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert {line["group"] for line in run.lines} == {"UnderWorld4444"}


async def test_users_of_a_channel_fail_with_the_seed_message(
        sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "users", "UnderWorld4444")
    assert run.code == 1
    assert "UnderWorld4444 is a channel name" in run.stderr
    assert run.stdout == ""


async def test_unknown_group_fails(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "users", "nosuchgroup12345")
    assert run.code == 1
    assert "nosuchgroup12345 does not exist" in run.stderr


async def test_latest_returns_only_what_is_new(sandbox: Daemon, session_key: str) -> None:
    args = [*against(sandbox, session_key), "chats", "testgroup00002", "--latest"]
    first = await tgws_client(*args)
    assert first.code == 0, first.stderr
    assert len(first.lines) == 120
    nothing_new = await tgws_client(*args)
    assert (nothing_new.code, nothing_new.stdout) == (0, "")

    sandbox.backend.world.tick()  # one new message in every chat
    sandbox.backend.world.tick()
    new = await tgws_client(*args)
    assert new.code == 0, new.stderr
    assert len(new.lines) == 2
    assert min(line["id"] for line in new.lines) > max(line["id"] for line in first.lines)
    # Without --latest, everything again.
    everything = await tgws_client(*against(sandbox, session_key), "chats", "testgroup00002")
    assert len(everything.lines) == 122


async def test_users_latest_returns_only_new_members(sandbox: Daemon, session_key: str) -> None:
    args = [*against(sandbox, session_key), "users", "testgroup00001", "--latest"]
    first = await tgws_client(*args)
    assert (first.code, len(first.lines)) == (0, 250), first.stderr
    for _ in range(5):  # every 5th tick a member joins testgroup00001
        sandbox.backend.world.tick()
    new = await tgws_client(*args)
    assert new.code == 0, new.stderr
    assert len(new.lines) == 1
    assert new.lines[0]["id"] not in {line["id"] for line in first.lines}


async def test_progress_reports_go_to_stderr(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "users", "testgroup00001",
                            "--progress")
    assert run.code == 0, run.stderr
    assert len(run.lines) == 250
    assert "progress: testgroup00001 " in run.stderr
    assert "/250" in run.stderr


async def test_quiet_prints_nothing_but_the_items(sandbox: Daemon, session_key: str) -> None:
    run = await tgws_client(*against(sandbox, session_key), "-q", "users", "testgroup00002")
    assert (run.code, run.stderr) == (0, "")
    assert len(run.lines) == 40


async def test_transcript_shows_every_frame_with_secrets_masked(
        sandbox: Daemon, key: str) -> None:
    login = await tgws_client(*against(sandbox, key), "--transcript", "login", "--phone",
                              PHONE_2FA, stdin="12345\nhunter2\n")
    assert login.code == 0, login.stderr
    assert key not in login.stderr and "hunter2" not in login.stderr
    sent = [json.loads(line[2:]) for line in login.stderr.splitlines() if line[:2] == "> "]
    got = [json.loads(line[2:]) for line in login.stderr.splitlines() if line[:2] == "< "]
    assert [f["event"] for f in sent] == ["login", *["telegram login"] * 3]
    assert sent[0]["data"]["apiKey"] == key[:8] + "…"
    assert sent[1]["data"] == {"phone": PHONE_2FA}
    assert sent[3]["data"] == {"password": "********"}
    assert [f["data"]["message"] for f in got] == [
        p.SEND_PHONE_NUMBER, p.SEND_CODE, p.SEND_PASSWORD, p.LOGGED_IN]

    chats = await tgws_client(*against(sandbox, key), "--transcript", "chats",
                              "testgroup00002")
    received = [json.loads(line[2:]) for line in chats.stderr.splitlines() if line[:2] == "< "]
    assert received[0]["data"]["message"] == p.SESSION_EXISTS_LOGIN
    assert received[1]["data"]["message"] == p.SENDING_CHATS
    assert len(received) == 2 + 120 + 1
    assert received[-1]["data"]["message"] == p.DONE
    assert received[-1]["data"]["count"] == 120


async def test_a_closed_stdout_ends_the_run_quietly(sandbox: Daemon, session_key: str,
                                                    tmp_path: Path) -> None:
    errors = tmp_path / "stderr"
    url = ws_url(sandbox)
    script = (f'set -o pipefail; "{sys.executable}" -m tgws client --url {url} '
              f'--api-key {session_key} chats testgroup00001 2>"{errors}" | head -n 3')
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, env=clean_env())
    async with asyncio.timeout(timeout(60)):
        out, _ = await proc.communicate()
    assert len(out.decode().splitlines()) == 3
    assert proc.returncode == 0
    assert "Traceback" not in errors.read_text()
    assert "BrokenPipe" not in errors.read_text()


# --- against scripted servers ------------------------------------------------------------
Script = Callable[[ServerConnection], Awaitable[None]]


async def scripted(script: Script) -> tuple[Any, str]:
    server = await serve(script, "127.0.0.1", 0, compression=None, max_size=2**24)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ws/telegram/"


def item(group: str, n: int) -> bytes:
    return orjson.dumps({"event": "chats", "data": {
        "status": "success", "message": {"group": group, "chat": {"id": n, "text": f"m{n}"}}}})


async def test_connection_lost_mid_stream_exits_3() -> None:
    """A stand-in server: it starts a stream, then the TCP connection drops (no close)."""

    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(p.success(p.LOGIN, p.SESSION_EXISTS_LOGIN))
        await ws.recv()
        await ws.send(p.success(p.CHATS, p.SENDING_CHATS))
        for n in (1, 2):
            await ws.send(item("g", n).decode())
        # The pong proves the client received both items (an abort would drop them if they
        # were still in a buffer); then the connection drops without a close frame.
        await (await ws.ping())
        ws.transport.abort()

    server, url = await scripted(script)
    async with server:
        run = await tgws_client("--url", url, "--api-key", "k", "chats", "g")
    assert run.code == 3
    assert "connection lost while waiting for the rest of the chats stream" in run.stderr
    assert [line["id"] for line in run.lines] == [1, 2]  # what arrived is still printed


async def test_server_shutdown_mid_stream_exits_3() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(p.success(p.LOGIN, p.SESSION_EXISTS_LOGIN))
        await ws.recv()
        await ws.send(p.success(p.USERS, p.SENDING_USERS))
        await ws.close(1001, "server shutting down")

    server, url = await scripted(script)
    async with server:
        run = await tgws_client("--url", url, "--api-key", "k", "users", "g")
    assert run.code == 3
    assert "code 1001: server shutting down" in run.stderr


async def test_flood_wait_notices_are_shown() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(p.success(p.LOGIN, p.SESSION_EXISTS_LOGIN))
        await ws.recv()
        await ws.send(p.success(p.CHATS, p.SENDING_CHATS))
        await ws.send(p.reply(p.CHATS, p.PROGRESS, p.FLOOD_WAITING.format(seconds=3), wait=3))
        await ws.send(item("g", 1).decode())
        await ws.send(p.success(p.CHATS, p.DONE, count=1, groups=["g"]))
        await ws.wait_closed()

    server, url = await scripted(script)
    async with server:
        run = await tgws_client("--url", url, "--api-key", "k", "chats", "g")
    assert run.code == 0, run.stderr
    assert "telegram asks to wait 3 s; waiting" in run.stderr
    assert len(run.lines) == 1


async def test_cannot_connect_exits_3() -> None:
    server, url = await scripted(lambda ws: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    run = await tgws_client("--url", url, "--api-key", "k", "users", "g")
    assert run.code == 3
    assert "cannot connect" in run.stderr


@pytest.mark.slow
async def test_a_large_stream_is_written_quickly() -> None:
    """200 000 items from a server that sends as fast as it can; the client keeps up.

    The bound is loose (a noisy CI box); what it catches is a per-line flush or an
    accidental quadratic, which are 10x slower, not a few percent.
    """
    n = 200_000
    frames = [item("g", i) for i in range(n)]

    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(p.success(p.LOGIN, p.SESSION_EXISTS_LOGIN))
        await ws.recv()
        await ws.send(p.success(p.CHATS, p.SENDING_CHATS))
        for frame in frames:  # one websocket message each (an iterable would fragment)
            await ws.send(frame, text=True)
        await ws.send(p.success(p.CHATS, p.DONE, count=n, groups=["g"]))
        await ws.wait_closed()

    server, url = await scripted(script)
    started = time.monotonic()
    async with server:
        run = await tgws_client("--url", url, "--api-key", "k", "chats", "g", wait=120)
    elapsed = time.monotonic() - started
    assert run.code == 0, run.stderr
    assert run.stdout.count("\n") == n
    assert json.loads(run.stdout.splitlines()[-1]) == {"group": "g", "id": n - 1,
                                                       "text": f"m{n - 1}"}
    assert elapsed < timeout(60), elapsed


# --- pieces, without a server ------------------------------------------------------------
def test_output_writes_in_chunks() -> None:
    sink = io.BytesIO()
    out = Output(sink)
    out.write(b"x" * 100 + b"\n")
    assert sink.getvalue() == b""  # buffered
    for _ in range(OUT_CHUNK // 100):
        out.write(b"y" * 99 + b"\n")
    assert len(sink.getvalue()) >= OUT_CHUNK
    out.flush()
    assert sink.getvalue().count(b"\n") == out.lines


def test_transcript_masks_the_api_key_and_password_only() -> None:
    frame: dict[str, Any] = {"event": "login", "data": {"apiKey": "tgws_abcdefghijklmnop"}}
    assert masked(frame) == {"event": "login", "data": {"apiKey": "tgws_abc…"}}
    assert frame["data"]["apiKey"] == "tgws_abcdefghijklmnop"  # the frame sent is untouched
    short: dict[str, Any] = {"event": "login", "data": {"apiKey": "secret"}}
    assert masked(short)["data"] == {"apiKey": "…"}
    password: dict[str, Any] = {"event": "telegram login", "data": {"password": "hunter2"}}
    assert masked(password)["data"] == {"password": "********"}
    code: dict[str, Any] = {"event": "telegram login", "data": {"code": "12345"}}
    assert masked(code) is code


def test_help_documents_the_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    from tgws.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["client", "--help"])
    text = capsys.readouterr().out
    assert '"group" key added' in text
    assert "exit codes" in text
