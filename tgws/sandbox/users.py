"""A sandbox account and the `User` Telegram shows for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from tgws.sandbox.derive import when

# Named presence states accepted by World.user(status=...); a TL UserStatus object works too.
STATUSES = ("online", "recently", "offline", "last_week", "last_month", "long_ago")


@dataclass(eq=False, slots=True)
class SandboxUser:
    """One account. Fields are plain data; `tl()` builds what a client receives."""

    id: int
    access_hash: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    phone: str | None = None  # digits only, no "+"
    password: str | None = None
    bot: bool = False
    deleted: bool = False
    verified: bool = False
    premium: bool = False
    scam: bool = False
    fake: bool = False
    status: Any = "recently"
    was_online: int = 0  # for status "offline" (and "online": its expiry is 5 minutes later)
    _wire: bytes | None = field(default=None, repr=False)
    _words: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return " ".join(x for x in (self.first_name, self.last_name) if x)

    def _status(self) -> Any:
        if self.deleted or self.bot or self.status is None:
            return None
        if not isinstance(self.status, str):
            return self.status
        return {
            "online": lambda: types.UserStatusOnline(expires=when(self.was_online + 300)),
            "recently": types.UserStatusRecently,
            "offline": lambda: types.UserStatusOffline(was_online=when(self.was_online)),
            "last_week": types.UserStatusLastWeek,
            "last_month": types.UserStatusLastMonth,
            "long_ago": types.UserStatusEmpty,
        }[self.status]()

    def tl(self, *, is_self: bool = False) -> Any:
        """The `User` as `viewer` sees it: only the account itself sees its phone number."""
        if self.deleted:
            return types.User(id=self.id, access_hash=self.access_hash, deleted=True,
                              is_self=is_self or None)
        return types.User(
            id=self.id,
            is_self=is_self or None,
            bot=self.bot or None,
            bot_info_version=1 if self.bot else None,
            verified=self.verified or None,
            premium=self.premium or None,
            scam=self.scam or None,
            fake=self.fake or None,
            access_hash=self.access_hash,
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone if is_self else None,
            status=self._status(),
        )

    def wire(self) -> bytes:
        """Serialized `tl()` as others see it, cached: a page of 100 messages names ~20 users."""
        if self._wire is None:
            self._wire = bytes(self.tl())
        return self._wire

    def search_words(self) -> tuple[str, ...]:
        """Case-folded words a participant search prefix-matches: each word of the first and
        last name in its own script (Cyrillic, Arabic, CJK...), the username, the full name.
        A deleted account has no name left to find."""
        if self._words is None:
            if self.deleted:
                self._words = ()
                return self._words
            words = f"{self.first_name} {self.last_name or ''}".casefold().split()
            if self.username:
                words.append(self.username.casefold())
            full = self.name.casefold()
            if full and full not in words:
                words.append(full)
            self._words = tuple(words)
        return self._words

    def matches(self, query: str) -> bool:
        q = query.casefold()
        return any(word.startswith(q) for word in self.search_words())
