"""File descriptors: enough for every connection we admit, and a quiet log when they run out.

Budget
    Each admitted websocket holds one descriptor, and each logged-in API key's Telegram
    client holds one more (at worst one key per connection). On top come the listening
    sockets, the sqlite files, the event loop's own and the standard streams: `RESERVE`.
    So serving `max_connections` logged-in connections plus `max_unverified` others needs

        2 * max_connections + max_unverified + RESERVE

    descriptors. At start `fit()` raises the soft RLIMIT_NOFILE to the hard one if it is
    short (systemd's LimitNOFILE= sets both), and if the limit still cannot hold that,
    shrinks the pools to what it can hold and logs a warning naming the numbers. Since
    tgws.wsguard never admits more than the pools, accept() does not run out because of us.

accept() errors
    When descriptors do run out (another process, a limit lowered at run time), asyncio's
    accept loop reports "socket.accept() out of system resource" with a traceback up to
    `backlog` (100) times per tick and retries every second: ~1,000 log lines a second.
    `AcceptErrorLog` is the loop's exception handler while tgws serves: it lets one line
    per `interval` through and counts the rest into the next one; every other report goes
    to the handler that was there before.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgws.config import ServerConfig

log = logging.getLogger("tgws.server")

RESERVE = 64
ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many connections the server admits (the config's, or fewer if descriptors are short)."""

    max_connections: int
    max_unverified: int

    @classmethod
    def of(cls, cfg: ServerConfig) -> Capacity:
        return cls(cfg.max_connections, cfg.max_unverified)

    @property
    def descriptors(self) -> int:
        return needed(self.max_connections, self.max_unverified)


def needed(max_connections: int, max_unverified: int) -> int:
    return 2 * max_connections + max_unverified + RESERVE


def fit(cfg: ServerConfig) -> Capacity:
    """The capacity the descriptor limit can hold; raises the soft limit first if needed."""
    want = needed(cfg.max_connections, cfg.max_unverified)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        # Up to the hard limit, as far as it goes: the soft one is only a default.
        target = want if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:  # e.g. EPERM under a seccomp filter
            log.debug("cannot raise RLIMIT_NOFILE to %d: %s", target, err)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return Capacity.of(cfg)
    usable = max(0, soft - RESERVE)
    unverified = max(1, min(cfg.max_unverified, usable // 4))
    connections = max(1, min(cfg.max_connections, (usable - unverified) // 2))
    log.warning(
        "RLIMIT_NOFILE is %d (hard %s) but max_connections = %d and max_unverified = %d need "
        "%d descriptors: serving at most %d logged-in and %d other connections; raise the "
        "limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections",
        soft, "unlimited" if hard == resource.RLIM_INFINITY else hard,
        cfg.max_connections, cfg.max_unverified, want, connections, unverified)
    return Capacity(connections, unverified)


Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class AcceptErrorLog:
    """An event-loop exception handler that rate-limits accept() resource errors."""

    def __init__(self, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = 0.0
        self._suppressed = 0
        self._previous: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._loop is not None and self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_ERROR:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self.interval
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self._suppressed = 0
        log.error("accept() failed: %s; retrying in 1 s%s", context.get("exception"), more)
