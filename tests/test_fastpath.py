"""The fenced fast path (tgws/fastpath.py) and its public fallback stream the same items.

End to end: a real daemon, a real websocket client, unmodified Telethon on the sandbox in
wire mode (Telethon parses TL bytes). The fallback is forced through the fence's own
switch, fastpath.force_public(), never by patching tgws.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.base import ClientExtensionFactory, Extension
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode

from tests.support import (
    collect_stream,
    eventually,
    logged_in,
    make_config,
    open_ws,
    timeout,
    wait_closed,
)
from tgws import fastpath
from tgws.daemon import Daemon
from tgws.sandbox import World

HISTORY = 2_500  # crosses Telegram pages (100), batches and acknowledgement intervals


@pytest.fixture(autouse=True)
def checked_afresh() -> Iterator[None]:
    """Every test starts and ends with the checks uncached and nothing forced."""
    fastpath.force_public(False)
    yield
    fastpath.force_public(False)


class CountingDeflate(Extension):
    """permessage-deflate on the client, counting the text frames that arrived compressed."""

    def __init__(self, inner: Extension) -> None:
        self.inner = inner
        self.name = inner.name
        self.compressed = 0
        self.plain = 0

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode is Opcode.TEXT:
            if frame.rsv1:
                self.compressed += 1
            else:
                self.plain += 1
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame: Frame) -> Frame:
        return self.inner.encode(frame)


class CountingDeflateFactory(ClientExtensionFactory):
    """websockets' own permessage-deflate negotiation, handing out CountingDeflate."""

    def __init__(self) -> None:
        self.inner = ClientPerMessageDeflateFactory()
        self.name = self.inner.name
        self.made: list[CountingDeflate] = []

    def get_request_params(self) -> Sequence[tuple[str, str | None]]:
        return self.inner.get_request_params()

    def process_response_params(self, params: Sequence[tuple[str, str | None]],
                                accepted_extensions: Sequence[Extension]) -> Extension:
        extension = CountingDeflate(self.inner.process_response_params(params,
                                                                       accepted_extensions))
        self.made.append(extension)
        return extension


async def stream_everything(tmp_path: Path, name: str, *, compression: bool = False
                            ) -> tuple[dict[str, Any], CountingDeflateFactory]:
    """users of two groups and chats of two groups from a fresh daemon; what the client read."""
    daemon = Daemon(make_config(tmp_path, **{"store.path": str(tmp_path / f"{name}.db"),
                                             "sandbox.wire": True,
                                             "server.compression": compression}))
    await daemon.start()
    factory = CountingDeflateFactory()
    try:
        assert daemon.backend is not None and daemon.app is not None
        world: World = daemon.backend.world
        group = world.megagroup("fencetest", title="Fence test")
        group.populate(30)
        group.history(HISTORY)
        # One key name per run: with TGWS_TEST_STORE=postgresql the runs share one schema.
        key = await daemon.app.store.create_api_key(name)
        options: dict[str, Any] = {"extensions": [factory]} if compression else {}
        async with await logged_in(daemon, key, **options) as ws:
            await ws.send(json.dumps({"event": "users", "data": {
                "group": ["testgroup00001", "fencetest"], "status": ""}}))
            users, users_done = await collect_stream(ws, "users")
            await ws.send(json.dumps({"event": "chats", "data": {"status": "", "group": [
                {"name": "UnderWorld4444", "status": ""}, {"name": "fencetest", "status": ""}]}}))
            chats, chats_done = await collect_stream(ws, "chats")
    finally:
        await daemon.stop()
    return ({"users": users, "users_done": users_done, "chats": chats,
             "chats_done": chats_done}, factory)


def paths_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tgws.fastpath"]


def check_complete(seen: dict[str, Any]) -> None:
    assert len(seen["users"]) == 250 + 30 and seen["users_done"]["complete"] is True
    fence = [item["chat"]["id"] for item in seen["chats"] if item["group"] == "fencetest"]
    assert fence == list(range(1, HISTORY + 1))
    assert seen["chats_done"]["count"] == 300 + HISTORY


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
async def test_the_public_fallback_streams_exactly_what_the_fast_path_streams(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, compression: bool) -> None:
    caplog.set_level(logging.INFO, logger="tgws.fastpath")
    fast, _ = await stream_everything(tmp_path, "fast", compression=compression)
    # Streams read no Telethon iterator internals (tgws's own pagers hand out pages); the
    # member pages are read by tgws's TL reader (participants_reader), the frames hand-built.
    assert sorted(paths_logged(caplog)) == ["Telethon: fast path in use",
                                            "websockets: fast path in use"]
    check_complete(fast)

    caplog.clear()
    fastpath.force_public(True)
    public, _ = await stream_everything(tmp_path, "public", compression=compression)
    assert sorted(paths_logged(caplog)) == ["Telethon: public path (forced)",
                                            "websockets: public path (forced)"]
    assert public == fast


async def test_member_pages_are_read_by_tgws_reader_unless_forced_public(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader is reached through Telethon's own sender: daemon clients send every request
    inside InvokeWithoutUpdatesRequest, which must hand the page to the query's reader (it
    once did not, and every page silently went through Telethon's). A spy counts the pages
    participants_reader reads; it changes nothing it observes."""
    from tgws import participants_reader

    pages = 0
    read_page = participants_reader._page

    def counting(data: bytes, pos: int) -> Any:
        nonlocal pages
        pages += 1
        return read_page(data, pos)

    monkeypatch.setattr(participants_reader, "_page", counting)
    fast, _ = await stream_everything(tmp_path, "spied")
    check_complete(fast)
    # testgroup00001 (250 members) and fencetest (30): two pages and the pager's last reads.
    assert pages >= 2
    fastpath.force_public(True)
    pages = 0
    public, _ = await stream_everything(tmp_path, "spied-public")
    assert pages == 0 and public == fast


async def test_with_permessage_deflate_every_item_arrives_compressed_and_intact(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tgws.fastpath")
    plain, _ = await stream_everything(tmp_path, "plain")
    deflated, factory = await stream_everything(tmp_path, "deflate", compression=True)
    assert "websockets: fast path in use" in paths_logged(caplog)
    assert deflated == plain
    check_complete(deflated)
    [extension] = factory.made  # the client negotiated permessage-deflate
    # Replies and items alike: the fast path's deflate branch compressed every text frame.
    assert extension.plain == 0
    assert extension.compressed > len(deflated["users"]) + len(deflated["chats"])


@pytest.mark.parametrize(("public", "code"), [(False, 1006), (True, 1011)],
                         ids=["transport", "public-close"])
async def test_abort_drops_the_client_at_once_or_closes_it_publicly(
        daemon: Daemon, public: bool, code: int) -> None:
    fastpath.force_public(public)
    async with await open_ws(daemon) as ws:
        app = daemon.app
        assert app is not None
        await eventually(lambda: len(app.connections) == 1, "the daemon to count the client")
        [conn] = app.connections
        fastpath.abort(conn.ws)
        # 1006: the TCP connection just ended; 1011: a closing handshake took place.
        assert await wait_closed(ws) == code


# --- the checks themselves ----------------------------------------------------------------
def test_a_connection_without_the_internals_gets_the_public_path(
        caplog: pytest.LogCaptureFixture) -> None:
    class NotAConnection:
        """Has none of websockets' internals (as if a release had renamed them)."""

    caplog.set_level(logging.INFO, logger="tgws.fastpath")
    assert fastpath.can_write(NotAConnection()) is False  # type: ignore[arg-type]
    [message] = paths_logged(caplog)
    assert "internals missing (Connection.send_context())" in message
    assert [r.levelno for r in caplog.records if r.name == "tgws.fastpath"] == [logging.WARNING]


async def test_a_held_pong_connection_answers_a_ping_only_when_told() -> None:
    """forwarding.py's upstream connection: the owner's ping is held with the number of
    messages received before it, and answered by the caller (tgws/forwarding.py answers once
    the client has those messages). Forced public: no such class (automatic pongs)."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    waiters: list[Any] = []

    async def owner(ws: Any) -> None:
        for text in ("one", "two", "three"):
            await ws.send(text)
        waiters.append(await ws.ping(b"ack-3"))
        await ws.wait_closed()

    relay = fastpath.held_pong_connection()
    assert relay is not None
    async with serve(owner, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", create_connection=relay) as opened:
            upstream: Any = opened  # a held-pong connection: held_pings, ping_held
            await asyncio.wait_for(upstream.ping_held.wait(), timeout(5))
            assert list(upstream.held_pings) == [(b"ack-3", 3)]
            assert [await upstream.recv() for _ in range(3)] == ["one", "two", "three"]
            assert not waiters[0].done()  # no automatic pong went out
            await upstream.pong(b"ack-3")
            await asyncio.wait_for(waiters[0], timeout(5))  # the owner has its pong now
    fastpath.force_public(True)
    assert fastpath.held_pong_connection() is None
