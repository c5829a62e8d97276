"""One websocket conversation with a tgws server: frames out, replies in.

Also the errors that end a run: a failed reply (exit 1), a lost connection (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tgws import protocol as p
from tgws.client.arguments import EXIT_CONNECTION, EXIT_FAILED
from tgws.client.output import Status

CLOSE_MEANINGS: Final = {
    1000: "closed normally",
    1001: "server shutting down",
    1006: "connection dropped without a close frame",
    1008: "policy violation (too many failed logins, or the API key was revoked)",
    1009: "a frame was too big",
    1011: "server internal error",
    1013: "server busy, try again later",
}


class ClientError(Exception):
    """Ends the run: `message` goes to stderr, `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Failed(ClientError):
    """The server replied with status "failed"."""

    def __init__(self, event: str, message: str) -> None:
        super().__init__(f"{event} failed: {message}{_hint(message)}", EXIT_FAILED)
        self.event = event
        self.reason = message


class Lost(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CONNECTION)


def _hint(message: str) -> str:
    if message in (p.TELEGRAM_LOGIN_FIRST, p.SESSION_EXPIRED):
        return "\n(log in with: tgws client login)"
    return ""


def describe_close(err: ConnectionClosed) -> str:
    frame = err.rcvd or err.sent
    if frame is None:
        return CLOSE_MEANINGS[1006]
    meaning = CLOSE_MEANINGS.get(frame.code, "")
    reason = f": {frame.reason}" if frame.reason else ""
    return f"code {frame.code}{reason}" + (f" ({meaning})" if meaning else "")


@dataclass(slots=True)
class Session:
    ws: ClientConnection
    status: Status
    transcript: TextIO | None = None  # where --transcript writes the frames (stderr)

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        payload = orjson.dumps(frame)
        if self.transcript is not None:
            self._log(">", orjson.dumps(masked(frame)))
        try:
            await self.ws.send(payload, text=True)
        except ConnectionClosed as err:
            raise Lost(f"connection lost while sending {event!r}: {describe_close(err)}") \
                from None

    async def recv_raw(self, waiting_for: str) -> bytes:
        try:
            raw = await self.ws.recv(decode=False)
        except ConnectionClosed as err:
            raise Lost(f"connection lost while waiting for {waiting_for}: "
                       f"{describe_close(err)}") from None
        if isinstance(raw, str):  # not with decode=False; keeps mypy and the future honest
            raw = raw.encode()
        if self.transcript is not None:
            self._log("<", raw)
        return raw

    async def reply(self, event: str) -> str:
        """The next success reply's message to `event`; notices are shown and skipped."""
        while True:
            data = reply_data(await self.recv_raw(f"the reply to {event!r}"))
            status, message = data.get("status"), data.get("message")
            if status == p.FAILED:
                raise Failed(event_of(data, event), str(message))
            if status == p.PROGRESS:
                self.notice(data)
                continue
            if status == p.SUCCESS and isinstance(message, str):
                return message
            raise ClientError(f"unexpected reply to {event!r}: {short(data)}")

    async def request(self, event: str, data: dict[str, Any] | None = None) -> str:
        await self.send(event, data)
        return await self.reply(event)

    def notice(self, data: dict[str, Any]) -> None:
        """A status "progress" reply: a flood-wait notice or a progress report."""
        message = data.get("message")
        if isinstance(message, dict):
            group, sent, total = str(message.get("group")), message.get("sent"), \
                message.get("total")
            if isinstance(sent, int):
                self.status.reports[group] = (sent, total if isinstance(total, int) else None)
            if not self.status.bar:
                self.status.note(f"progress: {group} {sent}/{total}")
        else:  # "telegram asks to wait N s; waiting": always worth knowing why it stalls
            self.status.error(str(message))

    def _log(self, arrow: str, frame: bytes) -> None:
        assert self.transcript is not None
        self.status.clear()
        self.transcript.write(f"{arrow} {frame.decode('utf-8', 'replace')}\n")
        self.transcript.flush()


def reply_data(raw: bytes) -> dict[str, Any]:
    """The "data" object of a reply frame, with the event name folded in as "event_of"."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError(f"the server sent something that is not JSON: {raw[:200]!r}") \
            from None
    data = frame.get("data") if isinstance(frame, dict) else None
    if not isinstance(data, dict):
        raise ClientError(f"unexpected frame from the server: {raw[:200]!r}")
    data["event_of"] = frame.get("event")
    return data


def event_of(data: dict[str, Any], default: str) -> str:
    event = data.get("event_of")
    return event if isinstance(event, str) else default


def short(data: dict[str, Any]) -> str:
    text = orjson.dumps({k: v for k, v in data.items() if k != "event_of"}).decode()
    return text if len(text) <= 300 else text[:299] + "…"


def masked(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame as the transcript shows it: secrets replaced, the rest byte for byte."""
    data = frame.get("data")
    if not isinstance(data, dict) or not ({"apiKey", "password"} & data.keys()):
        return frame
    shown = dict(data)
    if isinstance(shown.get("apiKey"), str):
        key = shown["apiKey"]
        # Enough to tell keys apart ("tgws_" + 3 of ~43 random characters), not to use one.
        shown["apiKey"] = key[:8] + "…" if len(key) > 16 else "…"
    if "password" in shown:
        shown["password"] = "********"
    return {**frame, "data": shown}
