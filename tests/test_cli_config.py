"""The `tgws` command and configuration: a bad config is one stderr line and exit code 2.

Each test runs `python -m tgws` as a subprocess, in a scratch directory and with no TGWS_*
or STATE_DIRECTORY variables inherited from the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tgws import __version__

EXAMPLE = Path(__file__).resolve().parents[1] / "tgws.toml.example"
SECRET_HASH = "0123456789abcdef0123456789abcdef"


def run_tgws(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("TGWS_") and k != "STATE_DIRECTORY"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tgws", *args],
        cwd=cwd, env=environ, capture_output=True, text=True, timeout=30, check=False,
    )


def assert_one_line_config_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    line = lines[0]
    assert line.startswith("tgws: config error: "), line
    for name in names:
        assert name in line, (name, line)
    return line


BAD_FILES = {
    "unknown-key": ("[server]\nprot = 8000\n", "server.prot"),
    "unknown-section": ("[sever]\nport = 8000\n", "sever"),
    "wrong-type": ('[server]\nport = "8000"\n', "server.port"),
    "bool-for-int": ("[limits]\nfailed_logins_per_peer = true\n",
                     "limits.failed_logins_per_peer"),
    "out-of-range": ("[streaming]\nbatch_size = 5000\n", "streaming.batch_size"),
}


@pytest.mark.parametrize("command", ["serve", "check-config"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_config_file_is_one_stderr_line_naming_file_and_key_and_exit_2(
    tmp_path: Path, command: str, case: str
) -> None:
    text, key = BAD_FILES[case]
    path = tmp_path / "tgws.toml"
    path.write_text(text, encoding="utf-8")
    result = run_tgws(command, "--config", str(path), cwd=tmp_path)
    line = assert_one_line_config_error(result, str(path), key)
    assert line.startswith((f"tgws: config error: {path}: {key}: expected ",
                            f"tgws: config error: {path}: {key}: unknown key (known in "))
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_missing_config_file_is_one_stderr_line_naming_it_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "absent.toml"
    result = run_tgws(command, "--config", str(path), cwd=tmp_path)
    line = assert_one_line_config_error(result, str(path))
    assert line == f"tgws: config error: {path}: cannot read config file: no such file"


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_missing_config_file_from_tgws_config_is_refused_the_same_way(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "absent.toml"
    result = run_tgws(command, cwd=tmp_path, env={"TGWS_CONFIG": str(path)})
    assert_one_line_config_error(result, str(path), "no such file")


def test_bad_environment_value_is_one_stderr_line_naming_variable_and_key(tmp_path: Path) -> None:
    result = run_tgws("check-config", cwd=tmp_path, env={"TGWS_PORT": "http"})
    line = assert_one_line_config_error(result, "TGWS_PORT", "server.port")
    assert line == "tgws: config error: environment TGWS_PORT: server.port: expected an " \
        "integer, got 'http'"


def test_serve_without_telegram_credentials_is_a_config_error(tmp_path: Path) -> None:
    result = run_tgws("serve", "--config", str(EXAMPLE), "--db", str(tmp_path / "t.db"),
                      cwd=tmp_path)
    assert_one_line_config_error(result, "telegram.api_id", "telegram.api_hash")


def test_check_config_prints_settings_with_hash_masked(tmp_path: Path) -> None:
    result = run_tgws("check-config", "--config", str(EXAMPLE), cwd=tmp_path,
                      env={"TGWS_API_ID": "123456", "TGWS_API_HASH": SECRET_HASH})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert SECRET_HASH not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == f"# effective settings ({EXAMPLE}; secrets masked)"
    assert lines[-1] == "config OK"
    settings = json.loads("\n".join(lines[1:-1]))
    assert settings["telegram"]["api_hash"] == "********"
    assert settings["telegram"]["api_id"] == 123456
    assert settings["server"]["port"] == 8000
    assert settings["store"]["path"] == "tgws.db"
    assert settings["source"] == str(EXAMPLE)


def test_check_config_flags_override_environment(tmp_path: Path) -> None:
    result = run_tgws(
        "check-config", "--config", str(EXAMPLE), "--port", "9123", "--db", "flag.db",
        "--log-level", "DEBUG", cwd=tmp_path,
        env={"TGWS_API_ID": "1", "TGWS_API_HASH": SECRET_HASH, "TGWS_PORT": "9000",
             "TGWS_DB": "env.db"},
    )
    assert result.returncode == 0, result.stderr
    settings = json.loads("\n".join(result.stdout.splitlines()[1:-1]))
    assert settings["server"]["port"] == 9123
    assert settings["store"]["path"] == "flag.db"
    assert settings["log"]["level"] == "DEBUG"


def test_check_config_without_credentials_exits_2_after_printing_settings(
    tmp_path: Path
) -> None:
    result = run_tgws("check-config", "--config", str(EXAMPLE), cwd=tmp_path)
    assert_one_line_config_error(result, "telegram.api_id")
    assert "config OK" not in result.stdout


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run_tgws("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"tgws {__version__}\n", "")
