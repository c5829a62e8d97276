"""The sandbox's QR login and code delivery, through unmodified Telethon (client.qr_login(),
QRLogin.wait(), send_code_request's resend)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from telethon import errors, functions, types
from telethon.sessions import StringSession

from tests.support import timeout
from tgws.sandbox import World, sandbox_client
from tgws.sandbox.qr import token_of


def app_of(world: World, user: Any) -> Any:
    """"Another device": a client logged in as `user`."""
    return sandbox_client(world, StringSession(world.session_string(user)))


async def test_qr_login_scanned_by_another_device_logs_the_client_in(sandbox_wire: bool) -> None:
    world = World(wire=sandbox_wire)
    alice = world.user("alice", first_name="Alice", phone="+15550001")
    async with sandbox_client(world) as fresh, app_of(world, alice) as app:
        qr = await fresh.qr_login()
        assert qr.url.startswith("tg://login?token=") and len(qr.token) == 32
        waiting = asyncio.ensure_future(qr.wait(timeout(10)))
        authorization = await app(functions.auth.AcceptLoginTokenRequest(qr.token))
        assert isinstance(authorization, types.Authorization)
        user = await waiting
        assert user.id == alice.id
        assert (await fresh.get_me()).id == alice.id
        with pytest.raises(errors.AuthTokenAlreadyAcceptedError):
            await app(functions.auth.AcceptLoginTokenRequest(qr.token))


async def test_a_fresh_token_each_export_and_an_expired_one_is_refused() -> None:
    world = World()
    alice = world.user("alice", phone="+15550001")
    world.login.qr.ttl = 0.0
    async with sandbox_client(world) as fresh, app_of(world, alice) as app:
        qr = await fresh.qr_login()
        first = qr.url
        await qr.recreate()
        assert qr.url != first
        await asyncio.sleep(0.01)  # ttl 0: any later clock reading is past it
        with pytest.raises(errors.AuthTokenExpiredError):
            await app(functions.auth.AcceptLoginTokenRequest(qr.token))
        with pytest.raises(errors.AuthTokenInvalidError):
            await app(functions.auth.AcceptLoginTokenRequest(b"\x01" * 32))


async def test_qr_login_of_an_account_on_another_dc_migrates_and_imports() -> None:
    world = World()
    alice = world.user("alice", phone="+15550001")
    world.dcs.place(alice, 4)
    async with sandbox_client(world) as fresh, app_of(world, alice) as app:
        qr = await fresh.qr_login()
        waiting = asyncio.ensure_future(qr.wait(timeout(10)))
        await app(functions.auth.AcceptLoginTokenRequest(qr.token))
        user = await waiting  # loginTokenMigrateTo -> _switch_dc(4) -> importLoginToken
        assert user.id == alice.id
        assert fresh.session.dc_id == 4
        assert (await fresh.get_me()).id == alice.id


async def test_qr_login_of_a_2fa_account_asks_for_the_password() -> None:
    world = World()
    bob = world.user("bob", phone="+15550002")
    bob.password = "hunter2"
    async with sandbox_client(world) as fresh, app_of(world, bob) as app:
        qr = await fresh.qr_login()
        waiting = asyncio.ensure_future(qr.wait(timeout(10)))
        await app(functions.auth.AcceptLoginTokenRequest(qr.token))
        with pytest.raises(errors.SessionPasswordNeededError):
            await waiting
        me = await fresh.sign_in(password="hunter2")
        assert me.id == bob.id


async def test_no_update_reaches_a_client_that_asked_for_none() -> None:
    # Telethon wraps every request in invokeWithoutUpdates with receive_updates=False: the
    # scan is still recorded, and asking again finds it.
    world = World()
    alice = world.user("alice", phone="+15550001")
    async with sandbox_client(world, receive_updates=False) as fresh, \
            app_of(world, alice) as app:
        qr = await fresh.qr_login()
        await app(functions.auth.AcceptLoginTokenRequest(qr.token))
        assert world.updates.stats["login_token_unheard"] == 1
        answer = await fresh(functions.auth.ExportLoginTokenRequest(1, "0" * 32, []))
        assert isinstance(answer, types.auth.LoginTokenSuccess)


async def test_the_demo_scan_accepts_each_token_after_a_delay() -> None:
    world = World()
    owner = world.user("owner", phone="+15550000001")
    world.login.qr.accept_after = 0.05
    async with sandbox_client(world) as fresh:
        qr = await fresh.qr_login()
        user = await qr.wait(timeout(10))
        assert user.id == owner.id
    assert token_of(qr.url) == qr.token


async def test_code_delivery_follows_the_chain_on_each_resend() -> None:
    world = World()
    world.user("alice", phone="+15550001")
    world.login.delivery = ("app", "sms", "call", "flash_call")
    async with sandbox_client(world, receive_updates=False) as client:
        sent = await client.send_code_request("+15550001")
        assert isinstance(sent.type, types.auth.SentCodeTypeApp)
        assert isinstance(sent.next_type, types.auth.CodeTypeSms)
        # Telethon resends (auth.resendCode) when it already has a hash for the phone.
        again = await client.send_code_request("+15550001")
        assert isinstance(again.type, types.auth.SentCodeTypeSms)
        assert isinstance(again.next_type, types.auth.CodeTypeCall)
        third = await client.send_code_request("+15550001")
        assert isinstance(third.type, types.auth.SentCodeTypeCall)
        last = await client.send_code_request("+15550001")
        assert isinstance(last.type, types.auth.SentCodeTypeFlashCall)
        assert last.next_type is None
        with pytest.raises(errors.SendCodeUnavailableError):
            await client.send_code_request("+15550001")
        assert (await client.sign_in("+15550001", "12345")).phone == "15550001"


async def test_a_phone_without_an_account_skips_the_app() -> None:
    world = World()
    world.login.delivery = ("app", "sms")
    async with sandbox_client(world, receive_updates=False) as client:
        sent = await client.send_code_request("+15550009")
        assert isinstance(sent.type, types.auth.SentCodeTypeSms)
