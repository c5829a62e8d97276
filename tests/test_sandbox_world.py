"""The sandbox world itself: building, resolving, determinism, failure injection, keys, SRP and
the demo world behind `tgws demo`."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from telethon import errors, functions, types
from telethon.password import compute_check
from telethon.sessions import StringSession

from tgws.sandbox import (
    SandboxChat,
    SandboxRpcError,
    SandboxUser,
    World,
    build_demo_world,
    sandbox_client,
    srp,
    tick,
)
from tgws.sandbox.demo import CHANNEL, GROUP_1, GROUP_2
from tgws.sandbox.keys import issue_key, read_key


def as_user(world: World, user: SandboxUser, **kw: Any) -> Any:
    kw.setdefault("flood_sleep_threshold", 0)
    kw.setdefault("receive_updates", False)
    return sandbox_client(world, StringSession(world.session_string(user)), **kw)


def chat(world: World, name: str) -> SandboxChat:
    found = world.resolve(name)
    assert isinstance(found, SandboxChat)
    return found


# --- resolving ------------------------------------------------------------------------------

@pytest.mark.parametrize("wire", [False, True], ids=["objects", "wire"])
async def test_get_entity_is_case_insensitive_and_unknown_names_raise(wire: bool) -> None:
    world = World(wire=wire)
    reader = world.user("reader", phone="+15550100")
    carol = world.user("CarolC", first_name="Carol")
    group = world.megagroup("MixedCaseGroup", title="Mixed")
    async with as_user(world, reader) as client:
        for name in ("mixedcasegroup", "MIXEDCASEGROUP", "@MixedCaseGroup",
                     "https://t.me/mixedcasegroup"):
            entity = await client.get_entity(name)
            assert entity.id == group.id and entity.megagroup and entity.left
        assert (await client.get_entity("carolc")).id == carol.id
        with pytest.raises(ValueError):
            await client.get_entity("nosuchname")
        with pytest.raises(errors.UsernameInvalidError):
            await client(functions.contacts.ResolveUsernameRequest("9lives"))
        with pytest.raises(errors.UsernameNotOccupiedError):
            await client(functions.contacts.ResolveUsernameRequest("nosuchname"))
        users = await client(functions.users.GetUsersRequest([types.InputUserSelf()]))
        assert users[0].is_self and users[0].phone == "15550100"
        (got,) = (await client(functions.channels.GetChannelsRequest([entity]))).chats
        assert got.id == group.id


def test_builder_refuses_inconsistent_worlds() -> None:
    world = World()
    alice = world.user("alice", phone="+15550001")
    with pytest.raises(ValueError):
        world.user("ALICE")
    with pytest.raises(ValueError):
        world.megagroup("Alice")
    with pytest.raises(ValueError):
        world.user("bob", phone="+15550001")
    with pytest.raises(ValueError):
        world.user("carol", phone="12ab")
    with pytest.raises(ValueError):
        world.user("bad name")
    group = world.megagroup("somegroup", creator=alice)
    with pytest.raises(ValueError):
        group.join(alice)
    first = group.post(alice, "one", date=world.epoch)
    with pytest.raises(ValueError):
        group.post(alice, "back in time", date=world.epoch - 1)
    with pytest.raises(ValueError):
        group.post(alice, "reply to the future", reply_to=first.id + 5)
    with pytest.raises(ValueError):
        group.history(10)
    with pytest.raises(ValueError):
        group.post(alice, media="hologram")
    with pytest.raises(ValueError):
        world.fail("GetHistoryy", "FLOOD_WAIT_1")


def test_ids_and_hashes_derive_from_the_seed() -> None:
    def build(seed: int) -> tuple[int, int, int]:
        world = World(seed=seed)
        user = world.user("alice")
        group = world.megagroup("somegroup")
        return user.id, user.access_hash, group.id

    assert build(1) == build(1)
    assert build(1) != build(2)


def test_failure_injection_counts_calls() -> None:
    world = World()
    world.fail("GetHistoryRequest", "FLOOD_WAIT_5", times=2, after=1)
    world.fail("ResolveUsername", "INTERNAL", times=None)
    outcomes = []
    for _ in range(5):
        try:
            world.check_failures("GetHistoryRequest")
            outcomes.append("ok")
        except SandboxRpcError as e:
            outcomes.append(f"{e.code} {e.message}")
    assert outcomes == ["ok", "420 FLOOD_WAIT_5", "420 FLOOD_WAIT_5", "ok", "ok"]
    for _ in range(3):
        with pytest.raises(SandboxRpcError) as caught:
            world.check_failures("ResolveUsernameRequest")
        assert caught.value.code == 500
    assert isinstance(SandboxRpcError(400, "USERNAME_NOT_OCCUPIED").to_telethon(None),
                      errors.UsernameNotOccupiedError)


async def test_latency_delays_answers() -> None:
    world = World()
    reader = world.user("reader", phone="+15550100")
    world.latency = 0.05
    async with as_user(world, reader) as client:
        started = time.monotonic()
        await client(functions.updates.GetStateRequest())
        assert time.monotonic() - started >= 0.045


# --- keys and SRP ---------------------------------------------------------------------------

def test_keys_verify_only_with_the_issuing_secret() -> None:
    secret, other = os.urandom(32), os.urandom(32)
    key = issue_key(secret, 1_234_567_890, "15550001")
    assert len(key) == 256
    claim = read_key(secret, key)
    assert claim is not None and (claim.user_id, claim.phone) == (1_234_567_890, "15550001")
    assert read_key(other, key) is None
    assert read_key(secret, key[:-1] + bytes([key[-1] ^ 1])) is None
    assert read_key(secret, os.urandom(256)) is None
    assert issue_key(secret, 1, None) != issue_key(secret, 1, None)  # fresh nonce per login


def test_srp_server_accepts_only_the_right_password() -> None:
    salt1, salt2 = os.urandom(40), os.urandom(16)
    v = srp.verifier("hunter2", salt1, salt2)
    algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=srp.G, p=srp.P_BYTES)

    def proof(password: str) -> tuple[srp.Challenge, Any]:
        server = srp.challenge(v)
        request = types.account.Password(
            new_algo=algo, new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
            secure_random=b"\0" * 32, has_password=True, current_algo=algo, srp_B=server.B,
            srp_id=1)
        return server, compute_check(request, password)

    server, right = proof("hunter2")
    assert srp.check(v, server, salt1, salt2, right.A, right.M1)
    assert not srp.check(v, server, salt1, salt2, right.A, bytes(32))
    server, wrong = proof("hunter3")
    assert not srp.check(v, server, salt1, salt2, wrong.A, wrong.M1)


# --- the demo world -------------------------------------------------------------------------

def test_demo_world_has_the_promised_chats() -> None:
    world = build_demo_world()
    group1, group2, channel = chat(world, GROUP_1), chat(world, GROUP_2), chat(world, CHANNEL)
    assert (group1.members_count, group1.top_id) == (250, 1000)
    assert (group2.members_count, group2.top_id) == (40, 120)
    assert channel.broadcast and channel.top_id == 300
    now = time.time()
    for c in (group1, group2, channel):
        members = list(reversed(c.members_newest_first()))
        joins = [m.date for m in members]
        assert joins == sorted(set(joins)) and joins[-1] < now
        dates = [c.message_date(i) for i in range(1, c.top_id + 1)]
        assert dates == sorted(set(dates)) and dates[-1] < now
    posts = [channel.message_tl(i) for i in range(1, 301)]
    assert all(p.post and p.views for p in posts)
    messages = [group1.message_tl(i) for i in range(1, 1001)]
    kinds = {type(m).__name__ for m in messages}
    assert kinds == {"Message", "MessageService"}
    assert sum(1 for m in messages if isinstance(m, types.MessageService)) >= 5
    assert sum(1 for m in messages if getattr(m, "reply_to", None)) >= 50
    assert sum(1 for m in messages if getattr(m, "fwd_from", None)) >= 10
    assert sum(1 for m in messages if getattr(m, "media", None)) >= 50
    senders = {m.from_id.user_id for m in messages if m.from_id}
    assert len(senders) >= 20


def test_demo_world_is_deterministic_for_a_seed() -> None:
    a, b, c = build_demo_world(0), build_demo_world(0), build_demo_world(1)
    sig = [chat(a, GROUP_1).message_wire(i) for i in (1, 500, 1000)]
    assert sig == [chat(b, GROUP_1).message_wire(i) for i in (1, 500, 1000)]
    assert sig != [chat(c, GROUP_1).message_wire(i) for i in (1, 500, 1000)]
    assert sorted(a.users) == sorted(b.users)


def test_demo_ticks_add_one_message_per_chat_and_a_member_every_fifth() -> None:
    world = build_demo_world()
    group1, group2, channel = chat(world, GROUP_1), chat(world, GROUP_2), chat(world, CHANNEL)
    for _ in range(4):
        world.tick()
    assert (group1.top_id, group2.top_id, channel.top_id) == (1004, 124, 304)
    assert group1.members_count == 250
    tick(world)
    assert (group1.top_id, group2.top_id, channel.top_id) == (1005, 125, 305)
    assert group1.members_count == 251
    newest = group1.members_newest_first()
    assert newest[0].date > newest[1].date and newest[0].date >= int(time.time()) - 5
    assert group1.message_date(1005) >= group1.message_date(1004) >= int(time.time()) - 5


@pytest.mark.parametrize("wire", [False, True], ids=["objects", "wire"])
async def test_demo_logins(wire: bool) -> None:
    world = build_demo_world()
    world.wire = wire
    async with sandbox_client(world, flood_sleep_threshold=0, receive_updates=False) as client:
        await client.send_code_request("+19995550002")
        with pytest.raises(errors.SessionPasswordNeededError):
            await client.sign_in("+19995550002", "12345")
        me = await client.sign_in(password="hunter2")
        assert me.username == "tess_twofactor"
        group = await client.get_entity(GROUP_1)
        assert not group.left
        users = [u async for u in client.iter_participants(group)]
        assert len(users) == 250
        assert sum(isinstance(u.participant, types.ChannelParticipantSelf) for u in users) == 1
    async with sandbox_client(world, receive_updates=False) as client:
        await client.send_code_request("+919876543210")
        await client.sign_in("+919876543210", "12345")
        messages = [m async for m in client.iter_messages(GROUP_2, wait_time=0)]
        assert [m.id for m in messages] == list(range(120, 0, -1))
        with pytest.raises(errors.ChatAdminRequiredError):
            await client.get_participants(CHANNEL)

