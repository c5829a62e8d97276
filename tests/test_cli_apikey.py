"""`tgws apikey` as an operator runs it: a subprocess against a store file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support import timeout
from tgws.auth import hash_api_key


def tgws(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    return subprocess.run([sys.executable, "-m", "tgws", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout(60))


def test_create_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(
        tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    result = tgws("apikey", "--db", str(db), "create", "archiver", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert key.startswith("tgws_") and len(key) >= 40 and " " not in key
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.db"))
    assert key.encode() not in raw
    assert hash_api_key(key).encode() in raw
    second = tgws("apikey", "--db", str(db), "create", "other", cwd=tmp_path)
    assert second.stdout.splitlines()[-1] != key


def test_list_shows_names_and_times_never_keys(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    key = tgws("apikey", "--db", db, "create", "archiver", cwd=tmp_path).stdout.split()[-1]
    listing = tgws("apikey", "--db", db, "list", cwd=tmp_path)
    assert listing.returncode == 0
    assert "archiver" in listing.stdout and "active" in listing.stdout
    assert key not in listing.stdout and hash_api_key(key) not in listing.stdout


def test_revoke_marks_the_key_and_a_second_revoke_fails(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    tgws("apikey", "--db", db, "create", "archiver", cwd=tmp_path)
    revoked = tgws("apikey", "--db", db, "revoke", "archiver", cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in tgws("apikey", "--db", db, "list", cwd=tmp_path).stdout
    again = tgws("apikey", "--db", db, "revoke", "archiver", cwd=tmp_path)
    assert again.returncode == 1
    assert "no active API key named 'archiver'" in again.stderr


def test_duplicate_and_invalid_names_are_refused_in_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    tgws("apikey", "--db", db, "create", "archiver", cwd=tmp_path)
    for name in ["archiver", "bad name!"]:
        result = tgws("apikey", "--db", db, "create", name, cwd=tmp_path)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_list_without_a_store_says_so(tmp_path: Path) -> None:
    result = tgws("apikey", "--db", str(tmp_path / "none.db"), "list", cwd=tmp_path)
    assert result.returncode == 1 and "no store at" in result.stderr
