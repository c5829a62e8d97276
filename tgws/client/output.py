"""Where results go: JSON lines to stdout in big chunks, everything else to stderr."""

from __future__ import annotations

import shutil
import time
from typing import BinaryIO, Final, TextIO

OUT_CHUNK: Final = 64 * 1024  # stdout write size
REDRAW_EVERY: Final = 0.1  # seconds between progress bar redraws
BAR_WIDTH: Final = 24  # characters between the brackets


class ReaderGone(Exception):
    """stdout's reader went away (EPIPE): stop quietly."""


class Output:
    """JSON lines to stdout, written in big chunks."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._chunks: list[bytes] = []
        self._size = 0
        self.lines = 0
        self.broken = False  # set once the reader went away (EPIPE)

    def write(self, line: bytes) -> None:
        self._chunks.append(line)
        self._size += len(line)
        self.lines += 1
        if self._size >= OUT_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.broken:
            raise ReaderGone
        if not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            self.broken = True
            raise ReaderGone from None


class Status:
    """Everything on stderr: notices, the summary, the progress bar (on a terminal)."""

    def __init__(self, stream: TextIO, *, quiet: bool, bar: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.bar = bar and not quiet
        self._drawn = False
        self._next_draw = 0.0
        self.reports: dict[str, tuple[int, int | None]] = {}  # group -> (sent, total)
        self._started: float | None = None  # when the bar was first drawn

    def note(self, text: str) -> None:
        if not self.quiet:
            self.error(text)

    def error(self, text: str) -> None:
        self.clear()
        self.stream.write(f"{text}\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def draw(self, kind: str, received: int, group: str) -> None:
        """Redraw at most every REDRAW_EVERY s; cheap to call per item."""
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + REDRAW_EVERY
        self._redraw(kind, received, group, now)

    def finish(self, kind: str, received: int, group: str) -> None:
        """The bar's last state, left on its own line (the summary follows it)."""
        if not self.bar or self._started is None:
            return
        self._redraw(kind, received, group, time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
        self._drawn = False

    def _redraw(self, kind: str, received: int, group: str, now: float) -> None:
        if self._started is None:
            self._started = now
        line = bar_line(kind, received, group, self.reports.get(group, (0, None)),
                        now - self._started)
        width = shutil.get_terminal_size((100, 24)).columns
        self.stream.write(f"\r\x1b[K{line[:max(width - 1, 20)]}")
        self.stream.flush()
        self._drawn = True


def bar_line(kind: str, received: int, group: str, report: tuple[int, int | None],
             elapsed: float) -> str:
    """One progress line: count and rate always; bar, percentage and ETA when the server
    reported a total for the group.

    The count is what arrived; the bar is the server's last progress report (with --latest
    the server walks the whole group to find what is new, so its "sent" is how far it got,
    not how many items it sent), and the ETA is the rest of that walk at its pace so far.
    """
    rate = received / elapsed if elapsed > 0 else 0.0
    text = f"{kind} {group}: {received:,} received, {rate:,.0f}/s"
    sent, total = report
    if not total:
        return text
    done = min(sent / total, 1.0)
    filled = int(done * BAR_WIDTH)
    pace = sent / elapsed if elapsed > 0 else 0.0
    eta = (total - min(sent, total)) / pace if pace > 0 else None
    return (f"{kind} {group} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%} "
            f"{sent:,}/{total:,}, {rate:,.0f}/s, ETA {_duration(eta)}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
