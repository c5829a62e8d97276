"""Every `tgws …` command in README.md and systemd/README.md, run as written (issue 14).

The commands are read from the two files, not copied here: a command added or reworded in
either file is run as it now reads. What a test cannot do as written is replaced, and only
that: the API key the demo prints stands for KEY; the root-owned paths of systemd/README.md
(/etc/tgws, /var/lib/tgws, /usr/local/bin/tgws, /opt/tgws/bin/tgws) live under a temporary
folder; the secrets systemd reads from /etc/tgws/tgws.env come from the environment, as
they would; TGWS_PORT=0 keeps parallel test runs off port 8000. Commands that need root or
the network (`sudo install`, `systemctl`, `pip install`) are not run: their tgws parts are.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import timeout

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "systemd" / "README.md")
TGWS = str(Path(sys.executable).parent / "tgws")
API_ENV = {"TGWS_API_ID": "12345", "TGWS_API_HASH": "0123456789abcdef0123456789abcdef"}
SUBCOMMANDS = ("serve", "demo", "client", "apikey", "check-config", "secret-key")
_ALTERNATIVES = "|".join(re.escape(s) for s in SUBCOMMANDS)
_INVOCATION = re.compile(r"(?:^|(?<=[\s/]))tgws (?:" + _ALTERNATIVES + r")\b[^`#|&\n]*")
COPY = "cp tgws.toml.example tgws.toml"  # README step 2, run as written


def code_text(markdown: str) -> list[str]:
    """The code in a Markdown file: fenced and indented blocks (backslash-continued lines
    joined) and inline spans, with whitespace collapsed (a span may wrap across lines)."""
    pieces: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.DOTALL):
        pieces.extend(block.replace("\\\n", " ").splitlines())
    body = re.sub(r"```[a-z]*\n.*?```", "", markdown, flags=re.DOTALL)
    indented = re.findall(r"(?:^(?: {4,}).*\n?)+", body, flags=re.MULTILINE)
    for block in indented:
        pieces.extend(block.replace("\\\n", " ").splitlines())
    pieces.extend(re.findall(r"`([^`]+)`", body))
    return [" ".join(piece.split()) for piece in pieces]


def documented_invocations() -> list[str]:
    """`tgws <subcommand> …` as the docs write them; synopses ([--flag], a|b, …) excluded."""
    found: list[str] = []
    for doc in DOCS:
        for piece in code_text(doc.read_text(encoding="utf-8")):
            for match in _INVOCATION.finditer(piece):
                command = match.group(0).strip()
                if not re.search(r"[\[\]…|\\]", command) and command not in found:
                    found.append(command)
    return found


def synopses() -> list[str]:
    found: list[str] = []
    for doc in DOCS:
        for piece in code_text(doc.read_text(encoding="utf-8")):
            if piece.startswith("tgws ") and "[" in piece:
                found.append(piece)
    return found


class Place:
    """A temporary stand-in for the machine the docs describe."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.work = tmp / "clone"  # README's commands run in the clone
        self.work.mkdir()
        shutil.copy(ROOT / "tgws.toml.example", self.work / "tgws.toml.example")
        self.etc = tmp / "etc" / "tgws"
        self.etc.mkdir(parents=True)
        shutil.copy(ROOT / "tgws.toml.example", self.etc / "tgws.toml")
        self.state = tmp / "var" / "lib" / "tgws"
        self.state.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("TGWS_") and k != "STATE_DIRECTORY"}
        self.env.update(API_ENV, TGWS_PORT="0", PYTHONUNBUFFERED="1")
        self.key = ""
        self.ran: list[str] = []

    def argv(self, command: str) -> tuple[list[str], dict[str, str]]:
        env = dict(self.env)
        words = shlex.split(command.replace("/etc/tgws", str(self.etc))
                            .replace("/var/lib/tgws", str(self.state)))
        if "/etc/tgws" in command:
            env["STATE_DIRECTORY"] = str(self.state)  # what systemd gives the service
        words = [TGWS if w in ("tgws", "/usr/local/bin/tgws", "/opt/tgws/bin/tgws") else
                 self.key if w == "KEY" else w for w in words]
        return words, env

    def run(self, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv, env = self.argv(command)
        self.ran.append(command)
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                              cwd=self.work, timeout=timeout(120))

    def start(self, command: str, ready: str) -> Background:
        argv, env = self.argv(command)
        self.ran.append(command)
        return Background(argv, env, self.work, ready)


class Background:
    """A long-running command (serve, demo); `lines` holds its stdout and stderr."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, ready: str) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        self._seen = threading.Event()
        self._ready = re.compile(ready)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self._seen.wait(timeout(60)), (argv, self.lines)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._ready.search("".join(self.lines)):
                self._seen.set()

    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout(30))
        self._reader.join(timeout(10))
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    yield Place(tmp_path)


def test_the_docs_still_hold_the_commands_this_test_knows_how_to_prepare() -> None:
    commands = documented_invocations()
    assert "tgws demo" in commands
    assert "tgws apikey create NAME --config tgws.toml" in commands
    assert "tgws apikey create NAME --config /etc/tgws/tgws.toml" in commands
    assert COPY in code_text(DOCS[0].read_text(encoding="utf-8"))
    for command in commands:
        assert command.split()[1] in ("demo", "client", "check-config", "apikey", "serve"), \
            f"{command!r}: teach test_every_documented_command_runs how to run it"


def test_every_documented_command_runs(place: Place) -> None:
    commands = documented_invocations()
    by_kind = {kind: [c for c in commands if c.split()[1] == kind]
               for kind in ("demo", "client", "check-config", "apikey", "serve")}

    # README's quick start: the demo, then its client commands in the order written.
    for demo_command in by_kind["demo"]:
        demo = place.start(demo_command, r"Ctrl-C stops")
        try:
            url = re.search(r"websocket\s+(ws://\S+)", demo.text())
            key = re.search(r"api key\s+(\S+)", demo.text())
            assert url and key, demo.text()
            place.key = key.group(1)
            place.env["TGWS_URL"] = url.group(1)
            for command in by_kind["client"]:
                stdin = "12345\n" if " login" in command else ""
                result = place.run(command, stdin)
                assert result.returncode == 0, (command, result.stderr)
                if " users testgroup00001" in command:
                    assert len(result.stdout.splitlines()) == 250
        finally:
            assert demo.stop() == 0
        del place.env["TGWS_URL"]

    # README's "running it for real", as written: copy the example, check, key, serve.
    assert place.run(COPY).returncode == 0
    for command in by_kind["check-config"]:
        result = place.run(command)
        assert result.returncode == 0 and result.stdout.endswith("config OK\n"), \
            (command, result.stderr)
    for command in by_kind["apikey"]:
        result = place.run(command)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.splitlines()[-1].startswith("tgws_")
    # README's key went to the clone's tgws.db; systemd/README.md's to $STATE_DIRECTORY.
    assert (place.work / "tgws.db").exists()
    assert (place.state / "tgws.db").exists() == any("/etc/tgws" in c for c in by_kind["apikey"])
    for command in by_kind["serve"]:
        daemon = place.start(command, r"listening on ws://127\.0\.0\.1:\d+/")
        port = re.search(r"listening on ws://127\.0\.0\.1:(\d+)/", daemon.text())
        assert port
        # Answered only once run() has installed its signal handlers (no await between).
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/healthz",
                                    timeout=timeout(10)) as health:
            assert health.status == 200
        assert daemon.stop() == 0, daemon.text()

    assert sorted(set(place.ran) - {COPY}) == sorted(commands)


def test_every_flag_of_the_command_table_is_in_the_help(place: Place) -> None:
    rows = synopses()
    assert rows
    for row in rows:
        words = row.split()
        subcommand = words[1]
        flags = set(re.findall(r"--[a-z][a-z-]*", row))
        helps = [place.run(f"tgws {subcommand} --help").stdout]
        if subcommand == "apikey":
            helps += [place.run(f"tgws apikey {action} --help").stdout
                      for action in ("create", "list", "revoke")]
        if subcommand == "sandbox":  # its one action carries the flags
            helps += [place.run("tgws sandbox serve --help").stdout]
        for flag in flags:
            assert all(flag in text for text in helps[1:] or helps), (row, flag)
