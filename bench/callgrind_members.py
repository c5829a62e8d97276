"""Instructions per member: `users` through the daemon against bare iter_participants.

    python bench/callgrind_members.py [--members M] [--keep DIR]

Instruction counts (valgrind --tool=callgrind) repeat to within a fraction of a percent on a
busy machine, where wall and CPU times move by tens of percent (bench/README.md). This runs
bench/stream_host.py's Host (the real Daemon in-process on the sandbox in wire mode, the bench
world, the bare Telethon client on the same loop) under callgrind with instrumentation off,
and switches it on only around one measured stream, through callgrind's client requests
(a small C helper built with gcc). The websocket reader is bench/stream_client.py in its
own process, outside valgrind, so its instructions are not counted: the figure is the host's
alone, every thread (aiosqlite's too), as bench/stream.py's CPU figure is.

A (bare `iter_participants`) and B (a `users` request) are each streamed once uncounted
(warm-up: imports, caches, the first resolve), then counted. Prints instructions per member
for each, and B - A: the daemon's added instructions per member. Messages have their own
harness (bench/callgrind_chats.py). Needs valgrind and gcc (and valgrind/callgrind.h); about
2 minutes for 10,000 members.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_on(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_off(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS; }
"""


def build_helper(tmp: Path) -> Path:
    src, lib = tmp / "cg.c", tmp / "libcg.so"
    src.write_text(HELPER_C)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


# --- the host, run under valgrind ----------------------------------------------------------
def host_main(argv: list[str]) -> None:
    import asyncio

    from command_loop import Command, serve_commands
    from stream_host import Host

    parser = argparse.ArgumentParser()
    parser.add_argument("--helper", required=True)
    parser.add_argument("--members", type=int, default=0)
    args = parser.parse_args(argv)
    # What stream_host's Host reads besides: no message history, no big group.
    args.messages, args.big, args.max_connections, args.set = 0, 0, 10, []
    helper = ctypes.CDLL(args.helper)

    async def serve() -> None:
        host = Host(args)
        ready = await host.start()

        async def cg(cmd: dict[str, Any]) -> dict[str, Any]:
            (helper.cg_on if cmd["on"] else helper.cg_off)()
            return {}

        commands: dict[str, Command] = {"cg": cg, "bare_members": host.bare_members}
        try:
            await serve_commands(ready, commands)
        finally:
            await host.close()

    asyncio.run(serve())


# --- the orchestrator ----------------------------------------------------------------------
def dump_total(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    from stream import BENCH_GROUP, CLIENT, Proc

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--keep", help="directory to keep the callgrind dumps in")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tgws-cg-"))
    tmp.mkdir(parents=True, exist_ok=True)
    for old in glob.glob(str(tmp / "cg.out*")):
        os.unlink(old)
    lib = build_helper(tmp)
    out = tmp / "cg.out"
    # One hash seed for every run: set and dict layouts (and so their probes) repeat.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    host = Proc("host", [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, str(Path(__file__).resolve()), "--host", "--helper", str(lib),
        "--members", str(args.members)])
    ready = host.read()
    client = Proc("client", [sys.executable, str(CLIENT), "--url",
                             f"ws://127.0.0.1:{ready['port']}{ready['path']}",
                             "--key", ready["key"], "--phone", ready["phone"]])
    try:
        client.read()
        client.call("login")
        results: dict[str, int] = {}
        for counted in (False, True):
            for side in ("A", "B"):
                if counted:
                    host.call("cg", on=True)
                if side == "A":
                    count = host.call("bare_members", group=BENCH_GROUP)["count"]
                else:
                    count = client.call("stream", event="users", group=BENCH_GROUP)["count"]
                if counted:
                    host.call("cg", on=False)
                    results[side] = count
    finally:
        client.close()
        host.close()
    dumps = sorted(glob.glob(str(out) + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    if len(dumps) < 2:
        raise SystemExit(f"expected two dumps in {tmp}, found {dumps}")
    a, b = dump_total(dumps[-2]), dump_total(dumps[-1])
    na, nb = results["A"], results["B"]
    print(json.dumps({"members_A": na, "members_B": nb,
                      "instr_per_member_A": round(a / na), "instr_per_member_B": round(b / nb),
                      "added_per_member": round(b / nb - a / na),
                      "ratio_instr": round(a / na / (b / nb), 3),
                      "dumps": dumps[-2:] if args.keep else None}, indent=1))
    if not args.keep:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--host"]:
        host_main(sys.argv[2:])
    else:
        main()
