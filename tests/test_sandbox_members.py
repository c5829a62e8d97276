"""channels.getParticipants in the sandbox through Telethon's iter_participants: order, join
dates, roles, search, the 10,000 cap, hidden member lists and broadcast channels."""

from __future__ import annotations

import string
from typing import Any

import pytest
from telethon import TelegramClient, errors, functions, types
from telethon.sessions import StringSession

from tgws.sandbox import SandboxChat, SandboxUser, World, sandbox_client


@pytest.fixture(params=[False, True], ids=["objects", "wire"])
def wire(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def as_user(world: World, user: SandboxUser, **kw: Any) -> Any:
    kw.setdefault("flood_sleep_threshold", 0)
    kw.setdefault("receive_updates", False)
    return sandbox_client(world, StringSession(world.session_string(user)), **kw)


def small_group(wire: bool) -> tuple[World, SandboxChat, dict[str, SandboxUser]]:
    world = World(seed=11, wire=wire)
    people = {
        "owner": world.user("owner_olga", first_name="Olga", last_name="Owner"),
        "admin": world.user("admin_adam", first_name="Adam", last_name="Admin"),
        "me": world.user("me_myself", first_name="Mina", phone="+15550200"),
        "alice": world.user("alice_w", first_name="Alice", last_name="Wonder"),
        "bot": world.user("helper_bot", first_name="Helper", bot=True),
        "outsider": world.user("outsider", first_name="Otto", phone="+15550201"),
    }
    group = world.megagroup("membersgroup", title="Members", creator=people["owner"])
    group.join(people["admin"], role="admin", inviter=people["owner"], rank="mod")
    group.join(people["me"], inviter=people["admin"])
    group.join(people["alice"])
    group.join(people["bot"], inviter=people["owner"])
    group.populate(20)
    return world, group, people


async def everyone(client: TelegramClient, entity: Any, **kw: Any) -> list[Any]:
    return [user async for user in client.iter_participants(entity, **kw)]


async def test_iter_participants_lists_everyone_newest_first(wire: bool) -> None:
    world, group, people = small_group(wire)
    async with as_user(world, people["me"]) as client:
        entity = await client.get_entity("membersgroup")
        users = await everyone(client, entity)
        total = (await client.get_participants(entity, limit=0)).total
    assert total == group.members_count == 25
    assert [u.id for u in users] == [m.user.id for m in group.members_newest_first()]
    dates = [u.participant.date for u in users if hasattr(u.participant, "date")]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates)
    roles = {u.id: type(u.participant) for u in users}
    assert roles[people["owner"].id] is types.ChannelParticipantCreator
    assert roles[people["admin"].id] is types.ChannelParticipantAdmin
    assert roles[people["me"].id] is types.ChannelParticipantSelf
    assert roles[people["alice"].id] is types.ChannelParticipant
    me = next(u for u in users if u.id == people["me"].id)
    assert me.participant.inviter_id == people["admin"].id and me.is_self
    admin = next(u for u in users if u.id == people["admin"].id)
    assert admin.participant.rank == "mod" and admin.participant.promoted_by == people["owner"].id
    assert next(u for u in users if u.id == people["bot"].id).bot


async def test_search_and_role_filters(wire: bool) -> None:
    world, _, people = small_group(wire)
    async with as_user(world, people["me"]) as client:
        entity = await client.get_entity("membersgroup")
        found = await everyone(client, entity, search="ALI")
        assert people["alice"].id in {u.id for u in found}
        assert all(any(w.startswith("ali") for w in world.users[u.id].search_words())
                   for u in found)
        by_username = await everyone(client, entity, search="owner_o")
        assert [u.id for u in by_username] == [people["owner"].id]
        assert await everyone(client, entity, search="zzzz") == []
        admins = await everyone(client, entity, filter=types.ChannelParticipantsAdmins)
        assert [u.id for u in admins] == [people["owner"].id, people["admin"].id]
        bots = await everyone(client, entity, filter=types.ChannelParticipantsBots)
        assert [u.id for u in bots] == [people["bot"].id]


async def test_plain_paging_stops_at_the_cap_and_a_prefix_sweep_finds_everyone() -> None:
    world = World(seed=12)
    reader = world.user("reader", phone="+15550300")
    group = world.megagroup("hugegroup")
    group.populate(12_000)
    async with as_user(world, reader) as client:
        entity = await client.get_entity("hugegroup")
        plain = await everyone(client, entity)
        assert len(plain) == 10_000
        assert [u.id for u in plain] == [m.user.id for m in group.members_newest_first()[:10_000]]
        past = await client(functions.channels.GetParticipantsRequest(
            entity, types.ChannelParticipantsRecent(), offset=10_000, limit=200, hash=0))
        assert past.count == 12_000 and past.participants == []
        swept: set[int] = set()
        for letter in string.ascii_lowercase:
            swept.update(u.id for u in await everyone(client, entity, search=letter))
    assert swept == {m.user.id for m in group.members_newest_first()}


async def test_hidden_members_show_non_admins_only_the_admins(wire: bool) -> None:
    world, group, people = small_group(wire)
    group.hide_members()
    async with as_user(world, people["me"]) as client:
        entity = await client.get_entity("membersgroup")
        seen = await everyone(client, entity)
        full = await client(functions.channels.GetFullChannelRequest(entity))
        page = await client(functions.channels.GetParticipantsRequest(
            entity, types.ChannelParticipantsSearch(""), offset=0, limit=200, hash=0))
    assert {u.id for u in seen} == {people["owner"].id, people["admin"].id}
    assert page.count == 2
    assert full.full_chat.participants_hidden and not full.full_chat.can_view_participants
    assert full.full_chat.participants_count == 25
    async with as_user(world, people["admin"]) as client:
        entity = await client.get_entity("membersgroup")
        assert len(await everyone(client, entity)) == 25


async def test_broadcast_subscribers_are_for_admins_only(wire: bool) -> None:
    world = World(seed=13, wire=wire)
    owner = world.user("chan_owner", first_name="Owner")
    reader = world.user("reader", phone="+15550400")
    channel = world.channel("broadcastonly", creator=owner)
    channel.populate(30)
    channel.join(reader)
    async with as_user(world, reader) as client:
        entity = await client.get_entity("broadcastonly")
        with pytest.raises(errors.ChatAdminRequiredError):
            await everyone(client, entity)
        assert (await client.get_participants(entity, limit=0)).total == 32
    async with as_user(world, owner) as client:
        entity = await client.get_entity("broadcastonly")
        assert entity.creator and entity.admin_rights.post_messages
        assert len(await everyone(client, entity)) == 32


async def test_new_members_show_up_first(wire: bool) -> None:
    world, group, people = small_group(wire)
    async with as_user(world, people["me"]) as client:
        entity = await client.get_entity("membersgroup")
        newcomer = world.user("newcomer", first_name="New")
        group.join(newcomer, date=world.now())
        first = await client.get_participants(entity, limit=1)
        assert first[0].id == newcomer.id and first.total == 26


async def test_short_participant_pages_still_deliver_everyone(wire: bool) -> None:
    world = World(seed=14, wire=wire)
    reader = world.user("reader", phone="+15550500")
    group = world.megagroup("pagedgroup")
    group.populate(1500)
    world.short_pages = True
    async with as_user(world, reader) as client:
        entity = await client.get_entity("pagedgroup")
        sizes = [len((await client(functions.channels.GetParticipantsRequest(
            entity, types.ChannelParticipantsRecent(), offset=o, limit=200, hash=0)))
            .participants) for o in range(0, 1400, 200)]
        assert min(sizes) < 200
        users = await everyone(client, entity)
    assert [u.id for u in users] == [m.user.id for m in group.members_newest_first()]


async def test_get_participant_and_full_user(wire: bool) -> None:
    world, _, people = small_group(wire)
    async with as_user(world, people["me"]) as client:
        entity = await client.get_entity("membersgroup")
        alice = await client.get_input_entity("alice_w")
        got = await client(functions.channels.GetParticipantRequest(entity, alice))
        assert got.participant.user_id == people["alice"].id
        outsider = await client.get_input_entity("outsider")
        with pytest.raises(errors.UserNotParticipantError):
            await client(functions.channels.GetParticipantRequest(entity, outsider))
        full = await client(functions.users.GetFullUserRequest(alice))
        assert full.full_user.id == people["alice"].id
