"""The hostile world: the demo world plus the content Telegram really serves.

build_hostile_world(seed) starts from build_demo_world(seed) (its three chats, code 12345, the
2FA account) and adds, deterministically per seed:
- HOLEY_GROUP: a megagroup whose 3,000-message history has holes: single deleted ids, whole
  deleted ranges (one across a page boundary), id 1 and the newest id deleted, a few edits; so
  its `count` is not its top id. While a history stream runs, every third page served deletes
  two ids on each side of that page and edits one beyond each edge (whichever way a stream
  pages, the next pages skip the deleted and show the edited).
- HOLEY_CHANNEL: a broadcast channel of 800 posts with holes (deleted ranges and singles).
- CHURN_GROUP: a megagroup of 400 members named in Cyrillic, Arabic, CJK, Greek, Latin and
  emoji, with deleted accounts. While a participants listing runs, after every page served one
  member of that page leaves (is kicked, is banned, in turn), shifting everyone after it up one
  position; after every second page someone new joins (listed first, shifting everyone down).
- BIG_GROUP: 12,000 members (beyond the 10,000 a listing can page through), one in four named
  in another script: reachable in full only by search, which matches word prefixes in each
  script (users.py).
- BASIC_TITLE / UPGRADED_GROUP: a basic group with 150 messages upgraded to the megagroup
  UPGRADED_GROUP with 200 more (basic.py): one history in two chats.
Accounts live on five data centres (dcs.spread_accounts): logging in meets PHONE_MIGRATE /
USER_MIGRATE. Faults are off until asked for (world.faults; the backend applies [sandbox]).
The ticker (world.tick()) runs the demo's tick, then posts in the hostile chats, deletes and edits
in HOLEY_GROUP, and churns CHURN_GROUP's and BIG_GROUP's members. Everything it and the page
hooks change is logged in world.churn_log (truth.py).
"""

from __future__ import annotations

from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.dcs import spread_accounts
from tgws.sandbox.demo import OWNER_PHONE, build_demo_world
from tgws.sandbox.demo import tick as demo_tick
from tgws.sandbox.derive import mix64
from tgws.sandbox.hooks import Served
from tgws.sandbox.names import SCRIPT_NAMES, international_user
from tgws.sandbox.users import SandboxUser
from tgws.sandbox.world import World

HOLEY_GROUP, HOLEY_CHANNEL = "holeyhistory1", "holeychannel1"
CHURN_GROUP, BIG_GROUP = "churnygroup1", "biggroup12k"
BASIC_TITLE, UPGRADED_GROUP = "Old basic group", "upgradedgroup1"
HOLEY_MESSAGES, HOLEY_POSTS = 3000, 800
CHURN_MEMBERS, BIG_MEMBERS = 400, 12_000
BASIC_MESSAGES, UPGRADED_MESSAGES = 150, 200
HOSTILE_CHATS = (HOLEY_GROUP, HOLEY_CHANNEL, CHURN_GROUP, BIG_GROUP, UPGRADED_GROUP)

BANNER = (
    f"{HOLEY_GROUP}: history with deleted ids and ranges; deletes and edits while streamed",
    f"{HOLEY_CHANNEL}: channel posts with deleted ranges",
    f"{CHURN_GROUP}: members in many scripts; leave/kick/ban/join while listed",
    f"{BIG_GROUP}: {BIG_MEMBERS:,} members, above the 10,000 listing cap (search to see all)",
    f"{UPGRADED_GROUP}: upgraded from the basic group \"{BASIC_TITLE}\" (two histories)",
)

_DAY = 86_400
_CHURN_KINDS = ("left", "kicked", "banned")
_LINES = ("Привет, как дела?", "مرحبا بالجميع", "大家好", "おはようございます", "안녕하세요",
          "Γεια σας", "🎉🎉🎉", "see you tomorrow", "Ça marche", "ok")


class _Crowd:
    """Hands out international people, numbered so each seed builds the same crowd."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.n = 0

    def __call__(self, *, deleted: bool = False, script: str | None = None) -> SandboxUser:
        self.n += 1
        return international_user(self.world, self.n, deleted=deleted, script=script)


def build_hostile_world(seed: int = 0) -> World:
    """The hostile world for `seed`: the demo world plus the chats above."""
    world = build_demo_world(seed)
    owner = world.by_phone(OWNER_PHONE)
    assert owner is not None
    crowd = _Crowd(world)
    epoch = world.epoch
    _holey_group(world, owner, crowd, epoch)
    _holey_channel(world, owner, epoch)
    _churn_group(world, owner, crowd, epoch)
    _big_group(world, owner, crowd, epoch)
    _upgraded_group(world, owner, crowd, epoch)
    world.ticker = HostileTicker(crowd)
    spread_accounts(world.dcs)  # accounts on five DCs; the demo's phones migrate (dcs.py)
    return world


def hostile_chat(world: World, name: str) -> SandboxChat:
    chat = world.resolve(name)
    if not isinstance(chat, SandboxChat):
        raise KeyError(name)
    return chat


def _people(crowd: _Crowd, count: int, *, deleted_every: int = 0) -> list[SandboxUser]:
    """`count` people cycling through every script (so each is represented)."""
    out = []
    for i in range(count):
        if deleted_every and i % deleted_every == deleted_every - 1:
            out.append(crowd(deleted=True))
        else:
            out.append(crowd(script=SCRIPT_NAMES[i % len(SCRIPT_NAMES)] if i % 3 else None))
    return out


def _join_all(chat: SandboxChat, users: list[SandboxUser], first: int, step: int) -> None:
    for i, user in enumerate(users):
        chat.join(user, date=first + i * step)


def _holey_group(world: World, owner: SandboxUser, crowd: _Crowd, epoch: int) -> None:
    group = world.megagroup(HOLEY_GROUP, title="Holey history", creator=owner,
                            date=epoch - 300 * _DAY, about="Deleted messages everywhere.")
    _join_all(group, _people(crowd, 60), epoch - 290 * _DAY, 3600)
    group.history(HOLEY_MESSAGES, first_date=epoch - 200 * _DAY, interval=600)
    h = mix64(world.seed * 7 + 1)
    top = HOLEY_MESSAGES
    group.delete(1, top, date=epoch)  # the first and the newest message
    group.delete_range(101, 300, date=epoch)  # two whole pages
    start = 950 + h % 40  # a range across the page boundary at 1000
    group.delete_range(start, start + 80, date=epoch)
    group.delete_range(2000, 2000 + 50 + (h >> 8) % 30, date=epoch)
    singles = sorted({2 + mix64(h + i) % (top - 2) for i in range(90)})
    group.delete(*singles, date=epoch)
    for i in range(6):
        msg_id = 2 + mix64(h + 1000 + i) % (top - 2)
        if group.exists(msg_id):
            group.edit(msg_id, f"(edited) {_LINES[i % len(_LINES)]}", date=epoch + i)
    group.on_history_page(_delete_around_page)


def _delete_around_page(chat: SandboxChat, served: Served) -> None:
    """Every third page served: delete two ids on each side of it and edit one ten ids beyond
    each edge, so a stream meets the change ahead of it whichever way it pages."""
    if served.number % 3 or not served.ids:
        return
    low, high = min(served.ids), max(served.ids)
    doomed = [i for i in (low - 3, low - 2, high + 2, high + 3) if chat.exists(i)]
    if doomed:
        chat.delete(*doomed)
    for target in (low - 10, high + 10):
        if chat.exists(target):
            chat.edit(target, f"edited while page {served.number} was read")


def _holey_channel(world: World, owner: SandboxUser, epoch: int) -> None:
    channel = world.channel(HOLEY_CHANNEL, title="Holey channel", creator=owner,
                            date=epoch - 400 * _DAY, about="Posts come and go.")
    channel.history(HOLEY_POSTS, first_date=epoch - 100 * _DAY, interval=3600)
    h = mix64(world.seed * 7 + 2)
    channel.delete_range(200, 260, date=epoch)
    channel.delete_range(700, HOLEY_POSTS, date=epoch)  # the newest hundred are gone
    channel.delete(*{1 + mix64(h + i) % HOLEY_POSTS for i in range(40)}, date=epoch)


def _churn_group(world: World, owner: SandboxUser, crowd: _Crowd, epoch: int) -> None:
    group = world.megagroup(CHURN_GROUP, title="Churny group", creator=owner,
                            date=epoch - 200 * _DAY, about="People come and go.")
    _join_all(group, _people(crowd, CHURN_MEMBERS - 1, deleted_every=25),
              epoch - 190 * _DAY, 1800)
    authors = [m.user for m in group.members_newest_first() if not m.user.deleted][:40]
    for i in range(100):
        group.post(authors[i % len(authors)], _LINES[i % len(_LINES)],
                   date=epoch - 10 * _DAY + i * 600)
    group.on_member_page(_ChurnHook(crowd))


class _ChurnHook:
    """After each participants page of CHURN_GROUP: one member of the page departs (left,
    kicked, banned in turn); after every second page, a newcomer joins."""

    def __init__(self, crowd: _Crowd) -> None:
        self.crowd = crowd

    def __call__(self, chat: SandboxChat, served: Served) -> None:
        candidates = [uid for uid in served.ids
                      if (m := chat.member(uid)) is not None and m.role == "member"]
        if candidates:
            victim = candidates[mix64(chat.world.seed + served.number) % len(candidates)]
            chat.leave(victim, how=_CHURN_KINDS[served.number % 3])
        if served.number % 2 == 0:
            newest = chat.members_newest_first()[0].date
            chat.join(self.crowd(), date=max(chat.world.now(), newest + 1))


def _big_group(world: World, owner: SandboxUser, crowd: _Crowd, epoch: int) -> None:
    group = world.megagroup(BIG_GROUP, title="Big group", creator=owner,
                            date=epoch - 700 * _DAY, about="Too many to list.")
    first = epoch - 690 * _DAY
    step = 4000
    for i in range(BIG_MEMBERS - 1):
        user = (crowd(deleted=i % 400 == 399) if i % 4 == 3 else world.synthetic_user())
        group.join(user, date=first + i * step)
    authors = [m.user for m in group.members_newest_first()[:50] if not m.user.deleted]
    for i in range(50):
        group.post(authors[i % len(authors)], _LINES[i % len(_LINES)],
                   date=epoch - 5 * _DAY + i * 600)


def _upgraded_group(world: World, owner: SandboxUser, crowd: _Crowd, epoch: int) -> None:
    old = world.basic_group(BASIC_TITLE, creator=owner, date=epoch - 120 * _DAY)
    tess = world.resolve("tess_twofactor")
    assert isinstance(tess, SandboxUser)
    people = [tess, *_people(crowd, 14)]
    _join_all(old, people, epoch - 119 * _DAY, 3600)
    old.post(owner, date=epoch - 119 * _DAY, action="create")
    talkers = [owner, *(p for p in people if not p.deleted)]
    for i in range(1, BASIC_MESSAGES):
        old.post(talkers[i % len(talkers)], f"basic #{i}: {_LINES[i % len(_LINES)]}",
                 date=epoch - 100 * _DAY + i * 3600)
    old.delete(40, 41, 42, 90, date=epoch - 90 * _DAY)
    new = world.upgrade(old, username=UPGRADED_GROUP, date=epoch - 80 * _DAY)
    for i in range(UPGRADED_MESSAGES):
        new.post(talkers[i % len(talkers)], f"super #{i + 1}: {_LINES[i % len(_LINES)]}",
                 date=epoch - 79 * _DAY + i * 3600)


class HostileTicker:
    """world.tick() for the hostile world: the demo's tick, then the hostile chats' step."""

    def __init__(self, crowd: _Crowd) -> None:
        self.crowd = crowd
        self.step = 0

    def __call__(self, world: World) -> None:
        demo_tick(world)
        self.step += 1
        n = self.step
        h = mix64(world.seed * 31 + n)
        now = world.now()
        holey = hostile_chat(world, HOLEY_GROUP)
        churny = hostile_chat(world, CHURN_GROUP)
        for name in (HOLEY_GROUP, CHURN_GROUP, UPGRADED_GROUP):
            chat = hostile_chat(world, name)
            people = [m.user for m in chat.members_newest_first()[:30] if not m.user.deleted]
            chat.post(people[h % len(people)], f"Live #{n}: {_LINES[n % len(_LINES)]}",
                      date=max(now, (chat.last_date or 0) + 1))
        recent = [i for i in range(holey.top_id - 1, max(holey.top_id - 200, 0), -1)
                  if holey.exists(i)]
        if n % 2 == 0 and recent:
            holey.delete(recent[h % len(recent)])
        if n % 3 == 0 and len(recent) > 1:
            target = recent[(h >> 16) % len(recent)]
            if holey.exists(target):
                holey.edit(target, f"edited by tick {n}")
        members = [m.user for m in churny.members_newest_first() if m.role == "member"]
        if members:
            churny.leave(members[(h >> 24) % len(members)], how=_CHURN_KINDS[n % 3])
        newest = churny.members_newest_first()[0].date
        churny.join(self.crowd(), date=max(now, newest + 1))
        if n % 5 == 0:
            big = hostile_chat(world, BIG_GROUP)
            big.join(world.synthetic_user(), date=max(now, big.members_newest_first()[0].date + 1))
