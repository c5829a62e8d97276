"""messages.getHistory in the sandbox: Telegram's paging semantics, checked through Telethon's
own iter_messages and through direct GetHistoryRequest calls; lazy histories; wire splicing."""

from __future__ import annotations

import itertools
import time
import tracemalloc
from typing import Any

import pytest
from telethon import TelegramClient, errors, functions, types
from telethon.extensions import BinaryReader
from telethon.sessions import StringSession

from tgws.sandbox import SandboxChat, World, sandbox_client
from tgws.sandbox.wire import channel_messages


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def group_world(wire: bool, messages: int = 250) -> tuple[World, SandboxChat]:
    world = World(seed=3, wire=wire)
    reader = world.user("reader", phone="+15550100")
    alice = world.user("alice", first_name="Alice")
    bob = world.user("bob_the_builder", first_name="Bob")
    group = world.megagroup("historygroup", title="History", creator=alice)
    group.join(bob)
    group.join(reader)
    group.post(alice, "History", action="create")
    for i in range(2, messages + 1):
        sender = (alice, bob)[i % 2]
        if i % 10 == 0:
            group.post(sender, f"reply {i}", reply_to=i - 3)
        elif i % 15 == 0:
            group.post(sender, f"fwd {i}", fwd_from_user=reader)
        elif i % 7 == 0:
            group.post(sender, "", media=("photo", "document", "geo", "poll")[i % 4])
        else:
            group.post(sender, f"message {i}")
    return world, group


def connected(world: World, **kw: Any) -> Any:
    reader = world.resolve("reader")
    assert reader is not None and not isinstance(reader, SandboxChat)
    kw.setdefault("flood_sleep_threshold", 0)
    kw.setdefault("receive_updates", False)
    return sandbox_client(world, StringSession(world.session_string(reader)), **kw)


async def history(client: TelegramClient, entity: Any, **kw: Any) -> Any:
    defaults: dict[str, Any] = dict(offset_id=0, offset_date=None, add_offset=0, limit=100,
                                    max_id=0, min_id=0, hash=0)
    defaults.update(kw)
    return await client(functions.messages.GetHistoryRequest(peer=entity, **defaults))


def ids(page: Any) -> list[int]:
    return [m.id for m in page.messages]


async def test_iter_messages_returns_every_message_newest_first(wire: bool) -> None:
    world, group = group_world(wire)
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        messages = [m async for m in client.iter_messages(entity, limit=None, wait_time=0)]
    assert [m.id for m in messages] == list(range(250, 0, -1))
    by_id = {m.id: m for m in messages}
    assert isinstance(by_id[1], types.MessageService)
    assert isinstance(by_id[1].action, types.MessageActionChannelCreate)
    alice, reader = world.resolve("alice"), world.resolve("reader")
    assert alice is not None and reader is not None
    assert by_id[2].sender_id == alice.id and by_id[2].sender.first_name == "Alice"
    assert by_id[20].reply_to.reply_to_msg_id == 17
    assert by_id[45].fwd_from.from_id.user_id == reader.id
    assert isinstance(by_id[7].media, types.MessageMediaPoll)
    assert isinstance(by_id[14].media, types.MessageMediaGeo)
    assert by_id[21].document is not None and by_id[28].photo is not None
    assert all(a.date >= b.date for a, b in itertools.pairwise(messages))
    assert all(m.chat_id == -1_000_000_000_000 - group.id for m in messages)


async def test_reverse_and_bounds(wire: bool) -> None:
    world, _ = group_world(wire)
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        oldest_first = [m.id async for m in client.iter_messages(entity, reverse=True,
                                                                 wait_time=0)]
        assert oldest_first == list(range(1, 251))
        between = [m.id async for m in client.iter_messages(entity, min_id=40, max_id=160,
                                                            wait_time=0)]
        assert between == list(range(159, 40, -1))
        up = [m.id async for m in client.iter_messages(entity, min_id=40, max_id=160,
                                                       reverse=True, wait_time=0)]
        assert up == list(range(41, 160))
        newest = [m.id async for m in client.iter_messages(entity, limit=3)]
        assert newest == [250, 249, 248]
        below = [m.id async for m in client.iter_messages(entity, offset_id=10, wait_time=0)]
        assert below == list(range(9, 0, -1))
        at = (await client.get_messages(entity, ids=120)).date
        before = [m.id async for m in client.iter_messages(entity, offset_date=at, limit=2)]
        assert before == [119, 118]


async def test_get_history_offsets_follow_telegram(wire: bool) -> None:
    world, group = group_world(wire)
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        page = await history(client, entity, limit=5)
        assert ids(page) == [250, 249, 248, 247, 246] and page.count == 250
        assert isinstance(page, types.messages.ChannelMessages)
        assert ids(await history(client, entity, offset_id=100, limit=3)) == [99, 98, 97]
        assert ids(await history(client, entity, offset_id=100, add_offset=2, limit=3)) == [
            97, 96, 95]
        # a negative add_offset reaches newer messages: reverse paging
        assert ids(await history(client, entity, offset_id=100, add_offset=-3, limit=3)) == [
            102, 101, 100]
        assert ids(await history(client, entity, offset_id=1, add_offset=-100)) == list(
            range(100, 0, -1))
        assert ids(await history(client, entity, offset_id=249, add_offset=-5, limit=5)) == [
            250, 249]
        assert ids(await history(client, entity, offset_id=3, limit=10)) == [2, 1]
        assert ids(await history(client, entity, offset_id=500, limit=2)) == [250, 249]
        assert len(ids(await history(client, entity, limit=500))) == 100  # at most 100
        # min_id/max_id filter the window, they do not move it
        assert ids(await history(client, entity, limit=10, min_id=245)) == [
            250, 249, 248, 247, 246]
        assert ids(await history(client, entity, limit=10, max_id=248)) == [
            247, 246, 245, 244, 243, 242, 241]
        assert ids(await history(client, entity, limit=10, max_id=100)) == []
        # offset_date: messages dated strictly before it
        at = group.message_date(120)
        assert ids(await history(client, entity, offset_date=at, limit=2)) == [119, 118]
        assert ids(await history(client, entity, offset_date=at, add_offset=-2, limit=2)) == [
            121, 120]


async def test_short_pages_still_deliver_everything(wire: bool) -> None:
    world, _ = group_world(wire, messages=1200)
    world.short_pages = True
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        sizes = [len((await history(client, entity, offset_id=o)).messages)
                 for o in range(1201, 200, -100)]
        assert min(sizes) < 100, "short pages should happen"
        down = [m.id async for m in client.iter_messages(entity, wait_time=0)]
        up = [m.id async for m in client.iter_messages(entity, reverse=True, wait_time=0)]
    assert down == list(range(1200, 0, -1))
    assert up == list(range(1, 1201))


async def test_injected_flood_wait_reaches_telethon_as_flood_wait_error(wire: bool) -> None:
    world, _ = group_world(wire)
    world.fail("GetHistoryRequest", "FLOOD_WAIT_2", times=1, after=1)
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        seen: list[int] = []
        with pytest.raises(errors.FloodWaitError) as caught:
            async for message in client.iter_messages(entity, wait_time=0):
                seen.append(message.id)
        assert caught.value.seconds == 2
        assert seen == list(range(250, 150, -1))  # the first page went through
        # only once: the next call succeeds (Telethon ignores waits of <= 3 s left)
        assert ids(await history(client, entity, limit=1)) == [250]


async def test_injected_error_with_a_sleep_threshold_is_retried_by_telethon() -> None:
    world, _ = group_world(False)
    world.fail("GetHistory", "FLOOD_WAIT_1")
    async with connected(world, flood_sleep_threshold=60) as client:
        entity = await client.get_entity("historygroup")
        started = time.monotonic()
        assert ids(await history(client, entity, limit=1)) == [250]
        assert time.monotonic() - started >= 0.9


async def test_new_messages_appear_for_connected_clients(wire: bool) -> None:
    world, group = group_world(wire, messages=10)
    async with connected(world) as client:
        entity = await client.get_entity("historygroup")
        assert [m.id async for m in client.iter_messages(entity, limit=1)] == [10]
        alice = world.resolve("alice")
        assert alice is not None and not isinstance(alice, SandboxChat)
        group.post(alice, "late news")
        latest = [m async for m in client.iter_messages(entity, limit=1)]
        assert (latest[0].id, latest[0].message) == (11, "late news")


async def test_channel_posts_have_views_and_get_messages_by_id(wire: bool) -> None:
    world = World(wire=wire)
    reader = world.user("reader", phone="+15550100")
    channel = world.channel("newsroom", title="News")
    for i in range(5):
        channel.post(None, f"post {i}", media="photo" if i == 2 else None)
    async with sandbox_client(world, StringSession(world.session_string(reader)),
                              receive_updates=False) as client:
        entity = await client.get_entity("NewsRoom")
        assert entity.broadcast and not entity.megagroup
        posts = [m async for m in client.iter_messages(entity)]
        assert [m.id for m in posts] == [5, 4, 3, 2, 1]
        assert all(m.post and m.views and m.from_id is None for m in posts)
        got = await client.get_messages(entity, ids=[2, 9, 3])
        assert [getattr(m, "id", None) for m in got] == [2, None, 3]


async def test_lazy_million_message_history_is_cheap_to_page(wire: bool) -> None:
    world = World(seed=5, wire=wire)
    reader = world.user("reader", phone="+15550100")
    group = world.megagroup("bigone")
    group.populate(30)
    tracemalloc.start()
    group.history(1_000_000)
    async with connected(world) as client:
        entity = await client.get_entity("bigone")
        started = time.perf_counter()
        newest = await history(client, entity)
        middle = await history(client, entity, offset_id=500_001)
        elapsed = time.perf_counter() - started
        tail = [m.id async for m in client.iter_messages(entity, offset_id=301, wait_time=0)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert reader is not None
    assert ids(newest) == list(range(1_000_000, 999_900, -1)) and newest.count == 1_000_000
    assert ids(middle) == list(range(500_000, 499_900, -1))
    assert tail == list(range(300, 0, -1))
    assert elapsed < 1.0, elapsed
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    authors = {m.user.id for m in group.members_newest_first()}
    assert {m.sender_id for m in newest.messages} <= authors


def test_lazy_messages_are_a_pure_function_of_seed_chat_and_id() -> None:
    def build(seed: int) -> SandboxChat:
        world = World(seed=seed)
        group = world.megagroup("lazygroup")
        group.populate(10)
        return group.history(10_000)

    a, b, c = build(1), build(1), build(2)
    sample = [1, 2, 17, 999, 5_000, 10_000]
    assert [a.message_wire(i) for i in sample] == [b.message_wire(i) for i in sample]
    assert [a.message_wire(i) for i in sample] != [c.message_wire(i) for i in sample]
    # every template renders exactly what Telethon serializes for the same message
    for i in range(1, 3000):
        assert a.message_wire(i) == bytes(a.message_tl(i)), i
    kinds = {type(a.message_tl(i).media).__name__ for i in range(1, 3000)}
    assert {"NoneType", "MessageMediaPhoto", "MessageMediaDocument"} <= kinds
    assert any(a.message_tl(i).fwd_from for i in range(1, 3000))
    assert any(a.message_tl(i).reply_to for i in range(1, 3000))


def test_spliced_page_equals_telethon_serialization() -> None:
    world, group = group_world(True)
    viewer = world.resolve("reader")
    ids_ = list(range(250, 150, -1))
    users = [world.users[u] for u in dict.fromkeys(
        uid for i in ids_ for uid in group.message_user_ids(i))]
    spliced = channel_messages(pts=250, count=250, messages=[group.message_wire(i) for i in ids_],
                               chats=[bytes(group.tl(viewer))],  # type: ignore[arg-type]
                               users=[u.wire() for u in users])
    expected = types.messages.ChannelMessages(
        pts=250, count=250, messages=[group.message_tl(i) for i in ids_], topics=[],
        chats=[group.tl(viewer)], users=[u.tl() for u in users])  # type: ignore[arg-type]
    assert spliced == bytes(expected)
    with BinaryReader(spliced) as reader:
        assert len(reader.tgread_object().messages) == 100


async def test_unsupported_requests_fail_loudly_and_name_the_request() -> None:
    world, _ = group_world(False)
    async with connected(world) as client:
        with pytest.raises(errors.RPCError) as caught:
            await client(functions.messages.GetDialogFiltersRequest())
    assert caught.value.message == "METHOD_NOT_SUPPORTED_BY_SANDBOX"
    assert "GetDialogFiltersRequest" in str(caught.value)


async def test_wrong_access_hash_is_channel_invalid() -> None:
    world, group = group_world(False)
    async with connected(world) as client:
        forged = types.InputPeerChannel(group.id, group.access_hash ^ 1)
        with pytest.raises(errors.ChannelInvalidError):
            await history(client, forged)
