"""Aggregate streaming of many accounts through one daemon, and through two sharing the work.

    python bench/daemons.py [--accounts 8] [--messages 5000] [--rounds 3]

One asyncio process is one core: past ~30 µs per message it tops out however many accounts it
serves, so several daemons per machine is the way past it (issue 15: target two >= 1.7x one).
Each round starts fresh daemon processes (`--host` mode below: the real tgws Daemon with its
in-process sandbox Telegram in wire mode, its own sqlite store, one group of --messages
messages and one API key per account), logs every account in, then starts every account's
`chats` stream at once and times until the last "done": messages of all accounts / wall time.
Layouts alternate within each round (one daemon with all accounts; two daemons with half
each), so only figures from the same round are compared (the machine has fast and slow
phases). The client is this process, counting frames as bytes (no JSON for items).

Each daemon has its own world and store here: what is measured is the daemons' CPU, not a
shared sandbox (one process itself) or the database. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

GROUP = "benchgroup00001"
AUTHORS = 30
ITEM = b'{"event":"chats","data":{"status":"success","message":{'


# --- a daemon process ------------------------------------------------------------------------

async def host(accounts: int, messages: int, first_phone: int) -> None:
    from tgws.config import load
    from tgws.daemon import Daemon, tune_gc

    with tempfile.TemporaryDirectory(prefix="tgws-bench-daemons-") as tmp:
        config = load(None, environ={}, overrides={
            "server.host": "127.0.0.1", "server.port": 0,
            "store.path": str(Path(tmp) / "bench.db"),
            "telegram.backend": "sandbox", "sandbox.wire": True, "log.level": "WARNING"})
        daemon = Daemon(config)
        await daemon.start()
        world = daemon.backend.world
        group = world.megagroup(GROUP, title="Bench group")
        group.history(messages, authors=group.populate(AUTHORS)[:AUTHORS])
        assert daemon.app is not None
        logins = []
        for i in range(accounts):
            phone = f"+15558{first_phone + i:06d}"  # beside the demo world's
            world.user(f"bench_reader{first_phone + i}", first_name="Bench", phone=phone)
            logins.append([await daemon.app.store.create_api_key(f"bench{i}"), phone])
        tune_gc(config.server.gc_threshold)  # as `tgws serve` does after start-up
        print(json.dumps({"port": daemon.port, "logins": logins}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await daemon.stop()


# --- the orchestrator and client -------------------------------------------------------------

class Daemons:
    """`accounts_each` accounts on each of `count` fresh daemon processes."""

    def __init__(self, count: int, accounts_each: int, messages: int) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, __file__, "--host", "--accounts", str(accounts_each),
             "--messages", str(messages), "--first-phone", str(i * accounts_each)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(count)]
        self.logins: list[tuple[int, str, str]] = []
        for proc in self.procs:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            self.logins += [(ready["port"], key, phone) for key, phone in ready["logins"]]

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _ask(ws: Any, event: str, data: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"event": event, "data": data}))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


async def _logged_in(port: int, key: str, phone: str) -> Any:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/telegram/", compression=None,
                       max_size=2**24)
    reply = await _ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "send phone number":
        for data in ({"phone": phone}, {"code": "12345"}):
            reply = await _ask(ws, "telegram login", data)
            if reply["data"]["status"] != "success":
                raise RuntimeError(f"telegram login failed: {reply}")
    return ws


async def _stream(ws: Any) -> int:
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": GROUP, "status": "latest"}], "status": ""}}))
    count = 0
    while True:
        frame = await ws.recv(decode=False)
        if frame.startswith(ITEM):
            count += 1
            continue
        data = json.loads(frame)["data"]
        if data["status"] == "progress" or data["message"] == "sending chats":
            continue
        if data["message"] != "done":
            raise RuntimeError(f"unexpected reply: {data}")
        return count


async def aggregate(daemons: Daemons, messages: int) -> float:
    """Messages per second of every account streaming at once, all logged in beforehand."""
    sockets = [await _logged_in(*login) for login in daemons.logins]
    try:
        started = time.perf_counter()
        counts = await asyncio.gather(*(_stream(ws) for ws in sockets))
        wall = time.perf_counter() - started
    finally:
        for ws in sockets:
            await ws.close()
    if any(count != messages for count in counts):
        raise RuntimeError(f"expected {messages} messages per account, got {counts}")
    return sum(counts) / wall


def measure(count: int, accounts: int, messages: int) -> float:
    daemons = Daemons(count, accounts // count, messages)
    try:
        return asyncio.run(aggregate(daemons, messages))
    finally:
        daemons.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=8, help="accounts (even; default 8)")
    parser.add_argument("--messages", type=int, default=5000,
                        help="messages each account streams (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--host", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-phone", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        asyncio.run(host(args.accounts, args.messages, args.first_phone))
        return 0
    if args.accounts < 2 or args.accounts % 2:
        parser.error("--accounts must be even and at least 2")
    ones: list[float] = []
    twos: list[float] = []
    ratios: list[float] = []
    for round_ in range(args.rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        got = {count: measure(count, args.accounts, args.messages) for count in order}
        ones.append(got[1])
        twos.append(got[2])
        ratios.append(got[2] / got[1])
        print(f"round {round_ + 1}: one daemon {got[1]:,.0f} msgs/s, two daemons "
              f"{got[2]:,.0f} msgs/s, ratio {got[2] / got[1]:.2f}", flush=True)
    ratio = statistics.median(ratios)
    print(f"\n{args.accounts} accounts x {args.messages:,} messages, median of "
          f"{args.rounds} round(s):")
    print(f"  one daemon:   {statistics.median(ones):>10,.0f} msgs/s")
    print(f"  two daemons:  {statistics.median(twos):>10,.0f} msgs/s")
    print(f"  two / one:    {ratio:>10.2f}   (target >= 1.70: "
          f"{'met' if ratio >= 1.7 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
