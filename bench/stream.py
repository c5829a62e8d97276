"""tgws streaming benchmark: the daemon against bare Telethon, side by side, in one run.

    python bench/stream.py [--messages N] [--members M] [--rounds R] [--big N] [--idle C]
                           [--quick] [--profile] [--set KEY=VALUE ...]
                           [--loop asyncio|uvloop] [--compare-loops] [--prime]

Three processes, so that each CPU figure belongs to exactly one of them:
- this orchestrator, which only starts the others, sends them one-line JSON commands and prints;
- the host (bench/stream_host.py): the real tgws Daemon in-process on the sandbox Telegram in
  wire mode, plus a bare Telethon client on the same event loop, world and account;
- the client (bench/stream_client.py): a websockets.asyncio client that logs in, sends a
  users/chats request and counts frames until "done".

Rounds alternate A (bare Telethon) and B (through the daemon) and flip the order every round,
with the perf-physics yardstick (Telethon parsing one 100-message page) before and after each
round. The machine switches between a fast and a slow phase, so only ratios of A and B measured
in the same round are compared with targets (perf-physics.md, "Noise warning").

The memory figures come from fresh hosts: a process that already streamed has freed memory
that later allocations reuse, which would hide growth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
HOST = HERE / "stream_host.py"
CLIENT = HERE / "stream_client.py"
BENCH_GROUP = "benchgroup00001"  # same names as stream_host.py
BIG_GROUP = "benchbig00001"
WARM_GROUP = "testgroup00001"  # the demo world's 1,000-message group
LOOPS = ("asyncio", "uvloop")
MIB = 1024 * 1024
KIB = 1024

# Targets (issue 12): both kinds at >= 0.85 of bare Telethon and <= 5 µs of added CPU per
# item; <= 16 KiB per idle connection; <= 20 MiB of growth over the big stream.
RATIO = 0.85
ADDED_US = 5
IDLE_KIB = 16

FULL = {"messages": 100_000, "members": 10_000, "rounds": 5, "big": 1_000_000, "idle": 1000}
QUICK = {"messages": 5_000, "members": 1_000, "rounds": 1, "big": 20_000, "idle": 50}


class Proc:
    """A child speaking one JSON object per line on stdin/stdout; stderr passes through."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def read(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError(f"{self.name} exited with code {self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        stdin = self._pipes()[0]
        stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                stdin = self._pipes()[0]
                stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Pair:
    """A host and a client connected to it; closed together."""

    settings: tuple[str, ...] = ()  # --set KEY=VALUE, passed to every host
    loop = "asyncio"  # --loop: the host's event loop, unless a Pair names its own

    def __init__(self, *, messages: int = 0, members: int = 0, big: int = 0,
                 max_connections: int = 1000, loop: str | None = None) -> None:
        sets = [arg for item in self.settings for arg in ("--set", item)]
        self.host = Proc("host", [sys.executable, str(HOST), "--messages", str(messages),
                                  "--members", str(members), "--big", str(big),
                                  "--max-connections", str(max_connections),
                                  "--loop", loop or self.loop, *sets])
        try:
            self.ready = self.host.read()
            url = f"ws://127.0.0.1:{self.ready['port']}{self.ready['path']}"
            self.client = Proc("client", [sys.executable, str(CLIENT), "--url", url,
                                          "--key", self.ready["key"],
                                          "--phone", self.ready["phone"]])
            self.client.read()
        except BaseException:
            self.host.close()
            raise

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.host.close()


@dataclass(frozen=True)
class Run:
    count: int
    wall: float
    cpu: float  # seconds of the daemon/host process
    client_cpu: float | None = None
    sys: float | None = None  # of `cpu`, seconds in the kernel

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.count * 1e6


def bare(pair: Pair, kind: str, expected: int) -> Run:
    r = pair.host.call("bare_messages" if kind == "messages" else "bare_members",
                       group=BENCH_GROUP)
    _check(f"bare {kind}", r["count"], expected)
    return Run(r["count"], r["wall"], r["cpu"], sys=r.get("sys"))


def through_daemon(pair: Pair, kind: str, group: str, expected: int | None) -> Run:
    """One users/chats stream; the daemon's CPU is read just before and just after it."""
    event = "chats" if kind == "messages" else "users"
    before = pair.host.call("stats")
    r = pair.client.call("stream", event=event, group=group)
    after = pair.host.call("stats")
    if r["count"] != r["done_count"]:
        raise RuntimeError(f"{event}: counted {r['count']} frames, 'done' says {r['done_count']}")
    if expected is not None:
        _check(f"daemon {kind}", r["count"], expected)
    return Run(r["count"], r["wall"], after["cpu"] - before["cpu"], r["client_cpu"],
               sys=after["sys"] - before["sys"] if "sys" in after else None)


def _check(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: got {got} items, expected {expected}")


def yardstick(pair: Pair) -> float:
    ms: float = pair.host.call("yardstick")["ms"]
    return ms


def fmt_run(label: str, run: Run, unit: str) -> str:
    line = (f"    {label:<7} {run.count:>9,} {unit} in {run.wall:6.2f} s = "
            f"{run.rate / 1000:6.1f} k/s, host CPU {run.cpu_us:5.1f} µs/{unit[:-1]}")
    if run.sys is not None:
        line += f" (kernel {run.sys / run.count * 1e6:4.1f})"
    if run.client_cpu is not None:
        line += f"  (client CPU {run.client_cpu / run.count * 1e6:4.1f} µs)"
    return line


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str) -> str:
    """'median (min..max)' of a list, or the value alone for one round."""
    if len(values) == 1:
        return format(values[0], fmt)
    return (f"{format(med(values), fmt)} ({format(min(values), fmt)}.."
            f"{format(max(values), fmt)})")


@dataclass
class Throughput:
    ratio: list[float]
    added_us: list[float]
    bare_rate: list[float]
    daemon_rate: list[float]
    bare_cpu: list[float]
    daemon_cpu: list[float]
    a_first: list[bool] = field(default_factory=list)  # each round's order

    def by_order(self) -> str:
        """Median ratio of the A-then-B rounds / of the B-then-A rounds: an order effect
        shows as a gap between the two (bench/README.md, \"The members round-order effect\")."""
        first = [r for r, a in zip(self.ratio, self.a_first, strict=True) if a]
        second = [r for r, a in zip(self.ratio, self.a_first, strict=True) if not a]
        if not first or not second:
            return "-"
        return f"{med(first):.3f} / {med(second):.3f}"


def prime(pair: Pair, which: str, members: int) -> None:
    """An uncounted members run of the side about to be measured, just before it (--prime).

    Without it, what runs just before a measured run depends on the order: a B-first round's
    B follows 2.4 s of bare iter_messages (the reader process idle), an A-first round's A
    follows a daemon stream. One quiet run showed members B slower in B-first rounds (0.779 /
    0.820 against 0.858..0.932); callgrind counts the same instructions for B whatever ran
    before it, and paired checks on a loaded machine found no order effect beyond noise
    (bench/README.md, "The members round-order effect"). Primed, every measured run, A and B
    alike, follows the same work on its own path; a members run is short (~0.15 s), so
    messages runs are primed with one too. Off by default: the recorded runs did not prime.
    """
    if which == "A":
        bare(pair, "members", members)
    else:
        through_daemon(pair, "members", BENCH_GROUP, members)


def run_pair(pair: Pair, kind: str, n: int, a_first: bool,
             primer: int | None = None) -> tuple[Run, Run]:
    unit = "msgs" if kind == "messages" else "mbrs"
    order = ("A", "B") if a_first else ("B", "A")
    runs: dict[str, Run] = {}
    for which in order:
        if primer:
            prime(pair, which, primer)
        if which == "A":
            runs["A"] = bare(pair, kind, n)
            print(fmt_run("A bare", runs["A"], unit), flush=True)
        else:
            runs["B"] = through_daemon(pair, kind, BENCH_GROUP, n)
            print(fmt_run("B tgws", runs["B"], unit), flush=True)
    return runs["A"], runs["B"]


def throughput_phase(args: argparse.Namespace) -> tuple[dict[str, Throughput], list[str]]:
    print(f"\n== throughput: {args.messages:,} messages, {args.members:,} members, "
          f"{args.rounds} round(s) after a warm-up ==", flush=True)
    pair = Pair(messages=args.messages, members=args.members)
    profile_text: list[str] = []
    try:
        print(f"  yardstick page: {pair.ready['page_bytes']:,} bytes (100 messages)")
        steps = pair.client.call("login")["steps"]
        print(f"  client logged in: {' -> '.join(steps)}")
        print("  warm-up (not counted)")
        for kind, n in (("messages", args.messages), ("members", args.members)):
            run_pair(pair, kind, n, a_first=True)
        results = {k: Throughput([], [], [], [], [], []) for k in ("messages", "members")}
        for i in range(args.rounds):
            a_first = i % 2 == 0
            before = yardstick(pair)
            print(f"  round {i + 1}/{args.rounds} ({'A then B' if a_first else 'B then A'}), "
                  f"yardstick before {before:.2f} ms", flush=True)
            for kind, n in (("messages", args.messages), ("members", args.members)):
                a, b = run_pair(pair, kind, n, a_first, primer=args.primer)
                t = results[kind]
                t.ratio.append(b.rate / a.rate)
                t.added_us.append(b.cpu_us - a.cpu_us)
                t.bare_rate.append(a.rate)
                t.daemon_rate.append(b.rate)
                t.bare_cpu.append(a.cpu_us)
                t.daemon_cpu.append(b.cpu_us)
                t.a_first.append(a_first)
                print(f"    -> {kind}: ratio B/A {b.rate / a.rate:.3f}, "
                      f"added CPU {b.cpu_us - a.cpu_us:+.1f} µs/item", flush=True)
            print(f"    yardstick after {yardstick(pair):.2f} ms", flush=True)
        if args.profile:
            profile_text = profile(pair, args)
    finally:
        pair.close()
    return results, profile_text


def profile(pair: Pair, args: argparse.Namespace) -> list[str]:
    """cProfile (event-loop thread, sorted by tottime) of one daemon and one bare run."""
    out: list[str] = []
    for kind, n in (("messages", args.messages), ("members", args.members)):
        for label, start in (("B: through the daemon", True), ("A: bare Telethon", False)):
            pair.host.call("profile", on=True)
            if start:
                run = through_daemon(pair, kind, BENCH_GROUP, n)
            else:
                run = bare(pair, kind, n)
            prof = pair.host.call("profile", on=False, top=args.profile_top)
            out.append(f"--- cProfile, {label}: {run.count:,} {kind}, profiled wall "
                       f"{run.wall:.2f} s, sum of tottime {prof['total_tottime']:.2f} s "
                       f"({prof['total_tottime'] / run.count * 1e6:.1f} µs/item under "
                       "cProfile)")
            out.append(prof["text"].rstrip())
    micro = pair.host.call("micro", group=BENCH_GROUP)
    out.append("--- direct timings on parsed Telethon objects (best of 5, µs per item)")
    out.append(f"  serialize.message_envelope {micro['message_envelope_us']:.2f} "
               f"(of which serialize.message {micro['message_dict_us']:.2f}); "
               f"mean frame {micro['frame_bytes']:.0f} B")
    out.append(f"  serialize.user_envelope {micro['user_envelope_us']:.2f}; "
               f"serialize.join_date {micro['join_date_us']:.2f}")
    out.append(f"  per page, as streams call them: serialize.message_frames "
               f"{micro['message_frames_us']:.2f}, serialize.user_frames "
               f"{micro['user_frames_us']:.2f}, joins.JoinMark.delivered "
               f"{micro['join_mark_us']:.2f}")
    out.append(f"  store.commit_offset (once per batch): {micro['commit_cpu_us']:.0f} µs CPU, "
               f"{micro['commit_wall_us']:.0f} µs wall per call")
    return out


@dataclass
class BigStream:
    count: int
    wall: float
    rss_before: int
    peak: int
    hwm: int
    rss_after: int


def big_stream_phase(args: argparse.Namespace) -> BigStream:
    print(f"\n== memory: one stream of {args.big:,} lazily generated messages, fresh daemon ==",
          flush=True)
    pair = Pair(big=args.big)
    try:
        pair.client.call("login")
        # Warm every code path once (templates, caches, lazy imports), on another group.
        through_daemon(pair, "messages", WARM_GROUP, None)
        before = pair.host.call("stats", gc=True)
        pair.host.call("sample", on=True)
        run = through_daemon(pair, "messages", BIG_GROUP, args.big)
        peak = pair.host.call("sample", on=False)["max_rss"]
        after = pair.host.call("stats")
    finally:
        pair.close()
    result = BigStream(run.count, run.wall, before["rss"], peak, after["hwm"], after["rss"])
    print(f"  {run.count:,} messages in {run.wall:.1f} s = {run.rate / 1000:.1f} k/s, "
          f"host CPU {run.cpu_us:.1f} µs/msg")
    print(f"  RSS before {result.rss_before / MIB:.1f} MiB, peak sampled every 50 ms "
          f"{result.peak / MIB:.1f} MiB (VmHWM {result.hwm / MIB:.1f} MiB), "
          f"after {result.rss_after / MIB:.1f} MiB", flush=True)
    return result


@dataclass
class Idle:
    count: int
    rss_before: int
    rss_after: int

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.count


def wait_connections(pair: Pair, wanted: int, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while pair.host.call("stats")["connections"] != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon never reached {wanted} connections")
        time.sleep(0.1)


def idle_phase(args: argparse.Namespace) -> Idle:
    print(f"\n== memory: {args.idle:,} idle websocket connections, fresh daemon ==", flush=True)
    pair = Pair(max_connections=args.idle + 10)
    try:
        # One connection first, so one-time costs (lazy imports, first handshake) are excluded.
        pair.client.call("idle", n=1)
        wait_connections(pair, 1)
        before = pair.host.call("stats", gc=True)
        opened = pair.client.call("idle", n=args.idle)
        wait_connections(pair, args.idle + 1)
        time.sleep(1.0)  # let every handler reach its idle recv()
        after = pair.host.call("stats", gc=True)
        pair.client.call("close_idle")
    finally:
        pair.close()
    result = Idle(args.idle, before["rss"], after["rss"])
    print(f"  opened {args.idle:,} in {opened['wall']:.1f} s; RSS {result.rss_before / MIB:.1f}"
          f" -> {result.rss_after / MIB:.1f} MiB = {result.per_connection / KIB:.1f} KiB each",
          flush=True)
    return result


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else "PASS" if ok else "MISS"


def table(rows: list[tuple[str, str, str, bool | None]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len("measured"), *(len(r[1]) for r in rows))
    w2 = max(len("target"), *(len(r[2]) for r in rows))
    print(f"\n{'figure':<{w0}}  {'measured':<{w1}}  {'target':<{w2}}  result")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * w2}  ------")
    for name, measured, target, ok in rows:
        print(f"{name:<{w0}}  {measured:<{w1}}  {target:<{w2}}  {verdict(ok)}")


def revision() -> str:
    """Which tgws was measured: the commit, and whether tgws/ had uncommitted changes."""
    repo = HERE.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "tgws"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "tgws at an unknown revision (no git)"
    return f"tgws at {head}" + (" with uncommitted changes in tgws/" if dirty else "")


def environment() -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}"
                         for p in ("websockets", "Telethon", "orjson", "aiosqlite", "cryptg"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
            f"Python {platform.python_version()}; {versions}; load average {load}; "
            f"{revision()}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="tgws streaming benchmark: daemon against bare Telethon, side by side.")
    parser.add_argument("--messages", type=int, help="messages per throughput run "
                        f"(default {FULL['messages']:,}; quick {QUICK['messages']:,})")
    parser.add_argument("--members", type=int, help="members per run (default "
                        f"{FULL['members']:,}, at most 10,000: Telegram's listing cap)")
    parser.add_argument("--rounds", type=int, help=f"A/B rounds (default {FULL['rounds']})")
    parser.add_argument("--big", type=int, help=f"messages in the RSS run "
                        f"(default {FULL['big']:,})")
    parser.add_argument("--idle", type=int, help=f"idle connections (default {FULL['idle']:,})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round: a smoke run in well under 30 s")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one daemon run and one bare run (top by tottime)")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--prime", action="store_true",
                        help="an uncounted members run of the same side (A or B) before each "
                        "measured run, so that no measured run follows the other side's work "
                        "(see bench/README.md, \"The members round-order effect\")")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a tgws config override for the daemon, e.g. "
                        "streaming.batch_size=500 (repeatable)")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio",
                        help="the host's event loop (the daemon's and bare Telethon's)")
    parser.add_argument("--compare-loops", action="store_true",
                        help="only the throughput rounds, on an asyncio host and a uvloop "
                        "host side by side")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 1 <= args.members <= 10_000:
        parser.error("--members must be 1..10,000 (the sandbox, like Telegram, lists 10,000)")
    if args.messages < 1 or args.rounds < 1 or args.big < 1 or args.idle < 1:
        parser.error("sizes and rounds must be at least 1")
    args.primer = args.members if args.prime else None
    return args


def compare_loops(args: argparse.Namespace) -> None:
    """A and B on an asyncio host and on a uvloop host, alternating within every round."""
    print(f"\n== event loops side by side: {args.messages:,} messages, {args.members:,} members, "
          f"{args.rounds} round(s) after a warm-up ==", flush=True)
    pairs = {loop: Pair(messages=args.messages, members=args.members, loop=loop)
             for loop in LOOPS}
    figures: dict[tuple[str, str], Throughput] = {
        (loop, kind): Throughput([], [], [], [], [], [])
        for loop in LOOPS for kind in ("messages", "members")}
    speedup: dict[str, list[float]] = {"messages": [], "members": []}
    try:
        for pair in pairs.values():
            pair.client.call("login")
        for i in range(args.rounds + 1):
            order = LOOPS if i % 2 == 0 else LOOPS[::-1]
            print(f"  {'warm-up (not counted)' if i == 0 else f'round {i}/{args.rounds}'}: "
                  f"{' then '.join(order)}", flush=True)
            for kind, n in (("messages", args.messages), ("members", args.members)):
                b_rates = {}
                for loop in order:
                    a, b = run_pair(pairs[loop], kind, n, a_first=i % 2 == 0,
                                    primer=args.primer)
                    b_rates[loop] = b.rate
                    if i:
                        t = figures[(loop, kind)]
                        t.ratio.append(b.rate / a.rate)
                        t.added_us.append(b.cpu_us - a.cpu_us)
                        t.bare_rate.append(a.rate)
                        t.daemon_rate.append(b.rate)
                    print(f"    -> {loop} {kind}: ratio B/A {b.rate / a.rate:.3f}, "
                          f"added CPU {b.cpu_us - a.cpu_us:+.1f} µs/item", flush=True)
                if i:
                    speedup[kind].append(b_rates["uvloop"] / b_rates["asyncio"])
    finally:
        for pair in pairs.values():
            pair.close()
    rows: list[tuple[str, str, str, bool | None]] = []
    for kind in ("messages", "members"):
        for loop in LOOPS:
            t = figures[(loop, kind)]
            rows.append((f"{kind}, {loop}: through the daemon, items/s",
                         spread(t.daemon_rate, ",.0f"), "-", None))
            rows.append((f"{kind}, {loop}: ratio daemon/bare", spread(t.ratio, ".3f"),
                         f">= {RATIO}", med(t.ratio) >= RATIO))
            rows.append((f"{kind}, {loop}: added CPU, µs/item", spread(t.added_us, ".1f"),
                         f"<= {ADDED_US}", med(t.added_us) <= ADDED_US))
        rows.append((f"{kind}: daemon items/s, uvloop / asyncio", spread(speedup[kind], ".3f"),
                     "-", None))
    print(f"\n== results: median (min..max) over {args.rounds} round(s) ==")
    table(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Pair.settings = tuple(args.set)
    Pair.loop = args.loop
    started = time.monotonic()
    print("tgws streaming benchmark (sandbox Telegram in wire mode; A = bare Telethon in the "
          "daemon's process, B = through the daemon to a websocket client in another process)")
    print(environment(), flush=True)
    if args.set:
        print(f"daemon config overrides: {', '.join(args.set)}")
    if args.compare_loops:
        compare_loops(args)
        print(f"\ntotal time {time.monotonic() - started:.1f} s")
        return 0
    print(f"host event loop: {args.loop}")
    if args.primer:
        print("--prime: each measured run follows an uncounted members run of its own side")
    results, profile_text = throughput_phase(args)
    big = big_stream_phase(args)
    idle = idle_phase(args)

    m, u = results["messages"], results["members"]
    rows: list[tuple[str, str, str, bool | None]] = [
        ("1. bare Telethon iter_messages, msgs/s", spread(m.bare_rate, ",.0f"), "-", None),
        ("2. through the daemon, msgs/s", spread(m.daemon_rate, ",.0f"), "-", None),
        ("3. ratio daemon/bare, messages", spread(m.ratio, ".3f"), f">= {RATIO}",
         med(m.ratio) >= RATIO),
        ("4. daemon's added CPU, µs/msg", spread(m.added_us, ".1f"), f"<= {ADDED_US}",
         med(m.added_us) <= ADDED_US),
        ("   (host CPU bare / daemon, µs/msg)",
         f"{med(m.bare_cpu):.1f} / {med(m.daemon_cpu):.1f}", "-", None),
        ("   (ratio in A-first / B-first rounds)", m.by_order(), "-", None),
        ("5. bare Telethon iter_participants, mbrs/s", spread(u.bare_rate, ",.0f"), "-", None),
        ("   through the daemon, mbrs/s", spread(u.daemon_rate, ",.0f"), "-", None),
        ("   ratio daemon/bare, members", spread(u.ratio, ".3f"), f">= {RATIO}",
         med(u.ratio) >= RATIO),
        ("   daemon's added CPU, µs/member", spread(u.added_us, ".1f"), f"<= {ADDED_US}",
         med(u.added_us) <= ADDED_US),
        ("   (ratio in A-first / B-first rounds)", u.by_order(), "-", None),
        (f"6. peak RSS streaming {big.count:,} msgs, MiB", f"{big.peak / MIB:.1f}", "-", None),
        ("   RSS growth during that stream, MiB", f"{(big.peak - big.rss_before) / MIB:.1f}",
         "<= 20", big.peak - big.rss_before <= 20 * MIB),
        (f"7. RSS per idle connection ({idle.count:,} open), KiB",
         f"{idle.per_connection / KIB:.1f}", f"<= {IDLE_KIB}",
         idle.per_connection <= IDLE_KIB * KIB),
    ]
    print(f"\n== results: median (min..max) over {args.rounds} round(s); ratios and CPU "
          "differences are paired within a round ==")
    table(rows)
    if profile_text:
        print("\n== profile ==")
        print("\n".join(profile_text))
    print(f"\ntotal time {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
