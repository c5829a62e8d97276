"""tgws `watch` benchmark (issue 13): push latency beside bare Telethon, a `latest` poll's cost,
and the memory of one account watching many groups.

    python bench/watch.py [--groups G] [--rate R] [--seconds S] [--rss-groups N] [--objects]
                          [--rounds 3] [--no-pin] [--quick]

Each phase runs in a fresh process (python bench/watch.py --phase NAME ...), so its memory
figure is its own. In each, the real tgws Daemon runs in-process on the sandbox Telegram
(wire mode unless --objects: every answer and push serialized to TL bytes and parsed back by
Telethon, as with Telegram), with the daemon's GC tuned as `tgws serve` tunes it, after the
world is built (the world is Telegram's state: frozen, out of every collection).

1. latency: one account in G megagroups, watched by ceil(G/100) connections (a watch names
   at most 100 groups) held by a websocket client process of its own (--phase client: a
   real client is another program, and its frame parsing must not take the daemon's CPU).
   Messages are posted at R per second (R/100 every 10 ms), spread round-robin over the
   groups; the sandbox pushes each to the daemon's client and to a bare Telethon client of
   the same account (events.Raw handler) at the same moment. Per message: push -> bare
   handler (A), and push -> the watch frame read by the client process (B), both stamped
   with time.perf_counter() (CLOCK_MONOTONIC: one clock for every process). A and B run
   alone, each in a fresh process; "added, B - A" compares their p50 and p99. C runs both
   at once and gives the difference per message (two Telethon clients share one CPU then).
   --rounds (3) measures A, B and C that many times, the order rotated per round; the table
   gives the median of the rounds (of B - A taken within each round) and every round below.
   Target: p99 added <= 5 ms at 1,000 msgs/s over 1,000 groups.
2. latest: after that, one `latest` poll over the same G idle groups (`chats`, 100 groups per
   request) and the Telegram requests it made, per method. Target: <= 10 for 1,000 groups
   (one messages.getPeerDialogs per 100), against 1,000 getHistory before.
3. rss: one account watching N groups (one message each, caught up): the process's RSS
   before the watches and after (the sandbox world lives in the same process; its share is
   in "before").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PHONE = "+919876543210"
MIB = 1024 * 1024
ADDED_P99_MS = 5.0
LATEST_REQUESTS = 10  # for 1,000 groups

FULL: dict[str, Any] = {"groups": 1000, "rate": 1000, "seconds": 5.0, "rss_groups": 10_000,
                        "rounds": 3}
QUICK: dict[str, Any] = {"groups": 100, "rate": 200, "seconds": 1.0, "rss_groups": 300,
                         "rounds": 1}
PATHS = ("bare", "daemon", "both")


PIN = True  # --no-pin: leave every placement to the kernel


def pin(cpu: int) -> None:
    """Run the calling thread on `cpu` only (when the machine has two or more): the daemon's
    loop on CPU 0 and the client process on CPU 1, so the client never shares the loop's
    core (sharing one, each frame written wakes the client, which preempts the daemon inside
    its send; a real client is elsewhere). Threads started before (aiosqlite's) stay free to
    run on either CPU. A, B and C are pinned alike."""
    if PIN and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})  # Linux: pid 0 is the calling thread


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --- the daemon, the world, the clients -------------------------------------------------------
async def start(tmp: str, wire: bool, groups: int) -> tuple[Any, str, Any, Any, list[Any]]:
    from tests.support import make_config
    from tgws.daemon import Daemon, tune_gc

    config = make_config(Path(tmp), **{
        "sandbox.wire": wire, "log.level": "WARNING", "watch.reconcile_interval": 3600.0,
        "server.max_connections_per_key": max(32, math.ceil(groups / 100) + 4)})
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("bench")
    ws = await login(daemon, key)
    await ws.close()
    world = daemon.backend.world
    me = world.by_phone(PHONE)
    poster = world.user("bench_poster", first_name="Poster")
    chats = []
    for i in range(groups):
        chat = world.megagroup(f"watchbench{i:05d}", creator=poster)
        chat.join(me)
        chat.post(poster, "first")
        chats.append(chat)
    # As `tgws serve` does after start-up (and bench/stream_host.py): a raised young-generation
    # GC threshold, then gc.freeze(). The sandbox world is Telegram's state, which a real
    # daemon does not hold: frozen, it stays out of every collection. Both paths (A, B, C)
    # run with it; what is allocated from here on is collected normally.
    tune_gc(config.server.gc_threshold)
    pin(0)  # the loop's thread only: aiosqlite's, started with the store, stays free
    return daemon, key, world, me, chats


def url(daemon: Any) -> str:
    return f"ws://127.0.0.1:{daemon.port}{daemon.config.server.path}"


async def login(daemon: Any, key: str) -> Any:
    return await login_at(url(daemon), key)


async def login_at(address: str, key: str) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(address, compression=None, max_size=2**24)
    await ws.send(json.dumps({"event": "login", "data": {"apiKey": key}}))
    reply = json.loads(await ws.recv())["data"]["message"]
    if reply == "send phone number":
        for data in ({"phone": PHONE}, {"code": "12345"}):
            await ws.send(json.dumps({"event": "telegram login", "data": data}))
            await ws.recv()
    return ws


async def watchers(address: str, key: str, names: list[str]) -> list[Any]:
    """One connection per 100 groups, each watching them, catch-up read (one item a group)."""
    out = []
    for start_at in range(0, len(names), 100):
        chunk = names[start_at:start_at + 100]
        ws = await login_at(address, key)
        await ws.send(json.dumps({"event": "watch", "data": {"group": chunk}}))
        assert json.loads(await ws.recv())["data"]["message"] == "watching"
        for _ in chunk:
            data = orjson.loads(await ws.recv())["data"]
            assert data["path"] == "catch-up", data
        out.append(ws)
    return out


# --- phase 1 and 2 ----------------------------------------------------------------------------
async def latency_and_latest(groups: int, rate: int, seconds: float, wire: bool,
                             path: str) -> dict[str, Any]:
    """`path`: "bare" (only the bare Telethon client follows the groups), "daemon" (only the
    daemon's watches: then also the `latest` poll), or "both" at once (per-message added
    latency, but two Telethon clients share the CPU)."""
    from telethon import events, types
    from telethon.sessions import StringSession

    from tgws.sandbox import make_sandbox_client

    with tempfile.TemporaryDirectory() as tmp:
        daemon, key, world, me, chats = await start(tmp, wire, groups)
        client: Reader | None = None
        try:
            posted: dict[tuple[int, int], float] = {}
            bare_at: dict[tuple[int, int], float] = {}
            use_bare, use_daemon = path in ("bare", "both"), path in ("daemon", "both")
            bare = make_sandbox_client(world, StringSession(world.session_string(me)),
                                       wire=wire, receive_updates=True, flood_sleep_threshold=0)

            async def on_raw(update: Any) -> None:
                if isinstance(update, types.UpdateNewChannelMessage):
                    bare_at[(update.message.peer_id.channel_id, update.message.id)] = \
                        time.perf_counter()

            bare.add_event_handler(on_raw, events.Raw)
            if use_bare:
                await bare.connect()
            names = [chat.username for chat in chats]
            total = int(rate * seconds)
            if use_daemon:
                client = await Reader.start(url(daemon), key, groups, total)
            # Warm-up: one message per group, so both clients follow every channel already
            # (Telethon starts following a channel at the first update it sees of it).
            warm = [(chat.id, chat.post(chat.creator, "warm-up").id) for chat in chats]
            if client is not None:
                await client.warmed()
            for _ in range(600):
                if not use_bare or all(k in bare_at for k in warm):
                    break
                await asyncio.sleep(0.05)  # bench set-up, not a measurement
            bare_at.clear()
            tick = 0.01
            per_tick = max(1, round(rate * tick))
            began = time.perf_counter()
            sent = 0
            while sent < total:
                for _ in range(min(per_tick, total - sent)):
                    chat = chats[sent % len(chats)]
                    message = chat.post(chat.creator, f"bench {sent}")
                    posted[(chat.id, message.id)] = time.perf_counter()
                    sent += 1
                await asyncio.sleep(max(0.0, began + (sent / rate) - time.perf_counter()))
            daemon_at = await client.arrivals() if client is not None else {}
            for _ in range(600):
                if not use_bare or len(bare_at) >= total:
                    break
                await asyncio.sleep(0.05)  # the bare handler's stragglers (no timing here)
            elapsed = time.perf_counter() - began
            result = _latencies(posted, bare_at, daemon_at)
            result.update(groups=groups, rate=rate, sent=total, seconds=round(elapsed, 2),
                          wire=wire)
            result["path"] = path
            if use_daemon:
                result["latest"] = await latest_poll(daemon, key, world, names)
            if use_bare:
                await bare.disconnect()
            return result
        finally:
            if client is not None:
                client.stop()
            await daemon.stop()


class Reader:
    """The websocket clients, in a process of their own (python bench/watch.py --phase
    client): a real client is another program, so its reading (websockets' frame parsing,
    the JSON) must not take the daemon's CPU, as it did when the clients ran on the
    daemon's loop. Both processes stamp with time.perf_counter(), CLOCK_MONOTONIC on Linux:
    one clock for every process of the machine."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, address: str, key: str, groups: int, total: int) -> Reader:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--phase", "client", *([] if PIN else ["--no-pin"]),
            "--url", address, "--key", key,
            "--groups", str(groups), "--expect", str(total), stdout=asyncio.subprocess.PIPE,
            limit=2**26)  # the last line holds every arrival
        reader = cls(process)
        await reader._line("ready")  # every watch caught up
        return reader

    async def _line(self, expected: str) -> str:
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 300)).decode()
        if not line.startswith(expected):
            raise SystemExit(f"bench client said {line!r}, expected {expected!r}")
        return line[len(expected):]

    async def warmed(self) -> None:
        await self._line("warm")  # one warm-up frame per group read

    async def arrivals(self) -> dict[tuple[int, int], float]:
        """(channel id, message id) -> when the client read its frame."""
        got = orjson.loads(await self._line("read"))
        await self.process.wait()
        return {(channel, msg_id): at for channel, msg_id, at in got}

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def client_phase(address: str, key: str, groups: int, expect: int) -> None:
    """The websocket clients: watch every group, then stamp each frame as it is read."""
    from tgws.daemon import tune_gc

    names = [f"watchbench{i:05d}" for i in range(groups)]
    sockets = await watchers(address, key, names)
    # The client's own collector is not the daemon's latency: what set-up allocated is
    # frozen and young collections are rare, as in the daemon (the arrivals kept below
    # grow by one tuple per message).
    tune_gc(20_000)
    print("ready", flush=True)
    arrived: list[tuple[int, int, float]] = []
    warm_done = asyncio.Event()
    all_done = asyncio.Event()

    async def read(ws: Any) -> None:
        while True:
            raw = await ws.recv(decode=False)
            now = time.perf_counter()
            chat = orjson.loads(raw)["data"]["message"]["chat"]
            arrived.append((-chat["chat_id"] - 10**12, chat["id"], now))
            if len(arrived) == groups:
                warm_done.set()
            elif len(arrived) >= groups + expect:
                all_done.set()

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    await asyncio.wait_for(warm_done.wait(), 60)
    print("warm", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), 30 + expect / 100)
    for task in readers:
        task.cancel()
    print("read" + orjson.dumps(arrived[groups:]).decode(), flush=True)
    for ws in sockets:
        await ws.close()


def _latencies(posted: dict[Any, float], bare_at: dict[Any, float],
               daemon_at: dict[Any, float]) -> dict[str, Any]:
    both = [k for k in posted if k in bare_at and k in daemon_at]
    bare = sorted((bare_at[k] - posted[k]) * 1000 for k in posted if k in bare_at)
    daemon = sorted((daemon_at[k] - posted[k]) * 1000 for k in posted if k in daemon_at)
    added = sorted((daemon_at[k] - bare_at[k]) * 1000 for k in both)

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else -1

    return {"received_bare": len(bare_at), "received_daemon": len(daemon_at),
            "bare_p50_ms": pct(bare, 0.5), "bare_p99_ms": pct(bare, 0.99),
            "daemon_p50_ms": pct(daemon, 0.5), "daemon_p99_ms": pct(daemon, 0.99),
            "added_p50_ms": pct(added, 0.5), "added_p99_ms": pct(added, 0.99),
            "added_mean_ms": round(statistics.fmean(added), 3) if added else -1}


async def latest_poll(daemon: Any, key: str, world: Any, names: list[str]) -> dict[str, Any]:
    """One `latest` poll over every group (100 per request) once the watches' offsets are in."""
    ws = await login(daemon, key)
    # Make sure everything the watches delivered is committed: a first poll sends the rest.
    for _ in range(2):
        before = dict(world.faults.per_method)
        sent = 0
        for start_at in range(0, len(names), 100):
            await ws.send(json.dumps({"event": "chats", "data": {
                "group": names[start_at:start_at + 100], "status": "latest"}}))
            while True:
                data = orjson.loads(await ws.recv())["data"]
                if data["message"] == "done":
                    sent += data["count"]
                    break
        used = {m: n - before.get(m, 0) for m, n in world.faults.per_method.items()
                if n != before.get(m, 0)}
    await ws.close()
    return {"requests": sum(used.values()), "per_method": used, "items": sent}


# --- phase 3 ----------------------------------------------------------------------------------
async def rss_phase(groups: int, wire: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon, key, _, _, chats = await start(tmp, wire, groups)
        try:
            before = rss()
            began = time.perf_counter()
            sockets = await watchers(url(daemon), key, [chat.username for chat in chats])
            after = rss()
            result = {"groups": groups, "connections": len(sockets), "rss_before": before,
                      "rss_after": after, "catch_up_seconds":
                      round(time.perf_counter() - began, 1), "wire": wire}
            for ws in sockets:
                await ws.close()
            return result
        finally:
            await daemon.stop()


# --- the orchestrator ------------------------------------------------------------------------
def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"bench phase {args} failed ({out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int)
    parser.add_argument("--rate", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rss-groups", type=int)
    parser.add_argument("--rounds", type=int, help="latency rounds (3; --quick: 1)")
    parser.add_argument("--objects", action="store_true", help="sandbox objects mode (no TL)")
    parser.add_argument("--quick", action="store_true", help="small numbers (a smoke run)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the daemon's loop to CPU 0 and the client to CPU 1")
    parser.add_argument("--phase", choices=("latency", "rss", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=("bare", "daemon", "both"), default="both",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global PIN
    PIN = not args.no_pin
    base = QUICK if args.quick else FULL
    groups = args.groups or base["groups"]
    rate = args.rate or base["rate"]
    seconds = args.seconds or base["seconds"]
    rss_groups = args.rss_groups or base["rss_groups"]
    wire = not args.objects
    if args.phase == "latency":
        print(json.dumps(asyncio.run(latency_and_latest(groups, rate, seconds, wire,
                                                        args.path))))
        return 0
    if args.phase == "client":
        pin(1)
        asyncio.run(client_phase(args.url, args.key, groups, args.expect))
        return 0
    if args.phase == "rss":
        print(json.dumps(asyncio.run(rss_phase(rss_groups, wire))))
        return 0
    common = ["--groups", str(groups), "--rate", str(rate), "--seconds", str(seconds),
              "--rss-groups", str(rss_groups)] + (["--objects"] if args.objects else []) \
        + (["--no-pin"] if args.no_pin else [])
    rounds = args.rounds or base["rounds"]
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for turn in range(rounds):  # each path in a fresh process; the order rotates per round
        for path in PATHS[turn % 3:] + PATHS[:turn % 3]:
            runs[path].append(child("--phase", "latency", "--path", path, *common))
    mem = child("--phase", "rss", *common)
    mode = "wire" if wire else "objects"
    print(f"tgws watch benchmark ({mode} mode, {os.cpu_count()} CPUs)")
    print(f"latency: {runs['daemon'][0]['sent']} messages at {rate}/s over {groups} groups, "
          f"push to read; {rounds} round(s), each path in a fresh process, the order rotated "
          "per round (the last arrived after, slowest round: "
          + ", ".join(f"{p} {max(r['seconds'] for r in rs)} s" for p, rs in runs.items())
          + f" for {seconds} s of messages: longer means the process could not keep up)")
    print(f"  {'median of the rounds':44}{'p50 ms':>10}{'p99 ms':>10}{'received':>10}")
    bare, daemon, both = runs["bare"], runs["daemon"], runs["both"]
    a = [(r["bare_p50_ms"], r["bare_p99_ms"]) for r in bare]
    b = [(r["daemon_p50_ms"], r["daemon_p99_ms"]) for r in daemon]
    added = [(y[0] - x[0], y[1] - x[1]) for x, y in zip(a, b, strict=True)]  # per round
    c = [(r["added_p50_ms"], r["added_p99_ms"]) for r in both]
    rows = (("A", "A. bare Telethon handler alone", a, min(r["received_bare"] for r in bare)),
            ("B", "B. through the daemon alone (watch frame read)", b,
             min(r["received_daemon"] for r in daemon)),
            ("B - A", "   added, B - A", added, None),  # B minus A of the same round
            ("C", "C. both at once, added per message", c,
             min(r["received_daemon"] for r in both)))
    for _, label, pairs, received in rows:
        got = "" if received is None else str(received)
        p50 = statistics.median(x[0] for x in pairs)
        p99 = statistics.median(x[1] for x in pairs)
        print(f"  {label:44}{p50:>10.3f}{p99:>10.3f}{got:>10}")
    if rounds > 1:
        for short, _, pairs, _ in rows:
            print(f"    each round, {short}: "
                  + ", ".join(f"{x[0]:.2f}/{x[1]:.2f}" for x in pairs) + " (p50/p99 ms)")
    added_p99 = statistics.median(x[1] for x in added)
    ok = added_p99 <= ADDED_P99_MS
    print(f"  target p99 added <= {ADDED_P99_MS} ms (B - A, median of the rounds): "
          f"{'met' if ok else 'NOT met'}")
    latest = daemon[0]["latest"]
    target = max(1, math.ceil(groups / 100))
    print(f"latest over {groups} idle groups: {latest['requests']} Telegram requests "
          f"{latest['per_method']} (target <= {target}; one getHistory per group would be "
          f"{groups}): {'met' if latest['requests'] <= target else 'NOT met'}")
    print(f"rss: one account watching {mem['groups']} groups over {mem['connections']} "
          f"connections: {mem['rss_after'] / MIB:.1f} MiB "
          f"(+{(mem['rss_after'] - mem['rss_before']) / MIB:.1f} MiB for the watches; "
          f"catch-up {mem['catch_up_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
