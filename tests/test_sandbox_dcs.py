"""Data centres in the sandbox, met by unmodified Telethon: PHONE_MIGRATE and USER_MIGRATE move
the client to the account's DC for real (new connection, new key) and the saved session then
names that DC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, errors, functions
from telethon.sessions import StringSession

from tests.support import ask, collect_stream, expect, logged_in, make_config, open_ws
from tgws.daemon import Daemon
from tgws.sandbox import SandboxSender, World, build_demo_world, make_sandbox_client
from tgws.sandbox.dcs import ADDRESSES, DataCentres
from tgws.sandbox.demo import PASSWORD, PASSWORD_PHONE


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def fresh(world: World, session: str = "", **kw: Any) -> TelegramClient:
    kw.setdefault("receive_updates", False)
    return make_sandbox_client(world, StringSession(session), **kw)


def dc_of(client: TelegramClient) -> int:
    sender = client._sender
    assert isinstance(sender, SandboxSender)
    return sender.dc


def saved_dc(session: str) -> tuple[int, str, int]:
    loaded = StringSession(session)
    return loaded.dc_id, loaded.server_address, loaded.port


async def test_phone_migrate_moves_the_login_to_the_accounts_dc(wire: bool) -> None:
    world = World(seed=4, wire=wire)
    world.user("dana", phone="+15550004")
    world.dcs.place("+15550004", 4)
    client = fresh(world)
    await client.connect()
    assert dc_of(client) == 2  # Telethon's default DC
    first_key = client.session.auth_key.key
    await client.send_code_request("+15550004")  # PHONE_MIGRATE_4 inside, handled by Telethon
    assert dc_of(client) == 4
    assert client.session.auth_key.key != first_key  # a new key was made on DC 4
    me = await client.sign_in("+15550004", "12345")
    assert me.username == "dana"
    saved = client.session.save()
    await client.disconnect()
    assert saved_dc(saved) == (4, *ADDRESSES[4])

    again = fresh(world, saved)
    await again.connect()
    assert dc_of(again) == 4
    assert (await again.get_me()).username == "dana"
    await again.disconnect()


async def test_user_migrate_at_sign_in_for_a_new_phone(wire: bool) -> None:
    """A phone without an account gets its code anywhere; signing in answers USER_MIGRATE_3
    and Telethon signs in again on DC 3 with the same code hash."""
    world = World(seed=5, wire=wire)
    world.dcs.place("+15550777", 3)
    client = fresh(world)
    await client.connect()
    sent = await client.send_code_request("+15550777")
    assert dc_of(client) == 2
    me = await client.sign_in("+15550777", "12345", phone_code_hash=sent.phone_code_hash)
    assert me.phone == "15550777"
    assert dc_of(client) == 3
    assert saved_dc(client.session.save())[0] == 3
    assert await client.is_user_authorized()
    await client.disconnect()


async def test_two_factor_account_on_another_dc() -> None:
    world = build_demo_world(0)
    world.dcs.place(PASSWORD_PHONE, 5)
    client = fresh(world)
    await client.connect()
    await client.send_code_request(PASSWORD_PHONE)
    with pytest.raises(errors.SessionPasswordNeededError):
        await client.sign_in(PASSWORD_PHONE, "12345")
    me = await client.sign_in(password=PASSWORD)
    assert me.username == "tess_twofactor"
    assert dc_of(client) == 5 and saved_dc(client.session.save())[0] == 5
    await client.disconnect()


async def test_a_session_on_the_wrong_dc_meets_user_migrate() -> None:
    """An account moved to DC 5: its session on DC 2 is told USER_MIGRATE_5. Telethon switches
    (dropping the key, as it always does when switching) and is then logged out there."""
    world = World(seed=6)
    erin = world.user("erin", phone="+15550005")
    session = world.session_string(erin)
    assert saved_dc(session)[0] == 2
    client = fresh(world, session)
    await client.connect()
    assert (await client.get_me()).username == "erin"
    world.dcs.place(erin, 5)
    with pytest.raises(errors.AuthKeyUnregisteredError):
        await client(functions.updates.GetStateRequest())
    assert dc_of(client) == 5
    assert saved_dc(client.session.save())[0] == 5
    await client.disconnect()


async def test_session_string_names_the_accounts_dc() -> None:
    world = World(seed=7)
    fay = world.user("fay", phone="+15550006")
    world.dcs.place(fay, 3)
    session = world.session_string(fay)
    assert saved_dc(session) == (3, *ADDRESSES[3])
    client = fresh(world, session)
    await client.connect()
    assert dc_of(client) == 3 and (await client.get_me()).username == "fay"
    await client.disconnect()


async def test_get_config_lists_every_dc_and_says_which_one_answered() -> None:
    world = World(seed=8)
    gus = world.user("gus", phone="+15550008")
    world.dcs.place(gus, 4)
    client = fresh(world, world.session_string(gus))
    await client.connect()
    config = await client(functions.help.GetConfigRequest())
    nearest = await client(functions.help.GetNearestDcRequest())
    await client.disconnect()
    assert config.this_dc == 4 and nearest.this_dc == 4
    assert {(o.id, o.ip_address, o.port) for o in config.dc_options} == {
        (dc, ip, port) for dc, (ip, port) in ADDRESSES.items()}


async def test_a_connection_to_no_sandbox_dc_is_refused() -> None:
    world = World(seed=9)
    session = StringSession()
    session.set_dc(9, "203.0.113.9", 443)
    client = make_sandbox_client(world, session, connection_retries=1, retry_delay=0)
    with pytest.raises(ConnectionError):
        await client.connect()


def test_calm_worlds_keep_everybody_on_dc_2_and_spread_worlds_are_deterministic() -> None:
    calm = DataCentres(b"s" * 32)
    assert {calm.of_phone(f"1555{n:07d}") for n in range(200)} == {2}
    spread = DataCentres(b"s" * 32, spread=True)
    homes = [spread.of_phone(f"1555{n:07d}") for n in range(200)]
    assert set(homes) == set(ADDRESSES)
    assert homes == [DataCentres(b"s" * 32, spread=True).of_phone(f"1555{n:07d}")
                     for n in range(200)]
    spread.place("+15550000042", 1)
    assert spread.of_phone("15550000042") == 1
    with pytest.raises(ValueError, match="no DC 6"):
        spread.place("+15550000042", 6)


async def test_the_daemon_stores_the_migrated_session_and_reuses_it(tmp_path: Path) -> None:
    """Through tgws, in the hostile world (faults off): +919876543210 lives on DC 5, so its
    login goes through USER_MIGRATE_5; the stored session names DC 5, and after a restart
    the daemon streams with it without logging in again."""
    config = make_config(tmp_path, **{"sandbox.hostile": True, "sandbox.fault_rate": 0.0})
    first = Daemon(config)
    await first.start()
    try:
        assert first.app is not None and first.backend is not None
        assert first.backend.world.dcs.of_phone("919876543210") == 5
        key = await first.app.store.create_api_key("k")
        async with await logged_in(first, key, phone="+919876543210"):
            pass
        records = {r.name: r for r in await first.app.store.list_api_keys()}
        session = await first.app.store.load_session(records["k"].id)
        assert session is not None and saved_dc(session) == (5, *ADDRESSES[5])
    finally:
        await first.stop()

    second = Daemon(config)
    await second.start()
    try:
        async with await open_ws(second) as ws:
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   "session already exists, call 'users'.")
            await ws.send(json.dumps({"event": "users", "data": {"group": ["testgroup00002"]}}))
            items, _ = await collect_stream(ws, "users")
            assert len(items) == 40
    finally:
        await second.stop()
