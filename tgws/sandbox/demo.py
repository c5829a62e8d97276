"""The fixed demo world behind `tgws demo`: three chats, deterministic for a seed.

- testgroup00001: megagroup, 250 members, 1,000 messages (replies, forwards, albums, media
  summaries, edits, pins and a few service messages);
- testgroup00002: megagroup, 40 members, 120 messages;
- UnderWorld4444: broadcast channel, 300 posts with views;
- any well-formed phone logs in with code 12345 (an account is made on the fly);
  +19995550002 also needs the two-step password "hunter2"; +15550000001 is the creator of all
  three chats (an admin's view: hidden lists, channel subscribers);
- world.tick() (or tick(world)): one new message in each chat, and on every fifth tick a new
  member joins testgroup00001. Built-in dates lie in the past (before the seed's epoch) and are
  strictly increasing, for members and messages alike; what ticks add is dated "now".
"""

from __future__ import annotations

import random

from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.derive import mix64
from tgws.sandbox.users import SandboxUser
from tgws.sandbox.world import World

GROUP_1, GROUP_2, CHANNEL = "testgroup00001", "testgroup00002", "UnderWorld4444"
GROUP_1_MEMBERS, GROUP_1_MESSAGES = 250, 1000
GROUP_2_MEMBERS, GROUP_2_MESSAGES = 40, 120
CHANNEL_POSTS = 300
PASSWORD_PHONE, PASSWORD = "+19995550002", "hunter2"
OWNER_PHONE = "+15550000001"

_DAY = 86_400
_MEDIA = ("photo", "photo", "photo", "document", "video", "voice", "audio", "gif", "geo",
          "contact", "poll", "webpage")
_LINES = (
    "Good morning everyone", "Has anyone tried the new release?", "Meeting moved to 3pm",
    "Thanks, that fixed it!", "Can someone review my PR?", "Lunch at the usual place?",
    "The server is back up", "I'll be late today", "Great idea 👍", "See the attached file",
    "Who's coming on Friday?", "Привет всем!", "Das Wetter ist heute schön", "¿Alguien sabe?",
    "Happy birthday! 🎂", "Link in the description", "Reminder: update your passwords",
    "lol", "ok", "Sounds good to me",
)


def build_demo_world(seed: int = 0) -> World:
    """The demo world for `seed`; the same seed always builds the same world."""
    world = World(seed=seed)
    rng = random.Random(seed)
    epoch = world.epoch
    owner = world.user("sandbox_owner", first_name="Sandra", last_name="Owner",
                       phone=OWNER_PHONE, premium=True, verified=True, status="online")
    tess = world.user("tess_twofactor", first_name="Tess", last_name="Twofactor",
                      phone=PASSWORD_PHONE, password=PASSWORD, status="offline")
    mods = [world.user(f"moderator_{name.lower()}", first_name=name, last_name="Mod")
            for name in ("Max", "Mia")]
    bots = [world.user(name, first_name=title, bot=True)
            for name, title in (("sandbox_helper_bot", "Helper"), ("sandbox_stats_bot", "Stats"))]
    crowd = [world.synthetic_user() for _ in range(300)]
    crowd[3].verified = crowd[5].scam = crowd[8].fake = True
    crowd[13] = world.user(first_name="Deleted Account", deleted=True)

    group1 = world.megagroup(GROUP_1, title="Test group 1", creator=owner,
                             date=epoch - 400 * _DAY, about="The big sandbox group.")
    others = [*mods, tess, *bots, *crowd]
    _fill(group1, others[: GROUP_1_MEMBERS - 1], first=epoch - 390 * _DAY,
          last=epoch - 100 * _DAY, admins=mods)
    _talk(group1, rng, GROUP_1_MESSAGES, first=epoch - 90 * _DAY, last=epoch - 60)

    group2 = world.megagroup(GROUP_2, title="Test group 2", creator=owner,
                             date=epoch - 300 * _DAY, about="A small sandbox group.")
    _fill(group2, [mods[1], *crowd[200:238]], first=epoch - 290 * _DAY,
          last=epoch - 100 * _DAY, admins=[mods[1]])
    _talk(group2, rng, GROUP_2_MESSAGES, first=epoch - 60 * _DAY, last=epoch - 120)

    channel = world.channel(CHANNEL, title="Under World", creator=owner,
                            date=epoch - 500 * _DAY, about="Announcements from below.")
    _fill(channel, crowd[40:190], first=epoch - 480 * _DAY, last=epoch - 100 * _DAY, admins=[])
    step = (180 * _DAY) // CHANNEL_POSTS
    for i in range(CHANNEL_POSTS):
        media = rng.choice(_MEDIA[:5]) if i % 6 == 0 else None
        channel.post(None, f"Post #{i + 1}: {rng.choice(_LINES)}", date=epoch - 180 * _DAY
                     + i * step, media=media, forwards=rng.randrange(50),
                     views=1000 + rng.randrange(50_000), post_author="Sandra" if i % 9 else None)
    world.ticker = tick
    return world


def _fill(chat: SandboxChat, users: list[SandboxUser], *, first: int, last: int,
          admins: list[SandboxUser]) -> None:
    step = max(1, (last - first) // max(len(users), 1))
    for i, user in enumerate(users):
        inviter = users[i - 1] if i % 5 == 1 else None
        chat.join(user, date=first + i * step, inviter=inviter,
                  role="admin" if user in admins else "member",
                  rank="moderator" if user in admins else None)


def _talk(chat: SandboxChat, rng: random.Random, count: int, *, first: int, last: int) -> None:
    """`count` messages from the chat's members between `first` and `last`."""
    people = [m.user for m in chat.members_newest_first() if not m.user.bot and
              not m.user.deleted]
    step = (last - first) // count
    chat.post(chat.creator, chat.title, date=first, action="create")
    album = 0
    for i in range(1, count):
        date = first + i * step
        who = rng.choice(people)
        roll = rng.random()
        if roll < 0.02:
            chat.post(who, date=date, action="joined_by_link")
        elif roll < 0.03:
            chat.post(chat.creator, date=date, action="pin", reply_to=rng.randrange(1, i + 1))
        elif roll < 0.04:
            chat.post(who, date=date, action="add_user", action_users=[rng.choice(people)])
        elif roll < 0.19:
            chat.post(who, rng.choice(_LINES), date=date,
                      reply_to=rng.randrange(max(1, i - 30), i + 1),
                      replies=rng.randrange(4) or None)
        elif roll < 0.24:
            chat.post(who, rng.choice(_LINES), date=date, fwd_from_user=rng.choice(people),
                      fwd_date=date - rng.randrange(1, 30) * _DAY)
        elif roll < 0.36:
            album = album + 1 if roll < 0.26 else album
            chat.post(who, rng.choice(("", rng.choice(_LINES))), date=date,
                      media=rng.choice(_MEDIA), grouped_id=album * 1000 + 7 if roll < 0.26
                      else None)
        else:
            chat.post(who, rng.choice(_LINES), date=date,
                      edit_date=date + 300 if roll > 0.97 else None, pinned=roll > 0.995)


def tick(world: World) -> None:
    """One step of the living demo world. The step number is read from the world itself (the
    channel's post count), so ticking needs no state besides the world."""
    group1, group2, channel = (world.resolve(name) for name in (GROUP_1, GROUP_2, CHANNEL))
    assert isinstance(group1, SandboxChat) and isinstance(group2, SandboxChat)
    assert isinstance(channel, SandboxChat)
    n = channel.top_id - CHANNEL_POSTS + 1
    now = world.now()
    if n % 5 == 0:
        newest = group1.members_newest_first()[0].date
        group1.join(world.synthetic_user(), date=max(now, newest + 1))
    for chat in (group1, group2, channel):
        date = max(now, (chat.last_date or 0) + 1)
        if chat.broadcast:
            chat.post(None, f"Live post #{n}", date=date)
            continue
        people = [m.user for m in chat.members_newest_first()
                  if not m.user.bot and not m.user.deleted]
        chat.post(people[mix64(world.seed * 7919 + n) % len(people)],
                  f"Live message #{n} in {chat.title}", date=date)
