"""bench/daemons.py runs end to end (tiny sizes) and prints its figures: it cannot rot.

No timing is asserted (the machine is small and noisy); only that both layouts streamed every
message of every account and the summary was printed.
"""

from __future__ import annotations

import pytest

from tests.support import run_bench


@pytest.mark.slow
def test_daemons_benchmark_runs_and_prints_both_layouts() -> None:
    out = run_bench("daemons.py", "--accounts", "2", "--messages", "300", "--rounds", "1")
    lines = out.splitlines()
    assert any(line.startswith("round 1: one daemon ") for line in lines), out
    for figure in ("one daemon:", "two daemons:", "two / one:"):
        row = next((line for line in lines if line.strip().startswith(figure)), None)
        assert row is not None, f"{figure!r} missing:\n{out}"
        assert any(ch.isdigit() for ch in row), row
