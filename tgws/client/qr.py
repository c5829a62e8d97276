"""`tgws client login --qr`: the QR codes the server sends, drawn in the terminal.

segno draws them (a small, well-kept QR encoder with no dependencies): in "compact" mode, two
rows of modules per line of half-block characters, plain text that any terminal or log shows.
On a terminal each new code (Telegram renews them about every 30 s) replaces the previous one
in place; elsewhere they follow each other.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TextIO

import segno

from tgws import protocol as p
from tgws.client.actions import finish_login
from tgws.client.session import ClientError, Failed, Session, event_of, reply_data, short

HOW_TO_SCAN = ("scan it with a Telegram app where the account is logged in "
               "(Settings > Devices > Link Desktop Device)")


class QrDrawing:
    """Draws QR codes on `stream`; on a terminal a new one replaces the one before."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.codes = 0  # codes drawn so far
        self._lines = 0  # lines the last drawing took (to move back over it)

    def show(self, url: str, expires: object) -> None:
        qr = segno.make(url, error="l", micro=False)
        picture = io.StringIO()
        qr.terminal(out=picture, compact=True, border=2)
        when = f"; it expires at {expires}" if isinstance(expires, str) else ""
        text = f"{picture.getvalue()}{url}\n{HOW_TO_SCAN}{when}\n"
        if self.tty and self._lines:
            self.stream.write(f"\x1b[{self._lines}F\x1b[J")  # up over the old code, clear
        self.stream.write(text)
        self.stream.flush()
        self._lines = text.count("\n")
        self.codes += 1


async def qr_login(session: Session, read: Callable[[str, bool], Any],
                   drawing: QrDrawing) -> str:
    """Send {"qr": true}, draw each code, then finish like the code login (2FA password)."""
    event = p.TELEGRAM_LOGIN
    await session.send(event, {"qr": True})
    while True:
        data = reply_data(await session.recv_raw("the QR code login"))
        status, message = data.get("status"), data.get("message")
        if status == p.FAILED:
            raise Failed(event_of(data, event), str(message))
        if status == p.PROGRESS:
            session.notice(data)
        elif status == p.SUCCESS and message == p.SCAN_QR and isinstance(data.get("url"), str):
            drawing.show(data["url"], data.get("expires"))
        elif status == p.SUCCESS and isinstance(message, str):
            return await finish_login(session, message, read)
        else:
            raise ClientError(f"unexpected reply to {event!r}: {short(data)}")
