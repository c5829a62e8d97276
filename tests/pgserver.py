"""A real PostgreSQL server for the tests: Debian's `postgresql` package, started by us.

One server per test session (a few hundred milliseconds to initdb and start), in a temporary
directory on a free loopback port, with durability switched off (fsync, full-page writes: a
test database is thrown away). Each test gets a fresh schema of its own
(:meth:`PgServer.new_schema`, milliseconds), or a fresh database when it acts on the database
as a whole (:meth:`PgServer.new_database`).
PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user the
Debian package creates (``runuser``), owning only its temporary directory.

If no server can be started the tests that need one FAIL with the reason (never skip): the
PostgreSQL dialect is part of what the suite proves. CI installs the package (.ci/run).
Binaries: $TGWS_TEST_PG_BIN, else the newest /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

USER = "tgws"
PASSWORD = "tgws-test-secret-7f3a"  # the tests check it never shows up in messages
_RUN_AS = "postgres"
SHARED_DB = "tgws_tests"  # holds the per-test schemas


class PgServerError(RuntimeError):
    """The test PostgreSQL server could not be started (the tests fail with this)."""


def _bindir() -> Path:
    explicit = os.environ.get("TGWS_TEST_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise PgServerError("no PostgreSQL binaries (/usr/lib/postgresql/*/bin): install "
                            "Debian's postgresql package (apt-get install -y postgresql) or set "
                            "TGWS_TEST_PG_BIN")
    return Path(found[-1]).parent


def _devnull_usable() -> bool:
    return os.stat("/dev/null").st_mode & 0o006 == 0o006


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running server; ``url(db)`` names a database on it."""

    bindir: Path
    base: Path
    port: int
    _as_postgres: bool
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> PgServer:
        bindir = _bindir()
        base = Path(tempfile.mkdtemp(prefix="tgws-pg-"))
        as_postgres = os.geteuid() == 0
        server = cls(bindir, base, _free_port(), as_postgres)
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if self._as_postgres:
            cmd = ["runuser", "-u", _RUN_AS, "--", *cmd]
            if not _devnull_usable():
                # initdb and pg_ctl redirect to /dev/null through sh. Where /dev/null is
                # root's alone (some sandboxes), give the server a usable one in a private
                # mount namespace: nothing outside it changes.
                node = self.base / "null"
                script = ('rm -f "$0" && mknod -m 666 "$0" c 1 3 && '
                          'mount --bind "$0" /dev/null && exec "$@"')
                cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                       str(node), *cmd]
        env = {**os.environ, "PGPASSWORD": PASSWORD, "LC_ALL": "C"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=self.base)

    def _checked(self, what: str, *argv: str) -> None:
        done = self._run(*argv)
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgServerError(f"{what} failed ({done.returncode}): {done.stderr.strip()}"
                                f"\n{tail}")

    def _init_and_start(self) -> None:
        if self._as_postgres:
            try:
                entry = pwd.getpwnam(_RUN_AS)
            except KeyError:
                raise PgServerError(f"running as root and there is no {_RUN_AS!r} user to run "
                                    "PostgreSQL as (Debian's postgresql package creates it)"
                                    ) from None
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            entry = pwd.getpwnam(_RUN_AS)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        data = self.base / "data"
        self._checked("initdb", str(self.bindir / "initdb"), "-D", str(data), "-U", USER,
                      f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                      "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
                   "-c max_connections=200")
        self._checked("pg_ctl start", str(self.bindir / "pg_ctl"), "-D", str(data), "-w",
                      "-t", "60", "-l", str(self.base / "server.log"), "-o", options, "start")
        self.sql(f"CREATE DATABASE {SHARED_DB}")

    def url(self, database: str = "postgres", *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql over TCP (as the tests' clients do); its output."""
        done = self._run(str(self.bindir / "psql"), "-X", "-q", "-t", "-A", "-v",
                         "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                         "-d", database, "-c", statement, timeout=30)
        if done.returncode != 0:
            raise PgServerError(f"psql {statement!r}: {done.stderr.strip()}")
        return done.stdout

    def _name(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}{os.getpid()}_{self._counter}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL. For tests that act on the database as a whole
        (ending its connections); the others take a schema (:meth:`new_schema`)."""
        name = self._name("t")
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return self.url(name)

    def new_schema(self) -> str:
        """A fresh, empty schema in the shared test database, as a URL whose connections see
        only it (asyncpg passes ``search_path`` on as a server setting). Creating a schema
        takes milliseconds; a database, a copy of template0."""
        name = self._name("s")
        self.sql(f"CREATE SCHEMA {name}", database=SHARED_DB)
        return f"{self.url(SHARED_DB)}?search_path={name}"

    def stop(self) -> None:
        data = self.base / "data"
        if (data / "postmaster.pid").exists():
            # fast: ends the sessions and stops at once (immediate waits for its children's
            # SIGQUIT handling, seconds on a loaded machine); fsync=off makes its checkpoint free.
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


_shared: PgServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PgServer:
    """The session's one server, started on first use and stopped when the process exits:
    the pg_server fixture and TGWS_TEST_STORE=postgresql (tests/support.make_config) share it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PgServer.start()
            atexit.register(_shared.stop)
        return _shared
