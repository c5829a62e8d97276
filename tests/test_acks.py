"""AckBarrier on a real websocket connection: an offset mark is committed only once a pong
sent after it came back (tgws/acks.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.support import timeout
from tgws.acks import AckBarrier

Pair = tuple[ServerConnection, ClientConnection]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """A server-side connection and the client connected to it."""
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await accepted.put(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            async with asyncio.timeout(timeout(5)):
                yield await accepted.get(), client


class Commits:
    """The barrier's commit callback; the first commit is held until `release` is set, so a
    test can decide what happens on the connection while the committer is busy."""

    def __init__(self) -> None:
        self.marks: list[Any] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, mark: Any) -> None:
        self.marks.append(mark)
        self.entered.set()
        if len(self.marks) == 1:
            await self.release.wait()


async def test_marks_are_committed_in_order_once_their_pongs_are_in(pair: Pair) -> None:
    ws, _client = pair
    commits = Commits()
    commits.release.set()
    barrier = AckBarrier(ws, commits, every=1)
    for mark in range(1, 6):
        await barrier.sent(mark, 1)
    await barrier.flush(timeout(5))
    # Pongs that came in together are coalesced into one commit of the newest mark.
    assert commits.marks == sorted(set(commits.marks)) and commits.marks[-1] == 5


async def test_a_ping_lost_with_the_connection_never_counts_as_confirmed(pair: Pair) -> None:
    """The committer, busy with one commit, then finds a confirmed ping followed by one the
    connection's end failed: only the confirmed mark may be committed (the flake of
    test_streaming's disconnect test: an offset one batch beyond what the client got)."""
    ws, client = pair
    commits = Commits()
    barrier = AckBarrier(ws, commits, every=1)
    try:
        await barrier.sent("first", 1)
        async with asyncio.timeout(timeout(5)):
            await commits.entered.wait()  # the committer is inside commit("first")
        await barrier.sent("second", 1)
        # Pongs come back in order: once a later ping's pong is in, "second"'s is too.
        async with asyncio.timeout(timeout(5)):
            await (await ws.ping())
        assert client.transport is not None
        client.transport.pause_reading()  # the client never reads what follows
        await barrier.sent("never received", 1)
        client.transport.abort()
        async with asyncio.timeout(timeout(5)):
            await ws.wait_closed()  # websockets failed the pending ping's waiter
        commits.release.set()
        try:
            await barrier.flush(timeout(5))
            flushed = True
        except ConnectionClosed:
            flushed = False
        assert commits.marks == ["first", "second"]
        assert not flushed, "a flush cannot succeed once a ping is lost"
    finally:
        barrier.stop()
