"""The hostile sandbox world's content, seen through unmodified Telethon (objects and wire mode):
histories with holes, deletions and edits mid-stream, members churning mid-listing, search in
every script, a group beyond the listing cap, a basic group upgraded to a supergroup, ground
truth, determinism per seed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telethon import TelegramClient, errors, functions, types
from telethon.sessions import StringSession

from tgws.sandbox import SandboxChat, SandboxUser, World, sandbox_client
from tgws.sandbox.demo import CHANNEL, GROUP_1, GROUP_2, OWNER_PHONE, PASSWORD_PHONE
from tgws.sandbox.history import select_history
from tgws.sandbox.hostile import (
    BASIC_TITLE,
    BIG_GROUP,
    BIG_MEMBERS,
    CHURN_GROUP,
    HOLEY_GROUP,
    HOSTILE_CHATS,
    UPGRADED_GROUP,
    build_hostile_world,
    hostile_chat,
)


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@contextlib.asynccontextmanager
async def as_user(world: World, user: SandboxUser, wire: bool = False
                  ) -> AsyncIterator[TelegramClient]:
    async with sandbox_client(world, StringSession(world.session_string(user)), wire=wire,
                              flood_sleep_threshold=0, receive_updates=False) as client:
        yield client


def reader_of(world: World) -> SandboxUser:
    """A logged-in account that is no member of anything (what a tgws user usually is)."""
    return world.user("hostile_reader", phone="+15550109999")


def holey_world(wire: bool) -> tuple[World, SandboxChat, SandboxUser]:
    """250 messages with known holes and no hooks: the exact expectations are easy to state."""
    world = World(seed=4, wire=wire)
    alice = world.user("alice", first_name="Alice")
    group = world.megagroup("holes", creator=alice)
    for i in range(1, 251):
        group.post(alice, f"m{i}")
    group.delete(250, 1, 7, 99, 100, 101)  # the newest, the first, singles, across a page edge
    group.delete_range(150, 199)  # half a page
    return world, group, reader_of(world)


async def ids_of(client: TelegramClient, entity: Any, **kw: Any) -> list[int]:
    return [m.id async for m in client.iter_messages(entity, wait_time=0, **kw)]


# --- histories with holes ----------------------------------------------------------------------

async def test_holes_are_skipped_exactly_and_count_is_not_the_top_id(wire: bool) -> None:
    world, group, reader = holey_world(wire)
    gone = {1, 7, 99, 100, 101, 250, *range(150, 200)}
    expected = [i for i in range(249, 1, -1) if i not in gone]
    assert group.truth_ids() == expected[::-1]
    async with as_user(world, reader, wire) as client:
        assert await ids_of(client, "holes") == expected
        assert await ids_of(client, "holes", reverse=True) == expected[::-1]
        total = (await client.get_messages("holes", limit=0)).total
        assert (total, group.top_id) == (250 - len(gone), 250)
        entity = await client.get_input_entity("holes")
        page = await client(functions.messages.GetHistoryRequest(
            peer=entity, offset_id=0, offset_date=None, add_offset=0, limit=100, max_id=0,
            min_id=0, hash=0))
        # A full page of existing messages: the holes do not shorten it.
        assert [m.id for m in page.messages] == expected[:100] and page.count == total
        by_id = await client.get_messages("holes", ids=[7, 8, 150, 250, 251])
    assert [m is None for m in by_id] == [True, False, True, True, True]


async def test_deletions_and_edits_mid_stream_show_as_telegram_would(wire: bool) -> None:
    world, group, reader = holey_world(wire)
    # Page 1 is 249..200 and 149..97 (100 existing ids). After it, delete ids the next page
    # would serve and one already delivered, and edit one that is still ahead.
    group.after_history_pages(1, delete=[50, 51, 52, 248], edit={30: "changed"})
    mark = world.mark()
    async with as_user(world, reader, wire) as client:
        messages = [m async for m in client.iter_messages("holes", wait_time=0, limit=None)]
    delivered = [m.id for m in messages]
    assert 248 in delivered  # delivered on page 1, deleted afterwards: it was shown
    assert not {50, 51, 52} & set(delivered)  # deleted before their page: never shown
    assert next(m for m in messages if m.id == 30).message == "changed"
    expectation = group.expected_messages(mark)
    assert expectation.check(delivered, ordered_key="descending") == []
    assert 248 in expectation.may and 248 not in expectation.must
    edits = [c for c in world.churn_log[mark:] if c.kind == "edit"]
    assert [(c.msg_ids, c.history_pages) for c in edits] == [((30,), 1)]
    truth = {t.id: t for t in group.truth_messages()}
    assert truth[30].text == "changed" and truth[30].edit_date is not None
    assert 50 not in truth and 248 not in truth


async def test_the_hostile_holey_group_streams_against_its_ground_truth(wire: bool) -> None:
    world = build_hostile_world(seed=2)
    world.wire = wire
    group = hostile_chat(world, HOLEY_GROUP)
    assert group.count < group.top_id
    mark = world.mark()
    async with as_user(world, reader_of(world), wire) as client:
        delivered = await ids_of(client, HOLEY_GROUP, limit=None)
    mid_stream = [c for c in world.churn_log[mark:] if c.chat_id == group.id]
    assert {c.kind for c in mid_stream} == {"delete", "edit"}  # the page hook really ran
    assert group.expected_messages(mark).check(delivered, ordered_key="descending") == []


# --- members churning while listed -------------------------------------------------------------

def churn_world(wire: bool) -> tuple[World, SandboxChat, SandboxUser]:
    world = World(seed=9, wire=wire)
    owner = world.user("owner_o", first_name="Owner")
    group = world.megagroup("churning", creator=owner)
    group.populate(450)
    return world, group, reader_of(world)


async def naive_offset_pager(client: TelegramClient, entity: Any) -> list[int]:
    """What a client does that trusts offsets: offset += len(page) until a page is empty."""
    seen: list[int] = []
    offset = 0
    while True:
        page = await client(functions.channels.GetParticipantsRequest(
            entity, types.ChannelParticipantsRecent(), offset=offset, limit=200, hash=0))
        if not page.participants:
            return seen
        seen.extend(p.user_id for p in page.participants)
        offset += len(page.participants)


async def test_a_departure_between_pages_shifts_the_list_and_a_naive_pager_misses_someone(
        wire: bool) -> None:
    world, group, reader = churn_world(wire)
    before = group.truth_members()  # newest first: positions 0..450
    leaver = world.users[before[10]]  # on page 1
    group.after_member_pages(1, leave=[leaver], how="kicked")
    mark = world.mark()
    async with as_user(world, reader, wire) as client:
        entity = await client.get_input_entity("churning")
        seen = await naive_offset_pager(client, entity)
    # Everyone after the leaver moved up one: position 200 (first of page 2) slid to 199,
    # which page 1 had already covered. That member is still here and was never listed.
    missed = before[200]
    assert missed not in seen and missed in group.truth_members()
    assert group.expected_members(mark).check(seen, ordered_key="none") == [
        f"missing {[missed]}"]
    assert [(c.kind, c.user_id, c.member_pages) for c in world.churn_log[mark:]] == [
        ("kick", leaver.id, 1)]


async def test_a_join_between_pages_repeats_someone_and_telethon_hides_it(wire: bool) -> None:
    world, group, reader = churn_world(wire)
    before = group.truth_members()
    newcomer = world.user("late_comer", first_name="Late")
    group.after_member_pages(1, join=[newcomer])
    async with as_user(world, reader, wire) as client:
        entity = await client.get_input_entity("churning")
        raw = await naive_offset_pager(client, entity)
    assert raw.count(before[199]) == 2  # pushed from page 1's end to page 2's start
    assert newcomer.id not in raw  # joined at position 0, behind the pager


async def test_banned_members_are_listed_as_kicked_for_admins_only(wire: bool) -> None:
    world, group, reader = churn_world(wire)
    victim = world.users[group.truth_members()[3]]
    group.leave(victim, how="banned")
    owner = group.creator
    assert owner is not None
    async with as_user(world, owner, wire) as client:
        kicked = [u async for u in client.iter_participants(
            "churning", filter=types.ChannelParticipantsKicked)]
        single = await client(functions.channels.GetParticipantRequest(
            "churning", await client.get_input_entity(victim.id)))
    assert [u.id for u in kicked] == [victim.id]
    assert isinstance(kicked[0].participant, types.ChannelParticipantBanned)
    assert isinstance(single.participant, types.ChannelParticipantBanned)
    async with as_user(world, reader, wire) as client:
        with pytest.raises(errors.ChatAdminRequiredError):
            await client.get_participants("churning", filter=types.ChannelParticipantsKicked)
        with pytest.raises(errors.UserNotParticipantError):
            await client(functions.channels.GetParticipantRequest(
                "churning", types.InputUser(victim.id, victim.access_hash)))


async def test_the_hostile_churn_group_loses_members_to_telethons_offset_paging() -> None:
    world = build_hostile_world(seed=3)
    group = hostile_chat(world, CHURN_GROUP)
    mark = world.mark()
    async with as_user(world, reader_of(world)) as client:
        listed = [u.id async for u in client.iter_participants(CHURN_GROUP)]
    churn = [c for c in world.churn_log[mark:] if c.chat_id == group.id]
    assert {"join"} < {c.kind for c in churn} and any(c.kind in ("leave", "kick", "ban")
                                                        for c in churn)
    problems = group.expected_members(mark).check(listed, ordered_key="none")
    assert problems and problems[0].startswith("missing")  # what tgws must repair


# --- names in every script and search ----------------------------------------------------------

def words_of(user: SandboxUser) -> list[str]:
    """Independent of users.py: what Telegram matches a search against."""
    if user.deleted:
        return []
    words = f"{user.first_name} {user.last_name or ''}".split()
    return [w.casefold() for w in [*words, *([user.username] if user.username else [])]]


@pytest.mark.parametrize("query", ["Ив", "ив", "ИВАН", "Пет", "محم", "حسن", "田", "太郎", "김",
                                   "민", "νίκ", "ΠΑΠ", "ivan_", "🦊"])
async def test_search_finds_word_prefixes_in_their_own_script(query: str) -> None:
    world = build_hostile_world(seed=1)
    group = hostile_chat(world, CHURN_GROUP)
    want = {m.user.id for m in group.members_newest_first()
            if any(w.startswith(query.casefold()) for w in words_of(m.user))}
    assert want, f"the hostile world should have someone matching {query!r}"
    async with as_user(world, reader_of(world)) as client:
        entity = await client.get_input_entity(CHURN_GROUP)
        page = await client(functions.channels.GetParticipantsRequest(
            entity, types.ChannelParticipantsSearch(query), offset=0, limit=200, hash=0))
    assert {p.user_id for p in page.participants} == want and page.count == len(want)


async def test_deleted_accounts_have_no_names_and_are_never_found(wire: bool) -> None:
    world = build_hostile_world(seed=1)
    world.wire = wire
    group = hostile_chat(world, CHURN_GROUP)
    deleted = [m.user.id for m in group.members_newest_first() if m.user.deleted]
    assert len(deleted) >= 10
    async with as_user(world, reader_of(world), wire) as client:
        everyone = {u.id: u async for u in client.iter_participants(CHURN_GROUP)}
        found = set()
        for letter in ("u", "d", "a", "e"):
            found |= {u.id async for u in client.iter_participants(CHURN_GROUP, search=letter)}
    for user_id in deleted[:3]:
        user = everyone[user_id]
        assert user.deleted and user.first_name is None and user.last_name is None
    assert not found & set(deleted)


async def test_search_in_a_group_beyond_the_cap_reaches_members_a_listing_cannot() -> None:
    world = build_hostile_world(seed=1)
    group = hostile_chat(world, BIG_GROUP)
    oldest = [m.user for m in group.members_newest_first()[10_000:] if not m.user.deleted]
    cyrillic = next(u for u in oldest if u.first_name[0] in "ИМАОДНСЕЮЁ")
    query = cyrillic.first_name[:2].lower()
    async with as_user(world, reader_of(world)) as client:
        listed = {u.id async for u in client.iter_participants(BIG_GROUP)}
        assert len(listed) == 10_000 and cyrillic.id not in listed
        found = [u async for u in client.iter_participants(BIG_GROUP, search=query)]
        total = (await client.get_participants(BIG_GROUP, limit=0)).total
    assert total == BIG_MEMBERS
    want = {m.user.id for m in group.members_newest_first()
            if any(w.startswith(query) for w in words_of(m.user))}
    assert {u.id for u in found} == want and cyrillic.id in want


# --- basic group upgraded to a supergroup ------------------------------------------------------

async def test_upgraded_group_reads_as_one_history_across_both_peers(wire: bool) -> None:
    world = build_hostile_world(seed=1)
    world.wire = wire
    new = hostile_chat(world, UPGRADED_GROUP)
    old = new.migrated_from
    assert old is not None and old.basic
    async with as_user(world, reader_of(world), wire) as client:
        channel = await client.get_entity(UPGRADED_GROUP)
        full = await client(functions.channels.GetFullChannelRequest(channel))
        new_history = [m async for m in client.iter_messages(channel, wait_time=0)]
        chat_id = full.full_chat.migrated_from_chat_id
        old_entity = await client.get_entity(types.PeerChat(chat_id))
        old_history = [m async for m in client.iter_messages(old_entity, wait_time=0)]
        old_full = await client(functions.messages.GetFullChatRequest(chat_id))
        participants = await client.get_participants(old_entity)
    assert chat_id == old.id and full.full_chat.migrated_from_max_id == old.top_id
    assert isinstance(old_entity, types.Chat) and old_entity.title == BASIC_TITLE
    assert old_entity.migrated_to.channel_id == channel.id and old_entity.deactivated
    assert [m.id for m in new_history] == new.truth_ids()[::-1]
    assert isinstance(new_history[-1].action, types.MessageActionChannelMigrateFrom)
    assert new_history[-1].action.chat_id == old.id and new_history[-1].id == 1
    assert [m.id for m in old_history] == old.truth_ids()[::-1]
    assert isinstance(old_history[0].action, types.MessageActionChatMigrateTo)
    assert old_history[0].action.channel_id == channel.id
    assert all(isinstance(m.peer_id, types.PeerChat) for m in old_history)
    assert [m.message for m in old_history[1:4]] == [
        old.message_text(i) for i in old.truth_ids()[::-1][1:4]]
    assert old_full.full_chat.id == old.id
    assert {u.id for u in participants} == set(old.truth_members())


async def test_a_plain_basic_group_pages_its_history_with_slices() -> None:
    world = World(seed=5)
    owner = world.user("owner_o", first_name="Owner")
    reader = reader_of(world)
    chat = world.basic_group("Little chat", creator=owner)
    chat.join(reader)
    for i in range(1, 260):
        chat.post(owner, f"m{i}")
    chat.delete_range(10, 19)
    async with as_user(world, reader) as client:
        entity = await client.get_entity(types.PeerChat(chat.id))
        ids = await ids_of(client, entity)
        assert ids == chat.truth_ids()[::-1] and len(ids) == 249
        with pytest.raises(errors.ChannelInvalidError):
            await client(functions.channels.GetFullChannelRequest(
                types.InputChannel(chat.id, chat.access_hash)))
    assert isinstance(entity, types.Chat) and not entity.deactivated


# --- the demo's logins and chats, determinism, the living world --------------------------------

async def test_hostile_world_keeps_the_demo_chats_and_logins() -> None:
    world = build_hostile_world(seed=0)
    for name in (GROUP_1, GROUP_2, CHANNEL, *HOSTILE_CHATS):
        assert isinstance(world.resolve(name), SandboxChat)
    assert world.login_code == "12345"
    tess = world.by_phone(PASSWORD_PHONE)
    assert tess is not None and tess.password == "hunter2"
    async with as_user(world, reader_of(world)) as client:
        assert len(await ids_of(client, GROUP_2)) == 120


def fingerprint(world: World) -> list[Any]:
    return [(c.id, c.username, c.title, c.truth_ids(), c.truth_members(),
             [t.text for t in c.truth_messages()[-30:]])
            for c in world.chats.values()] + [
        (u.id, u.first_name, u.last_name, u.username, u.deleted) for u in world.users.values()]


def test_the_hostile_world_is_deterministic_per_seed_and_ticks_alike() -> None:
    a, b, other = build_hostile_world(7), build_hostile_world(7), build_hostile_world(8)
    assert fingerprint(a) == fingerprint(b) and fingerprint(a) != fingerprint(other)
    a.clock = b.clock = lambda: float(a.epoch + 3600)  # the same seed: the same epoch
    mark = a.mark()
    for _ in range(9):
        a.tick()
        b.tick()
    assert a.churn_log == b.churn_log and fingerprint(a) == fingerprint(b)
    kinds = {c.kind for c in a.churn_log[mark:]}
    assert {"post", "delete", "edit", "join", "leave", "kick", "ban"} <= kinds


def test_default_demo_world_has_no_holes_or_churn() -> None:
    from tgws.sandbox import build_demo_world
    world = build_demo_world(0)
    assert all(c.count == c.top_id for c in world.chats.values())
    assert not any(c.kind in ("delete", "leave", "kick", "ban") for c in world.churn_log)
    assert world.resolve(HOLEY_GROUP) is None and world.by_phone(OWNER_PHONE) is not None


def test_expectations_name_missing_duplicate_unexpected_and_disorder() -> None:
    world, group, _ = holey_world(False)
    mark = world.mark()
    group.delete(5)
    newcomer = group.post(group.creator, "late")  # id 251
    expectation = group.expected_messages(mark)
    assert 5 in expectation.may and 251 in expectation.may and 5 not in expectation.must
    good = [i for i in group.truth_ids() if i != 251]
    assert expectation.check(good) == [] and expectation.check([*good, 251]) == []
    assert expectation.check([*good, 5]) == ["out of order"]  # 5 is allowed, but not there
    assert expectation.check(sorted([*good, 7])) == ["unexpected 7"]  # gone before the mark
    assert expectation.check([*good, good[-1]]) == [f"duplicate {good[-1]}"]
    assert expectation.check(good[1:]) == [f"missing {[good[0]]}"]
    latest = group.expected_messages(mark, after_id=240)
    assert latest.must == tuple(i for i in good if i > 240) and latest.may == {newcomer.id}
    members = group.truth_members()
    late = world.user("late_member", first_name="Late")
    joined = group.join(late, date=world.epoch + 10)
    by_date = group.expected_members(mark, joined_after=joined.date - 1)
    assert by_date.must == () and by_date.may == {late.id}
    assert group.expected_members(mark).must == tuple(members)


async def test_deletions_ahead_of_an_upward_stream_are_skipped_too(wire: bool) -> None:
    world, group, reader = holey_world(wire)
    # reverse=True pages upwards from id 1: page 1 is 2..~103; then ids ahead of it go away.
    group.after_history_pages(1, delete=[120, 121, 3], edit={130: "changed"})
    mark = world.mark()
    async with as_user(world, reader, wire) as client:
        messages = [m async for m in client.iter_messages("holes", reverse=True, wait_time=0)]
    delivered = [m.id for m in messages]
    assert 3 in delivered and not {120, 121} & set(delivered)
    assert next(m for m in messages if m.id == 130).message == "changed"
    assert group.expected_messages(mark).check(delivered) == []


async def test_what_the_hostile_ticker_changes_reaches_telethon() -> None:
    world = build_hostile_world(seed=4)
    world.clock = lambda: float(world.epoch + 7200)
    group = hostile_chat(world, HOLEY_GROUP)
    mark = world.mark()
    for _ in range(6):
        world.tick()
    changes = [c for c in world.churn_log[mark:] if c.chat_id == group.id]
    deleted = [i for c in changes if c.kind == "delete" for i in c.msg_ids]
    edited = {c.msg_ids[0]: c.text for c in changes if c.kind == "edit"}
    assert len(deleted) == 3 and len(edited) == 2
    async with as_user(world, reader_of(world)) as client:
        by_id = await client.get_messages(HOLEY_GROUP, ids=[*deleted, *edited])
    assert by_id[: len(deleted)] == [None] * len(deleted)
    assert [m and m.message for m in by_id[len(deleted):]] == [
        edited[i] if group.exists(i) else None for i in edited]


async def test_an_edited_lazy_message_keeps_its_author_and_media(wire: bool) -> None:
    world = World(seed=6, wire=wire)
    owner = world.user("owner_o", first_name="Owner")
    group = world.megagroup("lazyedits", creator=owner)
    group.populate(5)
    group.history(300)
    reader = reader_of(world)
    async with as_user(world, reader, wire) as client:
        before = {m.id: m async for m in client.iter_messages("lazyedits", wait_time=0)}
        photo_id = next(i for i, m in sorted(before.items()) if m.photo is not None)
        group.edit(photo_id, "new caption")
        after = (await client.get_messages("lazyedits", ids=[photo_id]))[0]
    assert after.message == "new caption" and after.edit_date is not None
    assert after.photo.id == before[photo_id].photo.id
    assert after.sender_id == before[photo_id].sender_id
    assert before[photo_id].edit_date is None


@settings(max_examples=150, deadline=None)
@given(top=st.integers(1, 400), deleted=st.sets(st.integers(1, 400), max_size=200),
       offset_id=st.integers(0, 450), add_offset=st.integers(-120, 120),
       limit=st.integers(0, 120), min_id=st.integers(0, 50), max_id=st.integers(0, 450))
def test_get_history_windows_match_a_brute_force_model(
        top: int, deleted: set[int], offset_id: int, add_offset: int, limit: int, min_id: int,
        max_id: int) -> None:
    world = World(seed=1)
    alice = world.user("alice", first_name="Alice")
    group = world.megagroup("model", creator=alice)
    for i in range(top):
        group.post(alice, f"m{i + 1}")
    group.delete(*(i for i in deleted if i <= top))
    existing = [i for i in range(top, 0, -1) if i not in deleted]  # newest first
    position = sum(1 for i in existing if i >= offset_id) if offset_id > 0 else 0
    start = max(position + add_offset, 0)
    window = existing[start:max(position + add_offset + min(limit, 100), 0)]
    want = [i for i in window if i > min_id and (max_id <= 0 or i < max_id)]
    got = select_history(group, offset_id=offset_id, offset_date=0, add_offset=add_offset,
                         limit=limit, max_id=max_id, min_id=min_id, short=False)
    assert got == want and group.count == len(existing)
