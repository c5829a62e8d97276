"""bench/watch.py --quick runs end to end and reports every figure, so it cannot rot.

No timing is asserted (a small, noisy machine): only that it runs, every message reached both
the bare Telethon handler and the watch, and the `latest` poll over idle groups made exactly
one request per 100 groups (that count is exact, not a timing).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench" / "watch.py"


@pytest.mark.slow
def test_quick_watch_benchmark_runs_and_reports_every_figure() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--objects"],
                          capture_output=True, text=True, timeout=timeout(180), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    sent = re.search(r"latency: (\d+) messages", out)
    assert sent, out
    for row in ("A. bare Telethon handler alone", "B. through the daemon alone",
                "C. both at once"):
        # p50, p99, and every message received on that path
        found = re.search(rf"{re.escape(row)}.*?\s(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(\d+)$",
                          out, re.MULTILINE)
        assert found and found.group(3) == sent.group(1), out
    assert re.search(r"added, B - A\s+-?\d+\.\d+\s+-?\d+\.\d+", out), out
    assert "latest over 100 idle groups: 1 Telegram requests" in out, out
    assert re.search(r"rss: one account watching \d+ groups .* \d+\.\d MiB", out), out
