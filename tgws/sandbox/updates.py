"""Telegram's update state for a sandbox world, and the updates it pushes to connected clients.

Every content change a chat makes (chats.py: post, edit, delete, and the service messages of
joins and departures when `chat.announce_members` is on) is recorded here as Telegram numbers
it:
- a broadcast channel or megagroup has its own box: `pts` grows by 1 per new or edited message
  and by the number of ids per deletion (`pts_count`);
- a basic group's changes go to the common box of *each member's account* (per user: `pts`,
  `seq` grows by one per change, `date`), as Telegram keeps one message box per account.

Pushing: a connected SandboxSender whose client asked for updates (it sent a request not
wrapped in invokeWithoutUpdates; Telethon wraps every request when receive_updates=False) and
whose logged-in user is a member of the chat gets a `types.Updates` carrying
UpdateNewChannelMessage / UpdateEditChannelMessage / UpdateDeleteChannelMessages (channels,
seq 0) or UpdateNewMessage / UpdateEditMessage / UpdateDeleteMessages (basic groups, with the
account's seq), plus the users and chats they name, put on the client's own updates queue as
MTProtoSender._handle_update does. Telethon's MessageBox then runs unmodified: gaps, getDifference,
getChannelDifference (answered by differences.py from the records kept here).

Unkindness as data (per push, deterministic for the world's seed and the push's number):
`drop_rate` (a push is never sent), `reorder_rate` (a push is held back and overtaken by the
next one to the same client, or sent after `reorder_window` seconds), `mute(chat)` (no push for
that chat at all), `force_too_long(chat)` (the next getChannelDifference answers
channelDifferenceTooLong). None of them loses the record: a difference still returns it.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from telethon.tl import types

from tgws.sandbox.basic import chat_tl as basic_chat_tl
from tgws.sandbox.derive import when

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World

_SCALE = float(1 << 64)
KINDS = ("new", "edit", "delete")


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded change in one box."""

    pts: int  # the box's pts after the change
    pts_count: int
    kind: str  # "new", "edit" or "delete"
    chat_id: int
    msg_ids: tuple[int, ...]
    date: int  # the world clock when it happened
    seq: int = 0  # account boxes: the account's seq after the change


class Box:
    """One pts sequence: a channel's, or one account's common box. `records` cover the pts
    range (floor, pts]; a difference asked from below `floor` is "too long"."""

    __slots__ = ("date", "floor", "pts", "records", "seq")

    def __init__(self, pts: int = 1) -> None:
        self.pts = pts
        self.seq = 0
        self.date = 0  # the clock at the latest change
        self.floor = pts
        self.records: list[Record] = []

    def add(self, record: Record, keep: int) -> None:
        self.records.append(record)
        if len(self.records) > keep:  # bounded: a demo ticking for days stays small
            del self.records[: max(1, len(self.records) - keep // 2)]
            first = self.records[0]
            self.floor = first.pts - first.pts_count

    def bump(self, count: int) -> None:
        """`count` changes nobody can fetch any more (a lazy history's past)."""
        self.pts += count
        self.floor = self.pts
        self.records.clear()

    def since(self, pts: int) -> list[Record] | None:
        """The records after `pts`, oldest first; None when they are no longer kept."""
        if pts < self.floor:
            return None
        start = bisect.bisect_right(self.records, pts, key=lambda r: r.pts)
        return self.records[start:]


class Subscriber(Protocol):
    """What the log needs from a connected sender (SandboxSender)."""

    def push_target(self) -> SandboxUser | None: ...
    def listening_key(self) -> bytes | None: ...
    def push(self, updates: Any, *, hold: bool) -> str: ...


class HeldPush:
    """The reorder fault at one connection: a push held back (`hold`, drawn at reorder_rate)
    goes out right after the next push to the same connection, so that one overtakes it, or
    by itself once `window` seconds pass. Both senders and the server's endpoint use one."""

    def __init__(self, deliver: Callable[[Any], None],
                 late_ok: Callable[[], bool] = lambda: True) -> None:
        self._deliver = deliver
        self._late_ok = late_ok  # whether a push held past its window may still go out
        self._held: Any = None
        self._handle: asyncio.TimerHandle | None = None

    def push(self, item: Any, *, hold: bool, loop: asyncio.AbstractEventLoop,
             window: float) -> str:
        """Deliver ``item`` (or hold it); "pushed" or "held"."""
        held, self._held = self._held, None
        self._cancel_timer()
        if held is not None:  # this push overtakes the held one
            self._deliver(item)
            self._deliver(held)
            return "pushed"
        if hold:
            self._held = item
            self._handle = loop.call_later(window, self._flush)
            return "held"
        self._deliver(item)
        return "pushed"

    def clear(self) -> None:
        """The connection is gone: a held push is lost."""
        self._cancel_timer()
        self._held = None

    def _flush(self) -> None:
        self._handle = None
        held, self._held = self._held, None
        if held is not None and self._late_ok():
            self._deliver(held)

    def _cancel_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class UpdateLog:
    """`world.updates`: the boxes, the knobs, and the clients updates are pushed to.

    drop_rate       fraction of pushes never sent (0: none)
    reorder_rate    fraction of pushes held back and overtaken by the next one
    reorder_window  seconds a held push waits for one to overtake it
    too_long_after  pending pts above which getChannelDifference answers TooLong
                    (None: the request's `limit`, as Telegram does)
    difference_limit  records per getDifference answer before it is a DifferenceSlice
    timeout         the `timeout` channel differences carry (seconds)
    keep            records kept per box; older ones are answered with "too long"
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.drop_rate = 0.0
        self.reorder_rate = 0.0
        self.reorder_window = 0.05
        self.too_long_after: int | None = None
        self.difference_limit = 100
        self.timeout = 30
        self.keep = 10_000
        self.pushes = 0  # pushes decided so far (the next push's number)
        self.stats: Counter[str] = Counter()  # pushed, dropped, muted, held, differences, ...
        self._channels: dict[int, Box] = {}
        self._accounts: dict[int, Box] = {}
        self._muted: set[int] = set()
        self._too_long: dict[int, int] = {}
        self._senders: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self._waiters: list[asyncio.Future[None]] = []

    def note(self, name: str) -> None:
        """Count one event in `stats` and wake whoever waits on them (`until`)."""
        self.stats[name] += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def until(self, condition: Callable[[Counter[str]], bool]) -> None:
        """Wait until `condition(stats)` holds, e.g. lambda s: s["channel_too_long"] >= 1
        (callers put their own deadline around it)."""
        while not condition(self.stats):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    # --- knobs ---------------------------------------------------------------------------

    def set(self, *, drop_rate: float | None = None, reorder_rate: float | None = None,
            reorder_window: float | None = None, too_long_after: int | None = None,
            timeout: int | None = None) -> UpdateLog:
        """Change several knobs at once (None leaves one as it is); returns the log."""
        for name, rate in (("drop_rate", drop_rate), ("reorder_rate", reorder_rate)):
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1")
                setattr(self, name, rate)
        if reorder_window is not None:
            self.reorder_window = max(0.0, reorder_window)
        if too_long_after is not None:
            if too_long_after < 0:
                raise ValueError("too_long_after must be >= 0")
            self.too_long_after = too_long_after
        if timeout is not None:
            self.timeout = max(1, timeout)
        return self

    def mute(self, *chats: SandboxChat) -> None:
        """Never push these chats' updates (they are still recorded: differences return them)."""
        self._muted.update(chat.id for chat in chats)

    def unmute(self, *chats: SandboxChat) -> None:
        self._muted.difference_update(chat.id for chat in chats)

    def muted(self, chat: SandboxChat) -> bool:
        return chat.id in self._muted

    def force_too_long(self, chat: SandboxChat, times: int = 1) -> None:
        """The next `times` getChannelDifference calls for `chat` answer TooLong."""
        self._too_long[chat.id] = self._too_long.get(chat.id, 0) + times

    def take_too_long(self, chat: SandboxChat) -> bool:
        left = self._too_long.get(chat.id, 0)
        if left <= 0:
            return False
        self._too_long[chat.id] = left - 1
        return True

    # --- boxes ---------------------------------------------------------------------------

    def channel_box(self, chat: SandboxChat) -> Box:
        box = self._channels.get(chat.id)
        if box is None:
            box = self._channels[chat.id] = Box()
        return box

    def channel_pts(self, chat: SandboxChat) -> int:
        box = self._channels.get(chat.id)
        return box.pts if box is not None else 1

    def account_box(self, user: SandboxUser) -> Box:
        box = self._accounts.get(user.id)
        if box is None:
            box = self._accounts[user.id] = Box()
        return box

    def state(self, user: SandboxUser) -> Any:
        """updates.State of `user`'s account box, dated now."""
        box = self.account_box(user)
        return types.updates.State(pts=box.pts, qts=0, date=when(self.world.now()),
                                   seq=box.seq, unread_count=0)

    # --- recording (chats.py calls these) --------------------------------------------------

    def posted(self, chat: SandboxChat, msg_id: int) -> None:
        self._record(chat, "new", (msg_id,))

    def edited(self, chat: SandboxChat, msg_id: int) -> None:
        self._record(chat, "edit", (msg_id,))

    def deleted(self, chat: SandboxChat, msg_ids: tuple[int, ...]) -> None:
        self._record(chat, "delete", msg_ids)

    def backfilled(self, chat: SandboxChat, count: int) -> None:
        """A lazy history of `count` messages: their updates are long past (never fetchable)."""
        if chat.basic:
            return
        self.channel_box(chat).bump(count)

    def _record(self, chat: SandboxChat, kind: str, msg_ids: tuple[int, ...]) -> None:
        count = len(msg_ids) if kind == "delete" else 1
        now = self.world.now()
        if not chat.basic:
            box = self.channel_box(chat)
            box.pts += count
            box.date = now
            record = Record(box.pts, count, kind, chat.id, msg_ids, now)
            box.add(record, self.keep)
            if self._senders:
                self._push(chat, lambda viewer: record)
            return
        records: dict[int, Record] = {}
        for member in chat.members_newest_first():
            box = self.account_box(member.user)
            box.pts += count
            box.seq += 1
            box.date = now
            records[member.user.id] = Record(box.pts, count, kind, chat.id, msg_ids, now,
                                              box.seq)
            box.add(records[member.user.id], self.keep)
        if self._senders:
            self._push(chat, lambda viewer: records.get(viewer.id))

    # --- pushing -------------------------------------------------------------------------

    def attach(self, sender: Subscriber) -> None:
        self._senders.add(sender)

    def detach(self, sender: Subscriber) -> None:
        self._senders.discard(sender)

    def push_login_token(self, key: bytes) -> int:
        """Push updateLoginToken to the clients connected with auth key `key` (logged in or
        not): the exporter of a login token that was just accepted (qr.py). Not subject to
        drop_rate: a lost one only delays the login until the client asks again."""
        update = types.UpdateShort(update=types.UpdateLoginToken(),
                                   date=when(self.world.now()))
        sent = sum(1 for sender in list(self._senders)
                   if sender.listening_key() == key and sender.push(update, hold=False))
        self.note("login_token" if sent else "login_token_unheard")
        return sent

    def _unit(self, index: int, salt: str) -> float:
        digest = hashlib.blake2b(f"{self.world.faults.seed}:{index}:{salt}".encode(),
                                 digest_size=8, person=b"tgws-upd").digest()
        return int.from_bytes(digest, "big") / _SCALE

    def _push(self, chat: SandboxChat, record_for: Any) -> None:
        for sender in list(self._senders):
            viewer = sender.push_target()
            if viewer is None or chat.member(viewer) is None:
                continue
            record = record_for(viewer)
            if record is None:
                continue
            if chat.id in self._muted:
                self.note("muted")
                continue
            index = self.pushes
            self.pushes += 1
            if self.drop_rate > 0 and self._unit(index, "drop") < self.drop_rate:
                self.note("dropped")
                continue
            hold = self.reorder_rate > 0 and self._unit(index, "reorder") < self.reorder_rate
            outcome = sender.push(self.updates_tl(chat, record, viewer), hold=hold)
            if outcome:
                self.note(outcome)  # "pushed", or "held" (overtaken by the next one)

    def updates_tl(self, chat: SandboxChat, record: Record, viewer: SandboxUser) -> Any:
        """The `types.Updates` Telegram pushes for `record` to `viewer` (fresh objects)."""
        update = self.update_tl(chat, record)
        user_ids = ([uid for msg_id in record.msg_ids if chat.exists(msg_id)
                     for uid in chat.message_user_ids(msg_id)] if record.kind != "delete"
                    else [])
        return types.Updates(updates=[update], users=self.users_tl(user_ids, viewer),
                             chats=[self.chat_tl(chat, viewer)], date=when(record.date),
                             seq=record.seq)

    def update_tl(self, chat: SandboxChat, record: Record) -> Any:
        if record.kind == "delete":
            if chat.basic:
                return types.UpdateDeleteMessages(messages=list(record.msg_ids), pts=record.pts,
                                                  pts_count=record.pts_count)
            return types.UpdateDeleteChannelMessages(channel_id=chat.id,
                                                     messages=list(record.msg_ids),
                                                     pts=record.pts, pts_count=record.pts_count)
        message = self.message_tl(chat, record.msg_ids[0])
        if chat.basic:
            cls: Any = types.UpdateNewMessage if record.kind == "new" else types.UpdateEditMessage
        else:
            cls = (types.UpdateNewChannelMessage if record.kind == "new"
                   else types.UpdateEditChannelMessage)
        return cls(message=message, pts=record.pts, pts_count=record.pts_count)

    @staticmethod
    def message_tl(chat: SandboxChat, msg_id: int) -> Any:
        """The message as it is now (MessageEmpty once deleted)."""
        if chat.exists(msg_id):
            return chat.message_tl(msg_id)
        peer = (types.PeerChat(chat_id=chat.id) if chat.basic
                else types.PeerChannel(channel_id=chat.id))
        return types.MessageEmpty(id=msg_id, peer_id=peer)

    def users_tl(self, user_ids: list[int], viewer: SandboxUser | None) -> list[Any]:
        users = self.world.users
        return [users[uid].tl(is_self=users[uid] is viewer)
                for uid in dict.fromkeys(user_ids) if uid in users]

    @staticmethod
    def chat_tl(chat: SandboxChat, viewer: SandboxUser | None) -> Any:
        return basic_chat_tl(chat, viewer) if chat.basic else chat.tl(viewer)
