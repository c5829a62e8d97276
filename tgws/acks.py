"""Acknowledgements: an item counts as delivered once a pong sent after it has come back.

websockets resolves a ping's waiter when its pong arrives, and the client answers pings in
order on the same TCP stream as the frames before them, so "pong k received" proves "every
frame written before ping k received". Streams commit their offsets only to such proven
marks (see the design notes in tgws/streaming.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

_NOTHING: Any = object()


class AckBarrier:
    """Pipelined ping/pong acknowledgements: commit each batch's mark once its pong is in.

    The sender never waits for a pong: `sent()` queues the ping's waiter, and a committer
    task awaits the pongs in order and commits the newest confirmed mark, coalescing pongs
    that arrived together. Commits therefore keep pace with the client even while the
    sender is blocked on backpressure, and a daemon killed at any moment has committed
    everything the client had acknowledged a moment earlier.
    """

    def __init__(self, ws: ServerConnection, commit: Callable[[Any], Awaitable[None]], *,
                 every: int = 1000, interval: float = 0.25) -> None:
        self.ws = ws
        self.commit = commit
        # Ask for a pong after `every` items or `interval` seconds, whichever comes first:
        # each acknowledgement costs a ping, a pong, a wake-up and one sqlite commit
        # (~100 µs), so per 100-item batch it was ~1-4 µs per message (bench/README.md).
        self.every = every
        self.interval = interval
        self._unconfirmed = 0
        self._unpinged: Any = _NOTHING
        self._last_ping = 0.0
        # (pong waiter, mark); a None waiter asks the committer to finish.
        self._pending: deque[tuple[Awaitable[float] | None, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._committer())

    async def sent(self, mark: Any, count: int) -> None:
        """`count` items up to `mark` were written; ask the client to confirm them in time."""
        if self._task.done():
            await self._task  # re-raise what stopped the committer (connection closed)
        self._unconfirmed += count
        self._unpinged = mark
        now = time.monotonic()
        if self._unconfirmed >= self.every or now - self._last_ping >= self.interval:
            await self._ping(now)

    async def _ping(self, now: float) -> None:
        waiter = await self.ws.ping()
        self._push(waiter, self._unpinged)
        self._unconfirmed = 0
        self._unpinged = _NOTHING
        self._last_ping = now

    async def ping_pending(self) -> None:
        """Ask now for the pong of items sent since the last ping (a live stream that went
        quiet: no next `sent()` would ask for it)."""
        if self._task.done():
            await self._task
        if self._unpinged is not _NOTHING:
            await self._ping(time.monotonic())

    async def flush(self, limit: float | None = None) -> None:
        """Wait until every item sent so far is confirmed and committed.

        TimeoutError after `limit` seconds: a client that stopped reading never sends
        the pong, and with [server] ping_interval = 0 nothing else would end the wait.
        """
        async with asyncio.timeout(limit):
            if self._unpinged is not _NOTHING:
                await self._ping(time.monotonic())
            self._push(None, None)
            await self._task

    def stop(self) -> None:
        """Stop committing (the stream ended or was cancelled); what was committed stays."""
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            self._task.exception()  # retrieved: a closed connection is not worth a warning

    def _push(self, waiter: Awaitable[float] | None, mark: Any) -> None:
        self._pending.append((waiter, mark))
        self._wakeup.set()

    async def _committer(self) -> None:
        pending = self._pending
        while True:
            while not pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            waiter, newest = pending.popleft()
            if waiter is None:
                return
            await waiter
            # Pongs come in order: later waiters already confirmed are coalesced. Not
            # merely done: the connection's end fails every pending waiter at once, and a
            # failed ping proves nothing (counting it committed a batch the client never got).
            while pending and pending[0][0] is not None and _confirmed(pending[0][0]):
                newest = pending.popleft()[1]
            await self.commit(newest)


def _confirmed(waiter: Awaitable[float]) -> bool:
    """Whether the pong of this ping came back (a failed or cancelled waiter is done too)."""
    return isinstance(waiter, asyncio.Future) and waiter.done() \
        and not waiter.cancelled() and waiter.exception() is None


# --- client acks ------------------------------------------------------------------------------
SEQ_KEY = b',"seq":'


def with_seq(frame: bytes, seq: int) -> bytes:
    """`frame` (a compact reply ending with the close of `data` and of the frame) with
    `"seq": seq` as the last key of `data`."""
    return b"%s%s%d}}" % (frame[:-2], SEQ_KEY, seq)


Commit = Callable[[Any], Awaitable[None]]


class ClientAcks:
    """Acks the application sends ("ack": "client"): one per connection, for every stream on it.

    Each item sent gets the next sequence number (1, 2, …, never reused on the connection).
    Work that must wait until the client has processed items (an offset commit) is queued
    as (seq, commit, mark) and runs as `commit(mark)` when `{"event": "ack", "data":
    {"seq": N}}` covers seq; an ack covers every item up to N. Marks queued for the same
    commit only move forwards, so one ack runs each commit once, with its newest mark. A
    connection that closes runs nothing more: what was not acked is sent again by the next
    `latest`.
    """

    # One per connection, most never used: slots and a queue made on first use keep an
    # idle connection ~0.9 KiB smaller (an empty deque alone is 760 bytes).
    __slots__ = ("_waiting", "acked", "active", "last_sent")

    def __init__(self) -> None:
        self.active = False  # the running users/chats stream asked for "ack": "client"
        self.last_sent = 0  # the newest sequence number handed out
        self.acked = 0  # the newest sequence number the client acked
        self._waiting: deque[tuple[int, Commit, Any]] | None = None

    def number(self, frames: list[bytes]) -> list[bytes]:
        """`frames` with the next sequence numbers added."""
        first = self.last_sent + 1
        self.last_sent += len(frames)
        return [with_seq(frame, seq) for seq, frame in enumerate(frames, first)]

    async def after(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` once every item numbered so far is acked (now, if it already is)."""
        async def run(_: Any) -> None:
            await work()

        await self.after_each(run, [None])

    async def after_each(self, commit: Commit, marks: list[Any]) -> None:
        """`commit(marks[i])` once the i-th of the last len(marks) items numbered is acked."""
        first = self.last_sent - len(marks) + 1
        await self.after_seqs(commit, list(enumerate(marks, first)))

    async def after_seqs(self, commit: Commit, pairs: list[tuple[int, Any]]) -> None:
        """`commit(mark)` once item `seq` is acked, for each (seq, mark), seqs ascending."""
        if self._waiting is None:
            self._waiting = deque()
        for seq, mark in pairs:
            self._waiting.append((seq, commit, mark))
        await self._run()

    async def ack(self, seq: int) -> None:
        """The client processed everything up to `seq`. ValueError when `seq` was never sent."""
        if seq > self.last_sent:
            raise ValueError(seq)
        self.acked = max(self.acked, seq)
        await self._run()

    async def _run(self) -> None:
        waiting = self._waiting
        if not waiting:
            return
        due: dict[Commit, Any] = {}
        while waiting and waiting[0][0] <= self.acked:
            _, commit, mark = waiting.popleft()
            due.pop(commit, None)  # re-inserted: runs in the order of its newest mark
            due[commit] = mark
        for commit, mark in due.items():
            await commit(mark)

    def barrier(self, commit: Commit) -> ClientBarrier:
        """An AckBarrier look-alike for a stream whose offsets wait for the client's acks."""
        return ClientBarrier(self, commit)


class ClientBarrier:
    """AckBarrier's interface over ClientAcks: each item's mark is committed once the client
    acked it. Nothing waits for the client: `done` follows the last item at once, and
    commits run whenever the acks come (on this connection, while it is open)."""

    def __init__(self, acks: ClientAcks, commit: Commit) -> None:
        self.acks = acks
        self.commit = commit

    async def sent(self, mark: Any, count: int) -> None:
        """The last `count` items numbered are covered by `mark` once the last is acked."""
        await self.acks.after_each(self.commit, [mark])

    async def sent_each(self, marks: list[Any]) -> None:
        """The last len(marks) items numbered, each with its own mark."""
        await self.acks.after_each(self.commit, marks)

    async def flush(self, limit: float | None = None) -> None:
        return None

    def stop(self) -> None:
        return None
