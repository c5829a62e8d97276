"""[log] format = "json": `tgws serve` through a 2FA login and a stream, every stderr line
parsed as JSON, no secret anywhere in them (issue 14)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.daemon_process import DaemonProcess
from tests.support import ask, collect_stream, expect, timeout
from tgws.logging_setup import JsonFormatter

PHONE_2FA = "+19995550002"
CODE = "12345"
PASSWORD = "hunter2"
WRONG_PASSWORD = "not-the-Pa55word"


def write_config(tmp_path: Path, fmt: str = "json") -> Path:
    config = tmp_path / "tgws.toml"
    config.write_text(f'[server]\nport = 0\n[store]\npath = "tgws.db"\n'
                      f'[log]\nlevel = "DEBUG"\nformat = "{fmt}"\n', encoding="utf-8")
    return config


def create_key(config: Path, name: str) -> str:
    result = subprocess.run([sys.executable, "-m", "tgws", "apikey", "create", name,
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=timeout(60))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


async def drive(port: int, key: str) -> int:
    """Log in with code and password (a wrong password first, which closes that socket),
    then stream a chat; its item count."""
    url = f"ws://127.0.0.1:{port}/ws/telegram/"
    for password in (WRONG_PASSWORD, PASSWORD):
        ws = await connect(url, max_size=2**24)
        expect(await ask(ws, "login", {"apiKey": key}), "login", "success", "send phone number")
        expect(await ask(ws, "telegram login", {"phone": PHONE_2FA}),
               "telegram login", "success", "send code")
        reply = await ask(ws, "telegram login", {"code": CODE})
        assert reply["data"]["message"] == "send password", reply
        reply = await ask(ws, "telegram login", {"password": password})
        assert reply["data"]["status"] == ("failed" if password == WRONG_PASSWORD
                                           else "success"), reply
        if password == WRONG_PASSWORD:
            await ws.close()
    await ws.send('{"event": "chats", "data": {"group": ["testgroup00002"]}}')
    messages, _ = await collect_stream(ws, "chats")
    await ws.close()
    return len(messages)


def test_json_logs_are_one_object_a_line_with_connection_and_key_name_and_no_secret(
        tmp_path: Path) -> None:
    config = write_config(tmp_path)
    key = create_key(config, "archiver")
    daemon = DaemonProcess(tmp_path, "--sandbox", "--config", str(config))
    try:
        port = daemon.wait_ready()
        assert asyncio.run(drive(port, key)) == 120
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
    finally:
        daemon.close()

    entries = [json.loads(line) for line in daemon.stderr_lines]  # every line is JSON
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        assert entry["time"].endswith("Z") and entry["level"] in (
            "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    # Lines logged for the connection name it, and its API key by name once logged in.
    conn_lines = [e for e in entries if "conn" in e]
    assert conn_lines and all(isinstance(e["conn"], int) for e in conn_lines)
    assert any(e.get("api_key") == "archiver" and e["message"].endswith(": chats")
               for e in entries), conn_lines
    assert any(e["message"].startswith("listening on ws://127.0.0.1:") for e in entries)
    assert not any("api_key" in e for e in entries if "conn" not in e)

    text = "".join(daemon.stderr_lines)
    secrets = [key, key.removeprefix("tgws_"), PASSWORD, WRONG_PASSWORD, *sessions(tmp_path)]
    for secret in secrets:
        assert secret not in text
    # The code: in no field but the timestamp (where digits can meet by chance).
    for entry in entries:
        rest = {k: v for k, v in entry.items() if k != "time"}
        assert CODE not in json.dumps(rest), entry


def sessions(tmp_path: Path) -> list[str]:
    """What the store holds of the Telegram session (the secret a log must never show)."""
    with sqlite3.connect(tmp_path / "tgws.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "tg_sessions" in tables
        columns = [row[1] for row in db.execute("PRAGMA table_info(tg_sessions)")]
        values: list[str] = []
        for row in db.execute("SELECT * FROM tg_sessions"):
            for column, value in zip(columns, row, strict=True):
                if column.startswith("session") and value:
                    values.append(value if isinstance(value, str) else value.hex())
    assert values, "no stored session to look for"
    return [v[i:i + 32] for v in values for i in range(0, len(v) - 31, 32)]


def test_text_stays_the_default(tmp_path: Path) -> None:
    config = tmp_path / "tgws.toml"
    config.write_text('[server]\nport = 0\n[store]\npath = "tgws.db"\n', encoding="utf-8")
    daemon = DaemonProcess(tmp_path, "--sandbox", "--config", str(config))
    try:
        daemon.wait_ready()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
    finally:
        daemon.close()
    assert daemon.stderr_lines
    for line in daemon.stderr_lines:
        assert not line.startswith("{")
    assert any(" INFO tgws.server: listening on ws://" in line for line in daemon.stderr_lines)


@pytest.mark.parametrize("message", ["two\nlines", 'quote " and \\ backslash', "naïve ✓"])
def test_a_message_stays_one_line_and_round_trips(message: str) -> None:
    record = logging.LogRecord("tgws.x", logging.WARNING, __file__, 1, "%s", (message,), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    assert parsed["message"] == message and parsed["logger"] == "tgws.x"
    assert parsed["level"] == "WARNING" and "conn" not in parsed


def test_an_exception_travels_inside_the_object() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("tgws", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["message"] == "failed"
    assert "RuntimeError: boom" in parsed["exception"]
