"""The systemd notify protocol (sd_notify(3)), stdlib only.

systemd hands a `Type=notify` service the address of a datagram socket in $NOTIFY_SOCKET;
the service sends newline-separated `KEY=VALUE` assignments to it: READY=1 once it
accepts connections, STOPPING=1 when it starts shutting down, WATCHDOG=1 periodically
when `WatchdogSec=` is set, and so on.

Outside systemd (tests, a terminal, docker) $NOTIFY_SOCKET is unset and every method is
a no-op, so the daemon can call them unconditionally. Nothing here ever raises: failing
to talk to the service manager must not take the daemon down, it is logged once instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us, or does nothing."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """`address` as in $NOTIFY_SOCKET (a path, or `@name` for an abstract socket);
        None disables every message. `watchdog_usec` as in $WATCHDOG_USEC, already
        checked against $WATCHDOG_PID; None or <= 0 means no watchdog."""
        self._address: bytes | None = _sockaddr(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (os.environ by default).

        The watchdog settings only apply when $WATCHDOG_PID is absent or names this
        process: systemd sets it so that a child which inherited the environment (a
        subprocess, a forked helper) does not think it is the one being watched.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or _parse_int(pid) == os.getpid():
            watchdog_usec = _parse_int(env.get("WATCHDOG_USEC", ""))
        return cls(address, watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to send to (i.e. we run under systemd)."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings, or None when no watchdog is armed.

        Half the timeout, as sd_watchdog_enabled(3) recommends, so one late ping caused
        by a slow loop iteration does not get the service killed.
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Startup finished (or a reload finished): systemd considers the unit started."""
        if status is None:
            return self.send("READY=1")
        return self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> bool:
        """Shutdown began; systemd stops waiting for READY and starts TimeoutStopSec."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """A reload began; send ready() when it is done.

        MONOTONIC_USEC lets systemd (>= 253, Type=notify-reload) tell this reload apart
        from an earlier one; older versions ignore the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by `systemctl status`."""
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        """Tell systemd we are alive; needed at least every WatchdogSec."""
        return self.send("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping the watchdog every `watchdog_interval` seconds until cancelled.

        Running as a task on the daemon's event loop is the point: if the loop wedges
        (a blocking call, a busy loop), the pings stop and systemd restarts us. Returns
        at once when no watchdog is armed or there is no socket, so it can be started
        unconditionally.
        """
        interval = self.watchdog_interval
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def send(self, *assignments: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines. True if it was sent; never raises.

        A newline inside a value would start a new assignment, so it is flattened to
        a space (a STATUS text must not be able to smuggle in READY=1, say).
        """
        if self._address is None:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            # A fresh socket per message: they are rare (every WatchdogSec/2 at most),
            # there is then nothing to close at shutdown, and a restarted systemd (which
            # re-creates its socket) is reached without reconnect logic.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: these calls run on the event loop, and a full receive
                # queue on systemd's side must cost a lost ping, not a stalled daemon.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify systemd at %r: %s (further failures not logged)",
                    self._address,
                    exc,
                )
            return False
        return True


def _sockaddr(address: str) -> bytes:
    """$NOTIFY_SOCKET to a sendto() address; `@name` means the abstract name `\\0name`."""
    raw = os.fsencode(address)
    if raw.startswith(b"@"):
        return b"\0" + raw[1:]
    return raw


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
