"""OverlapPager (tgws/member_paging.py) through unmodified Telethon against the sandbox:
members who leave or join between pages, in any number, hide no one who stayed."""

from __future__ import annotations

from typing import Any

import pytest
from telethon import types
from telethon.sessions import StringSession

from tgws.member_paging import OVERLAP, OverlapPager, WordIndex
from tgws.sandbox import World, sandbox_client
from tgws.sandbox.hooks import Served


def churny_world(members: int) -> tuple[World, Any, Any]:
    world = World(seed=5)
    me = world.user("pager_me", first_name="Pat", phone="+15550300")
    group = world.megagroup("pagergroup", title="Pager", creator=me)
    group.populate(members)
    return world, group, me


async def list_all(world: World, group: Any, me: Any) -> tuple[list[int], OverlapPager]:
    async with sandbox_client(world, StringSession(world.session_string(me)),
                              flood_sleep_threshold=0, receive_updates=False) as client:
        pager = OverlapPager(client, types.InputChannel(group.id, group.access_hash))
        ids = [user.id async for user in pager]
    return ids, pager


@pytest.mark.parametrize("leaving", [1, OVERLAP - 1, OVERLAP + 5, 250])
async def test_departures_ahead_of_the_next_page_hide_no_one(leaving: int) -> None:
    """After every page, `leaving` members at or above its end leave (moving everyone after
    them up `leaving` places, past a pager that asks for offset + 200), and two newcomers join
    on top: every member who stayed is listed once."""
    world, group, me = churny_world(1500)
    mark = world.mark()
    gone: list[int] = []

    def churn(chat: Any, served: Served) -> None:
        above = [m for m in chat.members_newest_first()
                 if m.user is not me][:served.offset + len(served.ids)]
        for member in above[-leaving:]:
            chat.leave(member.user)
            gone.append(member.user.id)
        for _ in range(2):
            chat.join(world.user(first_name="New"))

    group.on_member_page(churn)
    ids, pager = await list_all(world, group, me)
    assert gone  # the churn happened
    assert group.expected_members(mark).check(ids, ordered_key="none") == []
    assert not pager.gave_up


async def test_without_churn_pages_overlap_by_a_little_only() -> None:
    world, group, me = churny_world(2000)
    ids, pager = await list_all(world, group, me)
    assert ids == group.truth_members()
    # 2001 members in pages of 200 re-reading OVERLAP each: 11 or 12 requests, not 20.
    assert pager.requests <= 2001 // (200 - OVERLAP) + 2


def test_word_index_splits_a_query_in_the_scripts_of_the_names_seen() -> None:
    index = WordIndex()
    index.add([types.User(id=1, first_name="Иван", last_name="Петров", username="ivan_c"),
               types.User(id=2, first_name="田中", last_name=None, username=None),
               types.User(id=3, first_name="🦊", last_name=None, username=None)])
    top = index.children("", "ab")
    assert {"a", "b", "и", "п", "田", "🦊"} <= set(top)
    assert index.children("и", "") == ["ив"]
    assert index.children("Ив", "") == ["Ива"]
