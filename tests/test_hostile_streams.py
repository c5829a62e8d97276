"""tgws's results in the hostile sandbox world, end to end, checked against the world's truth.

One test per hostile behaviour of issue 10 ("What to build", list 1). Each runs a real daemon
with `[sandbox] hostile = true`, a real websocket client, unmodified Telethon, and compares
what the client received with the world's own ground truth (tgws/sandbox/truth.py):
`chat.expected_messages(mark)` / `chat.expected_members(mark)` say what a stream that started
at `mark` must deliver exactly once and in order, and what it may deliver.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telethon.sessions import StringSession
from websockets.asyncio.client import ClientConnection

from tests.support import ask, collect_stream, expect, logged_in, make_config, open_ws
from tgws.daemon import Daemon
from tgws.sandbox.hostile import (
    BIG_GROUP,
    CHURN_GROUP,
    HOLEY_CHANNEL,
    HOLEY_GROUP,
    UPGRADED_GROUP,
)

MIGRATING_PHONE = "+919876543210"  # no account yet; lives on DC 5 (docs/sandbox.md)
OWNER_PHONE = "+15550000001"  # the demo owner's account, on DC 1 in the hostile world
# [sandbox] wire: false hands Telethon TL objects, true has it parse TL bytes (basic groups'
# faces, participants pages) as it parses Telegram's.
BOTH_MODES = pytest.mark.parametrize("wire", [False, True], ids=["objects", "wire"])


async def hostile_daemon(tmp_path: Path, **overrides: Any) -> Daemon:
    """A daemon on the hostile world with its fault plan quiet (each test asks for faults)."""
    daemon = Daemon(make_config(tmp_path, **{
        "sandbox.hostile": True, "sandbox.fault_rate": 0.0, "telegram.retry_backoff": 0.0,
        **overrides}))
    await daemon.start()
    return daemon


def world_of(daemon: Daemon) -> Any:
    assert daemon.backend is not None
    return daemon.backend.world


@contextlib.asynccontextmanager
async def hostile_session(tmp_path: Path, **overrides: Any
                          ) -> AsyncIterator[tuple[Daemon, Any, str, ClientConnection]]:
    """(daemon, its world, an API key, a logged-in websocket) on a hostile_daemon; the socket
    is closed after the block, the daemon stopped whatever happens."""
    daemon = await hostile_daemon(tmp_path, **overrides)
    try:
        key = await daemon.app.store.create_api_key("t")  # type: ignore[union-attr]
        ws = await logged_in(daemon, key)
        yield daemon, world_of(daemon), key, ws
        await ws.close()
    finally:
        await daemon.stop()


async def chats(ws: ClientConnection, name: str, *, latest: bool = False
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": name, "status": "latest" if latest else ""}], "status": ""}}))
    return await collect_stream(ws, "chats", wait=120)


async def users(ws: ClientConnection, name: str, *, latest: bool = False
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await ws.send(json.dumps({"event": "users", "data": {
        "group": [name], "status": "latest" if latest else ""}}))
    return await collect_stream(ws, "users", wait=120)


def message_ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["chat"]["id"]) for item in items]


def user_ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["user"]["id"]) for item in items]


async def test_histories_with_holes_stream_exactly_what_exists(tmp_path: Path) -> None:
    """Holes (deleted ids and ranges, one across a page edge), count != top id."""
    async with hostile_session(tmp_path) as (_, world, _, ws):
        for name in (HOLEY_GROUP, HOLEY_CHANNEL):
            chat = world.resolve(name)
            assert chat.count < chat.top_id  # holes: Telegram's count is not the top id
            mark = world.mark()
            items, done = await chats(ws, name)
            ids = message_ids(items)
            assert chat.expected_messages(mark).check(ids, ordered_key="ascending") == []
            assert done["groups"][0]["sent"] == len(ids)


async def test_deletes_and_edits_while_streaming_leave_no_gap_and_no_ghost(
        tmp_path: Path) -> None:
    """Every 3rd page served deletes ids on both sides of it and edits beyond its edges."""
    async with hostile_session(tmp_path) as (_, world, _, ws):
        chat = world.resolve(HOLEY_GROUP)
        mark = world.mark()
        items, _ = await chats(ws, HOLEY_GROUP)
        during = [c for c in world.churn_log[mark:] if c.chat_id == chat.id]
        assert {c.kind for c in during} >= {"delete", "edit"}  # it did happen mid-stream
        ids = message_ids(items)
        assert chat.expected_messages(mark).check(ids, ordered_key="ascending") == []
        # An edit made ahead of the stream arrives edited (those behind it went out before).
        edited = {i for c in during if c.kind == "edit" for i in c.msg_ids}
        texts = {int(it["chat"]["id"]): it["chat"]["text"] for it in items}
        truth = {m.id: m.text for m in chat.truth_messages()}
        assert any(texts[i] == truth[i] for i in edited & texts.keys())
        # `latest` afterwards: exactly what came since, nothing deleted comes back.
        top = max(ids)
        world.tick()
        world.tick()
        mark2 = world.mark()  # the ticks' posts are to be delivered, not merely allowed
        later, _ = await chats(ws, HOLEY_GROUP, latest=True)
        expectation = chat.expected_messages(mark2, after_id=top)
        assert expectation.must  # the ticker posted
        assert expectation.check(message_ids(later), ordered_key="ascending") == []


@BOTH_MODES
async def test_members_who_leave_and_join_mid_listing_hide_no_one(tmp_path: Path,
                                                                  wire: bool) -> None:
    """After every page served a member of that page leaves (shifting the list up one),
    every 2nd page a newcomer joins; and `latest` later misses no newcomer."""
    async with hostile_session(tmp_path, **{"sandbox.wire": wire}) as (_, world, _, ws):
        chat = world.resolve(CHURN_GROUP)
        mark = world.mark()
        items, done = await users(ws, CHURN_GROUP)
        churn = [c for c in world.churn_log[mark:] if c.chat_id == chat.id]
        assert any(c.kind in ("leave", "kick", "ban") for c in churn)
        ids = user_ids(items)
        assert chat.expected_members(mark).check(ids, ordered_key="none") == []
        assert done["complete"] is True
        # Members leave and join (the ticker, then a listing's own page hooks) before the
        # next `latest`: every member who joined after the complete listing arrives.
        newest = max(chat.member(i).date for i in ids if chat.member(i) is not None)
        for _ in range(6):
            world.tick()
        mark2 = world.mark()
        later, done2 = await users(ws, CHURN_GROUP, latest=True)
        expectation = chat.expected_members(mark2, joined_after=newest)
        joined = [c.user_id for c in world.churn_log[mark:mark2]
                  if c.chat_id == chat.id and c.kind == "join"]
        stayed = [u for u in joined if u in expectation.must]
        assert stayed  # newcomers since the listing who are still members
        assert expectation.check(user_ids(later), ordered_key="none") == []
        assert done2["complete"] is True


async def test_names_in_every_script_and_deleted_accounts_arrive_intact(
        tmp_path: Path) -> None:
    async with hostile_session(tmp_path) as (_, world, _, ws):
        chat = world.resolve(CHURN_GROUP)
        items, _ = await users(ws, CHURN_GROUP)
        got = {int(it["user"]["id"]): it["user"] for it in items}
        scripts = {"cyrillic": "Ж", "arabic": "م", "cjk": "中"}
        seen_scripts: set[str] = set()
        deleted = 0
        for uid, user in got.items():
            person = world.users[uid]
            if person.deleted:
                deleted += 1
                assert user["deleted"] is True and not user["first_name"]
                continue
            # Byte for byte, whatever the script: Cyrillic, Arabic, CJK, Greek, emoji.
            assert user["first_name"] == person.first_name
            assert user["last_name"] == person.last_name
            name = f"{person.first_name} {person.last_name or ''}"
            for script, sample in scripts.items():
                if _in_block(name, sample):
                    seen_scripts.add(script)
            if all(not ch.isalnum() for ch in person.first_name):
                seen_scripts.add("emoji")
        assert seen_scripts == {"cyrillic", "arabic", "cjk", "emoji"}
        assert deleted > 0
        assert chat is not None


def _in_block(text: str, sample: str) -> bool:
    """Whether `text` has a character in the same Unicode block (256 code points) as
    `sample`'s, or (CJK) any CJK, kana or Hangul character."""
    if sample == "中":
        return any(0x3040 <= ord(c) <= 0x9FFF or 0xAC00 <= ord(c) <= 0xD7AF for c in text)
    return any(ord(c) >> 8 == ord(sample) >> 8 for c in text)


async def test_a_group_above_the_cap_is_swept_in_every_script(tmp_path: Path) -> None:
    """biggroup12k: 12,000 members; plain paging reaches 10,000; the sweep reaches every
    member a search can find, in their own script; complete stays false (4 deleted
    accounts past the cap match no search) and `latest` commits nothing from it."""
    async with hostile_session(tmp_path, **{"telegram.member_sweep": True}) as (
            daemon, world, key, ws):
        chat = world.resolve(BIG_GROUP)
        mark = world.mark()
        items, done = await users(ws, BIG_GROUP)
        ids = user_ids(items)
        assert len(ids) == len(set(ids))
        members = chat.members_newest_first()
        cap = world.participants_cap
        unreachable = {m.user.id for m in members[cap:] if m.user.deleted}
        assert len(unreachable) == 4
        expectation = chat.expected_members(mark)
        assert set(ids) == set(expectation.must) - unreachable
        past_cap = [world.users[m.user.id] for m in members[cap:] if not m.user.deleted]
        assert any(_in_block(u.first_name, "Ж") for u in past_cap)  # reached by "и", ...
        assert done["complete"] is False
        assert await daemon.app.store.get_offset(  # type: ignore[union-attr]
            await key_id(daemon, key), "users", chat.id) is None


async def key_id(daemon: Daemon, key: str) -> int:
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(key)
    assert record is not None
    return record.id


@BOTH_MODES
async def test_an_upgraded_group_streams_both_histories_as_one(tmp_path: Path,
                                                               wire: bool) -> None:
    async with hostile_session(tmp_path, **{"sandbox.wire": wire}) as (_, world, _, ws):
        new = world.resolve(UPGRADED_GROUP)
        old = new.migrated_from
        mark = world.mark()
        items, done = await chats(ws, UPGRADED_GROUP, latest=True)
        sources = [item["chat"]["chat_id"] for item in items]
        # The old basic group first (marked -id), then the supergroup (-100...).
        n_old = sources.count(-old.id)
        assert sources == [-old.id] * n_old + [-(10**12 + new.id)] * (len(items) - n_old)
        old_ids, new_ids = message_ids(items[:n_old]), message_ids(items[n_old:])
        # The old history without its MigrateTo (the supergroup's MigrateFrom marks it).
        migrate_to = [m.id for m in old.truth_messages() if _action(old, m.id) == "migrate_to"]
        assert len(migrate_to) == 1
        old_truth = old.expected_messages(mark)
        assert old_truth.check(old_ids + migrate_to, ordered_key="ascending") == []
        assert migrate_to[0] not in old_ids
        assert new.expected_messages(mark).check(new_ids, ordered_key="ascending") == []
        assert items[n_old]["chat"]["action"]["type"] == "channel_migrate_from"
        assert done["groups"][0]["sent"] == len(items)
        # `latest` tracks both: nothing again, then only what the supergroup got since. (The
        # upgrade link is asked once per supergroup: channels.getFullChannel failing from now
        # on must not matter.)
        world.fail("GetFullChannelRequest", "CHANNEL_INVALID", times=None)
        again, _ = await chats(ws, UPGRADED_GROUP, latest=True)
        assert again == []
        world.tick()
        mark2 = world.mark()
        later, _ = await chats(ws, UPGRADED_GROUP, latest=True)
        assert new.expected_messages(mark2, after_id=max(new_ids)).check(
            message_ids(later)) == []
        assert later and all(it["chat"]["chat_id"] != -old.id for it in later)


def _action(chat: Any, msg_id: int) -> str | None:
    action = getattr(chat.message(msg_id), "action", None)
    return "migrate_to" if type(action).__name__ == "MessageActionChatMigrateTo" else None


@pytest.mark.parametrize(("phone", "dc"), [(MIGRATING_PHONE, 5), (OWNER_PHONE, 1)],
                         ids=["user-migrate", "phone-migrate"])
async def test_a_phone_on_another_dc_logs_in_and_the_session_stays_there(
        tmp_path: Path, phone: str, dc: int) -> None:
    """The daemon's first connection is to DC 2. +919876543210 has no account yet: its code
    comes on any DC and auth.signIn answers USER_MIGRATE_5; the owner's account lives on
    DC 1: auth.sendCode answers PHONE_MIGRATE_1. Either way Telethon moves there for real
    (a new connection and auth key), the stored session names that DC, and a restarted
    daemon streams through it without migrating again."""
    daemon = await hostile_daemon(tmp_path)
    try:
        world = world_of(daemon)
        assert world.dcs.of_phone(phone.lstrip("+")) == dc != 2
        key = await daemon.app.store.create_api_key("t")  # type: ignore[union-attr]
        ws = await logged_in(daemon, key, phone=phone)
        saved = await daemon.app.store.load_session(  # type: ignore[union-attr]
            await key_id(daemon, key))
        assert saved is not None and StringSession(saved).dc_id == dc
        user = world.user_for_key(StringSession(saved).auth_key.key)
        assert user is not None and user.phone == phone.lstrip("+")  # signed in as that phone
        await ws.close()
    finally:
        await daemon.stop()
    again = await hostile_daemon(tmp_path)  # same db file, a new world of the same seed
    try:
        ws = await open_ws(again)
        expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
               "session already exists, call 'users'.")
        world = world_of(again)
        mark = world.mark()
        items, _ = await chats(ws, HOLEY_CHANNEL)
        chat = world.resolve(HOLEY_CHANNEL)
        assert chat.expected_messages(mark).check(message_ids(items)) == []
        saved = await again.app.store.load_session(  # type: ignore[union-attr]
            await key_id(again, key))
        assert saved is not None and StringSession(saved).dc_id == dc
        await ws.close()
    finally:
        await again.stop()


async def test_5xx_drops_and_floods_mid_stream_are_retried_without_gap_or_duplicate(
        tmp_path: Path) -> None:
    async with hostile_session(tmp_path, **{"telegram.request_retries": 1}) as (
            _, world, _, ws):
        faults = world.faults
        # Past Telethon's own retry (request_retries = 1): tgws's stream retry must resume.
        faults.script("GetHistory", "internal", after=3, times=2)
        faults.script("GetHistory", "drop", after=8)
        faults.script("GetHistory", "flood", after=12)
        faults.script("GetParticipants", "rpc_call_fail", after=1, times=2)
        faults.script("GetParticipants", "drop", after=3)
        for name in (HOLEY_GROUP,):
            chat = world.resolve(name)
            mark = world.mark()
            items, _ = await chats(ws, name)
            assert chat.expected_messages(mark).check(message_ids(items)) == []
        chat = world.resolve(CHURN_GROUP)
        mark = world.mark()
        items, _ = await users(ws, CHURN_GROUP)
        assert chat.expected_members(mark).check(user_ids(items), ordered_key="none") == []
        kinds = {d.kind for d in faults.log}
        assert kinds >= {"internal", "drop", "flood", "rpc_call_fail"}


async def test_a_flood_wait_while_reconnecting_is_waited_not_a_telegram_error(
        tmp_path: Path) -> None:
    """Telethon's connect() asks updates.getDifference for a session that has update state;
    Telegram may answer it FLOOD_WAIT like any call (the soak met it after a restart)."""
    daemon = await hostile_daemon(tmp_path)
    try:
        key = await daemon.app.store.create_api_key("t")  # type: ignore[union-attr]
        ws = await logged_in(daemon, key)
        await chats(ws, "testgroup00002")
        await ws.close()
    finally:
        await daemon.stop()
    again = await hostile_daemon(tmp_path)
    try:
        world = world_of(again)
        world.faults.script("GetDifference", "flood")
        ws = await open_ws(again)
        expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
               "session already exists, call 'users'.")
        chat = world.resolve(HOLEY_CHANNEL)
        mark = world.mark()
        items, _ = await chats(ws, HOLEY_CHANNEL)
        assert chat.expected_messages(mark).check(message_ids(items)) == []
        await ws.close()
    finally:
        await again.stop()
