"""`tgws client watch`: one JSON line per item as it arrives; --ack acks only what is on stdout;
SIGINT/SIGTERM flush, ack and close with 1000. The client runs as a process against a real
daemon (Telethon on the sandbox)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

import pytest

from tests.support import logged_in, timeout, ws_url
from tests.test_watch import PHONE, Room, committed, offset_of
from tgws.daemon import Daemon


class WatchProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, daemon: Daemon, key: str, *args: str,
                    stdout: int = asyncio.subprocess.PIPE) -> WatchProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("TGWS_URL", "TGWS_API_KEY")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgws", "client", "watch", "--url", ws_url(daemon),
            "--api-key", key, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout, stderr=asyncio.subprocess.PIPE, env=env)
        return cls(proc)

    def blocked_writing_stdout(self) -> bool:
        """The client sits in write(1, ...): its stdout is full. (Linux: /proc/PID/syscall
        is the syscall number and its arguments; 1 is write, the first argument the fd.)"""
        with open(f"/proc/{self.proc.pid}/syscall") as f:
            return f.read().split()[:2] == ["1", "0x1"]

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



async def client_closed_normally(caplog: pytest.LogCaptureFixture) -> None:
    """The daemon received the client's close frame, code 1000 with the client's reason (a
    client that died of the signal, or dropped the socket, sends none). Read from the frame
    log of the daemon's websockets (the client is another process; the test's own login
    connection closes without that reason). The daemon's "closed (code …)" line is not used:
    it is written before the TCP close completes and then says "code None"."""
    async with asyncio.timeout(timeout(10)):
        while True:
            frames = [r.getMessage() for r in caplog.records
                      if r.name == "tgws.websockets" and r.getMessage().startswith("< CLOSE")]
            if any("client stopped" in f for f in frames):
                break
            await asyncio.sleep(0.01)  # poll interval: the frame is logged as it is read
    stopped = [f for f in frames if "client stopped" in f]
    assert len(stopped) == 1 and stopped[0].startswith("< CLOSE 1000 "), frames


class SmallStdout:
    """The client's stdout as a unix socket with small buffers that the test reads only when
    it chooses. MSG_PEEK shows what the client has written so far without taking it, so a
    client held back by a full stdout stays held back while the test looks."""

    SIZE = 4096  # bytes asked for each buffer (the kernel doubles it): a few item lines

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SIZE)
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.SIZE)
        self.ours.setblocking(False)
        self.taken = b""  # what the test has read

    def __enter__(self) -> SmallStdout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ours.close()
        self.theirs.close()

    def written(self) -> list[dict[str, Any]]:
        """Every complete line the client wrote: read by the test, or waiting in the socket."""
        try:
            waiting = self.ours.recv(1 << 20, socket.MSG_PEEK)
        except BlockingIOError:
            waiting = b""
        data = self.taken + waiting
        return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]

    async def take(self, lines: int | None = None) -> list[dict[str, Any]]:
        """Read until `lines` complete lines were taken in all (None: until end of file)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout(20)):
            while lines is None or self.taken.count(b"\n") < lines:
                chunk = await loop.sock_recv(self.ours, 1 << 16)
                if not chunk:
                    break
                self.taken += chunk
        return [json.loads(line) for line in self.taken.splitlines()]


async def room_and_client(daemon: Daemon, key: str, name: str, messages: int, *args: str,
                          stdout: int = asyncio.subprocess.PIPE) -> tuple[Room, WatchProcess]:
    """Room `name` with `messages` old ones, and `tgws client watch name *args` started on it
    (the account is logged in first: the client has no login of its own)."""
    ws = await logged_in(daemon, key, PHONE)
    await ws.close()
    room = Room(daemon, name, messages=messages)
    return room, await WatchProcess.start(daemon, key, name, *args, stdout=stdout)


async def test_client_watch_prints_each_item_as_it_arrives_and_acks_it(
        daemon: Daemon, api_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tgws.websockets")
    room, client = await room_and_client(daemon, api_key, "clientwatch01", 2, "--ack", "--edits")
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
    await client_closed_normally(caplog)


async def test_client_watch_on_sigint_acks_what_it_wrote_and_nothing_else(
        daemon: Daemon, api_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tgws.websockets")
    room, client = await room_and_client(daemon, api_key, "clientwatch02", 3, "--ack")
    await client.read(3)
    code, rest, err = await client.stop(signal.SIGINT)
    assert rest == []  # every line was read before the signal
    assert code == 130, err
    await client_closed_normally(caplog)
    # Everything written was acked before the close: the offset covers it, and a new watch
    # starts after it.
    await committed(daemon, room, 3)
    assert await offset_of(daemon, "chats", room.chat.id) == 3
    after = room.post("after the client left")
    client = await WatchProcess.start(daemon, api_key, "clientwatch02", "--ack")
    line = (await client.read(1))[0]
    assert (line["id"], line["path"]) == (after, "catch-up")
    await client.stop(signal.SIGTERM)



async def test_client_watch_with_ack_acks_only_lines_its_stdout_took(
        daemon: Daemon, api_key: str, caplog: pytest.LogCaptureFixture) -> None:
    """A reader that stops reading holds the client in write(): what it has not written
    is not acked, however many items the daemon has sent; once the reader reads again and
    SIGTERM arrives, the client writes, acks what it wrote and closes 1000."""
    caplog.set_level(logging.DEBUG, logger="tgws.websockets")
    with SmallStdout() as stdout:
        room, client = await room_and_client(daemon, api_key, "clientwatch03", 2, "--ack",
                                             stdout=stdout.theirs.fileno())
        stdout.theirs.close()  # the client's copy is its stdout
        await held_back_then_released(daemon, room, client, stdout, caplog)


async def held_back_then_released(daemon: Daemon, room: Room, client: WatchProcess,
                                  stdout: SmallStdout, caplog: pytest.LogCaptureFixture) -> None:
    assert [line["id"] for line in await stdout.take(2)] == [1, 2]
    await committed(daemon, room, 2)
    # The test stops reading. Each line is over 1 KiB: a few fill the socket.
    posted = [room.post(f"held {i} " + "x" * 1200) for i in range(12)]
    async with asyncio.timeout(timeout(20)):
        while True:
            if client.blocked_writing_stdout():
                last = stdout.written()[-1]["id"]
                await committed(daemon, room, last)  # everything it wrote is acked...
                # ...and it is still in the same write (not caught in a write that was
                # about to succeed): it is held back.
                if client.blocked_writing_stdout() and stdout.written()[-1]["id"] == last:
                    break
            await asyncio.sleep(0.01)  # poll interval
    assert last < posted[-1]  # the client is held back with items to write
    # ...and nothing past it while it stays held back: an ack sent before its line was
    # written (the line it is blocked on) would show up here as `last + 1` at once.
    for _ in range(30):
        assert await offset_of(daemon, "chats", room.chat.id) == last
        await asyncio.sleep(0.01)  # observation window for an absence, not a wait
    assert client.blocked_writing_stdout() and stdout.written()[-1]["id"] == last
    client.proc.send_signal(signal.SIGTERM)  # held in write(): it cannot act on it yet
    lines = await stdout.take()  # read again, to the end of its output
    async with asyncio.timeout(timeout(20)):
        _, err = await client.proc.communicate()
    assert client.proc.returncode == 143, err.decode()
    assert [line["id"] for line in lines] == [1, 2, *posted]  # each once, in order
    await client_closed_normally(caplog)
    # What was acked is written; what was written after the cancel is not acked (the
    # next watch sends it again), so the offset lies between the two.
    final = await offset_of(daemon, "chats", room.chat.id)
    assert final is not None and last < final <= posted[-1]


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
