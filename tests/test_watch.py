"""`watch` end to end: a real daemon, a real websocket client, unmodified Telethon receiving the
sandbox's pushed updates. Catch-up then live, every item kind, gaps recovered by
reconciliation, offsets shared with `latest`, client acks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import (
    collect_stream,
    expect,
    logged_in,
    make_config,
    recv_json,
    started_with_key,
    timeout,
)
from tgws.config import Config
from tgws.context import App
from tgws.daemon import Daemon

PHONE = "+919876543210"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Periodic reconciliation is off in effect (an hour) unless a test sets it: what these
    # tests see comes from the pushes and from the holes they leave.
    return make_config(tmp_path, **{"watch.reconcile_interval": 3600.0,
                                    "watch.gap_delay": 0.2})


def world_truth(daemon: Daemon) -> Any:
    """The daemon's sandbox World."""
    assert daemon.backend is not None
    return daemon.backend.world


class Room:
    """A megagroup in the daemon's sandbox world that the logged-in account is a member of."""

    def __init__(self, daemon: Daemon, name: str, messages: int = 5) -> None:
        self.world = world = world_truth(daemon)
        self.me = world.by_phone(PHONE)
        assert self.me is not None
        self.alice = world.user(f"{name}_alice"[:32], first_name="Alice")
        self.chat = world.megagroup(name, creator=self.alice)
        self.chat.join(self.me)
        self.chat.announce_members = True  # from now on joins and departures are posted
        for i in range(messages):
            self.chat.post(self.alice, f"old {i}")

    def post(self, text: str) -> int:
        return int(self.chat.post(self.alice, text).id)


async def start_watch(ws: ClientConnection, *names: str, **kinds: Any) -> None:
    await ws.send(json.dumps({"event": "watch", "data": {"group": list(names), **kinds}}))
    expect(await recv_json(ws), "watch", "success", "watching")


async def items_until(ws: ClientConnection, done: Any, wait: float = 10.0
                      ) -> list[dict[str, Any]]:
    """Watch items (data dicts) until `done(items)` holds."""
    items: list[dict[str, Any]] = []
    while not done(items):
        reply = await recv_json(ws, wait)
        assert reply["event"] == "watch", reply
        assert reply["data"]["status"] == "success", reply
        items.append(reply["data"])
    return items


def message_ids(items: list[dict[str, Any]], path: str | None = None) -> list[int]:
    return [i["message"]["chat"]["id"] for i in items
            if i["kind"] == "message" and (path is None or i["path"] == path)]


async def cancel(ws: ClientConnection) -> list[dict[str, Any]]:
    """Cancel the watch; the items that were still on their way, then "cancelled"."""
    await ws.send(json.dumps({"event": "cancel"}))
    rest: list[dict[str, Any]] = []
    while True:
        reply = await recv_json(ws)
        if reply["event"] == "cancel":
            expect(reply, "cancel", "success", "cancelled")
            return rest
        rest.append(reply["data"])


async def latest_chats(ws: ClientConnection, name: str, **extra: Any
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": name, "status": "latest"}], "status": "", **extra}}))
    return await collect_stream(ws, "chats")


@dataclass
class Watching:
    """A logged-in client watching a new Room, its catch-up read (`caught`)."""

    ws: ClientConnection
    room: Room
    caught: list[dict[str, Any]]
    open: bool = True  # the watch still runs: cancelled on leaving the context

    async def cancel(self) -> list[dict[str, Any]]:
        self.open = False
        return await cancel(self.ws)

    async def leave(self) -> None:
        """The client goes away without cancelling: the daemon ends the watch."""
        self.open = False
        await self.ws.close()


@contextlib.asynccontextmanager
async def watching(daemon: Daemon, key: str, name: str, messages: int = 2,
                   **kinds: Any) -> AsyncIterator[Watching]:
    """Log in, make Room `name` with `messages` old messages, watch it with `kinds`, and
    read the catch-up (its messages, and its two members when members are watched). The
    watch is cancelled (unless the test ended it) and the socket closed afterwards."""
    ws = await logged_in(daemon, key, PHONE)
    try:
        room = Room(daemon, name, messages=messages)
        await start_watch(ws, name, **kinds)
        expected = messages + (2 if kinds.get("members") else 0)
        caught = await items_until(ws, lambda items: len(items) == expected)
        watch = Watching(ws, room, caught)
        yield watch
        if watch.open:
            await cancel(ws)
    finally:
        await ws.close()


async def watched_again(daemon: Daemon, key: str, name: str, count: int, **kinds: Any
                        ) -> list[dict[str, Any]]:
    """A new connection's watch of an existing group: its first `count` items (the
    catch-up of what the last watch left); then cancelled."""
    ws = await logged_in(daemon, key, PHONE)
    try:
        await start_watch(ws, name, **kinds)
        items = await items_until(ws, lambda items: len(items) == count)
        await cancel(ws)
        return items
    finally:
        await ws.close()


async def test_watch_catches_up_then_pushes_a_new_message_live(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom01", messages=5) as w:
        assert message_ids(w.caught, "catch-up") == [1, 2, 3, 4, 5]
        assert w.caught[0]["message"]["group"] == "watchroom01"
        assert w.caught[0]["message"]["chat"]["text"] == "old 0"
        new_id = w.room.post("hello live")
        live = await items_until(w.ws, lambda items: len(items) == 1)
        assert live[0]["kind"] == "message" and live[0]["path"] == "live"
        assert live[0]["message"]["chat"] == {**live[0]["message"]["chat"], "id": new_id,
                                              "text": "hello live"}


async def test_edits_deletions_joins_and_leaves_arrive_as_their_kinds(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom02", messages=3, edits=True,
                        deletions=True, members=True) as w:
        assert message_ids(w.caught) == [1, 2, 3]
        # Members are caught up as `users` latest would send them: the creator and this account.
        members = [i["message"]["user"]["id"] for i in w.caught if i["kind"] == "member"]
        assert sorted(members) == sorted([w.room.alice.id, w.room.me.id])
        assert all(i["path"] == "catch-up" for i in w.caught)

        w.room.chat.edit(2, "old 1, edited")
        edit = (await items_until(w.ws, lambda items: len(items) == 1))[0]
        assert (edit["kind"], edit["path"]) == ("edit", "live")
        assert edit["message"]["chat"]["id"] == 2
        assert edit["message"]["chat"]["text"] == "old 1, edited"

        w.room.chat.delete(1, 3)
        deletion = (await items_until(w.ws, lambda items: len(items) == 1))[0]
        assert deletion["kind"] == "deletion"
        assert deletion["message"]["group"] == "watchroom02"
        assert sorted(deletion["message"]["deleted"]["ids"]) == [1, 3]

        bob = w.room.world.user("watch_bob", first_name="Bob")
        w.room.chat.join(bob)  # posts MessageActionChatAddUser (announce_members)
        joined = await items_until(w.ws,
                                   lambda items: any(i["kind"] == "member" for i in items))
        member = next(i for i in joined if i["kind"] == "member")
        assert member["path"] == "live"
        assert member["message"]["user"]["id"] == bob.id
        assert member["message"]["user"]["first_name"] == "Bob"
        assert member["message"]["user"]["membership"]["role"] == "member"
        # The service message itself is a message item, as `chats` would send it.
        service = [i for i in joined if i["kind"] == "message"]
        assert service and service[0]["message"]["chat"]["action"]["type"] == "chat_add_user"

        w.room.chat.leave(bob)
        gone = await items_until(w.ws,
                                 lambda items: any(i["kind"] == "member_left" for i in items))
        left = next(i for i in gone if i["kind"] == "member_left")
        assert left["message"]["left"]["user_id"] == bob.id
        assert left["message"]["left"]["by"] is None  # left by themselves


async def test_a_watch_of_only_messages_sends_no_edits_deletions_or_members(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom03") as w:
        w.room.chat.edit(1, "changed")
        w.room.chat.delete(2)
        last = w.room.post("after")
        items = await items_until(w.ws, lambda items: last in message_ids(items))
        assert [i["kind"] for i in items] == ["message"]


def daemon_with(tmp_path: Path, **overrides: Any
                ) -> contextlib.AbstractAsyncContextManager[tuple[Daemon, App, str]]:
    """A daemon with these config overrides, its app and an API key for it."""
    return started_with_key(make_config(tmp_path, **overrides), "watcher")


async def test_pushes_never_sent_are_recovered_by_the_periodic_reconciliation(
        tmp_path: Path) -> None:
    async with daemon_with(tmp_path, **{"watch.reconcile_interval": 0.3}) as (daemon, _, key), \
            watching(daemon, key, "watchroom04") as w:
        w.room.world.updates.mute(w.room.chat)  # Telegram pushes nothing of this chat
        posted = [w.room.post(f"unpushed {i}") for i in range(3)]
        items = await items_until(w.ws, lambda items: len(items) == 3)
        assert message_ids(items, "reconcile") == posted
        assert w.room.world.updates.stats["muted"] >= 3


async def test_joins_and_departures_never_pushed_are_recovered_by_reconciliation(
        tmp_path: Path) -> None:
    """Telegram posts a service message for each join and departure; when neither it nor
    the participant update is pushed, the reconciliation's history read finds the service
    message and sends the member items from it, marked "reconcile"."""
    async with daemon_with(tmp_path, **{"watch.reconcile_interval": 0.3}) as (daemon, _, key), \
            watching(daemon, key, "watchroom09", messages=1, members=True) as w:
        ws, room, updates = w.ws, w.room, w.room.world.updates
        updates.mute(room.chat)  # nothing of this chat is pushed from now on
        muted = updates.stats["muted"]
        bob = room.world.user("watch_bob09", first_name="Bob")
        room.chat.join(bob)
        items = await items_until(ws, lambda items: any(i["kind"] == "member" for i in items))
        joined = [i for i in items if i["kind"] == "member"]
        assert [(i["path"], i["message"]["user"]["id"]) for i in joined] == [
            ("reconcile", bob.id)]
        assert joined[0]["message"]["user"]["first_name"] == "Bob"
        service = [i for i in items if i["kind"] == "message"]
        assert [(i["path"], i["message"]["chat"]["action"]["type"]) for i in service] == [
            ("reconcile", "chat_add_user")]
        room.chat.leave(bob)
        items = await items_until(
            ws, lambda items: any(i["kind"] == "member_left" for i in items))
        left = [i for i in items if i["kind"] == "member_left"]
        assert [(i["path"], i["message"]["left"]["user_id"]) for i in left] == [
            ("reconcile", bob.id)]
        assert all(i["path"] == "reconcile" for i in items)
        assert updates.stats["muted"] > muted  # the pushes really were held back
        assert await w.cancel() == []  # nothing sent twice afterwards either


async def test_dropped_pushes_and_channel_difference_too_long_are_recovered(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom05") as w:
        # Telethon follows a channel from the first push it sees.
        followed = w.room.post("followed")
        await items_until(w.ws, lambda items: message_ids(items) == [followed])
        updates = w.room.world.updates
        updates.mute(w.room.chat)
        missed = [w.room.post(f"missed {i}") for i in range(4)]
        updates.unmute(w.room.chat)
        # Telethon sees the pts gap with the next push, asks getChannelDifference and is told
        # channelDifferenceTooLong: it jumps ahead and hands nothing of the gap to handlers.
        updates.force_too_long(w.room.chat, times=1)
        trigger = w.room.post("after the gap")
        following = w.room.post("and one more")
        everything = [*missed, trigger, following]
        items = await items_until(w.ws, lambda items: sorted(message_ids(items)) == everything)
        assert len(message_ids(items)) == len(everything)  # nothing twice
        assert set(message_ids(items, "reconcile")) >= set(missed)
        assert updates.stats["channel_too_long"] >= 1


async def test_a_telegram_disconnect_loses_no_message(daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom06") as w:
        world = w.room.world
        world.updates.mute(w.room.chat)  # what was posted while the connection was down
        world.faults.drop_connections()
        lost = [w.room.post(f"while down {i}") for i in range(3)]
        world.updates.unmute(w.room.chat)
        after = w.room.post("back")
        items = await items_until(w.ws, lambda items: sorted(message_ids(items)) == [*lost, after])
        assert len(items) == 4


async def committed(daemon: Daemon, room: Room, value: int) -> None:
    """Wait until the chats offset of the room's group reached `value`."""
    assert daemon.app is not None
    store = daemon.app.store
    keys = await store.list_api_keys()
    key_id = keys[0].id
    deadline = asyncio.get_running_loop().time() + timeout(10)
    while True:
        offset = await store.get_offset(key_id, "chats", room.chat.id)
        if offset is not None and offset.value >= value:
            return
        assert asyncio.get_running_loop().time() < deadline, f"offset {offset} never {value}"
        await asyncio.sleep(0.01)  # poll interval


async def test_a_watch_cut_by_the_client_resumes_where_it_was_confirmed(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "watchroom07", messages=3) as w:
        room = w.room
        live = room.post("live one")
        await items_until(w.ws, lambda items: len(items) == 1)
        await committed(daemon, room, live)
        await w.leave()  # the client leaves: the watch ends
    meanwhile = [room.post(f"meanwhile {i}") for i in range(2)]
    items = await watched_again(daemon, api_key, "watchroom07", 2)
    assert message_ids(items, "catch-up") == meanwhile  # no gap, nothing confirmed again


async def test_watch_then_latest_and_latest_then_watch_share_the_offsets(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    room = Room(daemon, "watchroom08", messages=3)
    first, _ = await latest_chats(ws, "watchroom08")
    assert [i["chat"]["id"] for i in first] == [1, 2, 3]
    await committed(daemon, room, 3)
    room.post("between")
    await start_watch(ws, "watchroom08")
    items = await items_until(ws, lambda items: len(items) == 1)
    assert message_ids(items, "catch-up") == [4]  # latest's delivery is not repeated
    live = room.post("live")
    await items_until(ws, lambda items: message_ids(items) == [live])
    await committed(daemon, room, live)
    assert await cancel(ws) == []
    after = room.post("after the watch")
    rest, done = await latest_chats(ws, "watchroom08")
    assert [i["chat"]["id"] for i in rest] == [after]  # only what the watch did not deliver
    assert done["groups"][0]["sent"] == 1
    await ws.close()


# --- client acks -------------------------------------------------------------------------------
async def read_stream(ws: ClientConnection, event: str) -> list[dict[str, Any]]:
    """Data dicts of one users/chats stream's items (after "sending …", up to "done")."""
    first = await recv_json(ws)
    assert first["data"]["message"] == f"sending {event}", first
    items: list[dict[str, Any]] = []
    while True:
        reply = await recv_json(ws)
        if reply["data"]["message"] == "done":
            return items
        items.append(reply["data"])


async def offset_of(daemon: Daemon, kind: str, group_id: int) -> int | None:
    assert daemon.app is not None
    store = daemon.app.store
    key_id = (await store.list_api_keys())[0].id
    offset = await store.get_offset(key_id, kind, group_id)
    return None if offset is None else offset.value


async def test_chats_with_client_acks_commit_only_what_the_client_acked(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    room = Room(daemon, "ackroom01", messages=5)
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": ["ackroom01"], "status": "latest", "ack": "client"}}))
    items = await read_stream(ws, "chats")
    assert [i["message"]["chat"]["id"] for i in items] == [1, 2, 3, 4, 5]
    assert [i["seq"] for i in items] == [1, 2, 3, 4, 5]
    assert await offset_of(daemon, "chats", room.chat.id) is None  # delivered, not acked
    await ws.send(json.dumps({"event": "ack", "data": {"seq": 3}}))
    await committed(daemon, room, 3)
    await ws.close()  # 4 and 5 were delivered but never acked
    ws = await logged_in(daemon, api_key, PHONE)
    again, _ = await latest_chats(ws, "ackroom01")
    assert [i["chat"]["id"] for i in again] == [4, 5]  # sent again; 1-3 are not
    await ws.close()


async def test_an_ack_of_an_item_never_sent_is_refused(daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    await ws.send(json.dumps({"event": "ack", "data": {"seq": 99}}))
    expect(await recv_json(ws), "ack", "failed", "no item with seq 99 was sent on this connection")
    await ws.close()


async def test_a_watch_with_client_acks_resends_what_was_not_acked(
        daemon: Daemon, api_key: str) -> None:
    async with watching(daemon, api_key, "ackroom02", messages=3, ack="client") as w:
        room = w.room
        assert [i["seq"] for i in w.caught] == [1, 2, 3]
        live = room.post("live")
        item = (await items_until(w.ws, lambda items: len(items) == 1))[0]
        assert (item["seq"], item["message"]["chat"]["id"]) == (4, live)
        await w.ws.send(json.dumps({"event": "ack", "data": {"seq": 2}}))
        await committed(daemon, room, 2)
        await w.leave()
    again = await watched_again(daemon, api_key, "ackroom02", 2, ack="client")
    assert message_ids(again, "catch-up") == [3, live]


async def test_users_with_client_acks_commit_the_listing_once_its_last_item_is_acked(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    room = Room(daemon, "ackroom03", messages=0)
    for i in range(3):
        room.chat.join(room.world.user(f"ackroom03_m{i}"))
    request = {"event": "users", "data": {"group": ["ackroom03"], "status": "latest",
                                          "ack": "client"}}
    await ws.send(json.dumps(request))
    first = await read_stream(ws, "users")
    assert len(first) == 5 and [i["seq"] for i in first] == [1, 2, 3, 4, 5]
    await ws.send(json.dumps(request))  # not acked: everything again
    second = await read_stream(ws, "users")
    assert len(second) == 5
    await ws.send(json.dumps({"event": "ack", "data": {"seq": second[-1]["seq"]}}))
    assert daemon.app is not None
    await ws.send(json.dumps(request))
    third = await read_stream(ws, "users")
    assert third == []
    await ws.close()


# --- latest over idle groups ----------------------------------------------------------------
def calls(world: Any) -> dict[str, int]:
    return dict(world.faults.per_method)


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}


async def test_latest_over_idle_groups_makes_one_bulk_call_per_100_and_no_history_call(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    rooms = [Room(daemon, f"idleroom{i:03d}", messages=2) for i in range(100)]
    names = [f"idleroom{i:03d}" for i in range(100)]

    async def latest() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        await ws.send(json.dumps({"event": "chats", "data": {
            "group": names, "status": "latest"}}))
        return await collect_stream(ws, "chats")

    first, _ = await latest()  # resolves each name and delivers everything
    assert len(first) == 200
    await committed(daemon, rooms[-1], 2)
    world = rooms[0].world
    before = calls(world)
    items, done = await latest()
    assert items == []
    assert done["count"] == 0 and len(done["groups"]) == 100
    assert spent(before, calls(world)) == {"GetPeerDialogsRequest": 1}

    news = rooms[42].post("news")
    before = calls(world)
    items, done = await latest()
    assert [(i["group"], i["chat"]["id"]) for i in items] == [("idleroom042", news)]
    used = spent(before, calls(world))
    assert used["GetPeerDialogsRequest"] == 1
    # Only the group with news is read: its pages (Telethon reads on to an empty one), and its
    # full channel (an upgraded group's old history would come first); not 100 groups' worth.
    assert used["GetHistoryRequest"] <= 2 and used.get("GetFullChannelRequest", 0) <= 1
    assert "GetChannelsRequest" not in used and "ResolveUsernameRequest" not in used
    await ws.close()


async def test_latest_of_a_group_the_account_is_not_in_falls_back_to_history(
        daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    world = world_truth(daemon)
    owner = world.user("outsider_owner")
    chat = world.megagroup("outsideroom", creator=owner)
    for i in range(3):
        chat.post(owner, f"m{i}")
    first, _ = await latest_chats(ws, "outsideroom")
    assert [i["chat"]["id"] for i in first] == [1, 2, 3]
    chat.post(owner, "m3")
    before = calls(world)
    second, _ = await latest_chats(ws, "outsideroom")
    assert [i["chat"]["id"] for i in second] == [4]  # exact, though no dialog tells
    used = spent(before, calls(world))
    assert used.get("GetHistoryRequest", 0) >= 1
    await ws.close()


async def test_a_hostile_world_dropping_and_reordering_pushes_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    overrides = {"sandbox.hostile": True, "watch.reconcile_interval": 1.0,
                 "watch.gap_delay": 0.2}
    async with daemon_with(tmp_path, **overrides) as (daemon, _, key), \
            watching(daemon, key, "hostilewatch", messages=3) as w:
        ws, room, world = w.ws, w.room, w.room.world
        world.updates.set(drop_rate=0.3, reorder_rate=0.3, reorder_window=0.05)
        posted = []
        for i in range(30):
            posted.append(room.post(f"storm {i}"))
            if i % 5 == 4:
                await asyncio.sleep(0.05)  # bursts, so holes and late pushes interleave
        items = await items_until(ws, lambda items: set(message_ids(items)) >= set(posted),
                                  wait=30)
        assert sorted(message_ids(items)) == posted  # each once
        assert world.updates.stats["dropped"] > 0
        assert {i["path"] for i in items} <= {"live", "reconcile"}


async def test_latest_stays_exact_when_the_bulk_call_fails(daemon: Daemon, api_key: str) -> None:
    ws = await logged_in(daemon, api_key, PHONE)
    room = Room(daemon, "bulkfails", messages=2)
    first, _ = await latest_chats(ws, "bulkfails")
    assert [i["chat"]["id"] for i in first] == [1, 2]
    await committed(daemon, room, 2)
    news = room.post("news")
    room.world.faults.script("GetPeerDialogsRequest", "internal", times=None)  # always a 5xx
    before = calls(room.world)
    second, done = await latest_chats(ws, "bulkfails")
    assert [i["chat"]["id"] for i in second] == [news]  # the old path, with its own calls
    used = spent(before, calls(room.world))
    assert used["GetPeerDialogsRequest"] >= 1 and used["GetHistoryRequest"] >= 1
    assert done["groups"][0]["sent"] == 1
    await ws.close()
