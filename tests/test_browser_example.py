"""examples/browser_client.html in a real headless Chromium, against a real daemon.

Chromium is driven by Debian's chromedriver through the W3C WebDriver protocol (JSON over
HTTP, spoken here with urllib: no selenium needed). The page is served over HTTP from
127.0.0.1, the form is filled in as a person would (API key, phone, code 12345), and the
test reads what the page shows. CI installs `chromium` and `chromium-driver` (.ci/run); a
machine without them fails this test rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ThreadedDaemon, make_config, serve_directory, timeout
from tests.test_client import clean_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--no-proxy-server"]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no $http_proxy


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"{' or '.join(names)} is not installed: apt-get install -y "
                         "chromium chromium-driver (CI does, in .ci/run)")


class WebDriver:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(request, timeout=timeout(60)) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as err:
            raise AssertionError(f"webdriver {method} {path}: {err.read()[:500]!r}") from None

    def start(self, chromium: str, profile: str) -> None:
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}}
        self.session = self.call("POST", "/session",
                                 {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def in_session(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def find(self, css: str) -> str:
        found = self.in_session("POST", "/element", {"using": "css selector", "value": css})
        assert isinstance(found, dict) and ELEMENT in found, f"{css}: {found!r}"
        element: str = found[ELEMENT]
        return element

    def type_into(self, css: str, text: str) -> None:
        element = self.find(css)
        self.in_session("POST", f"/element/{element}/clear", {})
        self.in_session("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        element = self.find(css)
        self.in_session("POST", f"/element/{element}/click", {})

    def script(self, source: str) -> Any:
        return self.in_session("POST", "/execute/sync", {"script": source, "args": []})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium = _tool("chromium", "chromium-browser")
    driver_path = _tool("chromedriver")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="tgws-chromium-") as profile:
        proc = subprocess.Popen([driver_path, f"--port={port}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=clean_env())
        driver = WebDriver(f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + timeout(30)
            while True:  # chromedriver answers /status once it listens
                try:
                    if driver.call("GET", "/status").get("ready"):
                        break
                except (OSError, AssertionError):
                    pass
                assert time.monotonic() < deadline, "chromedriver did not start"
                assert proc.poll() is None, "chromedriver exited"
                time.sleep(0.05)  # poll interval while it binds its port
            driver.start(chromium, profile)
            yield driver
        finally:
            if driver.session:
                try:
                    driver.in_session("DELETE", "")
                except (OSError, AssertionError):
                    pass
            proc.terminate()
            proc.wait(timeout(10))


@pytest.fixture
def page_url() -> Iterator[str]:
    with serve_directory(EXAMPLES) as base:
        yield base + "browser_client.html"


@pytest.fixture
def demo(tmp_path: Path, page_url: str) -> Iterator[tuple[ThreadedDaemon, str]]:
    """A `tgws demo`-like daemon: the sandbox's demo world, a fresh API key, and the page's
    origin allowed, as `tgws demo` allows the README's http://127.0.0.1:8080 (a browser
    sends an Origin header; any other origin is refused with HTTP 403)."""
    origin = page_url.split("/browser_client.html")[0]
    config = make_config(tmp_path, **{"server.allowed_origins": [origin]})
    with ThreadedDaemon(config) as td:
        assert td.daemon.app is not None
        key = td.call(td.daemon.app.store.create_api_key("browser"))
        yield td, key


def _wait_for_status(driver: WebDriver, wanted: str) -> str:
    deadline = time.monotonic() + timeout(60)
    while True:
        status = driver.script("return document.getElementById('status').textContent;")
        if status == wanted or "failed" in status:
            return str(status)
        assert time.monotonic() < deadline, f"the page still says {status!r}"
        time.sleep(0.05)  # poll interval: the page's state has no event we can wait on


def test_the_page_logs_in_and_shows_the_messages(
        browser: WebDriver, page_url: str, demo: tuple[ThreadedDaemon, str]) -> None:
    td, key = demo
    browser.in_session("POST", "/url", {"url": page_url})
    assert browser.script("return document.title;") == "tgws browser client"
    browser.type_into("input[name=url]", td.url)
    browser.type_into("input[name=apiKey]", key)
    browser.type_into("input[name=group]", "UnderWorld4444")
    browser.type_into("input[name=phone]", "+919876543210")
    browser.type_into("input[name=code]", "12345")
    browser.click("button")
    assert _wait_for_status(browser, "done: 300 messages") == "done: 300 messages"
    lines = browser.script("return document.getElementById('out').textContent;").splitlines()
    messages = [json.loads(line) for line in lines]
    ids = [m["id"] for m in messages]
    assert len(ids) == 300 and ids == sorted(ids)
    assert all(isinstance(m.get("date"), str) for m in messages)

    # Again with the session kept: no phone or code; a name that does not exist fails.
    browser.type_into("input[name=phone]", "")
    browser.type_into("input[name=code]", "")
    browser.type_into("input[name=group]", "testgroup00002")
    browser.click("button")
    assert _wait_for_status(browser, "done: 120 messages") == "done: 120 messages"
    browser.type_into("input[name=group]", "nosuchgroup404")
    browser.click("button")
    failed = "chats failed: invalid request"  # the seed's reply for a name that is no group
    assert _wait_for_status(browser, failed) == failed
    assert browser.script("return document.getElementById('out').textContent;") == ""
