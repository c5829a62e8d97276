"""GET /metrics: Prometheus' text format, parsed by prometheus_client's own parser, with the
counters moving as a real client logs in and streams from the sandbox (issue 14)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    ask,
    collect_stream,
    expect,
    logged_in,
    make_config,
    open_ws,
    recv_json,
    timeout,
    wait_closed,
)
from tgws.daemon import Daemon

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(port: int, path: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    async with asyncio.timeout(timeout(10)):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, body


async def scrape(daemon: Daemon) -> Samples:
    status, headers, body = await http_get(daemon.port, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


async def started(tmp_path: Path, **overrides: object) -> Daemon:
    daemon = Daemon(make_config(tmp_path, **overrides))
    await daemon.start()
    return daemon


async def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    daemon = await started(tmp_path)
    try:
        status, _, _ = await http_get(daemon.port, "/metrics")
        assert status == 404
        assert (await http_get(daemon.port, "/healthz"))[0] == 200
    finally:
        await daemon.stop()


async def test_a_client_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True,
                                        "metrics.allow": ["10.0.0.0/8"]})
    try:
        status, _, body = await http_get(daemon.port, "/metrics")
        assert status == 403
        assert "tgws_" not in body
    finally:
        await daemon.stop()


async def test_a_trusted_proxy_is_asked_who_the_scraper_is(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True,
                                        "server.trusted_proxies": ["127.0.0.1"]})
    try:
        outside = {"X-Forwarded-For": "203.0.113.9"}
        assert (await http_get(daemon.port, "/metrics", outside))[0] == 403
        inside = {"X-Forwarded-For": "127.0.0.1"}
        assert (await http_get(daemon.port, "/metrics", inside))[0] == 200
    finally:
        await daemon.stop()


async def test_counters_move_with_a_real_login_and_streams(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True})
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("metered")
    try:
        before = await scrape(daemon)
        assert value(before, "tgws_items_sent_total", kind="chats") == 0
        assert value(before, "tgws_connections") == 0

        wrong = await open_ws(daemon)
        reply = await ask(wrong, "login", {"apiKey": "tgws_not_a_key"})
        assert reply["data"]["status"] == "failed"
        await wrong.close()

        ws = await logged_in(daemon, key)
        during = await scrape(daemon)
        assert value(during, "tgws_connections") >= 1
        assert value(during, "tgws_connections_logged_in") == 1
        assert value(during, "tgws_accounts") == 1
        assert value(during, "tgws_failed_logins_total") == 1
        assert value(during, "tgws_telegram_requests_total", method="auth.SignIn") == 1

        await ws.send('{"event": "chats", "data": {"group": ["testgroup00002"]}}')
        messages, done = await collect_stream(ws, "chats")
        await ws.send('{"event": "users", "data": {"group": ["testgroup00002"]}}')
        members, _ = await collect_stream(ws, "users")
        after = await scrape(daemon)
        await ws.close()
    finally:
        await daemon.stop()

    assert len(messages) == done["count"] > 0 and members
    assert value(after, "tgws_items_sent_total", kind="chats") == len(messages)
    assert value(after, "tgws_items_sent_total", kind="users") == len(members)
    assert value(after, "tgws_streams_started_total", kind="chats") == 1
    assert value(after, "tgws_streams_started_total", kind="users") == 1
    assert value(after, "tgws_streams", kind="chats") == 0  # both ended
    assert value(after, "tgws_telegram_requests_total", method="messages.GetHistory") >= 1
    assert value(after, "tgws_telegram_requests_total", method="channels.GetParticipants") >= 1
    assert total(after, "tgws_telegram_requests_total") > total(during,
                                                                 "tgws_telegram_requests_total")
    # One commit per acknowledged batch of messages and one per complete member listing.
    commits = value(after, "tgws_offset_commit_seconds_count")
    assert commits >= 2
    assert value(after, "tgws_offset_commit_seconds_bucket", le="+Inf") == commits
    assert 0 < value(after, "tgws_offset_commit_seconds_sum") < commits * timeout(5)
    assert value(after, "tgws_flood_waits_total") == 0


async def test_telegram_errors_and_flood_waits_are_counted(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True})
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("flooded")
    try:
        ws = await logged_in(daemon, key)
        # Every GetHistory answers FLOOD_WAIT_1 half the time; the gateway waits and retries.
        daemon.backend.world.faults.set(rate=0.5, kinds="flood", flood_wait=1,
                                        methods=["GetHistory"])
        await ws.send('{"event": "chats", "data": {"group": ["testgroup00002"], '
                      '"progress": false}}')
        messages, _ = await collect_stream(ws, "chats")
        samples = await scrape(daemon)
        await ws.close()
    finally:
        await daemon.stop()
    assert messages
    floods = value(samples, "tgws_flood_waits_total")
    assert floods >= 1
    assert value(samples, "tgws_flood_wait_seconds_total") == floods  # FLOOD_WAIT_1 each
    assert value(samples, "tgws_telegram_request_errors_total", method="messages.GetHistory",
                 error="FloodWaitError") == floods


async def test_a_running_watch_is_a_stream_of_its_own_kind_and_its_items_are_counted(
        tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True})
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("watcher")
    try:
        ws = await logged_in(daemon, key)
        await ws.send('{"event": "watch", "data": {"group": ["testgroup00002"]}}')
        expect(await recv_json(ws), "watch", "success", "watching")
        caught = [await recv_json(ws) for _ in range(120)]  # the group's catch-up
        assert {(r["event"], r["data"]["kind"]) for r in caught} == {("watch", "message")}
        # Counted once written; the client may read them a moment before the count moves.
        deadline = asyncio.get_running_loop().time() + timeout(10)
        while value(during := await scrape(daemon), "tgws_items_sent_total",
                    kind="watch") < 120:
            assert asyncio.get_running_loop().time() < deadline, "watch items never counted"
            await asyncio.sleep(0.01)  # poll interval: a counter has nothing to await
        await ws.send('{"event": "cancel"}')
        expect(await recv_json(ws), "cancel", "success", "cancelled")
        after = await scrape(daemon)
        await ws.close()
    finally:
        await daemon.stop()
    assert value(during, "tgws_items_sent_total", kind="watch") == 120
    assert value(during, "tgws_streams", kind="watch") == 1  # running until cancelled
    assert value(during, "tgws_streams_started_total", kind="watch") == 1
    assert value(after, "tgws_streams", kind="watch") == 0
    assert value(after, "tgws_items_sent_total", kind="chats") == 0  # not counted twice


DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def documented() -> dict[str, tuple[str, str]]:
    """docs/metrics.md's table: family name -> (type, labels column)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`tgws_"):
            rows[cells[0].strip("`").removesuffix("_total")] = (cells[1], cells[2])
    return rows


async def test_every_metric_is_documented_by_its_name_type_and_labels(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True})
    try:
        status, _, body = await http_get(daemon.port, "/metrics")
    finally:
        await daemon.stop()
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    docs = documented()
    # prometheus-client's `<counter or histogram>_created` companions (documented once).
    created = {name for name in families if name.endswith("_created")
               and docs.get(name.removesuffix("_created"), ("",))[0] in ("counter", "histogram")}
    assert "`<name>_created`" in DOCS.read_text(encoding="utf-8")
    served = {name: f for name, f in families.items()
              if name.startswith("tgws_") and name not in created}
    assert set(served) == set(docs), "docs/metrics.md and /metrics name different metrics"
    for name, family in served.items():
        kind, labels = docs[name]
        assert family.type == kind, (name, family.type, kind)
        names = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert names <= set(re.findall(r"`([a-z_]+)`", labels)), (name, names, labels)
    # Every stream kind is shown (at 0) from the start, and the docs list each one.
    kinds = {v for family in served.values() for sample in family.samples
             for k, v in sample.labels.items() if k == "kind"}
    assert kinds == set(re.findall(r"`([a-z]+)`", docs["tgws_streams"][1])) - {"kind"}


async def test_a_revoked_connection_does_not_confuse_the_gauges(tmp_path: Path) -> None:
    daemon = await started(tmp_path, **{"metrics.enabled": True})
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("gone")
    try:
        ws = await logged_in(daemon, key)
        await daemon.app.store.revoke_api_key("gone")
        assert daemon.server is not None
        await daemon.server.check_revocations()
        assert await wait_closed(ws) == 1008
        again = await open_ws(daemon)
        expect(await ask(again, "login", {"apiKey": key}), "login", "failed", "unauthorized")
        await again.close()
        samples = await scrape(daemon)
    finally:
        await daemon.stop()
    assert value(samples, "tgws_connections_logged_in") == 0
    assert value(samples, "tgws_failed_logins_total") == 1


async def test_a_reload_turns_metrics_on_and_narrows_who_may_scrape(tmp_path: Path) -> None:
    settings: dict[str, object] = {}
    daemon = Daemon(make_config(tmp_path), reload_loader=lambda: make_config(tmp_path,
                                                                             **settings))
    await daemon.start()
    try:
        assert (await http_get(daemon.port, "/metrics"))[0] == 404
        settings["metrics.enabled"] = True
        await daemon.reload()
        assert (await http_get(daemon.port, "/metrics"))[0] == 200
        settings["metrics.allow"] = ["192.0.2.0/24"]
        await daemon.reload()
        assert (await http_get(daemon.port, "/metrics"))[0] == 403
    finally:
        await daemon.stop()


def test_demo_serves_metrics(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "tgws", "demo", "--port", "0",
                             "--db", str(tmp_path / "demo.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        port = _demo_port(proc)
        status, _, body = asyncio.run(http_get(port, "/metrics"))
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(body)}
        assert {"tgws_connections", "tgws_items_sent", "tgws_telegram_requests"} <= names
    finally:
        proc.terminate()
        proc.wait(timeout(20))
        assert proc.stdout is not None
        proc.stdout.close()


def _demo_port(proc: subprocess.Popen[str]) -> int:
    found: list[int] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
            if match and not found:
                found.append(int(match.group(1)))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(timeout(30)), "no demo banner"
    return found[0]
