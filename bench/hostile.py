"""tgws in the hostile sandbox world against bare Telethon, side by side with the calm world.

    python bench/hostile.py [--rate 0.01] [--latency 0.05] [--rounds 3] [--seed 0] [--quick]

Wall-clock messages per second of whole `chats` streams, two ways over the same world:
- **daemon**: the real tgws Daemon in-process (sandbox backend), a websockets client in the same
  process logged in as the demo owner, one `chats` request per group, timed from the request to
  `done` (the stream is then known to be complete: tgws retries inside the stream and resumes
  after the last message sent);
- **bare**: Telethon's `client.iter_messages(peer, limit=None, reverse=True, wait_time=0)` (the
  call the gateway makes) on a client of the same world and account, built with the daemon's
  own client options (`telegram_clients.client_options`: the same `request_retries`,
  `raise_last_call_error`, flood_sleep_threshold = 0 because tgws waits floods itself), and again
  with Telethon's default flood handling (`flood_sleep_threshold` = 60: Telethon sleeps through
  short flood waits) and the same retries. Each bare client connects once and resolves each
  group once before anything is timed (the daemon's account stays connected and its entity
  cache is warmed the same way): only iter_messages is timed. A bare stream that raises counts
  as failed, with the exception and how far it got.

Worlds: **calm** is the demo world (dense histories, no faults); **hostile** is
`[sandbox] hostile = true` with `--rate` of calls failing (every kind: 5xx, -503 timeouts,
FLOOD_WAIT_1, dropped connections) and the demo's groups plus the hostile ones (histories with
holes and mid-stream deletes, an upgraded group). Both get `--latency` seconds per call, so
paging costs what it costs against Telegram (50 ms ≈ a nearby data centre).

The fault plan numbers calls in the order the world receives them, so the daemon and bare
Telethon meet different faults; rounds alternate which side goes first. Deterministic per seed
for one order of calls; the printed fault counts say what each side met. So that every run
shows what a flood mid-stream does to each side (at 1 % a bare stream draws one only in some
runs), a last **scripted** row streams testgroup00001 in the hostile world with no random
faults and one FLOOD_WAIT_1 at the same page of each side's stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telethon.sessions import StringSession
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgws.config import load  # noqa: E402
from tgws.daemon import Daemon  # noqa: E402
from tgws.sandbox import make_sandbox_client  # noqa: E402
from tgws.sandbox.demo import OWNER_PHONE  # noqa: E402
from tgws.telegram_clients import client_options  # noqa: E402

CALM_GROUPS = ("testgroup00001", "UnderWorld4444", "testgroup00002")
HOSTILE_GROUPS = (*CALM_GROUPS, "holeyhistory1", "holeychannel1", "upgradedgroup1")
SCRIPTED_GROUP = "testgroup00001"  # 1,000 messages: 10 pages
FLOOD_PAGE = 5  # the page of each side's stream that meets the scripted FLOOD_WAIT_1


@dataclass
class Run:
    """One stream: how many messages, how long, and whether it completed."""

    messages: int
    seconds: float
    error: str | None = None
    faults: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Row:
    world: str
    group: str
    daemon: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)
    bare_waits: list[Run] = field(default_factory=list)


async def ask(ws: ClientConnection, event: str, data: Any) -> dict[str, Any]:
    """Send a request; the first reply that is not a progress notice (floods say "wait")."""
    await ws.send(json.dumps({"event": event, "data": data}))
    while True:
        reply: dict[str, Any] = json.loads(await ws.recv())
        if reply["data"]["status"] != "progress":
            return reply


async def login(url: str, key: str) -> ClientConnection:
    ws = await connect(url, max_size=2**24, compression=None)
    reply = await ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "send phone number":
        for data in ({"phone": OWNER_PHONE}, {"code": "12345"}):
            reply = await ask(ws, "telegram login", data)
            assert reply["data"]["status"] == "success", reply
    return ws


async def daemon_stream(ws: ClientConnection, group: str, world: Any) -> Run:
    faults = len(world.faults.log)
    start = time.perf_counter()
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": group, "status": ""}], "status": ""}}))
    count = 0
    error = None
    while True:
        data = json.loads(await ws.recv())["data"]
        if data["status"] == "progress":
            continue
        if data["status"] != "success":
            error = str(data["message"])
            break
        if data["message"] == "done":
            break
        if isinstance(data["message"], dict):
            count += 1
    return Run(count, time.perf_counter() - start, error, len(world.faults.log) - faults)


class Bare:
    """A bare Telethon client of the demo owner, connected once and reused (as the daemon's
    account is), with each group resolved once before it is timed (as the daemon's entity
    cache does); only iter_messages is timed."""

    def __init__(self, world: Any, options: dict[str, Any]) -> None:
        owner = next(u for u in world.users.values() if u.phone == OWNER_PHONE.lstrip("+"))
        self.world = world
        self.client = make_sandbox_client(world, StringSession(world.session_string(owner)),
                                          **options)
        self.entities: dict[str, Any] = {}

    async def prepare(self, groups: tuple[str, ...]) -> None:
        """Connect and resolve, faults off (setting up is not what is measured)."""
        rate = self.world.faults.rate
        self.world.faults.set(rate=0.0)
        try:
            await self.client.connect()
            for group in groups:
                self.entities[group] = await self.client.get_input_entity(group)
        finally:
            self.world.faults.set(rate=rate)

    async def stream(self, group: str) -> Run:
        faults = len(self.world.faults.log)
        start = time.perf_counter()
        count = 0
        error = None
        try:
            if not self.client.is_connected():
                await self.client.connect()  # a failed stream may leave it disconnected
            async for _ in self.client.iter_messages(self.entities[group], limit=None,
                                                     reverse=True, wait_time=0):
                count += 1
        except Exception as err:  # what a bare Telethon user would see
            error = f"{type(err).__name__}: {err}"[:90]
        return Run(count, time.perf_counter() - start, error,
                   len(self.world.faults.log) - faults)


async def run_world(hostile: bool, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        config = load(None, environ={}, overrides={
            "server.host": "127.0.0.1", "server.port": 0, "log.level": "ERROR",
            "store.path": str(Path(tmp) / "bench.db"), "telegram.backend": "sandbox",
            "sandbox.hostile": hostile, "sandbox.seed": args.seed,
            "sandbox.fault_rate": args.rate, "sandbox.latency": args.latency})
        daemon = Daemon(config)
        await daemon.start()
        try:
            assert daemon.app is not None and daemon.backend is not None
            world = daemon.backend.world
            key = await daemon.app.store.create_api_key("bench")
            url = f"ws://127.0.0.1:{daemon.port}{config.server.path}"
            ws = await login(url, key)
            options = client_options(config.telegram)
            bare = Bare(world, options)
            bare_waits = Bare(world, {**options, "flood_sleep_threshold": 60})
            groups = HOSTILE_GROUPS if hostile else CALM_GROUPS
            for side in (bare, bare_waits):
                await side.prepare(groups)
            for group in groups:  # the daemon's entity cache, warmed likewise
                world.faults.set(rate=0.0)
                await daemon_stream(ws, group, world)
                world.faults.set(rate=args.rate if hostile else 0.0)
            rows = [Row("hostile" if hostile else "calm", g) for g in groups]
            for r in range(args.rounds):
                for row in rows:
                    g = row.group
                    sides: list[tuple[str, Awaitable[Run]]] = [
                        ("daemon", daemon_stream(ws, g, world)),
                        ("bare", bare.stream(g)),
                        ("bare_waits", bare_waits.stream(g))]
                    if r % 2:
                        sides.reverse()
                    for name, stream in sides:
                        getattr(row, name).append(await stream)
            if hostile:
                rows.append(await scripted_flood(ws, world, bare, bare_waits, args))
            await ws.close()
            for side in (bare, bare_waits):
                await side.client.disconnect()
            return rows
        finally:
            await daemon.stop()


async def scripted_flood(ws: ClientConnection, world: Any, bare: Bare, bare_waits: Bare,
                         args: argparse.Namespace) -> Row:
    """The same fault for each side, in every run: no random faults, and one FLOOD_WAIT_1 at
    the FLOOD_PAGE-th messages.getHistory of each side's stream of SCRIPTED_GROUP.

    Random faults at 1 % draw a flood for a bare stream in only some runs (1 fault in 5 is a
    flood); this row shows every time what happens when one does: the daemon waits it out and
    resumes after the last message sent, bare Telethon with the daemon's options raises
    FloodWaitError half-way, and with Telethon's own flood sleeping it completes.
    """
    world.faults.set(rate=0.0)
    row = Row("scripted", SCRIPTED_GROUP)
    for r in range(args.rounds):
        sides: list[tuple[str, Any]] = [
            ("daemon", lambda: daemon_stream(ws, SCRIPTED_GROUP, world)),
            ("bare", lambda: bare.stream(SCRIPTED_GROUP)),
            ("bare_waits", lambda: bare_waits.stream(SCRIPTED_GROUP))]
        if r % 2:
            sides.reverse()
        for name, stream in sides:
            world.faults.script("GetHistory", "flood", after=FLOOD_PAGE - 1)
            getattr(row, name).append(await stream())
    return row


def cell(runs: list[Run]) -> str:
    done = [r for r in runs if r.error is None]
    rate = f"{statistics.median(r.rate for r in done):8.0f}" if done else "       -"
    return f"{rate} {len(done)}/{len(runs)}"


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"latency {args.latency * 1000:g} ms per call; hostile: {args.rate:.0%} of calls "
          f"failing (internal, rpc_call_fail, timeout, flood, drop); {args.rounds} rounds; "
          "median msg/s of the completed streams, completed/total")
    print(f"scripted: the hostile world with no random faults and one FLOOD_WAIT_1 at page "
          f"{FLOOD_PAGE} of each side's stream (the same fault for each side)")
    head = (f"{'world':8} {'group':16} {'msgs d/b':>10} | {'daemon':>8} {'ok':>4} | "
            f"{'bare':>8} {'ok':>4} | {'bare+fsl':>8} {'ok':>4} | faults d/b/b+")
    print(head)
    print("-" * len(head))
    for row in rows:
        msgs = max((r.messages for r in row.daemon), default=0)
        bare_msgs = max((r.messages for r in row.bare + row.bare_waits), default=0)
        faults = "/".join(str(sum(r.faults for r in runs))
                          for runs in (row.daemon, row.bare, row.bare_waits))
        print(f"{row.world:8} {row.group:16} {f'{msgs}/{bare_msgs}':>10} | {cell(row.daemon)} | "
              f"{cell(row.bare)} | {cell(row.bare_waits)} | {faults}")
    failures = [(row, side, r) for row in rows
                for side, runs in (("daemon", row.daemon), ("bare", row.bare),
                                   ("bare+fsl", row.bare_waits))
                for r in runs if r.error is not None]
    if failures:
        print("\nstreams that did not complete:")
        for row, side, r in failures:
            print(f"  {row.world:8} {row.group:16} {side:8} after {r.messages:5} msgs: {r.error}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 round, 5 ms per call")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.latency = 1, 0.005
    rows = await run_world(False, args) + await run_world(True, args)
    report(rows, args)
    return 0 if all(r.error is None for row in rows for r in row.daemon) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
