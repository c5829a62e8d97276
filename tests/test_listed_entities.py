"""telegram_clients.skip_listed_entities: the pages tgws streams do not fill Telethon's
session entity cache (nothing reads them back); every other result still does.

Through unmodified Telethon against the sandbox, in wire mode (the real TL parse)."""

from __future__ import annotations

from typing import Any

from telethon import types
from telethon.sessions import StringSession

from tgws.member_paging import OverlapPager
from tgws.sandbox import World, sandbox_client
from tgws.telegram_clients import skip_listed_entities


def _world() -> tuple[World, Any, Any]:
    world = World(seed=7, wire=True)
    me = world.user("lister_me", first_name="Lee", phone="+15550700")
    group = world.megagroup("listgroup", title="Listing", creator=me)
    group.populate(450)
    for n in range(250):
        group.post(me, f"message {n}")
    return world, group, me


def _user_ids(session: Any) -> set[int]:
    return {row[0] for row in session._entities if row[0] > 0}


async def _list(world: World, session: Any, group: Any) -> tuple[Any, int, int, Any]:
    async with sandbox_client(world, session, flood_sleep_threshold=0,
                              receive_updates=False) as client:
        pager = OverlapPager(client, types.InputChannel(group.id, group.access_hash))
        members = [user.id async for user in pager]
        peer = types.InputPeerChannel(group.id, group.access_hash)
        messages = [m async for m in client.iter_messages(peer, limit=None, wait_time=0)]
        authors = {m.sender_id for m in messages}
        assert all(m.sender is not None for m in messages)  # built from the page's own users
        me = await client.get_me()
        return me, len(members), len(messages), authors


async def test_listing_pages_skip_the_session_cache_and_other_results_do_not() -> None:
    world, group, me = _world()
    plain = StringSession(world.session_string(me))
    got_me, members, messages, authors = await _list(world, plain, group)
    assert members == 451 and messages >= 250
    assert len(_user_ids(plain)) >= members  # Telethon's default: every listed user kept

    world, group, me = _world()
    skipping = skip_listed_entities(StringSession(world.session_string(me)))
    got_me2, members2, messages2, authors2 = await _list(world, skipping, group)
    assert (members2, messages2, authors2) == (members, messages, authors)
    assert got_me2.id == got_me.id
    # The listed members are not kept; get_me's users.GetUsers (a Vector) still is.
    assert _user_ids(skipping) == {got_me2.id}
