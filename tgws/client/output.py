"""Where results go: JSON lines to stdout in big chunks, everything else to stderr."""

from __future__ import annotations

import time
from typing import BinaryIO, Final, TextIO

OUT_CHUNK: Final = 64 * 1024  # stdout write size
REDRAW_EVERY: Final = 0.1  # seconds between progress bar redraws


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
        """Redraw at most every REDRAW_EVERY s; cheap to call per item.

        The counter is what arrived; the bar is the server's last progress report for the
        group (with --latest the server walks the whole group to find what is new, so its
        "sent" is how far it got, not how many items it sent).
        """
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + REDRAW_EVERY
        line = f"{kind}: {received:,} received ({group})"
        sent, total = self.reports.get(group, (0, None))
        if total:
            done = min(sent / total, 1.0)
            filled = int(done * 20)
            line += f"  [{'#' * filled}{'.' * (20 - filled)}] {sent:,}/{total:,}"
        self.stream.write(f"\r\x1b[K{line}")
        self.stream.flush()
        self._drawn = True
