"""A sandbox megagroup or broadcast channel: its members, its messages, and its TL faces.

Message ids are dense (1..top_id), as in a channel where nothing was deleted: ids 1..L may come
from a lazy history (lazy.py), the rest are explicit records appended by `post`. Dates never go
backwards with the id, which is what lets GetHistory's offset_date be a binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.derive import derive, mix64, when
from tgws.sandbox.lazy import LazyHistory
from tgws.sandbox.media import MEDIA_KINDS, build_action
from tgws.sandbox.members import ROLES, Member, admin_rights
from tgws.sandbox.messages import SandboxMessage
from tgws.sandbox.users import SandboxUser

if TYPE_CHECKING:
    from tgws.sandbox.world import World

_DAY = 86_400


class SandboxChat:
    """Build it through World.megagroup() / World.channel(); every builder call returns data."""

    def __init__(self, world: World, *, chat_id: int, access_hash: int, username: str | None,
                 title: str, broadcast: bool, date: int, about: str) -> None:
        self.world = world
        self.id = chat_id
        self.access_hash = access_hash
        self.username = username
        self.title = title
        self.broadcast = broadcast
        self.date = date
        self.about = about
        self.participants_hidden = False
        self.creator: SandboxUser | None = None
        self._members: dict[int, Member] = {}
        self._order: list[Member] = []  # ascending (date, seq)
        self._newest: list[Member] | None = None
        self._lazy: LazyHistory | None = None
        self._messages: list[SandboxMessage] = []

    def __repr__(self) -> str:
        kind = "channel" if self.broadcast else "megagroup"
        name = self.username or self.id
        return f"<{kind} {name}: {len(self._members)} members, {self.top_id} msgs>"

    # --- members ---------------------------------------------------------------------------

    def join(self, user: SandboxUser, *, date: int | None = None,
             inviter: SandboxUser | None = None, role: str = "member",
             rank: str | None = None) -> Member:
        """Add `user`; by default one hour after the latest join (join dates stay ordered)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if user.id in self._members:
            raise ValueError(f"{user.name or user.id} is already a member of {self.title}")
        if role == "creator":
            if self.creator is not None:
                raise ValueError(f"{self.title} already has a creator")
            self.creator = user
        if date is None:
            date = self._order[-1].date + 3600 if self._order else self.date
        member = Member(user, date, inviter, role, rank, seq=len(self._members))
        self._members[user.id] = member
        bisect.insort(self._order, member, key=lambda m: (m.date, m.seq))
        self._newest = None
        return member

    def populate(self, count: int, *, first_date: int | None = None, interval: int = 60,
                 bots: int = 0) -> list[SandboxUser]:
        """Add `count` new synthetic users (the last `bots` of them bots), joined `interval`
        seconds apart after the latest join."""
        users = [self.world.synthetic_user(bot=i >= count - bots) for i in range(count)]
        date = first_date
        if date is None:
            date = self._order[-1].date + interval if self._order else self.date + interval
        for i, user in enumerate(users):
            self.join(user, date=date + i * interval)
        return users

    def hide_members(self, hidden: bool = True) -> SandboxChat:
        """Telegram's "hide members" switch (channels.toggleParticipantsHidden)."""
        self.participants_hidden = hidden
        return self

    def member(self, user: SandboxUser | int | None) -> Member | None:
        if user is None:
            return None
        return self._members.get(user if isinstance(user, int) else user.id)

    def members_newest_first(self) -> list[Member]:
        if self._newest is None:
            self._newest = self._order[::-1]
        return self._newest

    @property
    def members_count(self) -> int:
        return len(self._members)

    def is_admin(self, user: SandboxUser | None) -> bool:
        member = self.member(user)
        return member is not None and member.is_admin

    # --- messages --------------------------------------------------------------------------

    @property
    def top_id(self) -> int:
        return (self._lazy.count if self._lazy else 0) + len(self._messages)

    @property
    def last_date(self) -> int | None:
        top = self.top_id
        return self.message_date(top) if top else None

    def history(self, lazy_count: int, *, first_date: int | None = None, interval: int = 30,
                authors: Iterable[SandboxUser] | None = None) -> SandboxChat:
        """Make messages 1..lazy_count a lazy history (computed per id, never stored).

        Authors default to the current members; the list is frozen now so that message N stays
        the same whatever joins later. Dates end at the world's epoch unless first_date is given.
        """
        if self.top_id:
            raise ValueError("history() must come before any post()")
        author_ids = [u.id for u in authors] if authors is not None else [
            m.user.id for m in self._order if not m.user.bot]
        if first_date is None:
            first_date = self.world.epoch - lazy_count * interval
        self._lazy = LazyHistory(chat_id=self.id, broadcast=self.broadcast, count=lazy_count,
                                 first_date=first_date, interval=interval, authors=author_ids,
                                 salt=derive(self.world.secret, "lazy", self.id))
        self.world.pts += lazy_count
        return self

    def post(self, sender: SandboxUser | None, text: str = "", *, date: int | None = None,
             reply_to: int | SandboxMessage | None = None,
             fwd_from_user: SandboxUser | None = None, fwd_date: int | None = None,
             media: Any = None, action: Any = None,
             action_users: Sequence[SandboxUser] | None = None,
             inviter: SandboxUser | None = None, views: int | None = None,
             forwards: int | None = None, replies: int | None = None, pinned: bool = False,
             edit_date: int | None = None, grouped_id: int | None = None,
             post_author: str | None = None) -> SandboxMessage:
        """Append a message (a service message when `action` is given; see media.ACTION_KINDS).

        `media` is a kind from media.MEDIA_KINDS or a TL MessageMedia. Channel posts get views
        unless given. The date defaults to a minute after the last message and may not go back.
        """
        if sender is None and not self.broadcast:
            raise ValueError("a megagroup message needs a sender")
        msg_id = self.top_id + 1
        last = self.last_date
        if date is None:
            date = last + 60 if last is not None else self.world.epoch - 30 * _DAY
        elif last is not None and date < last:
            raise ValueError(f"message date {date} is before the previous message's {last}")
        if isinstance(media, str) and media not in MEDIA_KINDS:
            raise ValueError(f"unknown media kind {media!r}; expected one of {MEDIA_KINDS}")
        reply_id = reply_to.id if isinstance(reply_to, SandboxMessage) else reply_to
        if reply_id is not None and not 0 < reply_id < msg_id:
            raise ValueError(f"reply_to={reply_id} is not an earlier message")
        if isinstance(action, str):
            who = list(action_users) if action_users else ([sender] if sender else [])
            host = inviter or self.creator or sender
            action = build_action(action, users=[u.id for u in who],
                                  inviter=host.id if host else 0, title=text or self.title,
                                  pinned=reply_id or 0)
            text = ""
        if self.broadcast and action is None and views is None:
            views = 100 + mix64(self.id + msg_id) % 5000
        message = SandboxMessage(
            id=msg_id, chat_id=self.id, broadcast=self.broadcast, date=date,
            sender=None if self.broadcast else sender, text=text, reply_to=reply_id,
            fwd_user=fwd_from_user, fwd_date=fwd_date, media=media, action=action,
            views=views, forwards=forwards, replies=replies, pinned=pinned,
            edit_date=edit_date, grouped_id=grouped_id, post_author=post_author)
        self._messages.append(message)
        self.world.pts += 1
        return message

    def message(self, msg_id: int) -> SandboxMessage | None:
        """The explicit record for `msg_id` (None for lazy or missing ids)."""
        lazy = self._lazy.count if self._lazy else 0
        index = msg_id - lazy - 1
        return self._messages[index] if 0 <= index < len(self._messages) else None

    def message_date(self, msg_id: int) -> int:
        if self._lazy is not None and msg_id <= self._lazy.count:
            return self._lazy.date(msg_id)
        return self._explicit(msg_id).date

    def _explicit(self, msg_id: int) -> SandboxMessage:
        found = self.message(msg_id)
        if found is None:
            raise KeyError(msg_id)
        return found

    def message_tl(self, msg_id: int) -> Any:
        if self._lazy is not None and msg_id <= self._lazy.count:
            return self._lazy.tl(msg_id)
        return self._explicit(msg_id).tl()

    def message_wire(self, msg_id: int) -> bytes:
        if self._lazy is not None and msg_id <= self._lazy.count:
            return self._lazy.wire(msg_id)
        return self._explicit(msg_id).wire()

    def message_user_ids(self, msg_id: int) -> Sequence[int]:
        if self._lazy is not None and msg_id <= self._lazy.count:
            return self._lazy.user_ids(msg_id)
        return self._explicit(msg_id).user_ids()

    def count_before(self, timestamp: int) -> int:
        """How many messages are dated strictly before `timestamp` (binary search on ids)."""
        return bisect.bisect_left(range(1, self.top_id + 1), timestamp, key=self.message_date)

    # --- TL faces --------------------------------------------------------------------------

    def tl(self, viewer: SandboxUser | None) -> Any:
        """The `Channel` as `viewer` sees it (left/creator/admin_rights depend on who asks)."""
        member = self.member(viewer)
        return types.Channel(
            id=self.id, title=self.title, photo=types.ChatPhotoEmpty(),
            date=when(member.date if member else self.date),
            creator=(member is not None and member.role == "creator") or None,
            left=member is None or None,
            broadcast=self.broadcast or None, megagroup=(not self.broadcast) or None,
            access_hash=self.access_hash, username=self.username,
            participants_count=len(self._members),
            admin_rights=(admin_rights(member.role, self.broadcast)
                          if member is not None and member.is_admin else None))

    def full_tl(self, viewer: SandboxUser | None) -> Any:
        """`ChannelFull`: counts, the hidden-members flag and read markers."""
        admin = self.is_admin(viewer)
        admins = sum(1 for m in self._order if m.is_admin)
        return types.ChannelFull(
            id=self.id, about=self.about, read_inbox_max_id=self.top_id,
            read_outbox_max_id=self.top_id, unread_count=0,
            chat_photo=types.PhotoEmpty(id=0), notify_settings=types.PeerNotifySettings(),
            bot_info=[], pts=max(self.top_id, 1), participants_count=len(self._members),
            admins_count=admins if admin or not self.broadcast else None,
            can_view_participants=admin or not (self.broadcast or self.participants_hidden),
            participants_hidden=self.participants_hidden or None,
            can_set_username=(self.creator is viewer and viewer is not None) or None)
