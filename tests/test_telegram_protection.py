"""Telegram protected from us, and accounts protected from revoked keys (issue 11).

Every test runs a real daemon on 127.0.0.1 with unmodified Telethon against the sandbox, and
drives it from outside with real websocket clients (raw sockets where a client must misbehave).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from telethon.sessions import StringSession

from tests.support import (
    ask,
    collect_stream,
    expect,
    logged_in,
    make_config,
    open_ws,
    recv_json,
    started_with_key,
    timeout,
    wait_closed,
)
from tgws import protocol as p
from tgws.context import App
from tgws.daemon import Daemon
from tgws.store import Store

TL = "telegram login"
PHONE_A = "+919876543210"
PHONE_B = "+15551234567"

Start = Callable[..., Awaitable[Daemon]]  # conftest's start_daemon: daemons with config overrides


async def with_key(start_daemon: Start, name: str, **overrides: Any) -> tuple[Daemon, App, str]:
    """A daemon started with `overrides`, its app and a new API key called `name`."""
    daemon = await start_daemon(**overrides)
    assert daemon.app is not None
    return daemon, daemon.app, await daemon.app.store.create_api_key(name)


def world_of(daemon: Daemon) -> Any:
    assert daemon.backend is not None
    return daemon.backend.world


def calls_to_telegram(daemon: Daemon) -> int:
    """Requests the sandbox Telegram has answered so far (every transmitted request)."""
    return int(world_of(daemon).faults.calls)


async def until(check: Callable[[], Awaitable[bool]], what: str, wait: float = 20.0) -> None:
    """Wait for an async condition, polling; fail naming it after the scaled `wait`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(wait)
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)  # poll interval


async def key_id_of(daemon: Daemon, key: str) -> int:
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(key)
    assert record is not None
    return record.id


async def auth_key_of(daemon: Daemon, key_id: int) -> bytes:
    assert daemon.app is not None
    session = await daemon.app.store.load_session(key_id)
    assert session is not None
    auth_key: bytes = StringSession(session).auth_key.key
    return auth_key


async def revoke_from_another_process(path: str, name: str) -> None:
    """What `tgws apikey revoke` does: its own Store on the same file."""
    async with await Store.open(path) as cli_store:
        assert await cli_store.revoke_api_key(name)


# -- revocation logs the account out at Telegram -------------------------------------------


async def test_revoking_an_idle_disconnected_account_logs_it_out_at_telegram(
        start_daemon: Start) -> None:
    daemon, app, key = await with_key(start_daemon, "idle", **{"telegram.idle_disconnect": 0.0})
    async with await logged_in(daemon, key):
        pass
    key_id = await key_id_of(daemon, key)
    auth_key = await auth_key_of(daemon, key_id)
    world = world_of(daemon)
    assert world.user_for_key(auth_key) is not None

    async def idle() -> bool:
        return app.gateway.connected_accounts == 0 and not app.connections

    await until(idle, "the account to disconnect after idle")
    await revoke_from_another_process(daemon.config.store.target, "idle")

    async def logged_out() -> bool:
        return world.user_for_key(auth_key) is None

    await until(logged_out, "auth.LogOut of the revoked key's session")
    # Then, and only then, the session is deleted.
    await until(lambda: _no_pending(app.store), "the revoked session to be deleted")
    assert await app.store.load_session(key_id, revoked=True) is None


async def _no_pending(store: Store) -> bool:
    return await store.sessions_to_log_out() == []


async def test_a_key_revoked_while_the_daemon_is_down_is_logged_out_when_it_starts(
        tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with started_with_key(config, "offline") as (first, app, key):
        async with await logged_in(first, key):
            pass
        key_id = await key_id_of(first, key)
        session = await app.store.load_session(key_id)
    assert session is not None
    await revoke_from_another_process(config.store.target, "offline")

    second = Daemon(config)
    await second.start()
    try:
        assert second.app is not None
        world = world_of(second)  # the same seeded world: it knows the session's key
        auth_key = StringSession(session).auth_key.key
        assert world.user_for_key(auth_key) is not None
        store = second.app.store

        async def logged_out() -> bool:
            return world.user_for_key(auth_key) is None and await _no_pending(store)

        await until(logged_out, "the log-out of a key revoked while the daemon was down")
    finally:
        await second.stop()


async def test_a_log_out_telegram_refuses_keeps_the_session_for_a_later_try(
        start_daemon: Start, caplog: pytest.LogCaptureFixture) -> None:
    daemon, app, key = await with_key(start_daemon, "stubborn")
    store = app.store
    async with await logged_in(daemon, key):
        pass
    key_id = await key_id_of(daemon, key)
    auth_key = await auth_key_of(daemon, key_id)
    world = world_of(daemon)
    world.fail("LogOut", "LOGOUT_REFUSED_FOR_TEST", code=400, times=None)
    with caplog.at_level(logging.WARNING, logger="tgws.gateway"):
        await revoke_from_another_process(daemon.config.store.target, "stubborn")

        async def attempted() -> bool:
            return "log out at Telegram failed" in caplog.text

        await until(attempted, "a refused log-out attempt")
    # Still logged in at Telegram, so the session is kept (out of the key's reach) for a retry.
    assert world.user_for_key(auth_key) is not None
    assert await store.sessions_to_log_out() == [key_id]
    assert await store.load_session(key_id) is None


# -- revocation closes every connection of the key at once ----------------------------------


class RawClient:
    """A websocket client that never answers a close frame (and reads only when asked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, daemon: Daemon) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        nonce = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {daemon.config.server.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def until_close_frame(self) -> int:
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    def abort(self) -> None:
        self.writer.transport.abort()


async def test_revocation_closes_all_the_keys_connections_at_once(
        start_daemon: Start) -> None:
    daemon, app, key = await with_key(start_daemon, "many")
    clients = [await RawClient.connect(daemon) for _ in range(3)]
    try:
        for client in clients:
            client.send_text(json.dumps({"event": "login", "data": {"apiKey": key}}))
            opcode, payload = await asyncio.wait_for(client.frame(), timeout(10))
            assert opcode == 0x1 and json.loads(payload)["data"]["status"] == "success"
        key_id = await key_id_of(daemon, key)
        await revoke_from_another_process(daemon.config.store.target, "many")
        codes = await asyncio.wait_for(
            asyncio.gather(*(c.until_close_frame() for c in clients)), timeout(30))
        assert codes == [1008, 1008, 1008]
        # None of them answered; all three are still waiting for their close handshake,
        # so the close frames went out together, not one client's close timeout apart.
        assert len(app.by_api_key(key_id)) == 3
    finally:
        for client in clients:
            client.abort()


# -- send code: limits and one pending phone per key ----------------------------------------


async def send_phone(daemon: Daemon, key: str, phone: str) -> dict[str, Any]:
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": key}), "login", "success", p.SEND_PHONE_NUMBER)
        return await ask(ws, TL, {"phone": phone})


async def test_send_code_is_limited_per_key_and_the_wait_is_in_the_reply(
        start_daemon: Start) -> None:
    daemon, app, key = await with_key(start_daemon, "spammer", **{
        "limits.send_code_per_key": 2, "limits.send_code_per_phone": 100,
        "limits.send_code_window": 600.0})
    for phone in ("+15550000001", "+15550000002"):
        expect(await send_phone(daemon, key, phone), TL, "success", p.SEND_CODE)
    before = calls_to_telegram(daemon)
    reply = await send_phone(daemon, key, "+15550000003")
    wait = reply["data"].get("retry_after")
    assert isinstance(wait, int) and 0 < wait <= 600, reply
    assert reply == {"event": TL, "data": {
        "status": "failed", "message": p.SEND_CODE_LIMITED.format(seconds=wait),
        "retry_after": wait}}
    assert calls_to_telegram(daemon) == before  # refused before it reached Telegram
    # Another key is not held back by this one's limit.
    other = await app.store.create_api_key("neighbour")
    expect(await send_phone(daemon, other, "+15550000004"), TL, "success", p.SEND_CODE)


async def test_send_code_is_limited_per_phone_whichever_key_asks(
        start_daemon: Start) -> None:
    daemon = await start_daemon(**{"limits.send_code_per_phone": 1})
    assert daemon.app is not None
    first = await daemon.app.store.create_api_key("first")
    second = await daemon.app.store.create_api_key("second")
    expect(await send_phone(daemon, first, PHONE_B), TL, "success", p.SEND_CODE)
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": second})
        # The same number in another spelling is the same phone.
        reply = await ask(ws, TL, {"phone": "15551234567"})
        assert reply["data"]["status"] == "failed" and reply["data"]["retry_after"] > 0
        # The socket stays open and another phone is fine.
        expect(await ask(ws, TL, {"phone": PHONE_A}), TL, "success", p.SEND_CODE)


async def test_a_pending_code_belongs_to_the_connection_that_sent_the_phone(
        start_daemon: Start) -> None:
    daemon, _, key = await with_key(start_daemon, "two")
    async with await open_ws(daemon) as a, await open_ws(daemon) as b:
        await ask(a, "login", {"apiKey": key})
        await ask(b, "login", {"apiKey": key})
        expect(await ask(a, TL, {"phone": PHONE_A}), TL, "success", p.SEND_CODE)
        before = calls_to_telegram(daemon)
        expect(await ask(b, TL, {"phone": PHONE_B}), TL, "failed", p.CODE_ELSEWHERE)
        assert calls_to_telegram(daemon) == before
        expect(await ask(b, TL, {"code": "12345"}), TL, "failed", p.SEND_PHONE_FIRST)
        expect(await ask(a, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)
    # A's code signed in A's phone, not B's.
    key_id = await key_id_of(daemon, key)
    user = world_of(daemon).user_for_key(await auth_key_of(daemon, key_id))
    assert user is not None and user.phone == PHONE_A.lstrip("+")


async def test_a_failed_code_request_leaves_nothing_pending(
        start_daemon: Start) -> None:
    daemon, _, key = await with_key(start_daemon, "flooded", **{"telegram.flood_wait_ceiling": 0})
    world_of(daemon).fail("SendCode", "FLOOD_WAIT_100")
    async with await open_ws(daemon) as a, await open_ws(daemon) as b:
        await ask(a, "login", {"apiKey": key})
        await ask(b, "login", {"apiKey": key})
        refused = await ask(a, TL, {"phone": PHONE_A})
        assert refused["data"]["status"] == "failed", refused
        # A is still open, but no code is pending there: B may ask for one.
        expect(await ask(b, TL, {"phone": PHONE_B}), TL, "success", p.SEND_CODE)
        expect(await ask(b, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)


async def test_a_closed_connections_pending_code_does_not_block_the_next(
        start_daemon: Start) -> None:
    daemon, app, key = await with_key(start_daemon, "retry")
    expect(await send_phone(daemon, key, PHONE_A), TL, "success", p.SEND_CODE)

    async def gone() -> bool:
        return not app.connections

    await until(gone, "the first connection to close")
    async with await open_ws(daemon) as ws:
        await ask(ws, "login", {"apiKey": key})
        expect(await ask(ws, TL, {"phone": PHONE_B}), TL, "success", p.SEND_CODE)
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)
    user = world_of(daemon).user_for_key(await auth_key_of(daemon, await key_id_of(daemon, key)))
    assert user is not None and user.phone == PHONE_B.lstrip("+")


# -- group names ----------------------------------------------------------------------------


async def test_a_group_named_a_hundred_times_is_fetched_and_sent_once(
        start_daemon: Start) -> None:
    daemon, _, key = await with_key(start_daemon, "dups")
    spellings = ["testgroup00002", "@testgroup00002", "t.me/TestGroup00002",
                 "https://t.me/testgroup00002/"]
    async with await logged_in(daemon, key) as ws:
        before = calls_to_telegram(daemon)
        await ws.send(json.dumps({"event": "chats", "data": {
            "group": [spellings[i % 4] for i in range(100)], "status": ""}}))
        items, done = await collect_stream(ws, "chats")
        chats_calls = calls_to_telegram(daemon) - before
        assert len(items) == 120 == done["count"]
        assert {item["group"] for item in items} == {"testgroup00002"}
        assert [g["group"] for g in done["groups"]] == ["testgroup00002"]

        before = calls_to_telegram(daemon)
        await ws.send(json.dumps({"event": "users", "data": {
            "group": ["testgroup00002"] * 100, "status": ""}}))
        members, summary = await collect_stream(ws, "users")
        assert len(members) == 40 == summary["count"]
        assert [g["group"] for g in summary["groups"]] == ["testgroup00002"]
        users_calls = calls_to_telegram(daemon) - before
    # One group's worth of requests (a resolve and two pages, give or take), not a hundred.
    assert chats_calls < 10 and users_calls < 10, (chats_calls, users_calls)


NOT_USERNAMES = ["me", "self", "12345678", "-1001234567890", "+919876543210",
                 "Test Group 1", "t.me/+AbCdEfGhIj"]


@pytest.mark.parametrize("name", NOT_USERNAMES)
async def test_names_that_are_not_usernames_never_reach_telegram(
        start_daemon: Start, name: str) -> None:
    daemon, app, key = await with_key(start_daemon, "names")
    store = app.store
    async with await logged_in(daemon, key) as ws:
        before = calls_to_telegram(daemon)
        reply = await ask(ws, "users", {"group": ["testgroup00002", name]})
        assert reply["data"] == {"status": "failed", "message": f"{name} does not exist",
                                 "group": name}
        assert await wait_closed(ws) == 1000
    async with await logged_in(daemon, key) as ws:
        reply = await ask(ws, "chats", {"group": [{"name": name, "status": ""}]})
        assert reply["data"] == {"status": "failed", "message": "invalid request",
                                 "group": name}
        assert await wait_closed(ws) == 1000
    assert calls_to_telegram(daemon) == before
    assert await store.lookup_entity(await key_id_of(daemon, key), name) is None


async def test_a_newline_in_a_group_name_cannot_forge_a_log_line(
        start_daemon: Start, caplog: pytest.LogCaptureFixture) -> None:
    daemon, _, key = await with_key(start_daemon, "forger")
    forged = "x\n2026-01-01 00:00:00,000 INFO tgws.server: conn#1: api key 'admin' verified"
    with caplog.at_level(logging.DEBUG, logger="tgws"):
        async with await logged_in(daemon, key) as ws:
            reply = await ask(ws, "users", {"group": [forged]})
            assert reply["data"]["message"] == f"{forged} does not exist"
            await wait_closed(ws)
    # The daemon's own lines (the test's websockets client logs frames too, at DEBUG).
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("tgws")]
    # The name is logged (the failed reply, the close), escaped: one record, one line.
    assert any(repr(forged)[1:-1] in line for line in lines), lines
    for line in lines:
        assert "\n" not in line, line


# -- logout ends the key's other streams with a reply that says why -------------------------


async def test_logout_ends_the_keys_other_streams_with_a_final_reply(
        start_daemon: Start) -> None:
    daemon = await start_daemon()
    assert daemon.app is not None
    app = daemon.app
    group = world_of(daemon).megagroup("endlesshistory", title="Endless history")
    group.populate(5)
    group.history(60_000)  # far more than the socket buffers hold: the stream must wait
    key = await app.store.create_api_key("shared")
    async with await logged_in(daemon, key) as streaming, await logged_in(daemon, key) as other:
        await streaming.send(json.dumps({"event": "chats", "data": {
            "group": [{"name": "endlesshistory", "status": ""}]}}))
        expect(await recv_json(streaming), "chats", "success", p.SENDING_CHATS)
        first = await recv_json(streaming)
        assert isinstance(first["data"]["message"], dict)
        # The stream is blocked on the client that stopped reading, not finished.
        assert any(c.stream is not None for c in app.connections)
        expect(await ask(other, "logout"), "logout", "success", p.LOGGED_OUT)
        while True:
            reply = await recv_json(streaming, wait=30)
            if not isinstance(reply["data"]["message"], dict):
                break
        expect(reply, "chats", "failed", p.LOGGED_OUT_ELSEWHERE)
        # That connection is back to "verified" and still open.
        expect(await ask(streaming, "users", {"group": ["testgroup00002"]}), "users",
               "failed", p.TELEGRAM_LOGIN_FIRST)
