"""Several watches of one account share its Telegram update stream (tgws/live_feed.py): the
client calls one handler per update whatever the number of watches, each watch gets the
items of its own groups, and the handler goes when the last watch ends."""

from __future__ import annotations

from typing import Any

from tests.support import eventually, logged_in
from tests.test_watch import PHONE, Room, cancel, config, items_until, message_ids, start_watch
from tgws.daemon import Daemon

__all__ = ["config"]  # the fixture: reconciliation off in effect, as in test_watch.py


def raw_handlers(daemon: Daemon) -> list[Any]:
    """The account's Telethon client's event handlers."""
    assert daemon.app is not None
    clients = {id(c.account._client): c.account._client for c in daemon.app.connections
               if c.account is not None and c.account._client is not None}
    assert len(clients) == 1, clients
    return list(next(iter(clients.values())).list_event_handlers())


async def test_watches_of_one_account_share_one_handler_and_get_only_their_groups(
        daemon: Daemon, api_key: str) -> None:
    one = await logged_in(daemon, api_key, PHONE)
    two = await logged_in(daemon, api_key, PHONE)
    three = await logged_in(daemon, api_key, PHONE)
    rooms = {name: Room(daemon, name, messages=1) for name in ("feedroom1", "feedroom2",
                                                              "feedroom3")}
    await start_watch(one, "feedroom1", "feedroom2")
    await items_until(one, lambda items: len(items) == 2)
    await start_watch(two, "feedroom2")
    await items_until(two, lambda items: len(items) == 1)
    await start_watch(three, "feedroom3")
    await items_until(three, lambda items: len(items) == 1)
    # One handler for three watches (each watch used to add its own: every update was then
    # read and fanned out once per watch).
    assert len(raw_handlers(daemon)) == 1

    first = rooms["feedroom1"].post("to one")
    shared = rooms["feedroom2"].post("to one and two")
    third = rooms["feedroom3"].post("to three")
    got_one = await items_until(one, lambda items: len(items) == 2)
    assert sorted((i["message"]["group"], i["message"]["chat"]["id"]) for i in got_one) == \
        [("feedroom1", first), ("feedroom2", shared)]
    assert [i["message"]["group"] for i in await items_until(two, lambda i: len(i) == 1)] == \
        ["feedroom2"]
    assert message_ids(await items_until(three, lambda i: len(i) == 1), "live") == [third]
    # Nothing else was on its way: the next frame after each cancel is "cancelled".
    assert await cancel(one) == []
    assert await cancel(three) == []

    # The watch left behind still gets its group; the handler stays while it runs.
    later = rooms["feedroom2"].post("to two only")
    assert message_ids(await items_until(two, lambda i: len(i) == 1), "live") == [later]
    assert len(raw_handlers(daemon)) == 1
    assert await cancel(two) == []
    await eventually(lambda: raw_handlers(daemon) == [], "the last watch removes the handler")
    for ws in (one, two, three):
        await ws.close()
