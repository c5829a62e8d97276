"""bench/daemons.py runs end to end (tiny sizes) and prints its figures: it cannot rot.

No timing is asserted (the machine is small and noisy); only that both layouts streamed every
message of every account and the summary was printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench" / "daemons.py"


@pytest.mark.slow
def test_daemons_benchmark_runs_and_prints_both_layouts() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--accounts", "2", "--messages", "300",
                           "--rounds", "1"], capture_output=True, text=True,
                          timeout=timeout(120), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert any(line.startswith("round 1: one daemon ") for line in lines), done.stdout
    for figure in ("one daemon:", "two daemons:", "two / one:"):
        row = next((line for line in lines if line.strip().startswith(figure)), None)
        assert row is not None, f"{figure!r} missing:\n{done.stdout}"
        assert any(ch.isdigit() for ch in row), row
