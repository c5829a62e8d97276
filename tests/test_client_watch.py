"""`tgws client watch`: one JSON line per item as it arrives; --ack acks only what is on stdout;
SIGINT/SIGTERM flush, ack and close with 1000. The client runs as a process against a real
daemon (Telethon on the sandbox)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from tests.support import logged_in, timeout, ws_url
from tests.test_watch import PHONE, Room, committed, offset_of
from tgws.daemon import Daemon


class WatchProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, daemon: Daemon, key: str, *args: str) -> WatchProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("TGWS_URL", "TGWS_API_KEY")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgws", "client", "watch", "--url", ws_url(daemon),
            "--api-key", key, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        return cls(proc)

    async def read(self, count: int) -> list[dict[str, Any]]:
        """The next `count` lines, as they arrive (each is flushed by the client at once)."""
        assert self.proc.stdout is not None
        got = []
        async with asyncio.timeout(timeout(20)):
            for _ in range(count):
                got.append(json.loads(await self.proc.stdout.readline()))
        self.lines.extend(got)
        return got

    async def stop(self, sig: signal.Signals) -> tuple[int, list[dict[str, Any]], str]:
        self.proc.send_signal(sig)
        async with asyncio.timeout(timeout(20)):
            out, err = await self.proc.communicate()
        rest = [json.loads(line) for line in out.decode().splitlines()]
        assert self.proc.returncode is not None
        return self.proc.returncode, rest, err.decode()


async def test_client_watch_prints_each_item_as_it_arrives_and_acks_it(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    await ws.close()
    room = Room(daemon, "clientwatch01", messages=2)
    client = await WatchProcess.start(daemon, api_key, "clientwatch01", "--ack", "--edits")
    caught = await client.read(2)
    assert [(c["group"], c["kind"], c["path"], c["id"]) for c in caught] == [
        ("clientwatch01", "message", "catch-up", 1), ("clientwatch01", "message", "catch-up", 2)]
    assert caught[0]["text"] == "old 0"
    await committed(daemon, room, 2)  # acked by the client once the lines were written
    live = room.post("live one")
    line = (await client.read(1))[0]
    assert (line["kind"], line["path"], line["id"], line["text"]) == ("message", "live", live,
                                                                      "live one")
    room.chat.edit(1, "edited")
    edit = (await client.read(1))[0]
    assert (edit["kind"], edit["id"], edit["text"]) == ("edit", 1, "edited")
    await committed(daemon, room, live)
    code, rest, err = await client.stop(signal.SIGTERM)
    assert code == 143, err
    assert rest == []
    assert "watch stopped by a signal" in err


async def test_client_watch_on_sigint_acks_what_it_wrote_and_nothing_else(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    await ws.close()
    room = Room(daemon, "clientwatch02", messages=3)
    client = await WatchProcess.start(daemon, api_key, "clientwatch02", "--ack")
    await client.read(3)
    code, rest, err = await client.stop(signal.SIGINT)
    assert rest == []  # every line was read before the signal
    assert code == 130, err
    # Everything written was acked before the close: the offset covers it, and a new watch
    # starts after it.
    await committed(daemon, room, 3)
    assert await offset_of(daemon, "chats", room.chat.id) == 3
    after = room.post("after the client left")
    client = await WatchProcess.start(daemon, api_key, "clientwatch02", "--ack")
    line = (await client.read(1))[0]
    assert (line["id"], line["path"]) == (after, "catch-up")
    await client.stop(signal.SIGTERM)


# --- examples/watch_client.py ---------------------------------------------------------------
async def test_the_watch_example_prints_catch_up_then_live_and_acks_each_line(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)  # the account exists (the example logs in)
    await ws.close()
    room = Room(daemon, "examplewatch", messages=2)
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "watch_client.py")
    env = {k: v for k, v in os.environ.items() if k not in ("TGWS_URL", "TGWS_API_KEY")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, example, "--url", ws_url(daemon), "--api-key", api_key,
        "--phone", PHONE, "--code", "12345", "examplewatch",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout(20)):
            first = [json.loads(await proc.stdout.readline()) for _ in range(2)]
            assert [(f["id"], f["path"]) for f in first] == [(1, "catch-up"), (2, "catch-up")]
            live = room.post("hello example")
            line = json.loads(await proc.stdout.readline())
        assert (line["id"], line["path"], line["text"]) == (live, "live", "hello example")
        await committed(daemon, room, live)  # acked by the example after printing it
    finally:
        proc.kill()
        await proc.communicate()
