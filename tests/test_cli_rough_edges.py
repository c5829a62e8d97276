"""Issue 14's rough edges a new user hits, run as subprocesses the way an operator types them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import timeout
from tgws.config_sections import StoreConfig
from tgws.daemon import store_description

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tgws.toml.example"
API_HASH = "0123456789abcdef0123456789abcdef"


def tgws(*args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    clean.pop("STATE_DIRECTORY", None)
    # -P: a folder named tgws in the cwd must not shadow the package (as in the issue).
    return subprocess.run([sys.executable, "-P", "-m", "tgws", *args], capture_output=True,
                          text=True, cwd=cwd, env={**clean, **(env or {})},
                          timeout=timeout(60))


def write_config(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tgws.toml"
    path.write_text(body, encoding="utf-8")
    return path


# --- --config before or after the action -----------------------------------------------------
def test_apikey_takes_config_after_the_action_as_the_readme_writes_it(tmp_path: Path) -> None:
    write_config(tmp_path, '[store]\npath = "keys.db"\n')
    created = tgws("apikey", "create", "alice", "--config", "tgws.toml", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "keys.db").exists()
    listing = tgws("apikey", "list", "--config", "tgws.toml", cwd=tmp_path)
    assert listing.returncode == 0 and "alice" in listing.stdout
    revoked = tgws("apikey", "revoke", "alice", "-c", "tgws.toml", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    # The order that worked before still works, and both orders name the same store.
    again = tgws("apikey", "--config", "tgws.toml", "list", cwd=tmp_path)
    assert "revoked" in again.stdout


def test_a_flag_after_the_action_wins_and_one_before_is_kept(tmp_path: Path) -> None:
    before = tgws("apikey", "--db", "a.db", "create", "one", cwd=tmp_path)
    after = tgws("apikey", "create", "two", "--db", "b.db", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
    assert "one" in tgws("apikey", "list", "--db", "a.db", cwd=tmp_path).stdout
    assert "two" in tgws("apikey", "--db", "b.db", "list", cwd=tmp_path).stdout


@pytest.mark.parametrize("action", ["create", "list", "revoke"])
def test_apikey_action_help_shows_config(tmp_path: Path, action: str) -> None:
    result = tgws("apikey", action, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--config FILE" in result.stdout and "--db FILE" in result.stdout


def _store_line_of_serve(folder: Path) -> str:
    """Start `tgws serve --sandbox` in `folder`, return its "store:" log line, stop it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    clean.pop("STATE_DIRECTORY", None)
    with subprocess.Popen([sys.executable, "-P", "-m", "tgws", "serve", "--sandbox",
                           "--port", "0"], cwd=folder, env=clean, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # ends if the daemon exits
                if "store: " in line:
                    return line.split("store: ", 1)[1].strip()
            raise AssertionError(f"no store line; exit {proc.wait()}")
        finally:
            proc.terminate()
            proc.wait(timeout=timeout(30))


def test_serve_says_which_database_it_opens_and_when_it_creates_one(tmp_path: Path) -> None:
    """`tgws serve --sandbox` in an empty folder used to create tgws.db there silently."""
    first = _store_line_of_serve(tmp_path)
    db = tmp_path / "tgws.db"
    assert first == f"sqlite {db} (new: created now)"
    assert db.exists()
    assert _store_line_of_serve(tmp_path) == f"sqlite {db}"  # the same file, now not new


@pytest.mark.parametrize(("url", "logged"), [
    ("postgresql://tg:s3cret@db.example:5432/tgws", "postgresql://tg:***@db.example:5432/tgws"),
    ("postgresql://tg@db/tgws?password=s3cret&sslmode=require", "postgresql://tg@db/tgws"),
    ("postgresql://u:s3cret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
    ("postgresql:///tgws?host=/run/postgresql", "postgresql:///tgws"),
])
def test_the_store_line_never_shows_a_postgresql_password(url: str, logged: str) -> None:
    described = store_description(StoreConfig(url=url))
    assert described == f"PostgreSQL {logged}"
    assert "s3cret" not in described


# --- relative paths --------------------------------------------------------------------------
def test_relative_store_path_is_beside_the_config_file_not_the_working_directory(
        tmp_path: Path) -> None:
    write_config(tmp_path / "tgws", '[store]\npath = "tgws.db"\n')
    created = tgws("apikey", "--config", "tgws/tgws.toml", "create", "alice", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "tgws" / "tgws.db").exists()
    assert not (tmp_path / "tgws.db").exists()
    # From the parent folder and from inside it, the same store.
    revoked = tgws("apikey", "--config", "tgws/tgws.toml", "revoke", "alice", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    inside = tgws("apikey", "list", "--config", "tgws.toml", cwd=tmp_path / "tgws")
    assert "revoked" in inside.stdout


def test_check_config_shows_the_resolved_paths(tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc", '[store]\npath = "data/t.db"\n'
                          'secret_key_file = "/abs/keys"\n')
    result = tgws("check-config", "--config", str(config), "--db", "flag.db", cwd=tmp_path,
                  env={"TGWS_BACKEND": "sandbox"})
    assert result.returncode == 0, result.stderr
    assert '"path": "flag.db"' in result.stdout  # a flag stays relative to the cwd
    result = tgws("check-config", "--config", str(config), cwd=tmp_path,
                  env={"TGWS_BACKEND": "sandbox"})
    assert f'"path": "{tmp_path / "etc" / "data" / "t.db"}"' in result.stdout
    assert '"secret_key_file": "/abs/keys"' in result.stdout


# --- check-config blames the right source ----------------------------------------------------
def test_bad_port_flag_is_blamed_on_the_flag_not_the_file(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "tgws.toml")
    result = tgws("check-config", "--config", "tgws.toml", "--port", "70000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("tgws: config error: flag --port: server.port: expected an "
                             "integer from 0 to 65535\n")


def test_missing_api_id_names_the_file(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "tgws.toml")
    result = tgws("check-config", "--config", "tgws.toml", cwd=tmp_path)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith("tgws: config error: tgws.toml: telegram.api_id"), line


@pytest.mark.parametrize("api_hash", ["xyz", "0123456789abcdef", "g" * 32, API_HASH + "0"])
def test_api_hash_must_be_32_hex_digits(tmp_path: Path, api_hash: str) -> None:
    write_config(tmp_path, f'[telegram]\napi_id = 12345\napi_hash = "{api_hash}"\n')
    for command in (["check-config"], ["serve", "--port", "0"]):
        result = tgws(*command, "--config", "tgws.toml", cwd=tmp_path)
        assert result.returncode == 2, result
        assert result.stderr.startswith("tgws: config error: tgws.toml: telegram.api_hash: "
                                        "expected the 32 hex digits"), result.stderr
        assert api_hash not in result.stderr  # a secret, even a wrong one


def test_a_well_formed_api_hash_passes(tmp_path: Path) -> None:
    write_config(tmp_path, f'[telegram]\napi_id = 12345\napi_hash = "{API_HASH.upper()}"\n')
    result = tgws("check-config", "--config", "tgws.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- .gitignore ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["tgws.toml", "prod.local.toml", "sub/tgws.toml", "tgws.db",
                                  "tgws.db-wal", "x/keys.db-shm"])
def test_gitignore_covers_local_configs_and_databases(path: str) -> None:
    assert _check_ignore(path) == 0, path


@pytest.mark.parametrize("path", ["tgws.toml.example", "tgws/config.py", "systemd/tgws.service"])
def test_gitignore_keeps_the_shipped_files(path: str) -> None:
    assert _check_ignore(path) == 1, path


def _check_ignore(path: str) -> int:
    """`git check-ignore`'s exit status for ``path``: 0 ignored, 1 not ignored."""
    git = shutil.which("git")
    assert git is not None
    return subprocess.run([git, "check-ignore", "--no-index", "-q", path], cwd=ROOT,
                          timeout=timeout(30)).returncode


@pytest.mark.parametrize("order", ["before", "after"])
def test_secret_key_reseal_takes_config_before_or_after_the_action(
        tmp_path: Path, order: str) -> None:
    folder = tmp_path / "deploy"
    write_config(folder, '[store]\npath = "t.db"\nsecret_key_file = "keys"\n')
    assert tgws("secret-key", "create", str(folder / "keys"), cwd=tmp_path).returncode == 0
    flags = ["--config", "deploy/tgws.toml"]
    args = [*flags, "reseal"] if order == "before" else ["reseal", *flags]
    result = tgws("secret-key", *args, cwd=tmp_path)  # from the parent: paths resolve
    assert result.returncode == 0, result.stderr
    assert "every stored session is sealed" in result.stdout
    assert (folder / "t.db").exists() and not (tmp_path / "t.db").exists()
