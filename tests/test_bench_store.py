"""bench/store.py runs end to end and prints both stores' figures, so it cannot rot.

No timing is asserted (the machine is small and noisy): only that both dialects were measured.
"""

from __future__ import annotations

import re

import pytest

from tests.support import run_bench


@pytest.mark.slow
def test_store_benchmark_measures_sqlite_and_postgresql() -> None:
    out = run_bench("store.py", "--commits", "100", "--accounts", "2", "--rounds", "1")
    for dialect in ("sqlite", "postgresql"):
        row = re.search(rf"^{dialect}\s+(\d+)\s+(\d+)\s+([\d,]+)$", out, re.MULTILINE)
        assert row is not None, f"no {dialect} row in:\n{out}"
        p50, p99, rate = int(row[1]), int(row[2]), int(row[3].replace(",", ""))
        assert 0 < p50 <= p99 and rate > 0
