"""Logging in to the sandbox with Telethon's own high-level code: codes, 2FA (real SRP),
log-out, and sessions that survive a restart of the world."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from telethon import TelegramClient, errors, functions, types
from telethon.sessions import MemorySession, StringSession

from tgws.sandbox import World, make_sandbox_client, sandbox_client


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def connected(world: World, session: Any = None, **kw: Any) -> Any:
    """The gateway's options: it handles flood waits itself and pulls without updates."""
    kw.setdefault("flood_sleep_threshold", 0)
    kw.setdefault("receive_updates", False)
    return sandbox_client(world, session, **kw)


async def login(client: TelegramClient, phone: str, code: str = "12345") -> Any:
    await client.send_code_request(phone)
    return await client.sign_in(phone, code)


async def test_fresh_session_gets_a_random_key_and_is_not_authorized(wire: bool) -> None:
    world = World(wire=wire)
    async with connected(world) as client:
        assert client.is_connected()
        assert len(client.session.auth_key.key) == 256
        assert await client.is_user_authorized() is False
        assert await client.get_me() is None
        with pytest.raises(errors.AuthKeyUnregisteredError):
            await client(functions.contacts.ResolveUsernameRequest("whoever"))


async def test_login_with_code_makes_the_session_authorized(wire: bool) -> None:
    world = World(wire=wire)
    alice = world.user("alice", first_name="Alice", phone="+15550001", premium=True)
    async with connected(world) as client:
        sent = await client.send_code_request("+15550001")
        assert isinstance(sent.type, types.auth.SentCodeTypeSms)
        assert sent.type.length == 5 and sent.phone_code_hash
        me = await client.sign_in("+15550001", "12345")
        assert (me.id, me.first_name, me.phone, me.is_self, me.premium) == (
            alice.id, "Alice", "15550001", True, True)
        assert await client.is_user_authorized() is True
        assert (await client.get_me()).id == alice.id


async def test_any_well_formed_phone_gets_an_account_on_the_fly(wire: bool) -> None:
    world = World(wire=wire)
    async with connected(world) as client:
        me = await login(client, "+919876543210")
        assert me.phone == "919876543210"
    assert world.by_phone("919876543210") is not None


async def test_wrong_code_is_phone_code_invalid() -> None:
    world = World()
    async with connected(world) as client:
        await client.send_code_request("+15550002")
        with pytest.raises(errors.PhoneCodeInvalidError):
            await client.sign_in("+15550002", "54321")
        assert (await client.sign_in("+15550002", "12345")).phone == "15550002"


async def test_empty_code_and_missing_hash_are_refused() -> None:
    world = World()
    async with connected(world) as client:
        sent = await client.send_code_request("+15550003")
        with pytest.raises(errors.PhoneCodeEmptyError):
            await client(functions.auth.SignInRequest("15550003", sent.phone_code_hash, ""))
        with pytest.raises(errors.PhoneCodeHashEmptyError):
            await client(functions.auth.SignInRequest("15550003", "", "12345"))


async def test_expired_or_foreign_code_hash_is_phone_code_expired() -> None:
    world = World()
    async with connected(world) as client:
        sent = await client.send_code_request("+15550004")
        with pytest.raises(errors.PhoneCodeExpiredError):  # a hash issued for another phone
            await client(functions.auth.SignInRequest("15550005", sent.phone_code_hash, "12345"))
        assert world.expire_codes() == 1
        with pytest.raises(errors.PhoneCodeExpiredError):
            await client.sign_in("+15550004", "12345")
        # Telethon forgot the expired hash, so asking again sends a fresh code that works.
        assert (await login(client, "+15550004")).phone == "15550004"


async def test_malformed_and_banned_phones_are_refused() -> None:
    world = World()
    world.ban_phone("+15550666")
    async with connected(world) as client:
        with pytest.raises(errors.PhoneNumberInvalidError):
            await client.send_code_request("+123")
        with pytest.raises(errors.PhoneNumberInvalidError):
            await client.send_code_request("+1234567890123456")
        with pytest.raises(errors.PhoneNumberBannedError):
            await client.send_code_request("+15550666")


async def test_unknown_phone_needs_sign_up_when_accounts_are_not_made_on_the_fly() -> None:
    world = World()
    world.accept_any_phone = False
    world.user("known", phone="+15550007")
    async with connected(world) as client:
        await client.send_code_request("+15550008")  # Telegram sends a sign-up code
        with pytest.raises(errors.PhoneNumberUnoccupiedError):
            await client.sign_in("+15550008", "12345")
        assert (await login(client, "+15550007")).username == "known"


async def test_two_step_password_runs_a_real_srp_check(wire: bool) -> None:
    world = World(wire=wire)
    tess = world.user("tess", phone="+19995550002", password="hunter2")
    async with connected(world) as client:
        await client.send_code_request("+19995550002")
        with pytest.raises(errors.SessionPasswordNeededError):
            await client.sign_in("+19995550002", "12345")
        assert await client.is_user_authorized() is False
        with pytest.raises(errors.PasswordHashInvalidError):
            await client.sign_in(password="hunter3")
        me = await client.sign_in(password="hunter2")
        assert me.id == tess.id and me.is_self
        assert await client.is_user_authorized() is True


async def test_password_proof_cannot_be_replayed_or_sent_without_a_challenge() -> None:
    world = World()
    world.user("tess", phone="+19995550002", password="hunter2")
    async with connected(world) as client:
        await client.send_code_request("+19995550002")
        with pytest.raises(errors.SessionPasswordNeededError):
            await client.sign_in("+19995550002", "12345")
        from telethon.password import compute_check

        pwd = await client(functions.account.GetPasswordRequest())
        assert pwd.has_password and pwd.srp_B and pwd.srp_id
        proof = compute_check(pwd, "hunter2")
        await client(functions.auth.CheckPasswordRequest(proof))
        with pytest.raises(errors.SrpIdInvalidError):  # each challenge answers once
            await client(functions.auth.CheckPasswordRequest(proof))


async def test_log_out_revokes_the_key(wire: bool) -> None:
    world = World(wire=wire)
    world.user("alice", phone="+15550001")
    client = make_sandbox_client(world, StringSession(), receive_updates=False)
    await client.connect()
    await login(client, "+15550001")
    saved = client.session.save()
    assert await client.log_out() is True
    assert not client.is_connected()
    async with connected(world, StringSession(saved)) as again:
        assert await again.is_user_authorized() is False
        # Logging in again yields a new key that works.
        await login(again, "+15550001")
        assert await again.is_user_authorized() is True
        assert again.session.save() != saved


async def test_session_string_survives_a_restart_with_the_same_seed(wire: bool) -> None:
    def build(seed: int) -> World:
        world = World(seed=seed, wire=wire)
        world.user("alice", first_name="Alice", phone="+15550001")
        return world

    saved = {}
    async with connected(build(7)) as client:
        saved["alice"] = (await login(client, "+15550001"), client.session.save())
    async with connected(build(7)) as client:
        saved["fly"] = (await login(client, "+447700900123"), client.session.save())

    for me, session in saved.values():
        async with connected(build(7), StringSession(session)) as client:
            assert await client.is_user_authorized() is True
            assert (await client.get_me()).id == me.id
        async with connected(build(8), StringSession(session)) as client:
            assert await client.is_user_authorized() is False


async def test_new_key_is_reported_to_the_session_through_the_auth_key_callback() -> None:
    stored: list[bytes | None] = []

    class RecordingSession(MemorySession):  # type: ignore[misc]
        @property
        def auth_key(self) -> Any:
            return self._auth_key

        @auth_key.setter
        def auth_key(self, value: Any) -> None:
            self._auth_key = value
            stored.append(None if value is None else value.key)

    world = World()
    alice = world.user("alice", phone="+15550001")
    async with connected(world, RecordingSession()) as client:
        await login(client, "+15550001")
        assert world.user_for_key(stored[-1]) is alice


async def test_session_string_helper_and_default_client_options(wire: bool) -> None:
    """World.session_string skips the login; an unconfigured client (updates on) works too."""
    world = World(wire=wire)
    bob = world.user("bobby", phone="+15550009")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            sandbox_client(world, StringSession(world.session_string(bob))))
        assert (await client.get_me()).username == "bobby"


async def test_a_client_can_disconnect_and_connect_again(wire: bool) -> None:
    world = World(wire=wire)
    alice = world.user("alice", phone="+15550001")
    client = make_sandbox_client(world, StringSession(world.session_string(alice)),
                                 receive_updates=False)
    await client.connect()
    await client.disconnect()
    assert not client.is_connected()
    with pytest.raises(ConnectionError):
        await client.get_me()
    await client.connect()
    try:
        assert (await client.get_me()).id == alice.id
    finally:
        await client.disconnect()


async def test_sandbox_client_disconnects_on_exit() -> None:
    world = World()
    async with connected(world) as client:
        assert client.is_connected()
    assert not client.is_connected()
