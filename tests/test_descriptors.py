"""tgws.descriptors: the descriptor budget and the rate-limited accept() error log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.test_systemd_unit import UNIT, parse_unit
from tgws.config import ServerConfig
from tgws.descriptors import ACCEPT_ERROR, AcceptErrorLog, Capacity, needed


def test_the_budget_counts_websockets_telegram_clients_and_a_reserve() -> None:
    assert needed(1000, 64) == 2 * 1000 + 64 + 64
    assert Capacity.of(ServerConfig()).descriptors == needed(1000, 64)


async def test_accept_errors_are_logged_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    handler = AcceptErrorLog(interval=10.0, clock=lambda: now[0])
    loop = asyncio.get_running_loop()
    handler.install(loop)
    try:
        context = {"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")}
        with caplog.at_level(logging.ERROR, logger="tgws.server"):
            for _ in range(500):  # what asyncio reports in a few ticks of a storm
                loop.call_exception_handler(context)
            now[0] += 10.0
            loop.call_exception_handler(context)
        lines = [r.getMessage() for r in caplog.records if r.name == "tgws.server"]
        assert len(lines) == 2, lines
        assert "499 more since the last report" in lines[1]
        assert all(r.exc_info is None for r in caplog.records)  # no tracebacks
    finally:
        handler.uninstall()
    assert loop.get_exception_handler() is None


def test_the_systemd_unit_gives_the_default_pools_their_descriptors() -> None:
    limit = parse_unit(UNIT.read_text())["Service"]["LimitNOFILE"][-1]
    assert int(limit) >= Capacity.of(ServerConfig()).descriptors
