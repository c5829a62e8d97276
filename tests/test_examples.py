"""The examples work: each one runs against a real daemon on the sandbox Telegram.

examples/python_client.py runs as a subprocess. examples/browser_client.js runs under
Node when this Node has a global WebSocket (Node 22+, or 20.10+ with
--experimental-websocket); the page itself is served over HTTP from 127.0.0.1 and read the
way a browser would read it (form fields, the script it loads).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.support import serve_directory, timeout, ws_url
from tests.test_client import clean_env
from tgws import protocol as p
from tgws.daemon import Daemon

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PYTHON_EXAMPLE = EXAMPLES / "python_client.py"
JS_EXAMPLE = EXAMPLES / "browser_client.js"
HTML_EXAMPLE = EXAMPLES / "browser_client.html"
PHONE = "+919876543210"


async def run(*argv: str, wait: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=clean_env())
    try:
        async with asyncio.timeout(timeout(wait)):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --- python_client.py --------------------------------------------------------------------
async def test_python_example_logs_in_and_prints_the_messages(
        daemon: Daemon, api_key: str) -> None:
    url = ws_url(daemon)
    code, out, err = await run(sys.executable, str(PYTHON_EXAMPLE), "--url", url,
                               "--api-key", api_key, "--phone", PHONE, "--code", "12345",
                               "UnderWorld4444")
    assert code == 0, err
    ids = [m["id"] for m in json_lines(out)]
    assert len(ids) == 300 and ids == sorted(ids)
    assert err.splitlines()[-1] == "done: 300 messages"
    # Second run: the session is kept, no phone or code needed.
    code, out, err = await run(sys.executable, str(PYTHON_EXAMPLE), "--url", url,
                               "--api-key", api_key, "testgroup00002")
    assert code == 0, err
    assert len(json_lines(out)) == 120
    assert all(line.startswith("{") for line in out.splitlines())  # only JSON lines


async def test_python_example_with_two_step_verification(daemon: Daemon, api_key: str) -> None:
    code, out, err = await run(sys.executable, str(PYTHON_EXAMPLE), "--url", ws_url(daemon),
                               "--api-key", api_key, "--phone", "+19995550002", "--code", "12345",
                               "--password", "hunter2", "testgroup00002")
    assert code == 0, err
    assert len(json_lines(out)) == 120


async def test_python_example_reports_a_failed_reply(daemon: Daemon, api_key: str) -> None:
    code, out, err = await run(sys.executable, str(PYTHON_EXAMPLE), "--url", ws_url(daemon),
                               "--api-key", "wrong", "UnderWorld4444")
    assert code == 1
    assert "login failed: unauthorized" in err
    assert out == ""


def test_python_example_is_short_and_documented() -> None:
    text = PYTHON_EXAMPLE.read_text()
    assert len(text.splitlines()) < 60
    assert "Usage" in text.split('"""')[1]


# --- browser_client.js / .html -----------------------------------------------------------
def _node_websocket_flags() -> list[str] | None:
    """The node flags that give a global WebSocket, or None (no node, or too old)."""
    node = shutil.which("node")
    if node is None:
        return None
    for flags in ([], ["--experimental-websocket"]):
        probe = subprocess.run([node, *flags, "-e", "process.stdout.write(typeof WebSocket)"],
                               capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0 and probe.stdout == "function":
            return [node, *flags]
    return None


NODE = _node_websocket_flags()
# The JS example is part of what we ship, so a machine that cannot run it fails these tests
# (never skips them), as test_browser_example does without Chromium; .ci/run installs node.
NODE_NEEDED = ("node >= 20 (global WebSocket, or --experimental-websocket) is needed to test "
               "examples/browser_client.js; `bash .ci/run` installs Debian's nodejs when node "
               "is missing")


def inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, flags=re.S)


def js_lines() -> int:
    sources = [JS_EXAMPLE.read_text(), *inline_scripts(HTML_EXAMPLE.read_text())]
    return sum(1 for text in sources for line in text.splitlines() if line.strip())


def test_js_example_is_under_60_lines() -> None:
    assert js_lines() < 60


def test_js_example_speaks_the_seed_protocol() -> None:
    js = JS_EXAMPLE.read_text()
    for text in (p.LOGIN, p.TELEGRAM_LOGIN, p.CHATS, p.SEND_PHONE_NUMBER, p.SEND_CODE,
                 p.LOGGED_IN, p.SESSION_EXISTS_LOGIN, p.SESSION_EXISTS_TELEGRAM,
                 p.SENDING_CHATS, p.DONE, p.SEND_PASSWORD):
        assert json.dumps(text) in js or f"'{text}'" in js, text
    assert "new WebSocket(" in js


def test_js_example_syntax() -> None:
    node = shutil.which("node")
    assert node is not None, NODE_NEEDED
    for script in [str(JS_EXAMPLE)]:
        subprocess.run([node, "--check", script], check=True, timeout=30)
    # The page's inline script too (node cannot --check a fragment inside HTML).
    for n, source in enumerate(inline_scripts(HTML_EXAMPLE.read_text())):
        check = subprocess.run([node, "--check", "-"], input=source, text=True,
                               capture_output=True, timeout=30, check=False)
        assert check.returncode == 0, f"inline script {n}: {check.stderr}"


async def test_js_example_runs_under_node_against_the_server(daemon: Daemon, api_key: str) -> None:
    assert NODE is not None, NODE_NEEDED
    code, out, err = await run(*NODE, str(JS_EXAMPLE), ws_url(daemon), api_key, "UnderWorld4444",
                               PHONE, "12345")
    assert code == 0, err
    ids = [m["id"] for m in json_lines(out)]
    assert len(ids) == 300 and ids == sorted(ids)
    # Only JSON lines on stdout (`| jq` works); the summary goes to stderr.
    assert all(line.startswith("{") for line in out.splitlines()), out[-300:]
    assert err.splitlines()[-1] == "done: 300 messages"
    # A failed reply: exit 1, the server's message on stderr, nothing on stdout.
    code, out, err = await run(*NODE, str(JS_EXAMPLE), ws_url(daemon), api_key, "UnderWorld4444x")
    assert code == 1
    assert "chats failed: invalid request" in err and out == ""


class _PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name"):
            self.inputs.append(str(values["name"]))
        if tag == "script" and values.get("src"):
            self.scripts.append(str(values["src"]))


@pytest.fixture
def served_examples() -> Iterator[str]:
    with serve_directory(EXAMPLES) as base:
        yield base


def _get(url: str) -> tuple[str, str]:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no $http_proxy
    with direct.open(url, timeout=timeout(10)) as response:
        return response.headers.get_content_type(), response.read().decode()


def test_the_page_served_over_http_loads_its_script(served_examples: str) -> None:
    kind, html = _get(served_examples + "browser_client.html")
    assert kind == "text/html"
    page = _PageReader()
    page.feed(html)
    assert {"url", "apiKey", "group", "phone", "code", "password"} <= set(page.inputs)
    assert page.scripts == ["browser_client.js"]
    kind, js = _get(served_examples + page.scripts[0])  # relative to the page, as a browser
    assert kind in ("text/javascript", "application/javascript")
    assert "function tgwsChats(" in js
    assert any("tgwsChats(" in script for script in inline_scripts(html))
