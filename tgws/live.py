"""`watch`: catch-up, then Telegram's pushes as they come, reconciled with history so none is lost.

Whole on purpose (~460 lines): one watch's state (watermark, catch-up, pushes) is owned by one
task and reads best in one place; Telethon is in account_updates.py, items in live_items.py.

Design notes:

* One watch is one stream task (cancel, the client leaving, the session ending stop it). It
  resolves its groups first (the refusals of `chats`/`users`), says "watching", joins the
  account's Feed (so pushes from then on queue up), then catches up each group exactly as
  `chats` `latest` (and `users` `latest` with "members") would, then applies the queued and
  further pushes in one loop. One task owns all the state: no locks.

* Gap-free by a watermark per group. `mark` is an id such that every message at or below it
  was delivered in this watch or its offset, or does not exist; `above` holds the ids above
  it already sent. A pushed message is sent unless already sent; `mark` moves up while the
  next id is in `above` (a channel's ids are consecutive, and so are an account's ids for
  basic groups: a missing number is a possible gap). A hole left behind a push — a push
  dropped, a channelDifferenceTooLong Telethon jumped over, a deleted id — makes the group
  due for reconciliation after [watch] gap_delay: its history after `mark` is read (the same
  getHistory paging as `chats`), every message not sent yet goes out with path "reconcile",
  and `mark` moves to the newest id that read covered (and past every id sent live before it
  began: what the history did not return no longer exists). Every group is also reconciled
  after tgws reconnected the account and every [watch] reconcile_interval seconds, the
  periodic pass asking newest ids in bulk first (tgws/bulk_latest.py's getPeerDialogs) so
  idle groups cost one call per 100.

* Offsets: the chats offset of a group is its `mark` (the `latest` rule: everything below is
  delivered), the users offset what the catch-up listing delivered (a complete one only, as
  in `users`). Each send records the offsets it makes true; they are committed when the
  client confirmed the send: by the pong barrier (tgws/acks.py AckBarrier) by default, or by
  the client's `ack` with "ack": "client". commit_offset only moves forwards, so `latest`
  and `watch` streams of the same group may interleave.

* Edits, deletions and members joining or leaving are pushed as Telegram pushes them; the
  history cannot say what was edited or deleted in a gap, so those kinds are not
  reconciled. Joins and departures come from the service messages (MessageActionChatAddUser
  & co.), so where Telegram posts them they are reconciled like messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tgws import account_updates, live_items, serialize
from tgws import protocol as p
from tgws.acks import AckBarrier
from tgws.context import Connection
from tgws.errors import (
    CloseCode,
    GatewayError,
    MembersHidden,
    NotAuthorized,
    PeerNotFound,
    Refusal,
)
from tgws.frames import send_frames
from tgws.gateway import Account
from tgws.joins import JoinMark
from tgws.live_feed import feed_of
from tgws.peers import Peer
from tgws.store import Offset
from tgws.stream_guards import api_key_id, client_keeps_up, telegram_errors

log = logging.getLogger("tgws.live")
T = TypeVar("T")

CHATS_KIND = "chats"
USERS_KIND = "users"
# (offset kind, group id, offset): what a confirmed send makes true
OffsetChange = tuple[str, int, Offset]


# --- one watch ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Group:
    name: str
    peer: Peer
    total: int | None = None  # Telegram's member count (members watched)
    mark: int = 0  # every id <= mark delivered or gone (see the notes above)
    above: set[int] = field(default_factory=set)  # ids > mark already sent


class Watcher:
    def __init__(self, conn: Connection, account: Account, request: p.Watch) -> None:
        self.conn = conn
        self.account = account
        self.request = request
        self.config = conn.app.config
        self.groups: list[Group] = []
        self.by_chat: dict[int, Group] = {}
        self.queue: asyncio.Queue[account_updates.Change] = asyncio.Queue()
        self.ledger: deque[tuple[int, list[OffsetChange]]] = deque()
        self.sends = 0
        self.barrier: AckBarrier | None = None
        self.generation = account_updates.generation(account)
        self.next_pass = 0.0
        # chat_key -> loop time its reconcile is due (a hole was seen): only these are checked
        # on each turn of the loop, whatever the number of groups watched.
        self.due: dict[int, float] = {}
        self._batch: tuple[list[bytes], list[OffsetChange]] | None = None

    def gap(self, chat: int | None) -> None:
        if chat is None:
            for key in self.by_chat:
                self.queue.put_nowait(account_updates.Change("gap", key))
        else:
            self.offer(account_updates.Change("gap", chat))

    def offer(self, change: account_updates.Change) -> None:
        if change.chat in self.by_chat:
            self.queue.put_nowait(change)

    # -- resolving --------------------------------------------------------------------------
    async def resolve(self) -> None:
        request = self.request
        for name in request.groups:
            try:
                peer = await self.account.resolve(name)
            except PeerNotFound:
                raise _refused(p.DOES_NOT_EXIST.format(group=name)) from None
            if peer.kind == "user":
                raise _refused(p.DOES_NOT_EXIST.format(group=name))
            group = Group(name, peer)
            if request.members:
                if peer.kind == "broadcast":
                    raise _refused(p.IS_A_CHANNEL.format(group=name))
                try:
                    group.total = await self.account.member_total(peer)
                except MembersHidden:
                    raise _refused(p.MEMBERS_HIDDEN.format(group=name)) from None
            if account_updates.chat_key(peer) in self.by_chat:
                continue  # two names of one group: watched once, under the first
            self.groups.append(group)
            self.by_chat[account_updates.chat_key(peer)] = group

    # -- sending and confirming ---------------------------------------------------------------
    async def send(self, frames: list[bytes], changes: list[OffsetChange],
                   each: list[list[OffsetChange]] | None = None) -> None:
        """Write `frames`; commit `changes` once the client confirmed them all, and with
        client acks `each[i]` once it acked frame i (so an acked item is never resent)."""
        conn = self.conn
        if self._batch is not None and each is None:
            self._batch[0].extend(frames)  # sent together when the queue is drained
            self._batch[1].extend(changes)
            return
        client_acks = self.request.client_acks
        if client_acks:
            frames = conn.acks.number(frames)
        if not changes and not frames:
            return
        # One deadline for the write and the ping after it (each costs a timer; a live
        # watch sends about once per message).
        async with client_keeps_up(conn, p.WATCH):
            if frames:
                await send_frames(conn.ws, frames)
                conn.app.metrics.items_sent(p.WATCH, len(frames))
            if not client_acks:
                self.sends += 1
                self.ledger.append((self.sends, [*(each[-1] if each else []), *changes]))
                assert self.barrier is not None
                await self.barrier.sent(self.sends, len(frames))
        if client_acks:
            last = conn.acks.last_sent  # ledger marks are sequence numbers
            marks = list(range(last - len(frames) + 1, last + 1)) if each else []
            for seq, own in zip(marks, each or [], strict=True):
                self.ledger.append((seq, own))
            self.ledger.append((last, changes))
            await conn.acks.after_seqs(self.confirm, [(m, m) for m in [*marks, last]])

    async def confirm(self, mark: Any) -> None:
        """Everything sent up to `mark` reached the client: commit the offsets it made true."""
        newest: dict[tuple[str, int], Offset] = {}
        while self.ledger and self.ledger[0][0] <= mark:
            for kind, group_id, offset in self.ledger.popleft()[1]:
                newest[(kind, group_id)] = offset
        if not newest:
            return
        store = self.conn.app.store
        key_id = api_key_id(self.conn)
        # One transaction for every group the confirmation covers (a pong can cover hundreds
        # of groups; their commits one by one were the watch's latency tail, bench/watch.py).
        await self.conn.app.metrics.commit(store.commit_offsets(
            key_id, [(kind, group_id, offset) for (kind, group_id), offset in newest.items()]))

    # -- catch-up -----------------------------------------------------------------------------
    async def catch_up(self, group: Group) -> None:
        if self.request.messages:
            old = await self.account.migrated_from(group.peer)
            if old is not None:
                await self.catch_up_history(group, old, -old.id, latest_mark=False)
            await self.catch_up_history(group, group.peer, group.peer.id, latest_mark=True)
        else:
            # Only edits, deletions or members: follow from the newest message now.
            newest = await account_updates.newest_ids(self.account, [group.peer])
            found = newest.get(group.peer.id)
            group.mark = found.top if found is not None else 0
        if self.request.members:
            await self.catch_up_members(group)

    async def catch_up_history(self, group: Group, peer: Peer, offset_id: int, *,
                               latest_mark: bool) -> None:
        store = self.conn.app.store
        since = await store.get_offset(api_key_id(self.conn), CHATS_KIND, offset_id)
        after = since.value if since is not None else 0
        batch = self.config.streaming.batch_size
        async for page in self.account.message_pages(peer, after_id=after, batch=batch):
            items = page.items if latest_mark else [
                m for m in page.items if not serialize.is_migrate_to(m)]
            frames = live_items.retag(serialize.message_frames(group.name, items), b"chats",
                                      p.KIND_MESSAGE, p.PATH_CATCH_UP)
            after = page.items[-1].id
            await self.send(frames, [(CHATS_KIND, offset_id, Offset(after))],
                            [[(CHATS_KIND, offset_id, Offset(m.id))] for m in items])
        if latest_mark:
            group.mark = after

    async def catch_up_members(self, group: Group) -> None:
        store = self.conn.app.store
        since = await store.get_offset(api_key_id(self.conn), USERS_KIND, group.peer.id)
        mark = JoinMark(since)
        listed = 0
        last_count: int | None = None
        async for page in self.account.member_pages(
                group.peer, sweep=self.config.telegram.member_sweep):
            listed += len(page.items)
            if page.total is not None:
                last_count = page.total
            fresh = mark.unseen(page.items)
            mark.delivered(fresh)
            frames = serialize.user_frames(group.name, fresh)
            await self.send(live_items.retag(frames, b"users", p.KIND_MEMBER, p.PATH_CATCH_UP),
                            [])
        counts = [c for c in (group.total, last_count) if c is not None]
        newest = mark.offset()
        if newest is not None and (not counts or listed >= min(counts)):
            # Only a complete listing commits (docs/offsets.md), as in `users`.
            await self.send([], [(USERS_KIND, group.peer.id, newest)])

    # -- live ---------------------------------------------------------------------------------
    async def live(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.watch.reconcile_interval
        self.next_pass = loop.time() + interval
        quiet = self.config.streaming.ack_interval
        while True:
            wait = min(self.next_pass, min(self.due.values(), default=self.next_pass))
            wait = max(0.0, min(wait - loop.time(), quiet))
            change: account_updates.Change | None = None
            if not self.queue.empty():
                change = self.queue.get_nowait()  # no timer to arm: pushes are waiting
            else:
                try:
                    async with asyncio.timeout(wait):
                        change = await self.queue.get()
                except TimeoutError:
                    if self.barrier is not None:
                        await self.barrier.ping_pending()  # confirm what a burst sent
            # Everything queued goes out as one write (one syscall, one ack mark).
            batch: tuple[list[bytes], list[OffsetChange]] = ([], [])
            self._batch = batch
            try:
                while change is not None:
                    await self.apply(change)
                    change = self.queue.get_nowait() if not self.queue.empty() else None
            finally:
                self._batch = None
            if batch[0] or batch[1]:
                await self.send(*batch)
            await self.reconcile_due(loop.time())

    async def apply(self, change: account_updates.Change) -> None:
        group = self.by_chat[change.chat]
        request = self.request
        if change.kind == "gap":
            self.due[change.chat] = asyncio.get_running_loop().time()  # reconcile now
            return
        if change.kind == "deletion":
            if request.deletions:
                item = {"chat_id": change.chat, "ids": change.ids}
                await self.send([live_items.item(group.name, "deleted", item, p.KIND_DELETION,
                                                 p.PATH_LIVE)], [])
            return
        msg_id = int(change.message.id)
        known = msg_id <= group.mark or msg_id in group.above
        if change.kind == "edit":
            if known and request.edits:
                frames = serialize.message_frames(group.name, [change.message])
                await self.send(live_items.retag(frames, b"chats", p.KIND_EDIT, p.PATH_LIVE),
                                [])
            elif not known:
                self.hole(group)  # edited before we saw it: the history has it as it is now
            return
        if known:
            return  # sent already (catch-up, an earlier push, or a reconcile)
        await self.deliver(group, [change.message], change.entities, p.PATH_LIVE)

    async def deliver(self, group: Group, messages: list[Any], entities: dict[int, Any] | None,
                      path: str) -> None:
        """Send new messages (and the member changes they announce) of `group`."""
        request = self.request
        frames: list[bytes] = []
        if request.messages:
            frames = live_items.retag(serialize.message_frames(group.name, messages),
                                      b"chats", p.KIND_MESSAGE, path)
        if request.members:
            for message in messages:
                frames.extend(live_items.members(group.name, message, entities, path))
        before = group.mark
        group.above.update(int(m.id) for m in messages)
        while group.mark + 1 in group.above:
            group.mark += 1
            group.above.discard(group.mark)
        if group.above:
            self.hole(group)
        changes = [(CHATS_KIND, group.peer.id, Offset(group.mark))] \
            if request.messages and group.mark > before else []
        await self.send(frames, changes)

    def hole(self, group: Group) -> None:
        key = account_updates.chat_key(group.peer)
        if key not in self.due:
            self.due[key] = asyncio.get_running_loop().time() + self.config.watch.gap_delay

    # -- reconciliation ----------------------------------------------------------------------
    async def reconcile_due(self, now: float) -> None:
        generation = account_updates.generation(self.account)
        if generation != self.generation:
            # tgws reconnected (or rebuilt) the client: pushes may have been missed, and a
            # new client has no handler yet.
            self.generation = generation
            await feed_of(self.account).follow()
            self.next_pass = now
        if now >= self.next_pass:
            self.next_pass = now + self.config.watch.reconcile_interval
            await self.reconcile_all()
        if not self.due:
            return
        for key, at in list(self.due.items()):
            if at <= now and key in self.due:
                await self.reconcile(self.by_chat[key])

    async def reconcile_all(self) -> None:
        """Every group, asking newest ids in bulk first: idle groups cost no history call."""
        if not self.request.messages and not self.request.members:
            return
        newest = await _quietly(account_updates.newest_ids(
            self.account, [g.peer for g in self.groups]), {})
        for group in self.groups:
            found = newest.get(group.peer.id)
            if found is None or found.top > group.mark or group.above:
                await self.reconcile(group)

    async def reconcile(self, group: Group) -> None:
        self.due.pop(account_updates.chat_key(group.peer), None)
        if not self.request.messages and not self.request.members:
            return
        started_above = max(group.above, default=group.mark)
        after = group.mark
        batch = self.config.streaming.batch_size
        try:
            async for page in self.account.message_pages(group.peer, after_id=after,
                                                         batch=batch):
                fresh = [m for m in page.items if int(m.id) not in group.above]
                top = int(page.items[-1].id)
                if fresh:
                    await self.deliver(group, fresh, None, p.PATH_RECONCILE)
                group.above.update(int(m.id) for m in page.items)
                self.settle(group, top)
        except NotAuthorized:
            raise
        except GatewayError as err:
            log.info("%s: reconciling %s failed (%s); trying again later",
                     self.conn.label(), group.name, err)
            self.hole(group)
            return
        before = group.mark
        self.settle(group, started_above)
        if group.mark > before and self.request.messages:
            await self.send([], [(CHATS_KIND, group.peer.id, Offset(group.mark))])

    def settle(self, group: Group, covered: int) -> None:
        """Everything up to `covered` was read from history (or sent): move `mark` there."""
        if covered > group.mark:
            group.mark = covered
            group.above = {i for i in group.above if i > covered}
        while group.mark + 1 in group.above:
            group.mark += 1
            group.above.discard(group.mark)
        if group.above:
            self.hole(group)

    # -- the stream ---------------------------------------------------------------------------
    async def run(self) -> None:
        conn, event = self.conn, p.WATCH
        async with telegram_errors(conn, self.account, event):
            await self.resolve()
            await conn.success(event, p.WATCHING)
            feed = feed_of(self.account)
            cfg = self.config.streaming
            if not self.request.client_acks:
                self.barrier = AckBarrier(conn.ws, self.confirm, every=cfg.ack_every,
                                          interval=cfg.ack_interval)
            try:
                await feed.join(self, self.by_chat)  # pushes queue up from now on
                self.generation = account_updates.generation(self.account)
                for group in self.groups:
                    await self.catch_up(group)
                await self.live()
            finally:
                feed.leave(self)
                if self.barrier is not None:
                    self.barrier.stop()


async def watch(conn: Connection, account: Account, request: p.Watch) -> None:
    await Watcher(conn, account, request).run()


# --- helpers ------------------------------------------------------------------------------------
def _refused(message: str) -> Refusal:
    """A watch refused before anything streamed: as `users`/`chats`, the socket closes."""
    return Refusal(p.WATCH, message, close=CloseCode.NORMAL)


async def _quietly(work: Awaitable[T], default: T) -> T:
    """A bulk look-up that may fail without ending the watch (its groups fall back)."""
    try:
        return await work
    except NotAuthorized:
        raise
    except GatewayError as err:
        log.info("bulk newest ids failed (%s); reading each group's history", err)
        return default

