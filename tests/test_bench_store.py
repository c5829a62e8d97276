"""bench/store.py runs end to end and prints both stores' figures, so it cannot rot.

No timing is asserted (the machine is small and noisy): only that both dialects were measured.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench" / "store.py"


@pytest.mark.slow
def test_store_benchmark_measures_sqlite_and_postgresql() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--commits", "100", "--accounts", "2",
                           "--rounds", "1"], capture_output=True, text=True,
                          timeout=timeout(120), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    for dialect in ("sqlite", "postgresql"):
        row = re.search(rf"^{dialect}\s+(\d+)\s+(\d+)\s+([\d,]+)$", done.stdout, re.MULTILINE)
        assert row is not None, f"no {dialect} row in:\n{done.stdout}"
        p50, p99, rate = int(row[1]), int(row[2]), int(row[3].replace(",", ""))
        assert 0 < p50 <= p99 and rate > 0
