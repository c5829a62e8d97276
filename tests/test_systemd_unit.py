"""The shipped systemd unit: it loads cleanly, and its sandbox stays rated "OK"."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "tgws.service"
MAX_EXPOSURE = 2.0  # systemd-analyze's "OK" band; the README quotes the measured value

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not installed (non-systemd host); cannot verify the unit",
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Minimal unit-file reader: section -> key -> every value in order.

    configparser does not fit: units repeat keys (SystemCallFilter=) and use `$` and `%`.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values is not None, f"{key}= missing from {UNIT.name}"
    return values[-1]


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    # No colours or pager, so the text is parseable whatever the terminal.
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def existing_executable() -> str:
    """Something that exists here, to stand in for /usr/local/bin/tgws during verify."""
    candidates = [Path(sys.executable).parent / "tgws", Path("/bin/true"), Path("/usr/bin/true")]
    for path in candidates:
        if os.access(path, os.X_OK):
            return str(path)
    pytest.skip("no executable to stand in for ExecStart")


def test_unit_basics(service: dict[str, list[str]]) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == "tgws"
    assert one(service, "StateDirectoryMode") == "0700"
    assert one(service, "ConfigurationDirectory") == "tgws"
    assert one(service, "Restart") == "on-failure"
    # Exit 2 is tgws's "bad config"; restarting cannot help.
    assert "2" in one(service, "RestartPreventExitStatus").split()
    assert one(service, "ExecStart").split()[1:] == ["serve", "--config", "/etc/tgws/tgws.toml"]
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(service, "WatchdogSec") == "30"
    # Optional ("-"): a missing secrets file must not stop the service from starting.
    assert one(service, "EnvironmentFile").startswith("-")
    families = one(service, "RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    # Telegram needs outbound TCP to any address: no network or IP lockdown.
    for key in ("PrivateNetwork", "IPAddressDeny", "IPAddressAllow"):
        assert key not in service, f"{key}= would cut tgws off from Telegram"


@needs_systemd_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    # ExecStart points at /usr/local/bin/tgws, which need not exist on a test machine and
    # would be the only complaint; swap in an existing executable, keep everything else.
    text = UNIT.read_text()
    stand_in = existing_executable()
    rewritten, count = re.subn(
        r"^ExecStart=/usr/local/bin/tgws ", f"ExecStart={stand_in} ", text, flags=re.M
    )
    assert count == 1, "ExecStart line not found where expected"
    unit = tmp_path / UNIT.name  # the file name is the unit name
    unit.write_text(rewritten)

    # --recursive-errors=no: judge this unit only, not the host's network-online.target etc.
    # --man=no: Documentation= man pages need not be installed here.
    proc = run_analyze("verify", "--recursive-errors=no", "--man=no", str(unit))
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, output
    # Warnings (unknown keys, bad values, ...) are printed without failing; allow none
    # about our unit. Lines about other units on this host are not ours to judge.
    ours = [line for line in output.splitlines() if UNIT.name in line or str(unit) in line]
    assert ours == [], output


@needs_systemd_analyze
def test_security_exposure_is_ok() -> None:
    proc = run_analyze("security", "--offline=true", str(UNIT))
    output = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output
