"""Offset commits on both stores, side by side in one run: sqlite and PostgreSQL.

    python bench/store.py [--commits N] [--accounts K] [--rounds R]

What a stream pays per batch is one ``Store.commit_offset``. This measures it the way the
daemon calls it, for each dialect in the same run (rounds alternate the order, medians):

- latency: N commits one after another by one task (one account streaming): p50 and p99 in µs;
- aggregate: K tasks (K accounts streaming at once), N commits each, on one Store: commits/s.

PostgreSQL is a throwaway server from Debian's package, started the way the tests start it
(tests/pgserver.py: fsync off; a production server with fsync on pays a WAL flush per commit,
which sqlite's synchronous=NORMAL does not). sqlite is a file in a temporary directory.
Figures only: the targets for them live in issue 15 and docs/scaling.md, never in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The repository root is on the path now (for tests.pgserver).
from tests.pgserver import PgServer
from tgws.store import Offset, Store


async def one_account(store: Store, key_id: int, commits: int, group: int) -> list[float]:
    """Seconds per commit, one task committing one group's offset forward."""
    took: list[float] = []
    for value in range(1, commits + 1):
        start = time.perf_counter()
        await store.commit_offset(key_id, "chats", group, Offset(value))
        took.append(time.perf_counter() - start)
    return took


async def measure(target: str, commits: int, accounts: int) -> tuple[float, float, float]:
    """(p50 µs, p99 µs, aggregate commits/s) for the store at ``target``."""
    async with await Store.open(target) as store:
        keys = []
        for n in range(accounts):
            key = await store.create_api_key(f"bench{n}-{time.monotonic_ns()}")
            record = await store.verify_api_key(key)
            assert record is not None
            keys.append(record.id)
        took = await one_account(store, keys[0], commits, group=1)
        quantiles = statistics.quantiles(took, n=100)
        start = time.perf_counter()
        await asyncio.gather(*(one_account(store, key, commits, group=2) for key in keys))
        rate = accounts * commits / (time.perf_counter() - start)
    return quantiles[49] * 1e6, quantiles[98] * 1e6, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=2_000, help="commits per task")
    parser.add_argument("--accounts", type=int, default=8, help="tasks committing at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    server = PgServer.start()
    results: dict[str, list[tuple[float, float, float]]] = {"sqlite": [], "postgresql": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                order = ["sqlite", "postgresql"] if round_ % 2 == 0 else ["postgresql", "sqlite"]
                for dialect in order:
                    target = (str(Path(tmp) / f"r{round_}.db") if dialect == "sqlite"
                              else server.new_database())
                    results[dialect].append(
                        asyncio.run(measure(target, args.commits, args.accounts)))
    finally:
        server.stop()
    print(f"offset commits: {args.commits} per task, {args.accounts} tasks at once, "
          f"medians of {args.rounds} rounds")
    concurrent = f"commits/s ({args.accounts})"
    print(f"{'store':<12} {'p50 µs':>8} {'p99 µs':>8} {concurrent:>16}")
    for dialect, runs in results.items():
        p50, p99, rate = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{dialect:<12} {p50:>8.0f} {p99:>8.0f} {rate:>16,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
