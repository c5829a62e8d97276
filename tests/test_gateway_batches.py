"""gateway._batches: pages of the asked size, the same items in the same order as plain
iteration, whether the iterator hands out a loaded page at once (tgws's own pagers,
history_paging.HistoryPager and member_paging.OverlapPager, through take_loaded()) or one
item per __anext__ (Telethon's RequestIter: a basic group's members).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from telethon.sessions import StringSession

from tgws.config import TelegramConfig
from tgws.gateway import Account, Gateway
from tgws.history_paging import HistoryPager
from tgws.member_paging import OverlapPager
from tgws.sandbox import World, sandbox_client


async def _batches(client: Any, iterator: Any, size: int) -> list[list[Any]]:
    account = Account(Gateway(TelegramConfig(), None, lambda s: None), 1)  # type: ignore[arg-type]
    account._client = client  # connected: _batches uses it as it is
    return [page.items async for page in account._batches(lambda c: iterator, size, None, None)]


@pytest.fixture
def world() -> World:
    w = World(seed=7)
    group = w.megagroup("slices")
    group.populate(450)
    group.history(1234)
    w.user("reader", phone="+15550007777")
    return w


@pytest.fixture
async def client(world: World) -> AsyncIterator[Any]:
    """A connected client of the world's reader."""
    reader = world.resolve("reader")
    session = StringSession(world.session_string(reader))  # type: ignore[arg-type]
    async with sandbox_client(world, session) as connected:
        yield connected


@pytest.mark.parametrize(("limit", "size"), [(None, 100), (None, 7), (250, 100), (1, 100),
                                              (333, 1000)])
async def test_message_batches_equal_plain_iteration(client: Any, limit: int | None,
                                                     size: int) -> None:
    plain = [m.id async for m in client.iter_messages("slices", limit=limit, reverse=True,
                                                       wait_time=0)]
    batches = await _batches(client, client.iter_messages("slices", limit=limit,
                                                          reverse=True, wait_time=0), size)
    assert [m.id for batch in batches for m in batch] == plain
    assert all(len(batch) <= size for batch in batches)
    assert all(len(batch) == size for batch in batches[:-1])


async def test_member_batches_equal_plain_iteration(client: Any) -> None:
    plain = [u.id async for u in client.iter_participants("slices")]
    batches = await _batches(client, client.iter_participants("slices"), 200)
    assert [u.id for batch in batches for u in batch] == plain
    assert len(plain) == 450


@pytest.mark.parametrize("size", [200, 7, 1000])
async def test_overlap_pager_pages_equal_its_plain_iteration(client: Any, size: int) -> None:
    # tgws's own member pager hands out what it fetched through take_loaded().
    channel = await client.get_input_entity("slices")
    plain = [u.id async for u in OverlapPager(client, channel)]
    batches = await _batches(client, OverlapPager(client, channel), size)
    assert [u.id for batch in batches for u in batch] == plain
    assert len(plain) == len(set(plain)) == 450
    assert all(len(batch) == size for batch in batches[:-1])


@pytest.mark.parametrize("size", [100, 7, 1000])
async def test_history_pager_pages_equal_iter_messages(client: Any, size: int) -> None:
    # What Account.message_pages streams: tgws's history pager, a page per __anext__.
    peer = await client.get_input_entity("slices")
    plain = [m.id async for m in client.iter_messages(peer, limit=None, reverse=True,
                                                       min_id=200, wait_time=0)]
    batches = await _batches(client, HistoryPager(client, peer, 200), size)
    assert [m.id for batch in batches for m in batch] == plain
    assert len(plain) == 1234 - 200
    assert all(len(batch) == size for batch in batches[:-1])
