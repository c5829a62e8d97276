"""HistoryPager (tgws/history_paging.py) through unmodified Telethon against the sandbox.

The pager replaces Telethon's iter_messages(reverse=True, min_id=after_id) in
gateway.Account.message_pages. Each test builds the same world twice (same seed, a fixed
clock, so page hooks that delete and edit mid-stream change both alike) and reads one with
Telethon, the other with the pager: the same getHistory calls, the same messages, the same
serialized frames byte for byte (so Telethon's _finish_init, which the pager skips, changes
nothing tgws sends), and exactly what the world's ground truth says exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from telethon import errors
from telethon.sessions import StringSession

from tgws import serialize
from tgws.history_paging import HistoryPager
from tgws.sandbox import World, sandbox_client
from tgws.sandbox.demo import GROUP_1, OWNER_PHONE
from tgws.sandbox.hostile import (
    HOLEY_CHANNEL,
    HOLEY_GROUP,
    UPGRADED_GROUP,
    build_hostile_world,
)

BOTH_MODES = pytest.mark.parametrize("wire", [False, True], ids=["objects", "wire"])
CLOCK = 1_790_000_000.0  # a fixed "now" for edits made by page hooks


def hostile(wire: bool, *, short_pages: bool = False) -> World:
    world = build_hostile_world(seed=3)
    world.clock = lambda: CLOCK
    world.wire = wire
    world.short_pages = short_pages
    return world


def chat_of(world: World, name: str) -> Any:
    """A chat by username; "old:<name>": the basic group the supergroup was upgraded from."""
    if name.startswith("old:"):
        return world.resolve(name[4:]).migrated_from  # type: ignore[union-attr]
    return world.resolve(name)


def input_peer(chat: Any) -> Any:
    from telethon.tl import types

    if chat.basic:
        return types.InputPeerChat(chat.id)
    return types.InputPeerChannel(chat.id, chat.access_hash)


@contextlib.asynccontextmanager
async def owner_client(world: World) -> AsyncIterator[Any]:
    """A connected client of the demo owner, who belongs to every chat read here."""
    owner = world.by_phone(OWNER_PHONE)
    assert owner is not None
    async with sandbox_client(world, StringSession(world.session_string(owner)),
                              flood_sleep_threshold=0, receive_updates=False) as client:
        yield client


async def read(world: World, name: str, after_id: int, how: str,
               wrap: Callable[[Any], Any] | None = None) -> tuple[list[Any], int]:
    """(messages, getHistory pages the world served) for one reading of `name`."""
    chat = chat_of(world, name)
    served = chat.history_pages_served
    async with owner_client(world) as client:
        peer = input_peer(chat)
        if how == "telethon":
            messages = [m async for m in client.iter_messages(
                peer, limit=None, reverse=True, min_id=after_id, wait_time=0)]
        else:
            messages = [m async for m in HistoryPager(
                wrap(client) if wrap else client, peer, after_id)]
    return messages, chat.history_pages_served - served


def frames(name: str, messages: list[Any]) -> list[bytes]:
    return serialize.message_frames(name, messages)


@BOTH_MODES
@pytest.mark.parametrize("name", [HOLEY_GROUP, HOLEY_CHANNEL, UPGRADED_GROUP,
                                  f"old:{UPGRADED_GROUP}", GROUP_1])
@pytest.mark.parametrize("where", ["start", "middle", "top"])
async def test_the_pager_reads_what_iter_messages_reads(wire: bool, name: str,
                                                        where: str) -> None:
    """Holes (deleted ids and ranges), deletes and edits while paging (HOLEY_GROUP's page
    hooks), a channel, a supergroup and the basic group it was upgraded from."""
    worlds = hostile(wire), hostile(wire)
    truth = chat_of(worlds[0], name).truth_ids()
    after = {"start": 0, "middle": truth[len(truth) // 3], "top": truth[-1]}[where]
    mark = worlds[1].mark()
    theirs, their_pages = await read(worlds[0], name, after, "telethon")
    ours, our_pages = await read(worlds[1], name, after, "pager")
    assert [m.id for m in ours] == [m.id for m in theirs]
    assert frames(name, ours) == frames(name, theirs)
    assert our_pages == their_pages  # the same calls: Telegram sees no difference
    expectation = chat_of(worlds[1], name).expected_messages(mark, after_id=after)
    assert expectation.check([m.id for m in ours], ordered_key="ascending") == []
    if where != "top":
        assert len(ours) > 0


@BOTH_MODES
async def test_short_pages_do_not_end_the_history(wire: bool) -> None:
    """Telegram sends fewer than asked for while more exist: only an empty page ends."""
    worlds = hostile(wire, short_pages=True), hostile(wire, short_pages=True)
    mark = worlds[1].mark()
    theirs, _ = await read(worlds[0], HOLEY_GROUP, 0, "telethon")
    ours, pages = await read(worlds[1], HOLEY_GROUP, 0, "pager")
    assert [m.id for m in ours] == [m.id for m in theirs]
    chat = chat_of(worlds[1], HOLEY_GROUP)
    assert chat.expected_messages(mark).check([m.id for m in ours]) == []
    assert pages > len(ours) // 100 + 1  # pages did come short


@BOTH_MODES
async def test_a_failed_page_is_asked_again_without_gap_or_repeat(wire: bool) -> None:
    """A call that fails (here a flood wait Telethon raises) leaves the pager's offsets as
    they were: the next __anext__ sends the same page again (gateway._batches relies on it)."""
    world = hostile(wire)
    chat = chat_of(world, HOLEY_CHANNEL)
    world.fail("GetHistoryRequest", "FLOOD_WAIT_1", times=2, after=3)
    mark = world.mark()
    failures = 0
    ids: list[int] = []
    async with owner_client(world) as client:
        pager = HistoryPager(client, input_peer(chat))
        while True:
            try:
                ids.append((await pager.__anext__()).id)
            except errors.FloodWaitError:
                failures += 1
                continue
            except StopAsyncIteration:
                break
    assert failures == 2
    assert chat.expected_messages(mark).check(ids, ordered_key="ascending") == []
    assert len(ids) == len(chat.truth_ids())


@BOTH_MODES
async def test_take_loaded_hands_out_pages_in_order(wire: bool) -> None:
    world = hostile(wire)
    chat = chat_of(world, HOLEY_GROUP)
    mark = world.mark()
    batches: list[list[int]] = []
    async with owner_client(world) as client:
        pager = HistoryPager(client, input_peer(chat))
        while True:
            try:
                batch = [await pager.__anext__()]
            except StopAsyncIteration:
                break
            pager.take_loaded(batch, 70)  # less than a page: the rest stays for later
            batches.append([m.id for m in batch])
    ids = [i for batch in batches for i in batch]
    assert chat.expected_messages(mark).check(ids, ordered_key="ascending") == []
    assert all(1 <= len(batch) <= 70 for batch in batches)
    assert max(len(batch) for batch in batches) == 70
    assert pager.total == chat.count


class Scrambling:
    """The client, with Telegram answering out of order and repeating a message it already
    sent (the sandbox never does; Telegram should not either)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.previous: list[Any] = []

    async def __call__(self, request: Any) -> Any:
        result = await self.client(request)
        fresh = list(result.messages)
        result.messages = fresh[1::2] + fresh[::2] + self.previous[:3]
        self.previous = fresh
        return result


@BOTH_MODES
async def test_an_answer_out_of_order_or_repeating_is_read_in_order_once(wire: bool) -> None:
    """Where Telethon would end the whole history at the first id not above the previous
    one, the pager orders each page and skips what it handed out already."""
    world = hostile(wire)
    mark = world.mark()
    ours, _ = await read(world, HOLEY_CHANNEL, 0, "pager", wrap=Scrambling)
    chat = chat_of(world, HOLEY_CHANNEL)
    assert chat.expected_messages(mark).check([m.id for m in ours]) == []
    assert len(ours) == len(chat.truth_ids())
