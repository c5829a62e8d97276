"""Soak: every group of the hostile world streamed again and again, 5 % of Telegram calls
failing, the world changing between rounds, clients dropping mid-stream and the daemon
restarting — every stream checked against the world's own ground truth.

What each round proves, for every group and channel of the world (chats: all eight; users:
every supergroup, biggroup12k's 12,000 members included, of which a listing reaches 10,000):
- a `latest` stream that completes delivers exactly what the world says it must since the
  offset committed before it (Expectation.check): every item, once, in order;
- a stream the client drops half-way delivered no duplicate and nothing unexpected, and the
  offset it left behind covers only what that client received (so the next `latest` resends
  the rest: gap-free across disconnects);
- the daemon is stopped (mid-stream, once a round) and started again on the same store file and
  the same world: `latest` then continues exactly where the committed offsets say.

Bounded: rounds run until SOAK_SECONDS have passed (at least two), so CI time stays within
about a minute and a half; the same seed gives the same faults for the same calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support import collect_stream, logged_in, make_config, recv_json, timeout
from tgws import backends
from tgws.daemon import Daemon
from tgws.sandbox import build_hostile_world
from tgws.sandbox.hostile import HOLEY_GROUP
from tgws.sandbox.truth import Expectation
from tgws.store import Offset

SOAK_SECONDS = 60.0
FAULT_RATE = 0.05

pytestmark = pytest.mark.slow


class Soak:
    """One hostile world, one store file, daemons started and stopped on them."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.world = build_hostile_world(0)
        self.world.faults.set(rate=FAULT_RATE)
        # A restarted daemon serves the same world (as a restarted process would reach the
        # same Telegram): the backend is handed this one instead of a fresh build.
        monkeypatch.setattr(backends, "build_world", lambda settings: self.world)
        self.config = make_config(tmp_path, **{
            "sandbox.hostile": True, "telegram.retry_backoff": 0.05,
            "telegram.stream_retries": 8})
        self.world.faults.set(flood_wait=1)  # as [sandbox] flood_wait's default
        self.daemon: Daemon | None = None
        self.key = ""
        self.key_id = 0
        self.problems: list[str] = []
        self.streams = 0
        # Every chat with a username (the old basic group has none: it streams as part of
        # its supergroup); `users` for every supergroup.
        chats = [c for c in self.world.chats.values() if c.username]
        self.chat_groups: list[str] = [str(c.username) for c in chats]
        self.user_groups: list[str] = [str(c.username) for c in chats if not c.broadcast]

    async def start(self) -> Daemon:
        self.daemon = Daemon(self.config)
        await self.daemon.start()
        if not self.key:
            store = self.app.store
            self.key = await store.create_api_key("soak")
            record = await store.verify_api_key(self.key)
            assert record is not None
            self.key_id = record.id
        return self.daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    @property
    def app(self) -> Any:
        assert self.daemon is not None and self.daemon.app is not None
        return self.daemon.app

    async def offset(self, kind: str, group_id: int) -> Offset | None:
        offset: Offset | None = await self.app.store.get_offset(self.key_id, kind, group_id)
        return offset

    def note(self, where: str, problems: list[str]) -> None:
        self.problems.extend(f"{where}: {p}" for p in problems)


# --- chats ------------------------------------------------------------------------------------
def chat_sources(world: Any, name: str) -> list[tuple[Any, int]]:
    """(chat, offset group id) for each history a stream of `name` sends, in order."""
    chat = world.resolve(name)
    old = getattr(chat, "migrated_from", None)
    sources = [(old, -old.id)] if old is not None else []
    return [*sources, (chat, chat.id)]


def migrate_to_ids(chat: Any) -> set[int]:
    out = set()
    for i in chat.truth_ids():
        action = getattr(chat.message(i), "action", None)
        if type(action).__name__ == "MessageActionChatMigrateTo":
            out.add(i)
    return out


async def chats_latest(soak: Soak, ws: ClientConnection, name: str, *,
                       drop_after: int | None = None) -> None:
    world = soak.world
    sources = chat_sources(world, name)
    before = {gid: await soak.offset("chats", gid) for _, gid in sources}
    mark = world.mark()
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": name, "status": "latest"}], "status": ""}}))
    items: list[dict[str, Any]] = []
    if drop_after is None:
        items, _ = await collect_stream(ws, "chats", wait=120)
    else:
        items = await read_some(ws, "chats", drop_after)
    soak.streams += 1
    by_source: dict[int, list[int]] = {}
    for item in items:
        by_source.setdefault(item["chat"]["chat_id"], []).append(int(item["chat"]["id"]))
    for chat, gid in sources:
        marked = -chat.id if chat.basic else -(10**12 + chat.id)
        ids = by_source.pop(marked, [])
        since = before[gid]
        after = since.value if since is not None else 0
        expectation = chat.expected_messages(mark, after_id=after)
        skipped = migrate_to_ids(chat)
        expectation = Expectation(tuple(i for i in expectation.must if i not in skipped),
                                  expectation.may - skipped)
        where = f"chats {name} ({'old' if chat.basic else 'new'}) after {after}"
        if drop_after is None:
            soak.note(where, expectation.check(ids))
        else:
            # Dropped half-way: a prefix of the stream, and an offset within what arrived.
            soak.note(where, [p for p in expectation.check(ids) if not p.startswith("missing")])
    assert not by_source, f"items from a chat the group does not have: {list(by_source)}"
    if drop_after is not None:
        delivered = {int(i["chat"]["id"]) for i in items}
        await check_offsets_within(soak, name, sources, before, delivered, by_chat=items)


async def check_offsets_within(soak: Soak, name: str, sources: list[tuple[Any, int]],
                               before: dict[int, Offset | None], delivered: set[int],
                               by_chat: list[dict[str, Any]]) -> None:
    """After a dropped stream the daemon may still commit what the client had confirmed;
    whatever it committed must be an id that client received (or the offset from before)."""
    await asyncio.sleep(0)  # let the daemon see the close
    for chat, gid in sources:
        marked = -chat.id if chat.basic else -(10**12 + chat.id)
        got = {int(i["chat"]["id"]) for i in by_chat if i["chat"]["chat_id"] == marked}
        now = await soak.offset("chats", gid)
        if now is None or now == before[gid]:
            continue
        if now.value not in got and now.value not in migrate_to_ids(chat):
            soak.problems.append(f"chats {name}: offset {now.value} was never delivered")


async def read_some(ws: ClientConnection, event: str, count: int) -> list[dict[str, Any]]:
    """Read the first `count` items of a stream (or all, if fewer), then drop the connection."""
    items: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout(120)):
            while len(items) < count:
                data = (await recv_json(ws, wait=120))["data"]
                if data["status"] == "success" and isinstance(data["message"], dict):
                    items.append(data["message"])
                elif data["message"] == "done":
                    break
    finally:
        ws.transport.abort()  # as a client whose network fails: no close handshake
    return items


async def read_until_closed(ws: ClientConnection) -> None:
    try:
        async with asyncio.timeout(timeout(60)):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass


# --- users ------------------------------------------------------------------------------------
async def users_latest(soak: Soak, ws: ClientConnection, name: str) -> None:
    world = soak.world
    chat: Any = world.resolve(name)
    since = await soak.offset("users", chat.id)
    mark = world.mark()
    await ws.send(json.dumps({"event": "users", "data": {"group": [name], "status": "latest"}}))
    items, done = await collect_stream(ws, "users", wait=120)
    soak.streams += 1
    ids = [int(i["user"]["id"]) for i in items]
    base = chat.expected_members(mark, joined_after=None if since is None else since.value)
    must = list(base.must)
    may = set(base.may)
    if since is not None:
        # Members who joined in the offset's own second and were not delivered then are due.
        churned = set(base.may)
        for member in chat.members_newest_first():
            if member.date == since.value and member.user.id not in since.tie_ids:
                if member.user.id in churned:
                    may.add(member.user.id)
                else:
                    must.append(member.user.id)
    cap = world.participants_cap
    if chat.members_count > cap:
        # Past Telegram's cap: a listing reaches the newest `cap` positions. Those that were
        # there throughout are due; the listing is incomplete and commits no offset.
        joins = sum(1 for c in world.churn_log[mark:] if c.chat_id == chat.id
                    and c.kind == "join")
        reach = {m.user.id for m in chat.members_newest_first()[:cap - joins]}
        present = {m.user.id for m in chat.members_newest_first()}
        must = [i for i in must if i in reach]
        may |= present - set(must)
        if done["complete"] or len(ids) != cap:
            soak.problems.append(f"users {name}: {len(ids)} listed, {done['groups']}")
        if await soak.offset("users", chat.id) is not None:
            soak.problems.append(f"users {name}: an incomplete listing committed an offset")
    elif not done["complete"]:
        soak.problems.append(f"users {name}: incomplete listing {done['groups']}")
    soak.note(f"users {name} since {since}",
              Expectation(tuple(must), frozenset(may)).check(ids, ordered_key="none"))


# --- the soak ---------------------------------------------------------------------------------
async def test_hostile_world_soak_every_group_exact_across_drops_and_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    soak = Soak(tmp_path, monkeypatch)
    daemon = await soak.start()
    started = time.monotonic()
    rounds = 0
    try:
        while rounds < 2 or time.monotonic() - started < SOAK_SECONDS:
            rounds += 1
            ws = await logged_in(daemon, soak.key)
            for i, name in enumerate(soak.chat_groups):
                if (rounds + i) % 3 == 0:
                    # A client that drops half-way; the next one resumes from the offsets.
                    await chats_latest(soak, ws, name, drop_after=150)
                    ws = await logged_in(daemon, soak.key)
                await chats_latest(soak, ws, name)
            for name in soak.user_groups:
                await users_latest(soak, ws, name)
            # A restart in the middle of a stream: the daemon stops while it sends.
            await ws.send(json.dumps({"event": "chats", "data": {
                "group": [{"name": HOLEY_GROUP, "status": ""}], "status": ""}}))
            await recv_json(ws, wait=60)  # "sending chats"
            # The client keeps reading while the daemon shuts down (a client that stops
            # reading is the shutdown's close timeout, not this test's subject).
            await asyncio.gather(soak.stop(), read_until_closed(ws))
            for _ in range(3):
                soak.world.tick()  # posts, deletes, edits, members leave and join
            daemon = await soak.start()
        # One last calm pass: everything the world has now, from the offsets, exactly.
        soak.world.faults.set(rate=0.0)
        ws = await logged_in(daemon, soak.key)
        for name in soak.chat_groups:
            await chats_latest(soak, ws, name)
        for name in soak.user_groups:
            await users_latest(soak, ws, name)
        await ws.close()
    finally:
        await soak.stop()
    assert soak.problems == [], soak.problems[:20]
    faults = soak.world.faults.log
    assert len(soak.chat_groups) == 8 and len(soak.user_groups) == 6
    assert rounds >= 2 and soak.streams >= rounds * (len(soak.chat_groups)
                                                     + len(soak.user_groups))
    assert {f.kind for f in faults} >= {"internal", "rpc_call_fail", "timeout", "flood",
                                        "drop"}, "every kind of fault was met"
