"""bench/stream.py --quick runs end to end and prints every figure, so the benchmark cannot rot.

No timing is asserted: the machine is small and noisy (perf-physics.md), and a benchmark that
fails a test suite on a slow minute would be switched off. Only "it runs and reports" is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench" / "stream.py"

FIGURES = (
    "1. bare Telethon iter_messages, msgs/s",
    "2. through the daemon, msgs/s",
    "3. ratio daemon/bare, messages",
    "4. daemon's added CPU, µs/msg",
    "5. bare Telethon iter_participants, mbrs/s",
    "through the daemon, mbrs/s",
    "ratio daemon/bare, members",
    "6. peak RSS streaming 20,000 msgs, MiB",
    "RSS growth during that stream, MiB",
    "7. RSS per idle connection (50 open), KiB",
)


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_every_figure() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=timeout(120), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    for figure in FIGURES:
        row = next((line for line in lines if figure in line), None)
        assert row is not None, f"{figure!r} missing from:\n{done.stdout}"
        # Every row ends with its verdict; a figure that was not measured has no number.
        assert row.rstrip().endswith(("PASS", "MISS", "info")), row
        assert any(ch.isdigit() for ch in row.split(figure, 1)[1]), row
    assert "yardstick before" in done.stdout and "yardstick after" in done.stdout
