"""bench/hostile.py runs end to end (`--quick`) and prints the hostile run beside the calm one:
it cannot rot, and its scripted row shows each time what issue 10 says it shows.

No timing is asserted (the machine is small and noisy): only which streams completed. The
daemon completes every stream, calm and hostile; in the scripted row (one FLOOD_WAIT_1 at
the same page of each side's stream) bare Telethon with the daemon's own options raises
FloodWaitError half-way, and with Telethon's own flood sleeping it completes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench" / "hostile.py"
CALM = ("testgroup00001", "UnderWorld4444", "testgroup00002")
HOSTILE = (*CALM, "holeyhistory1", "holeychannel1", "upgradedgroup1")


@pytest.mark.slow
def test_hostile_benchmark_prints_both_worlds_and_the_daemon_completes_where_bare_raises(
        ) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=timeout(180), check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    rows: dict[tuple[str, str], list[str]] = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        if "|" in line and cells[0] in ("calm", "hostile", "scripted"):
            rows[(cells[0], cells[1])] = [c.strip() for c in line.split("|")]
    expected = {("calm", g) for g in CALM} | {("hostile", g) for g in HOSTILE}
    assert set(rows) == expected | {("scripted", "testgroup00001")}, done.stdout
    for key, (_, daemon, bare, bare_waits, faults) in rows.items():
        assert daemon.endswith(" 1/1"), (key, daemon)  # the daemon completed every stream
        if key[0] != "scripted":
            continue
        # Each side met the scripted flood once; only bare Telethon gave up on it.
        assert faults == "1/1/1", done.stdout
        assert bare == "- 0/1" and bare_waits.endswith(" 1/1"), done.stdout
    failed = done.stdout.split("streams that did not complete:", 1)[1].strip().splitlines()
    scripted = [line for line in failed if line.split()[0] == "scripted"]
    assert len(scripted) == 1 and "bare " in scripted[0], failed
    assert "FloodWaitError" in scripted[0], scripted
