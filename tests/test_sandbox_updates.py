"""The sandbox pushes real updates, and unmodified Telethon's update machinery (MessageBox, gap
detection, getDifference, getChannelDifference) runs on them: events.NewMessage, MessageEdited,
MessageDeleted and ChatAction fire; muted, dropped and reordered pushes are recovered by
Telethon itself; differences are answered from the recorded state. Objects and wire mode."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from telethon import TelegramClient, events, functions, types
from telethon.sessions import StringSession

from tests.support import timeout
from tgws.sandbox import SandboxChat, SandboxUser, World, make_sandbox_client
from tgws.sandbox.demo import CHANNEL, GROUP_1, GROUP_2, OWNER_PHONE, build_demo_world


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Live:
    """A small world: a megagroup, a channel and a basic group, alice (creator) and bob."""

    def __init__(self, wire: bool) -> None:
        self.clock = time.time()  # the world's clock stands still until a test moves it
        self.world = world = World(seed=7, wire=wire, clock=lambda: self.clock)
        self.alice = world.user("alice", first_name="Alice")
        self.bob = world.user("bob", first_name="Bob")
        self.group = world.megagroup("livegroup", creator=self.alice)
        self.group.join(self.bob)
        for i in range(5):
            self.group.post(self.alice, f"old {i}")
        self.channel = world.channel("livechannel", creator=self.alice)
        self.channel.join(self.bob)
        self.channel.post(None, "first post")
        self.basic = world.basic_group("Small talk", creator=self.alice)
        self.basic.join(self.bob)
        self.basic.post(self.alice, "hi all")


class Inbox:
    """Events a handler received, and a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    async def add(self, event: Any) -> None:
        self.items.append(event)
        self._changed.set()

    async def until(self, done: Callable[[list[Any]], bool], seconds: float = 5) -> None:
        async def wait() -> None:
            while not done(self.items):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout(seconds))

    def texts(self) -> list[str]:
        return [event.message.message for event in self.items]


@contextlib.asynccontextmanager
async def watching(world: World, user: SandboxUser, wire: bool, *event_types: Any,
                   **kwargs: Any) -> AsyncIterator[tuple[TelegramClient, Inbox]]:
    """A connected receive_updates=True client logged in as `user`, with handlers for
    `event_types` all feeding one Inbox."""
    client = make_sandbox_client(world, StringSession(world.session_string(user)), wire=wire,
                                 receive_updates=True, flood_sleep_threshold=0, **kwargs)
    inbox = Inbox()
    for event_type in event_types:
        client.add_event_handler(inbox.add, event_type)
    await client.connect()
    try:
        yield client, inbox
    finally:
        await client.disconnect()


def channel_input(chat: SandboxChat) -> Any:
    return types.InputChannel(channel_id=chat.id, access_hash=chat.access_hash)


def texts_are(*texts: str) -> Callable[[list[Any]], bool]:
    return lambda items: [e.message.message for e in items] == list(texts)


# --- the four kinds of event ---------------------------------------------------------------

async def test_a_posted_message_reaches_new_message(wire: bool) -> None:
    live = Live(wire)
    async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
        live.group.post(live.alice, "hello group")
        live.channel.post(None, "hello channel")
        live.basic.post(live.alice, "hello basic")
        await inbox.until(texts_are("hello group", "hello channel", "hello basic"))
    group_event, channel_event, basic_event = inbox.items
    assert group_event.chat_id == -1000000000000 - live.group.id
    assert group_event.sender_id == live.alice.id
    assert group_event.message.id == live.group.top_id
    assert channel_event.chat_id == -1000000000000 - live.channel.id
    assert basic_event.chat_id == -live.basic.id
    assert live.world.updates.stats["pushed"] == 3


async def test_an_edit_reaches_message_edited(wire: bool) -> None:
    live = Live(wire)
    async with watching(live.world, live.bob, wire, events.MessageEdited) as (_, inbox):
        live.group.edit(3, "old 2, edited")
        live.basic.edit(1, "hi all (edited)")
        await inbox.until(texts_are("old 2, edited", "hi all (edited)"))
    assert inbox.items[0].message.id == 3
    assert inbox.items[0].message.edit_date is not None


async def test_deletions_reach_message_deleted(wire: bool) -> None:
    live = Live(wire)
    async with watching(live.world, live.bob, wire, events.MessageDeleted) as (_, inbox):
        live.group.delete(2, 4)
        live.channel.delete(1)
        await inbox.until(lambda items: len(items) == 2)
    group_event, channel_event = inbox.items
    assert group_event.deleted_ids == [2, 4]
    assert group_event.chat_id == -1000000000000 - live.group.id
    assert channel_event.deleted_ids == [1]
    assert live.world.updates.channel_box(live.group).records[-1].pts_count == 2


async def test_joins_and_departures_reach_chat_action(wire: bool) -> None:
    live = Live(wire)
    carol = live.world.user("carol", first_name="Carol")
    dave = live.world.user("dave", first_name="Dave")
    live.group.announce_members = True
    async with watching(live.world, live.bob, wire, events.ChatAction) as (_, inbox):
        live.group.join(carol)
        live.group.join(dave, inviter=live.alice)
        live.group.leave(carol, how="left")
        live.group.leave(dave, how="kicked")
        await inbox.until(lambda items: len(items) == 4)
    joined, added, left, kicked = inbox.items
    assert joined.user_joined and joined.user_id == carol.id
    assert added.user_added and added.user_id == dave.id and added.added_by.id == live.alice.id
    assert left.user_left and left.user_id == carol.id
    assert kicked.user_kicked and kicked.user_id == dave.id
    # The service messages are part of the history, as on Telegram.
    assert isinstance(live.group.message_tl(live.group.top_id).action,
                      types.MessageActionChatDeleteUser)


async def test_the_demo_ticks_arrive_as_pushes(wire: bool) -> None:
    world = build_demo_world(3)
    world.wire = wire
    owner = world.by_phone(OWNER_PHONE)
    assert owner is not None
    async with watching(world, owner, wire, events.NewMessage) as (_, inbox):
        world.tick()
        await inbox.until(lambda items: len(items) == 3)
    chats = {world.resolve(name) for name in (GROUP_1, GROUP_2, CHANNEL)}
    assert {-1000000000000 - e.chat_id for e in inbox.items} == {c.id for c in chats if c}
    assert all(t.startswith(("Live message #", "Live post #")) for t in inbox.texts())


# --- updates never pushed, and how they come back -----------------------------------------

async def test_a_muted_update_is_recovered_by_telethons_gap_handling(wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
        live.group.post(live.alice, "m1")
        await inbox.until(texts_are("m1"))
        updates.mute(live.group)
        live.group.post(live.alice, "m2 (never pushed)")
        updates.unmute(live.group)
        live.group.post(live.alice, "m3")  # its pts reveals the gap; Telethon asks
        await inbox.until(texts_are("m1", "m2 (never pushed)", "m3"))
    assert updates.stats["muted"] == 1
    assert updates.stats["channel_differences"] == 1


async def test_an_explicit_channel_difference_returns_what_was_not_pushed(wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire) as (client, _):
        full = await client(functions.channels.GetFullChannelRequest(channel_input(live.group)))
        pts = full.full_chat.pts
        assert pts == updates.channel_pts(live.group)
        updates.mute(live.group)
        live.group.post(live.alice, "new a")
        live.group.post(live.alice, "new b")
        live.group.edit(1, "old 0, edited")
        live.group.delete(2)
        live.group.post(live.alice, "gone")
        live.group.delete(live.group.top_id)
        diff = await client(functions.updates.GetChannelDifferenceRequest(
            channel=channel_input(live.group), filter=types.ChannelMessagesFilterEmpty(),
            pts=pts, limit=100))
        again = await client(functions.updates.GetChannelDifferenceRequest(
            channel=channel_input(live.group), filter=types.ChannelMessagesFilterEmpty(),
            pts=diff.pts, limit=100))
    assert updates.stats["pushed"] == 0
    assert isinstance(diff, types.updates.ChannelDifference) and diff.final
    assert diff.pts == pts + 6 and diff.timeout == updates.timeout
    assert [m.message for m in diff.new_messages] == ["new a", "new b"]  # "gone" folded away
    kinds = [(type(u).__name__, u.pts) for u in diff.other_updates]
    assert kinds == [("UpdateEditChannelMessage", pts + 3),
                     ("UpdateDeleteChannelMessages", pts + 4)]
    assert diff.other_updates[0].message.message == "old 0, edited"
    assert diff.other_updates[1].messages == [2]
    assert isinstance(again, types.updates.ChannelDifferenceEmpty) and again.pts == diff.pts


async def test_channel_difference_too_long_when_too_many_pend(wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire) as (client, _):
        pts = updates.channel_pts(live.group)
        updates.mute(live.group)
        for i in range(4):
            live.group.post(live.alice, f"flood {i}")

        async def difference(since: int, limit: int = 100) -> Any:
            return await client(functions.updates.GetChannelDifferenceRequest(
                channel=channel_input(live.group), filter=types.ChannelMessagesFilterEmpty(),
                pts=since, limit=limit))

        assert isinstance(await difference(pts, limit=4), types.updates.ChannelDifference)
        too_long = await difference(pts, limit=3)  # Telegram's rule: more pending than limit
        updates.set(too_long_after=2)  # the configurable threshold, whatever the limit
        configured = await difference(pts)
        updates.force_too_long(live.group)  # forced, with nothing pending
        forced = await difference(updates.channel_pts(live.group))
        after = await difference(updates.channel_pts(live.group))
    for answer in (too_long, configured, forced):
        assert isinstance(answer, types.updates.ChannelDifferenceTooLong)
        assert answer.dialog.pts == updates.channel_pts(live.group)
        assert answer.dialog.top_message == live.group.top_id
        assert answer.messages[0].message == "flood 3"
        assert answer.final and answer.timeout == updates.timeout
    assert isinstance(after, types.updates.ChannelDifferenceEmpty)
    assert updates.stats["channel_too_long"] == 3


async def test_telethon_meets_channel_difference_too_long_and_carries_on(wire: bool) -> None:
    """What real Telethon does with channelDifferenceTooLong: it jumps to the dialog's pts and
    dispatches nothing for the gap (a tgws watch must reconcile from history), then follows the
    channel again."""
    live = Live(wire)
    updates = live.world.updates
    updates.set(too_long_after=2)
    async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
        live.group.post(live.alice, "before")
        await inbox.until(texts_are("before"))
        updates.mute(live.group)
        for i in range(3):
            live.group.post(live.alice, f"lost {i}")
        updates.unmute(live.group)
        live.group.post(live.alice, "reveals the gap")
        await asyncio.wait_for(updates.until(lambda stats: stats["channel_too_long"] == 1),
                               timeout(5))
        live.group.post(live.alice, "after")
        await inbox.until(lambda items: items[-1].message.message == "after")
    assert inbox.texts() == ["before", "after"]


async def test_get_difference_after_a_disconnect_returns_what_was_missed(wire: bool) -> None:
    live = Live(wire)
    async with watching(live.world, live.bob, wire, events.NewMessage) as (client, inbox):
        live.group.post(live.alice, "seen")  # Telethon now follows the group's pts
        await inbox.until(texts_are("seen"))
        live.clock += 10  # the chats were built a while ago
        state = await client(functions.updates.GetStateRequest())
        await client.disconnect()
        live.basic.post(live.alice, "basic while away")
        live.basic.edit(1, "hi all, edited while away")
        live.group.post(live.alice, "group while away")
        assert live.world.updates.stats["pushed"] == 1  # nobody was connected
        await client.connect()
        diff = await client(functions.updates.GetDifferenceRequest(
            pts=state.pts, date=state.date, qts=0))
        assert isinstance(diff, types.updates.Difference)
        assert [m.message for m in diff.new_messages] == ["basic while away"]
        edit, channel = diff.other_updates
        assert isinstance(edit, types.UpdateEditMessage)
        assert edit.message.message == "hi all, edited while away"
        assert edit.pts == state.pts + 2
        assert isinstance(channel, types.UpdateChannelTooLong)
        assert channel.channel_id == live.group.id
        assert diff.state.pts == state.pts + 2 and diff.state.seq == state.seq + 2
        # Telethon's own catch-up: getDifference, then getChannelDifference for the group.
        await client.catch_up()
        await inbox.until(lambda items: len(items) == 3)
        assert sorted(inbox.texts()[1:]) == ["basic while away", "group while away"]
        # Channels changed in the very second of `date` are named again (a second is the
        # finest a date says); a second later, nothing is due.
        again = await client(functions.updates.GetDifferenceRequest(
            pts=diff.state.pts, date=diff.state.date, qts=0))
        assert not again.new_messages
        assert [type(u) for u in again.other_updates] == [types.UpdateChannelTooLong]
        live.clock += 1
        state = await client(functions.updates.GetStateRequest())
        empty = await client(functions.updates.GetDifferenceRequest(
            pts=state.pts, date=state.date, qts=0))
        assert isinstance(empty, types.updates.DifferenceEmpty)
        assert empty.seq == diff.state.seq


async def test_account_difference_slices_and_too_long(wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire) as (client, _):
        state = await client(functions.updates.GetStateRequest())
        updates.mute(live.basic)
        for i in range(5):
            live.basic.post(live.alice, f"b{i}")
        updates.difference_limit = 3
        first = await client(functions.updates.GetDifferenceRequest(
            pts=state.pts, date=state.date, qts=0))
        assert isinstance(first, types.updates.DifferenceSlice)
        assert [m.message for m in first.new_messages] == ["b0", "b1", "b2"]
        middle = first.intermediate_state
        rest = await client(functions.updates.GetDifferenceRequest(
            pts=middle.pts, date=middle.date, qts=0))
        assert isinstance(rest, types.updates.Difference)
        assert [m.message for m in rest.new_messages] == ["b3", "b4"]
        updates.keep = 2  # older records are no longer kept
        live.basic.post(live.alice, "b5")
        too_long = await client(functions.updates.GetDifferenceRequest(
            pts=state.pts, date=state.date, qts=0))
        assert isinstance(too_long, types.updates.DifferenceTooLong)
        assert too_long.pts == updates.account_box(live.bob).pts


# --- unkindness: dropped and reordered pushes ------------------------------------------------

async def test_out_of_order_pushes_are_put_back_in_order_by_the_message_box(wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
        live.group.post(live.alice, "m0")
        await inbox.until(texts_are("m0"))
        updates.set(reorder_rate=1.0)  # every push is overtaken by the next one
        for i in range(1, 5):
            live.group.post(live.alice, f"m{i}")
        await inbox.until(texts_are("m0", "m1", "m2", "m3", "m4"))
    assert updates.stats["held"] == 2  # m1 and m3, each overtaken by the next push
    assert updates.stats["channel_differences"] == 0  # the MessageBox alone sorted them


async def test_dropped_pushes_are_recovered_and_the_drops_are_deterministic(wire: bool) -> None:
    async def run() -> tuple[list[str], int]:
        live = Live(wire)
        updates = live.world.updates
        async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
            live.group.post(live.alice, "start")
            await inbox.until(texts_are("start"))
            updates.set(drop_rate=0.4)
            for i in range(12):
                live.group.post(live.alice, f"d{i}")
            updates.set(drop_rate=0.0)
            live.group.post(live.alice, "end")
            expected = ["start", *(f"d{i}" for i in range(12)), "end"]
            await inbox.until(lambda items: sorted(e.message.message for e in items)
                              == sorted(expected))
        assert len(inbox.items) == len(expected)  # nothing twice
        return inbox.texts(), updates.stats["dropped"]

    texts, dropped = await run()
    assert dropped > 0
    assert await run() == (texts, dropped)  # same seed: the same pushes dropped, same order


# --- receive_updates=False is untouched -------------------------------------------------------

async def test_clients_without_updates_get_no_pushes(wire: bool) -> None:
    live = Live(wire)
    client = make_sandbox_client(live.world, StringSession(live.world.session_string(live.bob)),
                                 wire=wire, receive_updates=False)
    await client.connect()
    try:
        assert client._sender.push_target() is None
        live.group.post(live.alice, "nobody is told")
        assert live.world.updates.stats["pushed"] == 0
        assert client._updates_queue.empty()
        messages = await client.get_messages(channel_input(live.group), limit=1)
        assert messages[0].message == "nobody is told"
    finally:
        await client.disconnect()


def test_knobs_are_checked() -> None:
    updates = World().updates
    with pytest.raises(ValueError):
        updates.set(drop_rate=1.5)
    with pytest.raises(ValueError):
        updates.set(too_long_after=-1)
    assert updates.set(reorder_rate=0.2, timeout=0).timeout == 1


async def test_the_hostile_world_drops_and_reorders_pushes_and_telethon_recovers() -> None:
    from tgws.backends import build_world
    from tgws.config import SandboxConfig

    assert build_world(SandboxConfig()).updates.drop_rate == 0.0  # the calm demo drops nothing
    world = build_world(SandboxConfig(hostile=True, seed=5, fault_rate=0.3))
    updates = world.updates
    assert (updates.drop_rate, updates.reorder_rate) == (0.3, 0.3)
    world.faults.set(rate=0.0)  # only the pushes are unkind here
    updates.set(drop_rate=0.0, reorder_rate=0.0)
    owner = world.by_phone(OWNER_PHONE)
    assert owner is not None
    async with watching(world, owner, False, events.NewMessage) as (_, inbox):
        # Telethon follows a channel from the first update it sees: one calm tick first.
        world.tick()
        await inbox.until(lambda items: len(items) == 6)
        mark = {chat.id: chat.top_id for chat in world.chats.values()}
        updates.set(drop_rate=0.3, reorder_rate=0.3)
        for _ in range(6):
            world.tick()
        updates.set(drop_rate=0.0, reorder_rate=0.0)
        world.tick()  # a last push per chat reveals every gap left

        def posted() -> set[tuple[int, int]]:
            return {(chat.id, msg_id) for chat in world.chats.values() if not chat.basic
                    for msg_id in range(mark.get(chat.id, 0) + 1, chat.top_id + 1)
                    if chat.exists(msg_id)}

        def received(items: list[Any]) -> set[tuple[int, int]]:
            return {(-1000000000000 - e.chat_id, e.message.id) for e in items}

        await inbox.until(lambda items: posted() <= received(items), seconds=10)
    keys = [(-1000000000000 - e.chat_id, e.message.id) for e in inbox.items]
    assert len(keys) == len(set(keys))  # nothing twice
    assert updates.stats["dropped"] > 0 and updates.stats["held"] > 0
    assert updates.stats["channel_differences"] > 0


async def test_edits_that_come_back_in_a_difference_do_not_reach_telethons_handlers(
        wire: bool) -> None:
    """Telethon 1.45 sets the channel's pts from the difference before applying its
    other_updates, so an edit that was never pushed is lost to events.MessageEdited (while the
    new message in the same difference is dispatched): why a watch reconciles edits."""
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire, events.NewMessage,
                        events.MessageEdited) as (_, inbox):
        live.group.post(live.alice, "followed")
        await inbox.until(texts_are("followed"))
        updates.mute(live.group)
        live.group.edit(1, "edited, never pushed")
        live.group.post(live.alice, "never pushed either")
        updates.unmute(live.group)
        live.group.post(live.alice, "reveals the gap")
        await inbox.until(lambda items: items[-1].message.message == "reveals the gap")
    assert updates.stats["channel_differences"] == 1
    assert inbox.texts() == ["followed", "never pushed either", "reveals the gap"]
    assert not any(isinstance(e, events.MessageEdited.Event) for e in inbox.items)


async def test_pushes_lost_while_the_connection_is_down_come_back_through_the_gap(
        wire: bool) -> None:
    live = Live(wire)
    updates = live.world.updates
    async with watching(live.world, live.bob, wire, events.NewMessage,
                        retry_delay=0) as (client, inbox):
        live.group.post(live.alice, "before the drop")
        await inbox.until(texts_are("before the drop"))
        live.world.faults.refuse(attempts=1)  # the connection dies; one reconnect fails
        live.group.post(live.alice, "while reconnecting")  # nobody to push it to
        assert updates.stats["pushed"] == 1
        assert (await client.get_me()).id == live.bob.id  # answered: the connection is back
        assert client._sender.reconnects == 1
        live.group.post(live.alice, "after the reconnect")
        await inbox.until(texts_are("before the drop", "while reconnecting",
                                    "after the reconnect"))
    assert updates.stats["channel_differences"] == 1


async def test_a_world_changed_on_another_thread_pushes_on_the_clients_loop(wire: bool) -> None:
    """A test driving a ThreadedDaemon's world from its own thread still delivers pushes."""
    live = Live(wire)
    async with watching(live.world, live.bob, wire, events.NewMessage) as (_, inbox):
        await asyncio.to_thread(live.group.post, live.alice, "from a thread")
        await inbox.until(texts_are("from a thread"))
