"""Streams of members and messages: backpressure, the ack barrier, offsets, cancellation.

Design notes (why it is built this way):

* Resolve first, then stream. Every group of a request is resolved (and, for `users`,
  checked for a hidden member list) before the first item goes out, so a bad name fails
  the request as the seed describes instead of truncating a stream half-way.

* Offsets advance only to what the client provably received. After every
  [streaming] ack_every items (or ack_interval seconds) the stream sends a websocket ping;
  websockets resolves the ping's waiter when the pong arrives, and a pong follows every
  frame sent before the ping on the same TCP stream. So "pong k received" proves "every
  item before ping k received", and only then is the offset up to ping k committed. Pings
  are pipelined (a committer task awaits them; the sender never stops for a round trip),
  and commits keep pace with the client even while the sender waits on backpressure. A
  dropped connection or a killed daemon means the next `latest` resends from the last
  committed point: duplicates are possible, gaps never.

* Messages go oldest first, so "the highest id confirmed" is a correct chats offset.
  Members come in Telegram's order, not by join date, so a users offset (newest join date
  delivered, plus the ids delivered with exactly that date) is committed once per group,
  after the whole group is confirmed. An interrupted members stream is resent whole.

* Two streams of the same (API key, kind, group) are serialized by a lock, so a slower
  stream can never commit over a faster one. (commit_offset is also monotonic.)

* Backpressure: frames of a batch are written with one transport write, then we wait in
  drain() while the socket's buffer is above [server] write_limit; the Telethon iterator
  is not advanced meanwhile, so memory stays flat however large the group.

Modules beside it: frames.py writes the items, acks.py confirms them, joins.py keeps the
members offset, stream_guards.py holds what surrounds each stream (progress replies,
flood and retry notices, the offset lock, the stalled-client deadline, Telegram errors).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tgws import bulk_latest, serialize
from tgws import protocol as p
from tgws.acks import AckBarrier, ClientBarrier
from tgws.context import Connection
from tgws.errors import (
    CloseCode,
    MembersHidden,
    PeerNotFound,
    Refusal,
)
from tgws.frames import send_frames
from tgws.gateway import Account, OnRetry, Page
from tgws.joins import JoinMark
from tgws.peers import Peer
from tgws.store import Offset
from tgws.stream_guards import (
    Notify,
    Progress,
    api_key_id,
    client_keeps_up,
    group_turn,
    notices,
    progress_for,
    telegram_errors,
)

log = logging.getLogger("tgws.streaming")

USERS_KIND = "users"
CHATS_KIND = "chats"


def _refused(event: str, message: str, **extra: object) -> Refusal:
    """A request refused before anything streamed: the seed closes the socket (1000).
    `extra`: keys beside the seed's message, e.g. the `group` it is about."""
    return Refusal(event, message, close=CloseCode.NORMAL, **extra)


# --- users ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _UserTarget:
    name: str
    peer: Peer
    total: int | None


async def stream_users(conn: Connection, account: Account, request: p.Users) -> None:
    event = p.USERS
    conn.acks.active = request.client_acks  # "ack": "client": items numbered, acks commit
    notify, on_retry = notices(conn, event, request.progress)
    targets: list[_UserTarget] = []
    async with telegram_errors(conn, account, event):
        for name in request.groups:
            try:
                peer = await account.resolve(name, notify)
            except PeerNotFound:
                raise _refused(event, p.DOES_NOT_EXIST.format(group=name), group=name) from None
            if peer.kind == "broadcast":
                raise _refused(event, p.IS_A_CHANNEL.format(group=name))
            if not peer.is_group:
                raise _refused(event, p.DOES_NOT_EXIST.format(group=name), group=name)
            try:
                total = await account.member_total(peer, notify)
            except MembersHidden:
                raise _refused(event, p.MEMBERS_HIDDEN.format(group=name)) from None
            targets.append(_UserTarget(name, peer, total))

        await conn.success(event, p.SENDING_USERS)
        sent_total = 0
        summaries: list[dict[str, Any]] = []
        progress = progress_for(conn, event, request.progress)
        for target in targets:
            async with group_turn(conn, progress, USERS_KIND, target.peer, target.name):
                try:
                    sent, listed, complete = await _stream_group_users(
                        conn, account, target, request, progress, notify, on_retry)
                except MembersHidden:
                    # The admins hid the list while we were listing it.
                    raise Refusal(event, p.MEMBERS_HIDDEN.format(group=target.name)) from None
            summaries.append({"group": target.name, "sent": sent, "listed": listed,
                              "total": target.total, "complete": complete})
            sent_total += sent
    totals = [s["total"] for s in summaries]
    await conn.send(p.success(
        event, p.DONE, count=sent_total,
        total=sum(totals) if all(t is not None for t in totals) else None,
        complete=all(s["complete"] for s in summaries),
        groups=summaries))


async def _stream_group_users(conn: Connection, account: Account, target: _UserTarget,
                              request: p.Users, progress: Progress, notify: Notify | None,
                              on_retry: OnRetry | None) -> tuple[int, int, bool]:
    """Stream one group's members; (sent, listed, complete). See docs/offsets.md."""
    store = conn.app.store
    key_id = api_key_id(conn)
    since = await store.get_offset(key_id, USERS_KIND, target.peer.id) if request.latest \
        else None
    counts = _LastCount(account.member_pages(
        target.peer, sweep=conn.app.config.telegram.member_sweep, on_flood=notify,
        on_retry=on_retry))
    progress.start()
    sent, listed, newest = await _send_members(conn, target, since, progress, counts.pages())
    complete = _listing_complete(listed, target.total, counts.last)
    async def commit() -> None:
        if newest is not None and complete:
            # Only a complete listing may move the offset: the members it did not reach
            # (past Telegram's cap, say) may have joined before `newest`, and the offset
            # would hide them from every later `latest`.
            await conn.app.metrics.commit(
                store.commit_offset(key_id, USERS_KIND, target.peer.id, newest))

    if conn.acks.active:
        await conn.acks.after(commit)  # once the client acked the group's last item
        return sent, listed, complete
    # The users offset is committed once per group (members come in no date order), so one
    # pong after the last frame is the only acknowledgement the group needs.
    async with client_keeps_up(conn, p.USERS):
        await (await conn.ws.ping())
    await commit()
    return sent, listed, complete


@dataclass(slots=True)
class _LastCount:
    """Member pages passed through, remembering Telegram's count with the last one."""

    source: AsyncIterator[Page[Any]]
    last: int | None = None

    async def pages(self) -> AsyncIterator[Page[Any]]:
        async for page in self.source:
            if page.total is not None:
                self.last = page.total
            yield page


def _listing_complete(listed: int, total: int | None, last_count: int | None) -> bool:
    """Whether a listing reached every member: it listed as many as Telegram counted when
    the request began, or with its last page (members who left meanwhile lower the count;
    newcomers who joined above the pages already read raise it, and may be missed:
    docs/offsets.md). The member pager never skips anyone (tgws/member_paging.py), so
    falling short of both counts means Telegram would not list them all (its cap)."""
    counts = [c for c in (total, last_count) if c is not None]
    return not counts or listed >= min(counts)


async def _send_members(conn: Connection, target: _UserTarget, since: Offset | None,
                        progress: Progress,
                        pages: AsyncIterator[Page[Any]]) -> tuple[int, int, Offset | None]:
    """Send the members newer than `since`; return (sent, listed, newest join delivered)."""
    mark = JoinMark(since)
    sent = listed = 0
    async for page in pages:
        listed += len(page.items)
        fresh = mark.unseen(page.items)
        frames = serialize.user_frames(target.name, fresh)
        if conn.acks.active:
            frames = conn.acks.number(frames)
        mark.delivered(fresh)
        async with client_keeps_up(conn, p.USERS):
            if frames:
                await send_frames(conn.ws, frames)
                sent += len(frames)
                conn.app.metrics.items_sent(p.USERS, len(frames))
            await progress.update(target.name, listed, target.total or page.total)
    return sent, listed, mark.offset()


# --- chats ---------------------------------------------------------------------------------
async def stream_chats(conn: Connection, account: Account, request: p.Chats) -> None:
    event = p.CHATS
    conn.acks.active = request.client_acks  # "ack": "client": items numbered, acks commit
    notify, on_retry = notices(conn, event, request.progress)
    targets: list[tuple[p.ChatTarget, Peer]] = []
    async with telegram_errors(conn, account, event):
        # `latest`: newest ids (and cached names checked) in bulk, 100 groups per call.
        known = await bulk_latest.prefetch(
            account, [target.name for target in request.groups if target.latest])
        for target in request.groups:
            hit = known.get(target.name)
            if hit is not None:
                targets.append((target, hit.peer))
                continue
            try:
                peer = await account.resolve(target.name, notify)
            except PeerNotFound:
                raise _refused(event, p.INVALID_REQUEST, group=target.name) from None
            if peer.kind == "user":
                raise _refused(event, p.INVALID_REQUEST, group=target.name)
            targets.append((target, peer))

        await conn.success(event, p.SENDING_CHATS)
        sent_total = 0
        summaries: list[dict[str, Any]] = []
        progress = progress_for(conn, event, request.progress)
        batch = conn.app.config.streaming.batch_size
        for target, peer in targets:
            hit = known.get(target.name)
            if hit is not None and await _nothing_new(conn, peer, hit.newest):
                summaries.append({"group": target.name, "sent": 0, "total": None})
                continue  # no getHistory (tgws/bulk_latest.py)
            async with group_turn(conn, progress, CHATS_KIND, peer, target.name):
                sent, total = await _stream_group_history(conn, account, target, peer, batch,
                                                          progress, notify, on_retry)
            summaries.append({"group": target.name, "sent": sent, "total": total})
            sent_total += sent
    await conn.send(p.success(event, p.DONE, count=sent_total, groups=summaries))


async def _nothing_new(conn: Connection, peer: Peer, newest: int) -> bool:
    """Whether this key's chats offset already covers the group's newest message."""
    since = await conn.app.store.get_offset(api_key_id(conn), CHATS_KIND, peer.id)
    return since is not None and since.value > 0 and since.value >= newest


async def _stream_group_history(conn: Connection, account: Account, target: p.ChatTarget,
                                 peer: Peer, batch: int, progress: Progress,
                                 notify: Notify | None,
                                 on_retry: OnRetry | None) -> tuple[int, int | None]:
    """A group's whole history: for a supergroup upgraded from a basic group, the old
    group's messages first (items say which chat in `chat_id`), then the supergroup's.

    Each source chat has its own offset: the supergroup's under its id, the old basic
    group's under its marked id (-chat_id), so `latest` tracks both (docs/offsets.md). The
    old history's last message, MessageActionChatMigrateTo, is skipped: the supergroup's
    first, MessageActionChannelMigrateFrom, marks the same upgrade (Telegram's apps show
    one service message there too).
    """
    old = await account.migrated_from(peer, notify)
    sent = 0
    totals: list[int] = []
    if old is not None:
        sent, old_total = await _stream_group_chats(
            conn, account, target, old, batch, progress, notify, on_retry,
            offset_group=-old.id, keep=_not_migrate_to)
        if old_total is not None:
            totals.append(old_total)
    more, total = await _stream_group_chats(conn, account, target, peer, batch, progress,
                                            notify, on_retry, sent_before=sent)
    if total is not None:
        totals.append(total)
    return sent + more, (sum(totals) if totals else None)


def _not_migrate_to(message: Any) -> bool:
    return not serialize.is_migrate_to(message)


async def _stream_group_chats(conn: Connection, account: Account, target: p.ChatTarget,
                              peer: Peer, batch: int, progress: Progress, notify: Notify | None,
                              on_retry: OnRetry | None, *, offset_group: int | None = None,
                              keep: Callable[[Any], bool] | None = None,
                              sent_before: int = 0) -> tuple[int, int | None]:
    store = conn.app.store
    key_id = api_key_id(conn)
    group_id = peer.id if offset_group is None else offset_group
    after = 0
    if target.latest:
        since = await store.get_offset(key_id, CHATS_KIND, group_id)
        after = since.value if since is not None else 0

    async def commit(last_id: Any) -> None:
        await conn.app.metrics.commit(
            store.commit_offset(key_id, CHATS_KIND, group_id, Offset(int(last_id))))

    cfg = conn.app.config.streaming
    barrier: AckBarrier | ClientBarrier = (
        conn.acks.barrier(commit) if conn.acks.active
        else AckBarrier(conn.ws, commit, every=cfg.ack_every, interval=cfg.ack_interval))
    sent = 0
    total: int | None = None
    progress.start()
    try:
        async for page in account.message_pages(peer, after_id=after, batch=batch,
                                                on_flood=notify, on_retry=on_retry):
            total = page.total
            items = page.items if keep is None else [m for m in page.items if keep(m)]
            frames = serialize.message_frames(target.name, items)
            if conn.acks.active:
                frames = conn.acks.number(frames)
            async with client_keeps_up(conn, p.CHATS):
                if frames:
                    await send_frames(conn.ws, frames)
                    conn.app.metrics.items_sent(p.CHATS, len(frames))
                sent += len(frames)
                if isinstance(barrier, ClientBarrier):
                    # Each item its own mark: an acked item is never sent again.
                    await barrier.sent_each([m.id for m in items])
                else:
                    await barrier.sent(page.items[-1].id, len(frames))
                await progress.update(target.name, sent_before + sent, total)
        async with client_keeps_up(conn, p.CHATS):
            await barrier.flush(cfg.ack_timeout)
    finally:
        barrier.stop()
    return sent, total
