"""The sandbox world: accounts, chats, injected failures and the clock, built fluently.

    world = World(seed=0)
    alice = world.user("alice", first_name="Alice", phone="+15550001", premium=True)
    group = world.megagroup("testgroup00001", title="Test group 1")
    group.join(alice, role="admin")
    group.post(alice, "hello", media="photo")
    world.fail("GetHistoryRequest", "FLOOD_WAIT_2", times=1, after=3)
    world.faults.set(rate=0.05, latency=0.01)   # faults.py: the seeded fault plan
    world.dcs.place(alice, 4)                   # dcs.py: alice's account lives on DC 4

Ids, access hashes and the secret that signs auth keys all derive from the seed (derive.py), so
a world rebuilt from the same seed by the same code is the same world: sessions saved against one
process stay logged in against the next (keys.py). Mutable knobs are plain attributes:
`wire`, `accept_any_phone`, `login_code`, `short_pages`, `participants_cap`, `latency` (the
fault plan's). Faults (`world.faults`, faults.py), data centres (`world.dcs`, dcs.py) and
update state and pushes (`world.updates`, updates.py) are rooms of their own; a new World has
no faults, one home DC for everybody, and drops no pushed update.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from telethon.crypto import AuthKey
from telethon.sessions import StringSession

from tgws.sandbox.basic import upgrade
from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.dcs import DataCentres
from tgws.sandbox.derive import derive, secret_from_seed, signed64
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.faults import FaultPlan
from tgws.sandbox.keys import issue_key, read_key
from tgws.sandbox.login import LoginDesk, normalize_phone
from tgws.sandbox.truth import Churn
from tgws.sandbox.updates import UpdateLog
from tgws.sandbox.users import STATUSES, SandboxUser

DEFAULT_EPOCH = 1_700_000_000  # 2023-11-14: every built-in date lies before "now"
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,31}")
_ID_BASE = 1_000_000_000
_FIRST_NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan",
                "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent",
                "Uma", "Victor", "Walter", "Xena", "Yusuf", "Zoe", "Ana", "Jörg", "Léa", "Marta",
                "Kenji", "Priya", "Omar", "Ewa", "Tomás")
_LAST_NAMES = ("Smith", "Jones", "Garcia", "Müller", "Rossi", "Kim", "Nguyen", "Ivanova",
               "Silva", "Kowalski", "Tanaka", "Okafor", "Dubois", "Larsen", "Novak", "Costa",
               None, None, None)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def valid_username(name: str) -> bool:
    """Telegram's shape for usernames (3..32 here; Telegram wants 5 for new ones)."""
    return bool(_USERNAME.fullmatch(name)) and not name.endswith("_") and "__" not in name


class World:
    """Everything the sandbox Telegram knows. Build it before clients connect, or while they are
    connected: every request reads the world as it is at that moment."""

    def __init__(self, seed: int = 0, *, wire: bool = False, secret: bytes | None = None,
                 epoch: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.secret = secret if secret is not None else secret_from_seed(seed)
        self.wire = wire
        self.epoch = epoch if epoch is not None else DEFAULT_EPOCH + (seed % 1000) * 86_400
        self.clock = clock
        self.accept_any_phone = True
        self.login_code = "12345"
        self.short_pages = False
        self.participants_cap = 10_000
        self.faults = FaultPlan(seed)
        self.dcs = DataCentres(self.secret)
        self.updates = UpdateLog(self)  # update state and pushes (updates.py)
        self.ticker: Callable[[World], None] | None = None
        self.users: dict[int, SandboxUser] = {}
        self.chats: dict[int, SandboxChat] = {}
        self.login = LoginDesk(self)
        self._names: dict[str, SandboxUser | SandboxChat] = {}
        self._phones: dict[str, SandboxUser] = {}
        self._keys: dict[bytes, int] = {}
        self._synthetic = 0
        self.churn_log: list[Churn] = []  # every post/delete/edit/join/leave (truth.py)

    @property
    def latency(self) -> float:
        """Seconds before each answer arrives (0: the next loop iteration); faults.latency."""
        return self.faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.faults.latency = max(0.0, seconds)

    def now(self) -> int:
        return int(self.clock())

    def tick(self) -> None:
        """Advance a living world by one step (the demo world adds messages and members)."""
        if self.ticker is None:
            raise RuntimeError("this world has no ticker (build_demo_world() sets one)")
        self.ticker(self)

    # --- builders --------------------------------------------------------------------------

    def _claim_name(self, username: str | None, owner: SandboxUser | SandboxChat) -> None:
        if username is None:
            return
        if not valid_username(username):
            raise ValueError(f"invalid username {username!r}")
        if username.lower() in self._names:
            raise ValueError(f"username {username!r} is taken")
        self._names[username.lower()] = owner

    def _new_id(self, kind: str, label: str, taken: dict[int, Any]) -> int:
        for attempt in range(100):
            candidate = _ID_BASE + derive(self.secret, kind, label, attempt) % 7_000_000_000
            if candidate not in taken:
                return candidate
        raise RuntimeError("could not find a free id")  # pragma: no cover

    def user(self, username: str | None = None, *, first_name: str | None = None,
             last_name: str | None = None, phone: str | None = None,
             password: str | None = None, premium: bool = False, bot: bool = False,
             verified: bool = False, scam: bool = False, fake: bool = False,
             deleted: bool = False, status: Any = "recently",
             was_online: int | None = None) -> SandboxUser:
        """Create an account. `status` is one of users.STATUSES or a TL UserStatus; the id is
        derived from the username (else the phone, else the creation order)."""
        digits = None
        if phone is not None:
            digits = normalize_phone(phone)
            if digits is None:
                raise ValueError(f"malformed phone {phone!r} (want +, then 7 to 15 digits)")
            if digits in self._phones:
                raise ValueError(f"phone {phone} already has an account")
        if isinstance(status, str) and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or a TL UserStatus")
        if username is not None:
            label = "@" + username.lower()
        elif digits is not None:
            label = "phone:" + digits
        else:
            self._synthetic += 1
            label = f"#{self._synthetic}"
        user_id = self._new_id("user", label, self.users)
        user = SandboxUser(
            id=user_id, access_hash=signed64(derive(self.secret, "access", user_id)),
            first_name=first_name or (username.capitalize() if username else "User"),
            last_name=last_name, username=username, phone=digits, password=password, bot=bot,
            deleted=deleted, verified=verified, premium=premium, scam=scam, fake=fake,
            status=status,
            was_online=was_online if was_online is not None else self.epoch - user_id % 86_400)
        self._claim_name(username, user)
        self.users[user.id] = user
        if digits is not None:
            self._phones[digits] = user
        return user

    def synthetic_user(self, *, bot: bool = False) -> SandboxUser:
        """A made-up member with a plausible, searchable, deterministic name."""
        self._synthetic += 1
        n = self._synthetic
        first = _FIRST_NAMES[n % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(n // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
        if bot:
            return self.user(f"{_ascii(first)}_helper{n}_bot", first_name=f"{first} Helper",
                             bot=True)
        username = None if n % 4 == 0 else f"{_ascii(first)}{_ascii(last or '')}{n}"
        status = ("online", "recently", "offline", "last_week", "last_month")[n % 5]
        return self.user(username, first_name=first, last_name=last, status=status,
                         premium=n % 7 == 0)

    def _chat(self, username: str | None, title: str | None, date: int | None, about: str,
              creator: SandboxUser | None, broadcast: bool) -> SandboxChat:
        label = "@" + username.lower() if username else f"#chat{len(self.chats)}"
        chat_id = self._new_id("chat", label, self.chats)
        chat = SandboxChat(
            self, chat_id=chat_id, access_hash=signed64(derive(self.secret, "access", chat_id)),
            username=username, title=title or username or f"Chat {len(self.chats) + 1}",
            broadcast=broadcast, date=date if date is not None else self.epoch - 400 * 86_400,
            about=about)
        self._claim_name(username, chat)
        self.chats[chat.id] = chat
        if creator is not None:
            chat.join(creator, date=chat.date, role="creator")
        return chat

    def megagroup(self, username: str | None, *, title: str | None = None,
                  date: int | None = None, about: str = "",
                  creator: SandboxUser | None = None) -> SandboxChat:
        """A supergroup (Channel with megagroup=True); `date` is its creation time."""
        return self._chat(username, title, date, about, creator, broadcast=False)

    def channel(self, username: str | None, *, title: str | None = None,
                date: int | None = None, about: str = "",
                creator: SandboxUser | None = None) -> SandboxChat:
        """A broadcast channel: posts without authors, with views; members are subscribers."""
        return self._chat(username, title, date, about, creator, broadcast=True)

    def basic_group(self, title: str, *, creator: SandboxUser,
                    date: int | None = None) -> SandboxChat:
        """A basic group (types.Chat, InputPeerChat): no username, explicit posts only."""
        chat = self._chat(None, title, date, "", None, broadcast=False)
        chat.basic = True
        chat.join(creator, date=chat.date, role="creator")
        return chat

    def upgrade(self, chat: SandboxChat, *, username: str | None = None,
                date: int | None = None) -> SandboxChat:
        """Migrate a basic group to a new megagroup, as Telegram does (basic.py)."""
        return upgrade(self, chat, username=username, date=date)

    def mark(self) -> int:
        """A point in `churn_log` to measure a stream against (truth.py)."""
        return len(self.churn_log)

    # --- lookups ---------------------------------------------------------------------------

    def resolve(self, username: str) -> SandboxUser | SandboxChat | None:
        """Case-insensitive, as Telegram resolves usernames."""
        return self._names.get(username.lower())

    def by_phone(self, phone: str) -> SandboxUser | None:
        digits = normalize_phone(phone)
        return None if digits is None else self._phones.get(digits)

    def account_for_phone(self, digits: str, *, create: bool) -> SandboxUser | None:
        """The account behind a phone; with `create`, one is made on the fly (its id derives
        from the phone, so a restarted world makes the same one again)."""
        user = self._phones.get(digits)
        if user is None and create:
            user = self.user(phone=digits, first_name="Sandbox", last_name=digits[-4:])
        return user

    # --- authorization keys ----------------------------------------------------------------

    def issue_key(self, user: SandboxUser) -> bytes:
        key = issue_key(self.secret, user.id, user.phone)
        self._keys[key] = user.id
        return key

    def user_for_key(self, key: bytes | None) -> SandboxUser | None:
        """Who is logged in with `key`: None for unknown, foreign or revoked keys."""
        if not key or key in self.login.revoked:
            return None
        user_id = self._keys.get(key)
        if user_id is None:
            claim = read_key(self.secret, key)
            if claim is None:
                return None
            user = self.users.get(claim.user_id)
            if user is None and claim.phone is not None:
                user = self.account_for_phone(claim.phone, create=self.accept_any_phone)
            if user is None or user.id != claim.user_id:
                return None
            user_id = self._keys[key] = user.id
        user = self.users.get(user_id)
        return None if user is None or user.deleted else user

    def revoke_key(self, key: bytes) -> None:
        self.login.revoked.add(key)
        self._keys.pop(key, None)

    def session_string(self, user: SandboxUser) -> str:
        """A StringSession already logged in as `user`: skips the login dance in tests."""
        session = StringSession()
        dc = self.dcs.of_user(user)
        session.set_dc(dc, *self.dcs.address(dc))
        session.auth_key = AuthKey(self.issue_key(user))
        saved: str = session.save()
        return saved

    # --- failures --------------------------------------------------------------------------

    def fail(self, request: str, error: str, *, times: int | None = 1, after: int = 0,
             code: int | None = None) -> None:
        """Answer the next `times` calls of `request` (class name, with or without "Request")
        with `error`, after letting `after` matching calls through. times=None: forever.
        A scripted fault of the world's fault plan (faults.py)."""
        self.faults.script_error(request, SandboxRpcError.of(error, code), times=times,
                                 after=after)

    def check_failures(self, request_name: str) -> None:
        """Raise the scripted RPC error due for this call, if any (counts the call)."""
        self.faults.check(request_name)

    # --- login knobs -----------------------------------------------------------------------

    def ban_phone(self, phone: str) -> None:
        digits = normalize_phone(phone)
        if digits is None:
            raise ValueError(f"malformed phone {phone!r}")
        self.login.banned.add(digits)

    def expire_codes(self) -> int:
        """Expire every login code sent so far; returns how many."""
        return self.login.expire_codes()
