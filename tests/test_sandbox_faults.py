"""The fault plan at the sender seam, met by unmodified Telethon: 5xx errors, flood waits,
dropped connections, an endpoint that goes down, stalls, latency, and determinism per seed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from telethon import TelegramClient, errors, functions
from telethon.sessions import StringSession

from tests.support import timeout
from tgws.backends import build_world
from tgws.config import SANDBOX_FAULT_KINDS, SandboxConfig
from tgws.config import load as load_config
from tgws.errors import ConfigError
from tgws.sandbox import SandboxSender, World, build_demo_world, sandbox_client
from tgws.sandbox.banner import demo_banner
from tgws.sandbox.demo import GROUP_1, GROUP_1_MESSAGES, OWNER_PHONE
from tgws.sandbox.faults import KINDS, FaultPlan
from tgws.sandbox.hostile import HOLEY_GROUP


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def demo(wire: bool, seed: int = 0) -> World:
    world = build_demo_world(seed)
    world.wire = wire
    return world


def owner_session(world: World) -> StringSession:
    owner = world.by_phone(OWNER_PHONE)
    assert owner is not None
    return StringSession(world.session_string(owner))


def client_for(world: World, **kw: Any) -> Any:
    kw.setdefault("flood_sleep_threshold", 0)
    kw.setdefault("receive_updates", False)
    return sandbox_client(world, owner_session(world), **kw)


def sender_of(client: TelegramClient) -> SandboxSender:
    sender = client._sender
    assert isinstance(sender, SandboxSender)
    return sender


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for `condition`, one loop iteration at a time, within a scaled deadline."""
    deadline = time.monotonic() + timeout(seconds)
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0)


async def settle(rounds: int = 50) -> None:
    """Let the loop run a while: a held answer must not arrive however long the loop runs."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def all_ids(client: TelegramClient, name: str = GROUP_1) -> list[int]:
    return [message.id async for message in client.iter_messages(name, wait_time=0)]


def get_state() -> Any:
    return functions.updates.GetStateRequest()


# --- the calm world and determinism --------------------------------------------------------

async def test_default_world_has_no_faults(wire: bool) -> None:
    world = demo(wire)
    assert world.faults.quiet and world.faults.mode == "up"
    async with client_for(world) as client:
        ids = await all_ids(client)
    assert ids == list(range(GROUP_1_MESSAGES, 0, -1))
    assert world.faults.calls > 10 and world.faults.log == []


async def outcomes(world: World, calls: int) -> list[str]:
    """What each of `calls` sequential GetState calls met: the faults, then the result."""
    seen: list[str] = []
    async with client_for(world, request_retries=0, connection_retries=1,
                          retry_delay=0) as client:
        world.faults.set(rate=0.4, kinds=("flood", "drop"), methods=["GetState"])
        for _ in range(calls):
            fired = len(world.faults.log)
            try:
                await client(get_state())
                result = "ok"
            except errors.FloodWaitError as error:
                result = f"flood {error.seconds}"
            except ValueError:  # Telethon's "Request was unsuccessful" after a 5xx
                result = "failed"
            kinds = [d.kind or "?" for d in world.faults.log[fired:]]
            seen.append("+".join([*kinds, result]))
    return seen


async def test_same_seed_gives_the_same_fault_sequence() -> None:
    """Flood waits and drops (5xx would add Telethon's 2 s pause per call; preview() below
    covers their draw)."""

    def hostile(seed: int) -> World:
        world = demo(False, seed=1)
        world.faults.seed = seed
        return world

    first = await outcomes(hostile(7), 60)
    again = await outcomes(hostile(7), 60)
    other = await outcomes(hostile(8), 60)
    assert first == again
    assert first != other
    assert {"ok", "flood+flood 1", "drop+ok"} <= set(first)


def test_preview_predicts_and_higher_rates_only_add_faults() -> None:
    low, high = FaultPlan(5).set(rate=0.05), FaultPlan(5).set(rate=0.2)
    low_hits = {n for n in range(2000) if low.preview(n)}
    high_hits = {n for n in range(2000) if high.preview(n)}
    assert low_hits < high_hits
    assert 50 < len(low_hits) < 150 and 300 < len(high_hits) < 500
    plan = FaultPlan(5).set(rate=0.2)
    decided = [plan.decide("GetHistoryRequest").kind for _ in range(2000)]
    assert decided == [high.preview(n) for n in range(2000)]
    assert set(decided) == {None, *KINDS}
    # Pings and the connect-time initConnection never meet a random fault.
    assert all(plan.decide("PingRequest", exempt=True).kind is None for _ in range(200))


def test_fault_plan_rejects_unknown_kinds_and_requests() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan.set(kinds="internal,explode")
    with pytest.raises(ValueError, match="no Telegram request"):
        plan.script("GetHistoryy", "drop")
    with pytest.raises(ValueError, match="rate"):
        plan.set(rate=1.5)


# --- RPC errors as Telethon meets them -----------------------------------------------------

@pytest.mark.parametrize("kind, telethon_error", [
    ("internal", errors.ServerError),
    ("rpc_call_fail", errors.RpcCallFailError),
    ("timeout", errors.TimedOutError),
])
async def test_5xx_is_retried_by_telethon_then_raised(kind: str, telethon_error: type) -> None:
    """One 5xx: Telethon retries (after its 2 s pause) and succeeds. Endless 5xx: after
    request_retries it raises the error itself with raise_last_call_error, else ValueError."""
    world = demo(False)

    async def once() -> None:
        async with client_for(world, request_retries=1) as client:
            full = await client(functions.channels.GetFullChannelRequest(GROUP_1))
            assert full.full_chat.participants_count == 250

    async def forever(raise_last: bool) -> BaseException:
        async with client_for(world, request_retries=1,
                              raise_last_call_error=raise_last) as client:
            with pytest.raises(Exception) as caught:
                await client(functions.channels.GetChannelsRequest([GROUP_1]))
            return caught.value

    async with client_for(world) as client:  # resolve once: only the scripted methods fail
        await client.get_input_entity(GROUP_1)
    world.faults.script("GetFullChannel", kind, times=1)
    world.faults.script("GetChannels", kind, times=None)
    _, raised, bare = await asyncio.gather(once(), forever(True), forever(False))
    assert isinstance(raised, telethon_error)
    assert isinstance(bare, ValueError) and "unsuccessful 2 time(s)" in str(bare)
    methods = [d.method for d in world.faults.log]
    assert methods.count("GetFullChannelRequest") == 1
    assert methods.count("GetChannelsRequest") == 4  # 2 clients x (1 + request_retries)


@pytest.mark.parametrize("method, call", [
    ("GetParticipants", lambda c: c.get_participants(GROUP_1, limit=10)),
    ("GetFullChannel", lambda c: c(functions.channels.GetFullChannelRequest(GROUP_1))),
    ("ResolveUsername", lambda c: c(functions.contacts.ResolveUsernameRequest(GROUP_1))),
    ("GetHistory", lambda c: c.get_messages(GROUP_1, limit=5)),
    ("SendCode", lambda c: c.send_code_request(OWNER_PHONE)),
])
async def test_flood_wait_on_any_method(method: str,
                                        call: Callable[[Any], Awaitable[Any]]) -> None:
    world = demo(False)
    world.faults.set(flood_wait=7)
    async with client_for(world) as client:
        await client.get_input_entity(GROUP_1)
        world.faults.script(method, "flood")
        with pytest.raises(errors.FloodWaitError) as caught:
            await call(client)
        assert caught.value.seconds == 7
        assert [d.method for d in world.faults.log] == [method + "Request"]


async def test_world_fail_is_a_scripted_fault() -> None:
    world = demo(False)
    async with client_for(world) as client:
        world.fail("GetState", "CHANNEL_PRIVATE", times=2, after=1)
        await client(get_state())
        for _ in range(2):
            with pytest.raises(errors.ChannelPrivateError):
                await client(get_state())
        await client(get_state())
    assert [d.kind for d in world.faults.log] == ["error", "error"]


# --- dropped connections -------------------------------------------------------------------

async def test_a_drop_in_the_middle_of_a_page_is_survived(wire: bool) -> None:
    world = demo(wire)
    async with client_for(world) as client:
        world.faults.script("GetHistory", "drop", after=3)
        ids = await all_ids(client)
        assert sender_of(client).reconnects == 1
    assert ids == list(range(GROUP_1_MESSAGES, 0, -1))
    assert [d.kind for d in world.faults.log] == ["drop"]


async def test_many_random_drops_lose_and_repeat_nothing(wire: bool) -> None:
    world = demo(wire)
    world.faults.set(rate=0.3, kinds="drop")
    async with client_for(world) as client:
        ids = await all_ids(client)
        members = [user.id async for user in client.iter_participants(GROUP_1)]
        drops = sender_of(client).reconnects
    assert ids == list(range(GROUP_1_MESSAGES, 0, -1))
    assert len(members) == len(set(members)) == 250
    assert drops >= 3 and drops == len(world.faults.log)


async def test_a_drop_loses_every_answer_in_flight_and_resends_them() -> None:
    world = demo(False)
    world.latency = 0.01
    async with client_for(world) as client:
        sender = sender_of(client)
        before = world.faults.calls
        futures = sender.send([get_state() for _ in range(5)])
        world.faults.drop_connections()
        states = await asyncio.gather(*futures)
        assert sender.reconnects == 1 and len(states) == 5
        assert world.faults.calls - before == 10  # each request went out twice


async def test_an_endpoint_that_goes_down_fails_waiting_calls_with_connection_error() -> None:
    world = demo(False)
    world.latency = 0.01
    async with client_for(world, connection_retries=2, retry_delay=0) as client:
        before = world.faults.calls
        call = asyncio.ensure_future(client(get_state()))
        await until(lambda: world.faults.calls > before)  # sent, its answer not yet in
        world.faults.refuse()
        with pytest.raises(ConnectionError):
            await call
        assert not client.is_connected()
        with pytest.raises(ConnectionError):
            await client(get_state())
        with pytest.raises(ConnectionError, match="failed 2 time"):
            await client.connect()
        world.faults.resume()
        await client.connect()
        assert (await client(get_state())).pts >= 1


async def test_reconnects_that_fail_a_few_times_within_connection_retries_are_survived(
) -> None:
    world = demo(False)
    world.latency = 0.01
    async with client_for(world, connection_retries=3, retry_delay=0) as client:
        sender = sender_of(client)
        before = world.faults.calls
        call = asyncio.ensure_future(client(get_state()))
        await until(lambda: world.faults.calls > before)
        world.faults.refuse(attempts=3)  # attempts 1-3 refused, the 4th (of 1 + 3) gets in
        assert (await call).pts >= 1
        assert sender.reconnects == 1 and world.faults.mode == "up"
        world.faults.refuse(attempts=6)
        with pytest.raises(ConnectionError):
            await client(get_state())  # 4 attempts refused: the call fails
        await client.connect()  # refusals 5 and 6, then the 3rd attempt gets in
        assert (await client(get_state())).pts >= 1


# --- stalls ----------------------------------------------------------------------------------

async def test_a_stall_leaves_the_call_pending_until_resumed(wire: bool) -> None:
    world = demo(wire)
    async with client_for(world) as client:
        world.faults.stall()
        call = asyncio.ensure_future(client(get_state()))
        await settle()
        assert not call.done()
        world.faults.resume()
        state = await asyncio.wait_for(call, timeout(5))
        assert state.pts >= 1


async def test_a_stall_in_the_middle_of_a_stream_and_unstall() -> None:
    world = demo(False)
    async with client_for(world) as client:
        world.faults.script("GetHistory", "stall", after=2)
        stream = asyncio.ensure_future(all_ids(client))
        await until(lambda: world.faults.stalled)
        await settle()
        assert not stream.done()
        world.faults.resume()
        ids = await asyncio.wait_for(stream, timeout(10))
    assert ids == list(range(GROUP_1_MESSAGES, 0, -1))


async def test_unanswered_keepalive_pings_reconnect_and_resend_the_stalled_call() -> None:
    world = demo(False)
    async with client_for(world) as client:
        sender = sender_of(client)
        world.faults.stall()
        call = asyncio.ensure_future(client(get_state()))
        sender._keepalive_ping(1)
        sender._keepalive_ping(2)  # the first is unanswered: Telethon's sender reconnects
        await until(lambda: sender.reconnects == 1)
        await settle()
        assert not call.done()  # reconnected into the same silence
        world.faults.resume()
        await asyncio.wait_for(call, timeout(5))


async def test_a_stalled_key_exchange_never_completes_connect() -> None:
    world = demo(False)
    world.faults.stall()
    client = _fresh(world)
    connecting = asyncio.ensure_future(client.connect())
    await settle()
    assert not connecting.done()
    world.faults.resume()
    await asyncio.wait_for(connecting, timeout(5))
    assert await client.is_user_authorized() is False
    await client.disconnect()


async def test_an_endpoint_answering_junk() -> None:
    """Not MTProto (e.g. an HTTP 400 page): a key exchange fails with IncompleteReadError, as
    Telethon's does; with a key, calls never complete while the sender reconnects in a loop."""
    world = demo(False)
    async with client_for(world) as client:
        sender = sender_of(client)
        world.faults.garble()
        call = asyncio.ensure_future(client(get_state()))
        await until(lambda: sender.reconnects >= 3)
        assert not call.done()
        fresh = _fresh(world)
        with pytest.raises(asyncio.IncompleteReadError):
            await fresh.connect()
        world.faults.resume()
        assert (await asyncio.wait_for(call, timeout(5))).pts >= 1


def _fresh(world: World) -> TelegramClient:
    from tgws.sandbox import make_sandbox_client
    return make_sandbox_client(world, StringSession(), receive_updates=False)


# --- latency -----------------------------------------------------------------------------------

async def test_latency_and_jitter_delay_every_answer() -> None:
    world = World()
    reader = world.user("reader", phone="+15550100")
    world.faults.set(latency=0.02, jitter=0.02)
    async with sandbox_client(world, StringSession(world.session_string(reader)),
                              receive_updates=False) as client:
        started = time.monotonic()
        for _ in range(3):
            await client(get_state())
        assert time.monotonic() - started >= 3 * 0.02 * 0.9


# --- [sandbox] config, the backend's world and the demo banner ---------------------------------

def test_config_builds_the_calm_or_the_hostile_world() -> None:
    calm = build_world(SandboxConfig())
    assert calm.faults.quiet and calm.latency == 0 and not calm.dcs.spread
    assert calm.resolve(HOLEY_GROUP) is None
    hostile = build_world(SandboxConfig(hostile=True, seed=3, fault_rate=0.1,
                                        fault_kinds="drop, flood", flood_wait=4, latency=0.05))
    assert (hostile.faults.rate, hostile.faults.kinds, hostile.faults.flood_wait) == (
        0.1, ("drop", "flood"), 4)
    assert hostile.faults.seed == 3 and hostile.latency == 0.05 and hostile.dcs.spread
    assert hostile.resolve(HOLEY_GROUP) is not None and hostile.resolve(GROUP_1) is not None
    # The fault knobs are the hostile world's: a calm world ignores them (latency aside).
    ignored = build_world(SandboxConfig(fault_rate=0.5, latency=0.01))
    assert ignored.faults.rate == 0 and ignored.latency == 0.01
    assert SANDBOX_FAULT_KINDS == KINDS


def test_config_refuses_unknown_fault_kinds_and_rates() -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.fault_kinds"):
        load_config(None, environ={}, overrides={"sandbox.fault_kinds": "internal,meteor"})
    with pytest.raises(ConfigError, match=r"sandbox\.fault_rate"):
        load_config(None, environ={}, overrides={"sandbox.fault_rate": 2.0})
    loaded = load_config(None, environ={}, overrides={"sandbox.hostile": True})
    assert loaded.sandbox.hostile and loaded.sandbox.fault_rate == 0.05


CALM_BANNER = """\
tgws demo: the sandbox Telegram, no account needed.

  websocket  ws://h/ws
  api key    K
  login      any phone (e.g. +919876543210), code 12345;
             +19995550002 also needs the 2FA password hunter2
  groups     testgroup00001 (250 members, 1000 messages), testgroup00002 (40, 120)
  channel    UnderWorld4444 (300 posts)
  the world  one new message per chat every 2.0 s, a new member every 5th tick

  try:  tgws client --url ws://h/ws --api-key K login --phone +919876543210
        tgws client --url ws://h/ws --api-key K users testgroup00001
Ctrl-C stops."""


def test_the_banner_says_what_is_hostile() -> None:
    calm = demo_banner(build_world(SandboxConfig()), url="ws://h/ws", key="K", tick=2.0,
                       hostile=False)
    assert calm == CALM_BANNER
    world = build_world(SandboxConfig(hostile=True, fault_rate=0.02, fault_kinds="drop",
                                      latency=0.05))
    text = demo_banner(world, url="ws://h/ws", key="K", tick=2.0, hostile=True)
    assert "2% of calls (seed 0): drop" in text
    assert "0.05 s before every answer" in text
    assert "+19995550002 on DC 4 (sendCode answers PHONE_MIGRATE_4)" in text
    assert "+919876543210 on DC 5 (signIn answers USER_MIGRATE_5)" in text
    for name in (HOLEY_GROUP, GROUP_1):
        assert name in text
    world.faults.set(rate=0)
    assert "faults     none" in demo_banner(world, url="u", key="k", tick=1, hostile=True)
