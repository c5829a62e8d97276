"""The daemon side of bench/stream.py: a real tgws Daemon plus a bare Telethon client, one process.

Run by bench/stream.py, never by hand. It starts the daemon in-process on the sandbox Telegram in
wire mode (every answer serialized to TL bytes and parsed back by Telethon), adds the benchmark
groups to the daemon's own world, prints one JSON line {"port", "path", "key", ...} and then
answers one JSON command per stdin line with one JSON line on stdout.

Why the bare Telethon baseline lives here too: it must run in the daemon's process, on the
daemon's event loop, against the same world, the same account and the same client options, so
that "daemon minus bare" is tgws's own cost and nothing else. The websocket client is another
process (bench/stream_client.py): its CPU never lands in this process's getrusage.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import io
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from command_loop import Command, serve_commands
from telethon.extensions import BinaryReader
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tgws import serialize
from tgws.config import load
from tgws.daemon import Daemon, tune_gc
from tgws.joins import JoinMark
from tgws.sandbox import SandboxChat, SandboxUser, World, make_sandbox_client
from tgws.sandbox.call import Call
from tgws.sandbox.rpc import answer
from tgws.sandbox.wire import encode
from tgws.store import Offset
from tgws.telegram_clients import client_options

BENCH_GROUP = "benchgroup00001"  # messages and members rounds
BIG_GROUP = "benchbig00001"  # the million-message RSS run
READER_PHONE = "+15559990001"
# A page of a real group names a few dozen authors, not one per message; the users vector
# is parsed per page, so the author count changes Telethon's per-message cost noticeably.
AUTHORS = 30
YARDSTICK_REPEATS = 15


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes (no psutil: /proc is enough)."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) * 1024
    return out


# pstats restriction: a regex on "path:line(function)".
OWN_CODE = r"/tgws/(?!sandbox/)|/websockets/|/aiosqlite/"
_PREFIXES = sorted({str(Path(p).resolve()) + "/" for p in sys.path if p}
                   | {str(Path(__file__).resolve().parent.parent) + "/"}, key=len, reverse=True)


def _short_paths(text: str) -> str:
    """Profile lines with paths relative to the repo or site-packages."""
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    return text


def parse_setting(item: str) -> tuple[str, Any]:
    """'streaming.batch_size=500' -> ('streaming.batch_size', 500): JSON values, else text."""
    key, sep, raw = item.partition("=")
    if not sep:
        raise SystemExit(f"--set wants KEY=VALUE, not {item!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def raise_nofile() -> None:
    """Accepting 1,000 websockets needs more descriptors than a default soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))



def _sys_time() -> float:
    """The process's CPU seconds in the kernel (socket writes, wake-ups): part of its CPU."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime

class Host:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.TemporaryDirectory(prefix="tgws-bench-")
        cfg = load(None, environ={}, overrides={
            "server.host": "127.0.0.1",
            "server.port": 0,
            "server.max_connections": args.max_connections,
            # The idle phase holds its connections without logging in: let the edge
            # (issue 11: not-logged-in pools and deadline) keep them all for the reading.
            "server.max_unverified": args.max_connections,
            "server.max_unverified_per_address": args.max_connections,
            "server.login_timeout": 300.0,
            "store.path": str(Path(self.tmp.name) / "bench.db"),
            "telegram.backend": "sandbox",
            "sandbox.wire": True,
            "log.level": "WARNING",
            **dict(parse_setting(item) for item in args.set),
        })
        self.config = cfg
        self.daemon = Daemon(cfg)
        self.client: Any = None
        self.peers: dict[str, Any] = {}
        self.page: bytes = b""
        self.profiler: cProfile.Profile | None = None
        self.sampler: asyncio.Task[None] | None = None
        self.sampled_max = 0
        self.key_id: int | None = None

    @property
    def world(self) -> World:
        world: World = self.daemon.backend.world
        return world

    def _build_world(self) -> SandboxUser:
        """The bench groups go into the daemon's demo world: the sandbox looks the world up
        at request time, so groups added after start() are visible to the daemon's client."""
        world = self.world
        reader = world.user("bench_reader", first_name="Bench", phone=READER_PHONE)
        if self.args.messages or self.args.members:
            group = world.megagroup(BENCH_GROUP, title="Bench group")
            users = group.populate(max(self.args.members, AUTHORS))
            group.history(self.args.messages, authors=users[:AUTHORS])
        if self.args.big:
            big = world.megagroup(BIG_GROUP, title="Big bench group")
            big.history(self.args.big, authors=big.populate(AUTHORS))
        return reader

    def _yardstick_page(self) -> bytes:
        """One 100-message ChannelMessages page as the sandbox serializes it (perf-physics §0:
        the yardstick is `tgread_object` of one page, which tracks the machine's phase)."""
        world = self.world
        chat = world.resolve(BENCH_GROUP) or world.resolve("testgroup00001")
        assert isinstance(chat, SandboxChat)
        reader = world.by_phone(READER_PHONE)
        assert reader is not None
        request = functions.messages.GetHistoryRequest(
            peer=types.InputPeerChannel(chat.id, chat.access_hash), offset_id=0,
            offset_date=None, add_offset=0, limit=100, max_id=0, min_id=0, hash=0)
        call = Call(world, world.issue_key(reader), reader, True)
        return encode(answer(call, request))

    async def close(self) -> None:
        """The bare client, the daemon, the temporary folder (every host's `finally`)."""
        await self.client.disconnect()
        await self.daemon.stop()
        self.tmp.cleanup()

    async def start(self) -> dict[str, Any]:
        raise_nofile()
        await self.daemon.start()
        reader = self._build_world()
        app = self.daemon.app
        assert app is not None
        # One name per host process: phases share one database when --set store.url names a
        # PostgreSQL server, and a name can be created only once.
        key = await app.store.create_api_key(f"bench-{os.getpid()}")
        record = await app.store.verify_api_key(key)
        self.key_id = record.id if record is not None else None
        # The bare baseline client: same factory options as the daemon's
        # (telegram_clients.client_options), same account, same world, same wire mode.
        # Its session is Telethon's own: it keeps every listed user and chat in its entity
        # cache, which the daemon's clients skip (telegram_clients.skip_listed_entities).
        self.client = make_sandbox_client(
            self.world, StringSession(self.world.session_string(reader)),
            **client_options(self.config.telegram))
        await self.client.connect()
        for name in (BENCH_GROUP, BIG_GROUP):
            if self.world.resolve(name) is not None:
                self.peers[name] = await self.client.get_input_entity(name)
        self.page = self._yardstick_page()
        # The sandbox world is Telegram's state, not the daemon's: in production it lives on
        # Telegram's servers. Freezing it keeps its objects out of every GC pass, so the
        # collector scans what a real daemon would hold (perf-physics §7 froze its fixtures
        # for the same reason). Whatever is allocated from here on is collected normally.
        # tune_gc is what `tgws serve` does after start-up (a raised young-generation GC
        # threshold, then gc.freeze()), so the benchmark measures the daemon as deployed.
        tune_gc(self.config.server.gc_threshold)
        return {"port": self.daemon.port, "path": self.config.server.path, "key": key,
                "phone": READER_PHONE, "pid": os.getpid(), "page_bytes": len(self.page)}

    # --- commands -----------------------------------------------------------------------

    async def yardstick(self, cmd: dict[str, Any]) -> dict[str, Any]:
        times = []
        for _ in range(YARDSTICK_REPEATS):
            started = time.perf_counter()
            BinaryReader(self.page).tgread_object()
            times.append(time.perf_counter() - started)
        return {"ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}

    async def bare_messages(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer = self.peers[cmd["group"]]
        count = 0
        cpu, wall, kernel = time.process_time(), time.perf_counter(), _sys_time()
        # The exact call tgws.gateway.Account.message_pages makes (reverse=True, min_id,
        # wait_time=0), so both sides ask the sandbox for the same pages.
        async for _ in self.client.iter_messages(peer, limit=None, reverse=True, min_id=0,
                                                 wait_time=0):
            count += 1
        return {"count": count, "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu, "sys": _sys_time() - kernel}

    async def bare_members(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer = self.peers[cmd["group"]]
        count = 0
        cpu, wall, kernel = time.process_time(), time.perf_counter(), _sys_time()
        # As Account.member_pages calls it (search="" is ChannelParticipantsSearch('')).
        async for _ in self.client.iter_participants(peer, search=""):
            count += 1
        return {"count": count, "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu, "sys": _sys_time() - kernel}

    async def stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd.get("gc"):
            gc.collect()
        app = self.daemon.app
        assert app is not None
        status = proc_status()
        return {"cpu": time.process_time(), "sys": _sys_time(), "wall": time.perf_counter(),
                "rss": status["VmRSS"], "hwm": status["VmHWM"],
                "connections": len(app.connections)}

    async def _sample(self) -> None:
        while True:
            self.sampled_max = max(self.sampled_max, proc_status()["VmRSS"])
            await asyncio.sleep(0.05)

    async def sample(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """RSS sampled every 50 ms while a stream runs (VmHWM alone would also hold any
        earlier transient peak of this process, e.g. from start-up)."""
        if cmd["on"]:
            self.sampled_max = proc_status()["VmRSS"]
            self.sampler = asyncio.get_running_loop().create_task(self._sample())
            return {}
        assert self.sampler is not None
        self.sampler.cancel()
        await asyncio.gather(self.sampler, return_exceptions=True)
        self.sampler = None
        self.sampled_max = max(self.sampled_max, proc_status()["VmRSS"])
        return {"max_rss": self.sampled_max}

    async def profile(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """cProfile of the event-loop thread between on and off (not the aiosqlite thread)."""
        if cmd["on"]:
            self.profiler = cProfile.Profile()
            self.profiler.enable()
            return {}
        assert self.profiler is not None
        self.profiler.disable()
        top = int(cmd.get("top", 15))
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out).sort_stats("tottime")
        total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
        stats.print_stats(top)
        # The same profile restricted to the daemon's own layers (tgws minus the sandbox,
        # websockets, aiosqlite): Telethon's parsing dominates the overall list, and it is
        # the same in the bare run.
        print("--- the daemon's own code only (tgws without tgws/sandbox, websockets, "
              "aiosqlite)", file=out)
        stats.print_stats(OWN_CODE, top)
        self.profiler = None
        return {"text": _short_paths(out.getvalue()), "total_tottime": total}

    async def micro(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Direct timings of tgws's per-item Python work on real parsed Telethon objects."""
        peer = self.peers[cmd["group"]]
        messages = [m async for m in self.client.iter_messages(peer, limit=2000, wait_time=0)]
        members = [u async for u in self.client.iter_participants(peer, limit=2000)]
        out: dict[str, Any] = {}

        def per_item(fn: Any, items: list[Any]) -> float:
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for item in items:
                    fn(item)
                best = min(best, (time.perf_counter() - started) / len(items))
            return best * 1e6

        def per_page(fn: Any, items: list[Any], size: int) -> float:
            pages = [items[i:i + size] for i in range(0, len(items), size)]
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for page in pages:
                    fn(page)
                best = min(best, (time.perf_counter() - started) / len(items))
            return best * 1e6

        out["message_envelope_us"] = per_item(
            lambda m: serialize.message_envelope(cmd["group"], m), messages)
        out["message_dict_us"] = per_item(serialize.message, messages)
        out["user_envelope_us"] = per_item(
            lambda u: serialize.user_envelope(cmd["group"], u), members)
        out["join_date_us"] = per_item(serialize.join_date, members)
        # What streams call now: a page at a time (the envelope's bytes shared per page),
        # and the members offset kept on datetimes (tgws/joins.py).
        out["user_frames_us"] = per_page(
            lambda page: serialize.user_frames(cmd["group"], page), members, 200)
        out["message_frames_us"] = per_page(
            lambda page: serialize.message_frames(cmd["group"], page), messages, 100)
        out["join_mark_us"] = per_page(lambda page: JoinMark(None).delivered(page), members, 200)
        frames = [serialize.message_envelope(cmd["group"], m) for m in messages]
        out["frame_bytes"] = statistics.mean(len(f) for f in frames)
        # One offset commit, as streaming.AckBarrier makes once per batch: an aiosqlite
        # thread hop plus sqlite's WAL append. CPU counts both threads (process_time).
        app = self.daemon.app
        assert app is not None and self.key_id is not None
        calls = 300
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(calls):
            await app.store.commit_offset(self.key_id, "chats", 1, Offset(i + 1))
        out["commit_cpu_us"] = (time.process_time() - cpu) / calls * 1e6
        out["commit_wall_us"] = (time.perf_counter() - wall) / calls * 1e6
        return out


async def serve(args: argparse.Namespace) -> None:
    host = Host(args)
    ready = await host.start()
    commands: dict[str, Command] = {
        "yardstick": host.yardstick, "bare_messages": host.bare_messages,
        "bare_members": host.bare_members, "stats": host.stats, "sample": host.sample,
        "profile": host.profile, "micro": host.micro,
    }
    try:
        await serve_commands(ready, commands)
    finally:
        await host.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--members", type=int, default=0)
    parser.add_argument("--big", type=int, default=0)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    factory = None
    if args.loop == "uvloop":
        # Not a tgws dependency (it did not win: bench/README.md): `pip install uvloop` to
        # compare. Imported by name so type checks pass where it is not installed.
        factory = importlib.import_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
