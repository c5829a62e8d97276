"""Instructions per message of a `chats` stream: through the daemon (B) and bare Telethon (A).

    python bench/callgrind_chats.py [--small 1000] [--large 6000] [--modes bare,daemon]
                                    [--tree PATH] [--set KEY=VALUE ...] [--keep DIR]

Wall-clock figures on a shared 2-core machine move by tens of percent from round to round;
instruction counts do not. This runs bench/stream_host.py (the real Daemon on the sandbox in
wire mode, plus the bare Telethon client: exactly bench/stream.py's host) under
`valgrind --tool=callgrind`, every thread counted, and drives it with bench/stream_client.py
running natively in its own process, so the websocket reader's work is never counted.

Per mode, two hosts: one streams `--small` messages, one `--large`; both pay the same start-up,
login and resolve, so (Ir(large) - Ir(small)) / (large - small) is the cost of one more
message and nothing else. A (bare) is `iter_messages(reverse=True)` as Account.message_pages
used to call it; B is the whole `chats` request: handler, streaming, serialization, frames,
acks and offset commits.

Time-based cadences would count differently under valgrind (~50x slower): the host gets
`streaming.ack_interval` far above the run, so pings and commits follow `ack_every` (1,000
messages) alone, as on a fast machine. `--tree` runs another checkout's bench and tgws (e.g.
`git archive <commit> | tar -x -C /tmp/old`), to compare trees with the same yardstick.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from stream import Proc

HERE = Path(__file__).resolve().parent
BENCH_GROUP = "benchgroup00001"
SLOW_ACKS = "streaming.ack_interval=1000000"  # acks by count alone (see the docstring)


def total_ir(path: Path) -> int:
    """The `summary:` (or `totals:`) instruction count of a callgrind output file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(found.group(1))


# The venv installs this checkout's tgws in editable mode, through an import hook that runs
# before PYTHONPATH is searched: another tree's tgws is only imported once that hook is gone.
_DROP_EDITABLE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not type(f).__module__.startswith("__editable__")
                    and not getattr(f, "__module__", "").startswith("__editable__")]
"""


def use_tree(tree: Path, hooks: Path) -> None:
    """Make the children (hosts and clients) import `tree`'s tgws and bench modules."""
    path = [str(tree)]
    if tree != HERE.parent:
        (hooks / "sitecustomize.py").write_text(_DROP_EDITABLE, encoding="utf-8")
        path.append(str(hooks))
    os.environ["PYTHONPATH"] = os.pathsep.join(path)
    # A fixed hash seed: with random ones, set and dict layouts (and so the counts) move by
    # a few percent from run to run.
    os.environ["PYTHONHASHSEED"] = "0"


def run_once(tree: Path, mode: str, messages: int, settings: list[str], out: Path) -> int:
    """One host under callgrind streaming `messages` messages once; its instruction count."""
    host_argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 "--separate-threads=no", "--quiet",
                 sys.executable, str(tree / "bench" / "stream_host.py"),
                 "--messages", str(messages), "--members", "0", "--max-connections", "10"]
    for item in (SLOW_ACKS, *settings):
        host_argv += ["--set", item]
    host = Proc("host under valgrind", host_argv)
    try:
        ready = host.read()
        if mode == "bare":
            result = host.call("bare_messages", group=BENCH_GROUP)
        else:
            url = f"ws://127.0.0.1:{ready['port']}{ready['path']}"
            client_argv = [sys.executable, str(tree / "bench" / "stream_client.py"),
                           "--url", url, "--key", ready["key"], "--phone", ready["phone"]]
            client = Proc("client", client_argv)
            try:
                client.read()
                client.call("login")
                result = client.call("stream", event="chats", group=BENCH_GROUP)
            finally:
                client.close()
        if result["count"] != messages:
            raise RuntimeError(f"{mode}: {result['count']} of {messages} messages")
    finally:
        host.close()
    if host.proc.returncode != 0:
        raise RuntimeError(f"host under valgrind exited with {host.proc.returncode}")
    return total_ir(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--modes", default="bare,daemon")
    parser.add_argument("--tree", type=Path, default=HERE.parent,
                        help="the checkout whose bench/ and tgws/ run (default: this one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the callgrind.out files here (for callgrind_annotate)")
    args = parser.parse_args()
    if args.large <= args.small:
        raise SystemExit("--large must be more than --small")
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="tgws-callgrind-") as tmp:
        outdir = args.keep or Path(tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        use_tree(tree, Path(tmp))
        per_message: dict[str, float] = {}
        for mode in args.modes.split(","):
            counts = {}
            for size in (args.small, args.large):
                out = outdir / f"callgrind.{mode}.{size}.out"
                counts[size] = run_once(tree, mode, size, args.set, out)
                print(f"  {mode:6} {size:>7,} messages: {counts[size]:>15,} instructions",
                      flush=True)
            per_message[mode] = (counts[args.large] - counts[args.small]) / (
                args.large - args.small)
            print(f"{mode:6} instructions per message: {per_message[mode]:,.0f}", flush=True)
        if "bare" in per_message and "daemon" in per_message:
            added = per_message["daemon"] - per_message["bare"]
            print(f"daemon adds {added:,.0f} instructions per message "
                  f"({per_message['daemon'] / per_message['bare']:.3f} of bare's)")


if __name__ == "__main__":
    main()
