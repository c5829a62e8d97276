"""When Telegram fails, stalls or drops the connection: deadlines, transient errors, backoff.

The gateway's neighbour for one question: "is this failure worth trying again, and when?"

* Deadlines. Every call the gateway makes runs under `[telegram] call_timeout`, every
  connect (TCP, key exchange and the first request together) under `connect_timeout`.
  Telethon pings only every 60 s and has no deadline of its own on a key exchange, so
  without ours a silent endpoint holds a request (and, through the connect lock, every
  later request of that API key) for as long as it stays silent.
* Transient failures are what Telethon raises when the path to Telegram failed rather
  than Telegram saying no: a 5xx after Telethon's own `request_retries` (clients are built
  with raise_last_call_error=True, so the real RPC error arrives, not a bare ValueError),
  a dropped connection, a deadline passed, and an endpoint that does not speak MTProto at
  all (an HTTP server answers with bytes Telethon cannot frame: IncompleteReadError,
  InvalidBufferError). `unavailable()` turns each into TelegramUnavailable.
* A request that fails that way answers "telegram unavailable, try again later"; a stream
  retries it `stream_retries` times in a row with exponential `Backoff`, resuming after the
  last item it handed out (gateway._batches), and only then fails the same way.
* `Pending` remembers which calls are in flight and whether the account's last attempt
  failed this way, so /healthz can say which accounts are stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from telethon import errors
from telethon.errors.common import (
    AuthKeyNotFound,
    InvalidBufferError,
    InvalidChecksumError,
    SecurityError,
    TypeNotFoundError,
)

from tgws.errors import TelegramUnavailable

BACKOFF_CAP = 30.0  # seconds: the longest pause between two retries of a stream

# Telegram's own "try again" errors (5xx and -500 timeouts), as Telethon classifies them.
SERVER_ERRORS: tuple[type[BaseException], ...] = (
    errors.ServerError,
    errors.TimedOutError,
    errors.RpcCallFailError,
    errors.RpcMcgetFailError,
    errors.InterdcCallErrorError,
    errors.InterdcCallRichErrorError,
)
# The path to Telegram failed: dropped or refused connections, deadlines, and endpoints
# that answer something other than MTProto.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    InvalidBufferError,
    InvalidChecksumError,
    TypeNotFoundError,
    SecurityError,
    AuthKeyNotFound,
)
TRANSIENT: tuple[type[BaseException], ...] = SERVER_ERRORS + CONNECTION_ERRORS


def unavailable(err: BaseException, *, deadline: float | None = None) -> TelegramUnavailable:
    """The gateway's error for a transient failure, saying what happened (for the log)."""
    if isinstance(err, TimeoutError) and deadline is not None:
        return TelegramUnavailable(f"no answer from Telegram within {deadline:g} s")
    if isinstance(err, SERVER_ERRORS):
        return TelegramUnavailable(f"Telegram failed the call: {err}")
    if isinstance(err, asyncio.IncompleteReadError | InvalidBufferError
                  | InvalidChecksumError | TypeNotFoundError):
        return TelegramUnavailable(f"the endpoint does not answer as MTProto: "
                                   f"{type(err).__name__}")
    return TelegramUnavailable(f"connection to Telegram failed: {type(err).__name__}: {err}")


def needs_new_connection(err: BaseException) -> bool:
    """A deadline passed or the connection broke: reconnect before the next attempt.

    A 5xx came over a working connection, so that one is kept.
    """
    return not isinstance(err, SERVER_ERRORS)


def cancelled_by_disconnect() -> bool:
    """True inside `except CancelledError` when nobody cancelled this task.

    Telethon (and the sandbox) cancel the futures of requests in flight when a client
    disconnects, and awaiting a cancelled future raises CancelledError in a task that was
    never asked to stop. For us that is a dropped connection, not a cancellation.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


@dataclass(slots=True)
class Backoff:
    """Retries in a row of one stream: `first` seconds, doubling, at most BACKOFF_CAP.

    `failed()` returns the pause before the next attempt, or None once `budget` retries in
    a row have failed; `succeeded()` (a page arrived) starts the count again.
    """

    budget: int
    first: float
    failures: int = 0

    def failed(self) -> float | None:
        self.failures += 1
        if self.failures > self.budget:
            return None
        pause: float = min(self.first * 2.0 ** (self.failures - 1), BACKOFF_CAP)
        return pause

    def succeeded(self) -> None:
        self.failures = 0


_tokens = itertools.count()


@dataclass(slots=True)
class Pending:
    """Calls in flight on one account (token -> deadline), and whether it is unreachable."""

    calls: dict[int, float] = field(default_factory=dict)
    unreachable_since: float | None = None

    @contextlib.contextmanager
    def call(self, seconds: float) -> Iterator[None]:
        token = next(_tokens)
        self.calls[token] = time.monotonic() + seconds
        try:
            yield
        finally:
            del self.calls[token]

    def ok(self) -> None:
        self.unreachable_since = None

    def failed(self) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()

    def stuck(self, now: float | None = None) -> bool:
        """A call pending past its deadline, or the last attempt could not reach Telegram."""
        now = time.monotonic() if now is None else now
        return self.unreachable_since is not None or any(d < now for d in self.calls.values())
