"""A sandbox megagroup, broadcast channel or basic group: members, messages, TL faces.

Whole on purpose (~480 lines): one chat's members, messages and TL faces share one set of
invariants (ids, dates, the churn log); history.py and lazy.py already hold the rest.

Message ids run 1..top_id: ids 1..L may come from a lazy history (lazy.py), the rest are
explicit records appended by `post`. Dates never go backwards with the id, which is what lets
GetHistory's offset_date be a binary search. Ids can be deleted (`delete`, `delete_range`):
they keep their slot and date, but Telegram's answers skip them and `count` drops (history.py).
Messages can be edited (`edit`), members can leave, be kicked or banned (`leave`), and every such
change is logged in `world.churn_log` (truth.py). Hooks run after each history or participants
page the sandbox serves for this chat (`on_history_page`, `on_member_page`, `after_history_pages`,
`after_member_pages`), which is how a test changes the world in the middle of a stream.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.derive import derive, mix64, when
from tgws.sandbox.hooks import PageHooks
from tgws.sandbox.lazy import TEXTS, LazyHistory
from tgws.sandbox.media import MEDIA_KINDS, build_action
from tgws.sandbox.members import ROLES, Member, admin_rights
from tgws.sandbox.messages import SandboxMessage
from tgws.sandbox.truth import Expectation, expected_members, expected_messages, record
from tgws.sandbox.users import SandboxUser

if TYPE_CHECKING:
    from tgws.sandbox.world import World

_DAY = 86_400
DEPARTURE_KINDS = {"left": "leave", "kicked": "kick", "banned": "ban"}


@dataclass(frozen=True, slots=True)
class TruthMessage:
    id: int
    date: int
    text: str
    edit_date: int | None


class SandboxChat(PageHooks):
    """Build it through World.megagroup() / channel() / basic_group(); every builder call
    returns data."""

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
        self.basic = False  # a basic group (types.Chat); see World.basic_group
        # Joins and departures post their service message (and so push it, updates.py), as
        # Telegram's groups show them; off by default so built histories stay as they are.
        self.announce_members = False
        self.participants_hidden = False
        self.creator: SandboxUser | None = None
        self.migrated_to: SandboxChat | None = None  # basic group -> its supergroup
        self.migrated_from: SandboxChat | None = None  # supergroup -> its old basic group
        self._members: dict[int, Member] = {}
        self._order: list[Member] = []  # ascending (date, seq)
        self._newest: list[Member] | None = None
        self._banned: dict[int, Member] = {}  # ChannelParticipantsKicked: the ban list
        self._seq = 0
        self._lazy: LazyHistory | None = None
        self._messages: list[SandboxMessage] = []
        self._deleted: list[int] = []  # sorted
        self._deleted_set: set[int] = set()
        self._edited: dict[int, SandboxMessage] = {}  # edited lazy messages
        self._init_hooks()

    def __repr__(self) -> str:
        kind = "channel" if self.broadcast else "basic group" if self.basic else "megagroup"
        name = self.username or self.id
        return f"<{kind} {name}: {len(self._members)} members, {self.count} msgs>"

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
        member = Member(user, date, inviter, role, rank, seq=self._seq)
        self._seq += 1
        self._members[user.id] = member
        self._banned.pop(user.id, None)
        if self._order and (date, member.seq) < (self._order[-1].date, self._order[-1].seq):
            bisect.insort(self._order, member, key=lambda m: (m.date, m.seq))
        else:
            self._order.append(member)
        self._newest = None
        record(self, "join", date, user_id=user.id)
        if self.announce_members and not self.broadcast:
            self._announce(inviter or user, types.MessageActionChatAddUser(users=[user.id]), date)
        return member

    def leave(self, user: SandboxUser | int, *, how: str = "left",
              date: int | None = None) -> Member:
        """End a membership: "left" (by itself), "kicked" (removed, may rejoin) or "banned"
        (removed and listed under ChannelParticipantsKicked until it joins again). Everyone
        who joined before it moves up one position in the participants list."""
        if how not in DEPARTURE_KINDS:
            raise ValueError(f"how must be one of {tuple(DEPARTURE_KINDS)}, not {how!r}")
        member = self.member(user)
        if member is None:
            raise ValueError(f"{user!r} is not a member of {self.title}")
        if member.role == "creator":
            raise ValueError("the creator cannot leave a sandbox chat")
        del self._members[member.user.id]
        index = bisect.bisect_left(self._order, (member.date, member.seq),
                                   key=lambda m: (m.date, m.seq))
        assert self._order[index] is member
        del self._order[index]
        self._newest = None
        when_ = date if date is not None else self.world.now()
        if how == "banned":
            self._banned[member.user.id] = dataclasses.replace(member, date=when_, _wire=None)
        record(self, DEPARTURE_KINDS[how], when_, user_id=member.user.id)
        if self.announce_members and not self.broadcast:
            actor = member.user if how == "left" else (self.creator or member.user)
            self._announce(actor, types.MessageActionChatDeleteUser(user_id=member.user.id),
                           when_)
        return member

    def _announce(self, actor: SandboxUser, action: Any, date: int) -> None:
        """The service message of a join or departure (dated no earlier than the last one)."""
        last = self.last_date
        self.post(actor, date=date if last is None else max(date, last), action=action)

    def is_banned(self, user_id: int) -> bool:
        return user_id in self._banned

    def banned(self, user_id: int) -> Member | None:
        """The ban record (dated by the ban) of a banned user."""
        return self._banned.get(user_id)

    def banned_newest_first(self) -> list[Member]:
        """The ban list (each entry dated by its ban), most recent first."""
        return sorted(self._banned.values(), key=lambda m: (m.date, m.seq), reverse=True)

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
        """The highest id ever posted (deleted or not)."""
        return (self._lazy.count if self._lazy else 0) + len(self._messages)

    @property
    def count(self) -> int:
        """How many messages exist: what Telegram answers as a history's `count`."""
        return self.top_id - len(self._deleted)

    @property
    def deleted_ids(self) -> set[int]:
        """The deleted ids (read-only by convention; use delete() to add)."""
        return self._deleted_set

    def exists(self, msg_id: int) -> bool:
        return 0 < msg_id <= self.top_id and msg_id not in self._deleted_set

    def existing_above(self, msg_id: int) -> int:
        """How many existing messages have an id > msg_id (0 <= msg_id)."""
        top = self.top_id
        if msg_id >= top:
            return 0
        msg_id = max(msg_id, 0)
        deleted = len(self._deleted) - bisect.bisect_right(self._deleted, msg_id)
        return top - msg_id - deleted

    def newest_ids(self, start: int, size: int) -> list[int]:
        """`size` existing ids, newest first, skipping the `start` newest ones."""
        top = self.top_id
        if not self._deleted:
            return list(range(top - start, max(top - start - size, 0), -1))
        # The id at position `start`: the largest id with start + 1 existing ids >= it.
        lo, hi = 0, top  # existing_above(lo) >= start + 1 > existing_above(hi)
        if self.existing_above(0) <= start:
            return []
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.existing_above(mid) >= start + 1:
                lo = mid
            else:
                hi = mid
        ids: list[int] = []
        msg_id = hi
        while msg_id > 0 and len(ids) < size:
            if msg_id not in self._deleted_set:
                ids.append(msg_id)
            msg_id -= 1
        return ids

    def truth_ids(self) -> list[int]:
        """Every existing message id, ascending."""
        gone = self._deleted_set
        return [i for i in range(1, self.top_id + 1) if i not in gone]

    def message_text(self, msg_id: int) -> str:
        edited = self._edited.get(msg_id)
        if edited is not None:
            return edited.text
        if self._lazy is not None and msg_id <= self._lazy.count:
            return TEXTS[self._lazy.text_index(msg_id)]
        return self._explicit(msg_id).text

    def truth_messages(self) -> list[TruthMessage]:
        """The messages that exist now, in id order, with their current text and edit date."""
        out = []
        for msg_id in self.truth_ids():
            record_ = self._edited.get(msg_id) or self.message(msg_id)
            out.append(TruthMessage(msg_id, self.message_date(msg_id), self.message_text(msg_id),
                                    record_.edit_date if record_ is not None else None))
        return out

    def truth_members(self) -> list[int]:
        """Current members' user ids, most recent join first (the participants list order)."""
        return [m.user.id for m in self.members_newest_first()]

    def expected_messages(self, mark: int, *, after_id: int = 0) -> Expectation:
        """What a history stream started at world.mark() `mark` must/may deliver (truth.py);
        `after_id`: only newer ids, as a `latest` stream from that offset."""
        return expected_messages(self, mark, after_id=after_id)

    def expected_members(self, mark: int, *, joined_after: int | None = None) -> Expectation:
        """What a member listing started at `mark` must/may deliver (truth.py);
        `joined_after`: only members who joined later than that date."""
        return expected_members(self, mark, joined_after=joined_after)

    def delete(self, *msg_ids: int, date: int | None = None) -> list[int]:
        """Delete messages (ids already gone are ignored); returns the ids deleted now."""
        top = self.top_id
        gone = []
        for msg_id in sorted(set(msg_ids)):
            if not 0 < msg_id <= top:
                raise ValueError(f"message {msg_id} was never posted in {self.title}")
            if msg_id not in self._deleted_set:
                gone.append(msg_id)
        if gone:
            self._deleted_set.update(gone)
            self._deleted = sorted(self._deleted_set)
            self.world.updates.deleted(self, tuple(gone))
            record(self, "delete", date if date is not None else self.world.now(),
                   msg_ids=tuple(gone))
        return gone

    def delete_range(self, first: int, last: int, *, date: int | None = None) -> list[int]:
        """Delete every id in first..last (inclusive)."""
        return self.delete(*range(first, last + 1), date=date)

    def edit(self, msg_id: int, text: str, *, date: int | None = None) -> SandboxMessage:
        """Replace a message's text; it gets an edit_date (default: now, after its date)."""
        if not self.exists(msg_id):
            raise ValueError(f"message {msg_id} does not exist in {self.title}")
        edit_date = date if date is not None else max(self.world.now(),
                                                      self.message_date(msg_id) + 1)
        lazy = self._lazy.count if self._lazy else 0
        if msg_id <= lazy:
            base = self._edited.get(msg_id) or self._lazy_record(msg_id)
            edited = dataclasses.replace(base, text=text, edit_date=edit_date, _wire=None)
            self._edited[msg_id] = edited
        else:
            base = self._explicit(msg_id)
            if base.action is not None:
                raise ValueError("a service message cannot be edited")
            edited = dataclasses.replace(base, text=text, edit_date=edit_date, _wire=None)
            self._messages[msg_id - lazy - 1] = edited
        self.world.updates.edited(self, msg_id)
        record(self, "edit", edit_date, msg_ids=(msg_id,), text=text)
        return edited

    def _lazy_record(self, msg_id: int) -> SandboxMessage:
        assert self._lazy is not None
        spec = self._lazy.spec(msg_id)
        users = self.world.users
        values = spec[2]
        return SandboxMessage(
            id=msg_id, chat_id=self.id, broadcast=self.broadcast, date=values["date"],
            sender=users.get(values["from_id"]) if "from_id" in values else None,
            text=TEXTS[spec[1]], reply_to=values.get("reply_id"),
            fwd_user=users.get(values["fwd_from"]) if "fwd_from" in values else None,
            fwd_date=values.get("fwd_date"),
            media=self._lazy.tl(msg_id).media,  # the very same photo or document
            views=values.get("views"), forwards=values.get("forwards"))

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
        self.world.updates.backfilled(self, lazy_count)
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
            raise ValueError("a group message needs a sender")
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
            edit_date=edit_date, grouped_id=grouped_id, post_author=post_author,
            basic=self.basic)
        self._messages.append(message)
        self.world.updates.posted(self, msg_id)
        record(self, "post", date, msg_ids=(msg_id,))
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
            edited = self._edited.get(msg_id) if self._edited else None
            return edited.tl() if edited is not None else self._lazy.tl(msg_id)
        return self._explicit(msg_id).tl()

    def message_wire(self, msg_id: int) -> bytes:
        if self._lazy is not None and msg_id <= self._lazy.count:
            edited = self._edited.get(msg_id) if self._edited else None
            return edited.wire() if edited is not None else self._lazy.wire(msg_id)
        return self._explicit(msg_id).wire()

    def message_user_ids(self, msg_id: int) -> Sequence[int]:
        if self._lazy is not None and msg_id <= self._lazy.count:
            edited = self._edited.get(msg_id) if self._edited else None
            return edited.user_ids() if edited is not None else self._lazy.user_ids(msg_id)
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
            bot_info=[], pts=self.world.updates.channel_pts(self),
            participants_count=len(self._members),
            admins_count=admins if admin or not self.broadcast else None,
            can_view_participants=admin or not (self.broadcast or self.participants_hidden),
            participants_hidden=self.participants_hidden or None,
            can_set_username=(self.creator is viewer and viewer is not None) or None,
            migrated_from_chat_id=self.migrated_from.id if self.migrated_from else None,
            migrated_from_max_id=self.migrated_from.top_id if self.migrated_from else None)
