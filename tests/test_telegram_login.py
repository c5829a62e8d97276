"""`telegram login` end to end: real server, real websocket client, Telethon against the sandbox."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
import rsa
from telethon.crypto import rsa as telethon_rsa
from telethon.network import connection as tl_connection
from telethon.sessions import StringSession

from tests.support import (
    ask,
    collect_stream,
    eventually,
    expect,
    logged_in,
    make_config,
    open_ws,
    recv_json,
    started,
    started_with_key,
    wait_closed,
    world_settings,
)
from tgws import protocol as p
from tgws.config import Config, load
from tgws.daemon import Daemon
from tgws.errors import ConfigError
from tgws.telegram_clients import register_public_key, telegram_client_factory

TL = "telegram login"


@pytest.fixture
def config(tmp_path: Path, sandbox_wire: bool, sandbox_world: str) -> Config:
    """The daemon fixture's config, with the sandbox in both modes (conftest.sandbox_wire):
    with wire = true Telethon parses the login answers (sent code, authorization, the SRP
    password parameters) from TL bytes, as it does Telegram's. And in both worlds
    (conftest.sandbox_world): in the hostile one the demo's phones live on other data
    centres (PHONE_MIGRATE / USER_MIGRATE) and 5 % of calls fail."""
    return make_config(tmp_path, **{"sandbox.wire": sandbox_wire,
                                    **world_settings(sandbox_world)})


async def test_the_daemons_sandbox_runs_in_the_configured_mode(
        daemon: Daemon, sandbox_wire: bool) -> None:
    assert _world(daemon).wire is sandbox_wire


async def _verified(daemon: Daemon, key: str):  # type: ignore[no-untyped-def]
    ws = await open_ws(daemon)
    expect(await ask(ws, "login", {"apiKey": key}), "login", "success", "send phone number")
    return ws


def _world(daemon: Daemon):  # type: ignore[no-untyped-def]
    assert daemon.backend is not None
    return daemon.backend.world


async def test_happy_path_phone_then_code(daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        await ws.send(json.dumps({"event": TL, "data": {"phone": "+919876543210"}}))
        raw = await ws.recv()
        assert raw == '{"event": "telegram login", "data": {"status": "success", ' \
                      '"message": "send code"}}'
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", "logged in successfully")
        expect(await ask(ws, TL, {"phone": "+919876543210"}), TL, "success",
               "session alreay exists, call 'users'")
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(api_key)
    assert record is not None and await daemon.app.store.has_session(record.id)


async def test_code_as_a_number_is_accepted(daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        await ask(ws, TL, {"phone": "+15551234567"})
        expect(await ask(ws, TL, {"code": 12345}), TL, "success", "logged in successfully")


async def test_two_step_verification_asks_for_the_password(
        daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        expect(await ask(ws, TL, {"phone": "+19995550002"}), TL, "success", "send code")
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", "send password")
        expect(await ask(ws, TL, {"code": "12345"}), TL, "failed", p.PASSWORD_PENDING)
        expect(await ask(ws, TL, {"password": "hunter2"}), TL, "success",
               "logged in successfully")


async def test_wrong_password_closes_the_socket(daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        await ask(ws, TL, {"phone": "+19995550002"})
        await ask(ws, TL, {"code": "12345"})
        expect(await ask(ws, TL, {"password": "hunter3"}), TL, "failed", "invalid password")
        assert await wait_closed(ws) == 1000


async def test_malformed_phone_closes_the_socket(daemon: Daemon, api_key: str) -> None:
    for phone in ["not a phone", "+1", "", "+12345678901234567890"]:
        async with await _verified(daemon, api_key) as ws:
            expect(await ask(ws, TL, {"phone": phone}), TL, "failed", "invalid phone number")
            assert await wait_closed(ws) == 1000


async def test_banned_phone_is_an_invalid_phone_number(daemon: Daemon, api_key: str) -> None:
    _world(daemon).ban_phone("+15550009999")
    async with await _verified(daemon, api_key) as ws:
        expect(await ask(ws, TL, {"phone": "+15550009999"}), TL, "failed",
               "invalid phone number")
        assert await wait_closed(ws) == 1000


async def test_wrong_code_closes_the_socket(daemon: Daemon, api_key: str) -> None:
    for code in ["54321", "", "   "]:
        async with await _verified(daemon, api_key) as ws:
            await ask(ws, TL, {"phone": "+15551234567"})
            expect(await ask(ws, TL, {"code": code}), TL, "failed", "invalid code provided")
            assert await wait_closed(ws) == 1000


async def test_expired_code_is_an_invalid_code(daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        await ask(ws, TL, {"phone": "+15551234567"})
        _world(daemon).expire_codes()
        expect(await ask(ws, TL, {"code": "12345"}), TL, "failed", "invalid code provided")
        assert await wait_closed(ws) == 1000


async def test_telegram_login_before_login_closes_socket(daemon: Daemon) -> None:
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, TL, {"phone": "+919876543210"}), TL, "failed",
               "verify your api key first")
        assert await wait_closed(ws) == 1000


async def test_code_before_phone_and_second_phone_are_refused_without_closing(
        daemon: Daemon, api_key: str) -> None:
    async with await _verified(daemon, api_key) as ws:
        expect(await ask(ws, TL, {"code": "12345"}), TL, "failed", p.SEND_PHONE_FIRST)
        expect(await ask(ws, TL, {"password": "x"}), TL, "failed", p.NOT_EXPECTING_PASSWORD)
        await ask(ws, TL, {"phone": "+15551234567"})
        expect(await ask(ws, TL, {"phone": "+15557654321"}), TL, "failed", p.CODE_PENDING)
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", "logged in successfully")


# An RPC error reaches Telethon the same way in both modes; this one waits a real second.
@pytest.mark.parametrize("sandbox_wire", [False], ids=["objects"])
async def test_flood_wait_on_send_code_is_waited_out_and_announced(
        daemon: Daemon, api_key: str) -> None:
    _world(daemon).fail("SendCodeRequest", "FLOOD_WAIT_1")
    async with await _verified(daemon, api_key) as ws:
        notice = await ask(ws, TL, {"phone": "+15551234567"})
        assert notice == {"event": TL, "data": {
            "status": "progress", "message": "telegram asks to wait 1 s; waiting", "wait": 1}}
        expect(await recv_json(ws), TL, "success", "send code")


async def test_flood_wait_over_the_ceiling_fails_clearly_and_keeps_the_socket(
        tmp_path: Path) -> None:
    d = Daemon(make_config(tmp_path, **{"telegram.flood_wait_ceiling": 5}))
    await d.start()
    try:
        assert d.app is not None
        key = await d.app.store.create_api_key("k")
        _world(d).fail("SendCodeRequest", "FLOOD_WAIT_300")
        async with await _verified(d, key) as ws:
            expect(await ask(ws, TL, {"phone": "+15551234567"}), TL, "failed",
                   "telegram asks to wait 300 s; try again later")
            expect(await ask(ws, TL, {"phone": "+15551234567"}), TL, "success", "send code")
    finally:
        await d.stop()


async def test_logout_forgets_the_session_and_allows_a_new_login(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as ws:
        expect(await ask(ws, "logout", {}), "logout", "success", "logged out")
        expect(await ask(ws, "users", {"group": ["testgroup00001"]}), "users", "failed",
               p.TELEGRAM_LOGIN_FIRST)
        expect(await ask(ws, "logout", {}), "logout", "failed", p.NO_SESSION)
    async with await open_ws(daemon) as ws:
        expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
               "send phone number")
        await ask(ws, TL, {"phone": "+919876543210"})
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", "logged in successfully")


async def test_restart_keeps_the_session_and_the_entity_cache(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with started_with_key(config, "k") as (first, _, key):
        async with await logged_in(first, key) as ws:
            await ws.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
            items, _ = await collect_stream(ws, "users")
            assert len(items) == 40

    # A new process would see exactly this: the same store file.
    async with started(config) as second:
        # Any contacts.ResolveUsername now fails: success proves the cache answered.
        _world(second).fail("ResolveUsernameRequest", "USERNAME_INVALID", times=None)
        async with await open_ws(second) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "session already exists, call 'users'.")
            expect(await ask(ws, TL, {"phone": "+919876543210"}), TL, "success",
                   "session alreay exists, call 'users'")
            await ws.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
            items, done = await collect_stream(ws, "users")
            assert len(items) == 40 and done["count"] == 40


async def test_two_connections_of_one_key_share_one_client(
        daemon: Daemon, api_key: str) -> None:
    async with await logged_in(daemon, api_key) as a, await open_ws(daemon) as b:
        expect(await ask(b, "login", {"apiKey": api_key}), "login", "success",
               "session already exists, call 'users'.")
        await b.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
        await a.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
        (items_b, _), (items_a, _) = await collect_stream(b, "users"), \
            await collect_stream(a, "users")
        assert len(items_a) == len(items_b) == 40
        assert daemon.app is not None
        accounts = {id(c.account) for c in daemon.app.connections}
        clients = {id(c.account._client) for c in daemon.app.connections if c.account}
        assert len(accounts) == 1 and len(clients) == 1
        assert daemon.app.gateway.connected_accounts == 1


async def test_two_api_keys_are_isolated(daemon: Daemon, api_key: str) -> None:
    assert daemon.app is not None
    other = await daemon.app.store.create_api_key("other")
    async with await logged_in(daemon, api_key):
        async with await open_ws(daemon) as ws:
            # The other key sees no session: it must log in on its own.
            expect(await ask(ws, "login", {"apiKey": other}), "login", "success",
                   "send phone number")
            expect(await ask(ws, "users", {"group": ["testgroup00001"]}), "users", "failed",
                   p.TELEGRAM_LOGIN_FIRST)
            await ask(ws, TL, {"phone": "+15550000042"})
            expect(await ask(ws, TL, {"code": "12345"}), TL, "success",
                   "logged in successfully")
        assert daemon.app.gateway.connected_accounts == 2
    a = await daemon.app.store.verify_api_key(api_key)
    b = await daemon.app.store.verify_api_key(other)
    assert a is not None and b is not None
    assert await daemon.app.store.load_session(a.id) != await daemon.app.store.load_session(b.id)


async def test_codes_and_passwords_are_never_logged(
        daemon: Daemon, api_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with await _verified(daemon, api_key) as ws:
        await ask(ws, TL, {"phone": "+19995550002"})
        await ask(ws, TL, {"code": "12345"})
        await ask(ws, TL, {"password": "hunter2"})
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(api_key)
    assert record is not None
    session = await daemon.app.store.load_session(record.id)
    assert session
    # Everything the daemon's process logged, minus the test's own websocket client.
    records = caplog.records
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in records
                     if not r.name.startswith("websockets.client"))
    assert "tgws.server" in text  # the capture did see the daemon
    for secret in ("hunter2", "12345", api_key, session):
        assert secret not in text


def test_server_override_reaches_telethon(tmp_path: Path) -> None:
    public, _ = rsa.newkeys(1024)
    pem = tmp_path / "server.pem"
    pem.write_bytes(public.save_pkcs1())
    config = load(None, environ={}, overrides={
        "telegram.api_id": 1, "telegram.api_hash": "x" * 32,
        "telegram.connection": "intermediate",
        "telegram.server.dc_id": 2, "telegram.server.host": "10.1.2.3",
        "telegram.server.port": 4443, "telegram.server.public_key_file": str(pem),
    })
    client = telegram_client_factory(config.telegram)(StringSession())
    try:
        assert client.session.dc_id == 2
        assert client.session.server_address == "10.1.2.3"
        assert client.session.port == 4443
        assert client._connection is tl_connection.ConnectionTcpIntermediate
        fingerprint = telethon_rsa._compute_fingerprint(public)
        assert fingerprint in telethon_rsa._server_keys
        assert register_public_key(str(pem)) == fingerprint
    finally:
        client.session.close()


def test_openssl_pem_public_keys_are_accepted(tmp_path: Path) -> None:
    public, _ = rsa.newkeys(1024)
    pem = tmp_path / "server.pub"
    pem.write_bytes(_openssl_pem(public))
    assert register_public_key(str(pem)) == telethon_rsa._compute_fingerprint(public)


def test_a_file_that_is_not_a_key_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigError, match="is not an RSA public key in PEM"):
        register_public_key(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        register_public_key(str(tmp_path / "missing.pem"))


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def _openssl_pem(key: rsa.PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), as `openssl rsa -pubout` writes it."""
    rsa_encryption = _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b"")
    info = _der(0x30, _der(0x30, rsa_encryption) + _der(0x03, b"\0" + key.save_pkcs1(format="DER")))
    body = base64.encodebytes(info).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines)
            + "\n-----END PUBLIC KEY-----\n").encode()


async def test_an_account_disconnects_after_its_last_connection_idles(tmp_path: Path) -> None:
    d = Daemon(make_config(tmp_path, **{"telegram.idle_disconnect": 0.2}))
    await d.start()
    try:
        assert d.app is not None
        key = await d.app.store.create_api_key("k")
        async with await logged_in(d, key):
            assert d.app.gateway.connected_accounts == 1
        gateway = d.app.gateway
        await eventually(lambda: gateway.connected_accounts == 0,
                         "the idle account to disconnect")
        async with await logged_in(d, key) as ws:  # and reconnects on the next use
            await ws.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
            items, _ = await collect_stream(ws, "users")
            assert len(items) == 40
    finally:
        await d.stop()
