"""`tgws client`: the reference command-line client of the tgws websocket protocol.

It speaks only the wire protocol (docs/protocol.md), so it works against any tgws server,
and every request it sends is one a third-party client could send. `--transcript` shows
the frames both ways, which is how the sample session in docs/protocol.md was made.

Design notes:

* One JSON line per item on stdout, everything else on stderr, so `| jq` and `> file`
  just work. stdout is written in 64 KiB chunks (plus a flush every 0.2 s, so a slow live
  stream still shows up promptly): a million-line stream costs a million small appends,
  not a million syscalls.
* The hot loop (one iteration per streamed item) receives bytes (`recv(decode=False)`), so
  orjson parses the UTF-8 payload directly, and it does no per-item work beyond parse,
  pick the inner object, dump.
* Keepalive pings from this side are off: while stdout is blocked (`| less` paused), the
  pong would queue behind unread data frames and websockets would drop a healthy
  connection after ping_timeout. The server pings us; a dead server shows as a closed TCP
  connection (exit 3).
* Terminal input (phone, code, password) is read in a daemon thread, so the event loop
  keeps answering the server's pings while a person types, and Ctrl-C is not held up by
  a thread blocked in readline() (asyncio.to_thread's executor is joined at exit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, TextIO

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tgws import __version__
from tgws import protocol as p

DEFAULT_URL: Final = "ws://127.0.0.1:8000/ws/telegram/"
MAX_SIZE: Final = 16 * 1024 * 1024  # one frame; a message with a long text is still far below
OUT_CHUNK: Final = 64 * 1024  # stdout write size
FLUSH_EVERY: Final = 0.2  # seconds; how stale stdout may get while a stream trickles
REDRAW_EVERY: Final = 0.1  # seconds between progress bar redraws

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # a failed reply, an unexpected reply, or no input for a prompt
EXIT_USAGE: Final = 2  # as argparse
EXIT_CONNECTION: Final = 3  # could not connect, or the connection was lost

# What the server sends per item, by event: {"message": {"group": G, KEY: {...}}}.
ITEM_KEY: Final = {p.USERS: "user", p.CHATS: "chat"}

CLOSE_MEANINGS: Final = {
    1000: "closed normally",
    1001: "server shutting down",
    1006: "connection dropped without a close frame",
    1008: "policy violation (too many failed logins, or the API key was revoked)",
    1009: "a frame was too big",
    1011: "server internal error",
    1013: "server busy, try again later",
}

EPILOG: Final = f"""\
output:
  users and chats print one JSON object per line on stdout: the user or message object
  the server sent, with a "group" key added (first) naming the group it came from, e.g.
    {{"group":"testgroup00001","id":5000001,"username":"...","first_name":"...",...}}
  so `| jq -r .username` or `| jq 'select(.group=="x")'` work without unwrapping.
  ("group" is always the requested group; it replaces a "group" field of the object.)
  Everything else (progress, flood-wait notices, the summary, errors) goes to stderr.

login:
  `login` asks for the phone number, the code and, for accounts with two-step
  verification, the password (read without echo). When standard input is not a
  terminal, or with --phone, the code (and then the password, if asked for) are read
  as lines from standard input:  printf '12345\\n' | tgws client login --phone +91...
  If the server already holds a Telegram session for the API key, login says so and
  exits 0.

environment:
  TGWS_URL        default for --url ({DEFAULT_URL})
  TGWS_API_KEY    default for --api-key

exit codes:
  0  done (or login/logout succeeded, or the reader of stdout went away, e.g. | head)
  1  the server replied "failed" (its message is printed), or replied unexpectedly
  2  usage error
  3  could not connect, or the connection was lost before the reply or "done"
  130 interrupted (Ctrl-C)
"""


# --- arguments ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill in the `client` subparser of `tgws`."""
    parser.description = ("Talk to a tgws server: log in to Telegram, stream group members "
                          "or messages as JSON lines, log out.")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _add_common(parser, suppress=False)
    # The common options are accepted after the action too (`... users g --api-key K`).
    # SUPPRESS keeps a sub-parser from overwriting a value given before the action.
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, kind, what in ((p.USERS, "members", "groups"),
                             (p.CHATS, "messages", "groups or channels")):
        sub = actions.add_parser(
            name, parents=[common], help=f"stream the {kind} of {what} as JSON lines",
            description=f"Stream the {kind} of one or more {what}, one JSON line each.",
            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("groups", nargs="+", metavar="GROUP",
                         help="group username (e.g. testgroup00001)")
        sub.add_argument("--latest", action="store_true",
                         help="only what is new since this API key's last stream "
                              "(status \"latest\")")
        sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="ask the server for progress reports (default: on when "
                              "stderr is a terminal and stdout is not)")
    login = actions.add_parser(
        "login", parents=[common], help="log the API key's account in to Telegram",
        description="Log the API key's account in to Telegram (phone, code, 2FA password).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    login.add_argument("--phone", metavar="PHONE",
                       help="phone number in international format (e.g. +919876543210); "
                            "then the code and password are read from standard input lines")
    actions.add_parser("logout", parents=[common], help="end the Telegram session of the key",
                       description="Log the API key's Telegram session out.")


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), metavar="URL",
                        help=f"server websocket URL (default: $TGWS_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=default(None), metavar="KEY",
                        help="API key (default: $TGWS_API_KEY)")
    parser.add_argument("--transcript", action="store_true", default=default(False),
                        help="print every frame sent (> ...) and received (< ...) on stderr; "
                             "the API key and password are masked")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no summary or progress on stderr, only errors")


# --- errors ------------------------------------------------------------------------------
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


class ReaderGone(Exception):
    """stdout's reader went away (EPIPE): stop quietly."""


def _hint(message: str) -> str:
    if message in (p.TELEGRAM_LOGIN_FIRST, p.SESSION_EXPIRED):
        return "\n(log in with: tgws client login)"
    return ""


def _describe_close(err: ConnectionClosed) -> str:
    frame = err.rcvd or err.sent
    if frame is None:
        return CLOSE_MEANINGS[1006]
    meaning = CLOSE_MEANINGS.get(frame.code, "")
    reason = f": {frame.reason}" if frame.reason else ""
    return f"code {frame.code}{reason}" + (f" ({meaning})" if meaning else "")


# --- output ------------------------------------------------------------------------------
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


# --- one websocket session ---------------------------------------------------------------
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
            self._log(">", orjson.dumps(_masked(frame)))
        try:
            await self.ws.send(payload, text=True)
        except ConnectionClosed as err:
            raise Lost(f"connection lost while sending {event!r}: {_describe_close(err)}") \
                from None

    async def recv_raw(self, waiting_for: str) -> bytes:
        try:
            raw = await self.ws.recv(decode=False)
        except ConnectionClosed as err:
            raise Lost(f"connection lost while waiting for {waiting_for}: "
                       f"{_describe_close(err)}") from None
        if isinstance(raw, str):  # not with decode=False; keeps mypy and the future honest
            raw = raw.encode()
        if self.transcript is not None:
            self._log("<", raw)
        return raw

    async def reply(self, event: str) -> str:
        """The next success reply's message to `event`; notices are shown and skipped."""
        while True:
            data = _data(await self.recv_raw(f"the reply to {event!r}"))
            status, message = data.get("status"), data.get("message")
            if status == p.FAILED:
                raise Failed(_event(data, event), str(message))
            if status == p.PROGRESS:
                self.notice(data)
                continue
            if status == p.SUCCESS and isinstance(message, str):
                return message
            raise ClientError(f"unexpected reply to {event!r}: {_short(data)}")

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


def _data(raw: bytes) -> dict[str, Any]:
    """The "data" object of a reply frame, with the event name folded in as "_event"."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError(f"the server sent something that is not JSON: {raw[:200]!r}") \
            from None
    data = frame.get("data") if isinstance(frame, dict) else None
    if not isinstance(data, dict):
        raise ClientError(f"unexpected frame from the server: {raw[:200]!r}")
    data["_event"] = frame.get("event")
    return data


def _event(data: dict[str, Any], default: str) -> str:
    event = data.get("_event")
    return event if isinstance(event, str) else default


def _short(data: dict[str, Any]) -> str:
    text = orjson.dumps({k: v for k, v in data.items() if k != "_event"}).decode()
    return text if len(text) <= 300 else text[:299] + "…"


def _masked(frame: dict[str, Any]) -> dict[str, Any]:
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


# --- the actions -------------------------------------------------------------------------
async def api_login(session: Session, api_key: str) -> str:
    return await session.request(p.LOGIN, {"apiKey": api_key})


async def stream(session: Session, out: Output, event: str, groups: list[str], *,
                 latest: bool, progress: bool) -> None:
    """Send a users/chats request and print every item until "done"."""
    status = "latest" if latest else ""
    if event == p.USERS:
        data: dict[str, Any] = {"group": groups, "status": status, "progress": progress}
    else:
        data = {"group": [{"name": g, "status": status} for g in groups], "status": "",
                "progress": progress}
    first = await session.request(event, data)
    if first not in (p.SENDING_USERS, p.SENDING_CHATS):
        raise ClientError(f"unexpected reply to {event!r}: {first!r}")

    key = ITEM_KEY[event]
    bar = session.status.bar
    draw = session.status.draw
    write = out.write
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    recv = session.recv_raw
    loads = orjson.loads
    received = 0
    waiting_for = f"the rest of the {event} stream"
    while True:
        raw = await recv(waiting_for)
        try:
            frame = loads(raw)
            data = frame["data"]
            message = data["message"]
            item = message[key] if data["status"] == p.SUCCESS else None
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            item = None
        if isinstance(item, dict):  # the hot path: one streamed user or message
            group = message.get("group")
            line = {"group": group}
            line.update(item)
            line["group"] = group  # first in the line, and always the requested group
            write(dumps(line, option=newline))
            received += 1
            if bar:
                draw(event, received, str(group))
            continue
        data = _data(raw)
        reply_status, message = data.get("status"), data.get("message")
        if reply_status == p.PROGRESS:
            session.notice(data)
        elif reply_status == p.FAILED:
            raise Failed(_event(data, event), str(message))
        elif reply_status == p.SUCCESS and message == p.DONE:
            out.flush()
            _summarize(session.status, event, data, received)
            return
        else:
            raise ClientError(f"unexpected reply during the {event} stream: {_short(data)}")


def _summarize(status: Status, event: str, data: dict[str, Any], received: int) -> None:
    """The "done" reply on stderr, with warnings when something did not add up."""
    count = data.get("count")
    groups = data.get("groups")
    # tgws sends one summary object per group ({"group", "sent", ...}); plain names are fine.
    summaries = [g if isinstance(g, dict) else {"group": g}
                 for g in (groups if isinstance(groups, list) else [])]
    where = ", ".join(str(g.get("group")) for g in summaries) or "?"
    noun = "users" if event == p.USERS else "messages"
    status.note(f"done: {received} {noun} from {where}")
    if isinstance(count, int) and count != received:
        status.error(f"warning: the server counted {count} {noun}, {received} arrived")
    incomplete = [g for g in summaries if g.get("complete") is False]
    for g in incomplete:
        status.error(f"warning: {g.get('group')}: only {g.get('listed')} of {g.get('total')} "
                     "members could be listed")
    if data.get("complete") is False and not incomplete:
        status.error(f"warning: the member list is incomplete ({data.get('total')} members)")


async def telegram_login(session: Session, phone: str | None,
                         read: Callable[[str, bool], Any]) -> str:
    """Drive 'telegram login' until the server says we are in; returns its last message."""
    event = p.TELEGRAM_LOGIN
    if phone is None:
        phone = (await read("phone number (international format, e.g. +919876543210): ",
                            False)).strip()
    message = await session.request(event, {"phone": phone})
    while True:
        if message == p.SEND_CODE:
            code = (await read("code Telegram sent you: ", False)).strip()
            message = await session.request(event, {"code": code})
        elif message == p.SEND_PASSWORD:
            password = (await read("two-step verification password: ", True)).rstrip("\r\n")
            message = await session.request(event, {"password": password})
        elif message in (p.LOGGED_IN, p.SESSION_EXISTS_TELEGRAM):
            return message
        else:
            raise ClientError(f"unexpected reply to {event!r}: {message!r}")


def terminal_reader(stdin: TextIO, stderr: TextIO) -> Callable[[str, bool], Any]:
    """read(prompt, secret) -> awaitable line: a prompt on a terminal, a plain line otherwise."""

    def blocking(prompt: str, secret: bool) -> str:
        if stdin.isatty():
            if secret:
                return getpass.getpass(prompt, stream=stderr)
            stderr.write(prompt)
            stderr.flush()
        line = stdin.readline()
        if not line:
            what = prompt.split(" (")[0].rstrip(": ")
            raise ClientError(f"no {what} on standard input")
        return line

    async def read(prompt: str, secret: bool) -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def settle(result: str | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or "")

        def work() -> None:
            try:
                line, error = blocking(prompt, secret), None
            except BaseException as exc:  # e.g. EOFError, ClientError: handed to the loop
                line, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(settle, line, error)

        threading.Thread(target=work, name="tgws-client-input", daemon=True).start()
        return await future

    return read


# --- run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("TGWS_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("TGWS_API_KEY")
    if not api_key:
        print("tgws client: an API key is needed: --api-key KEY or $TGWS_API_KEY",
              file=sys.stderr)
        return EXIT_USAGE
    out = Output(sys.stdout.buffer)
    try:
        return asyncio.run(_main(args, url, api_key, out))
    except ReaderGone:
        # `| head` closed the pipe: nothing more to say. Point stdout at /dev/null so the
        # interpreter's final flush cannot print a BrokenPipeError traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK


async def _main(args: argparse.Namespace, url: str, api_key: str, out: Output) -> int:
    stderr = sys.stderr
    streaming = args.action in ITEM_KEY
    bar = streaming and stderr.isatty() and not sys.stdout.isatty()
    status = Status(stderr, quiet=args.quiet, bar=bar)
    try:
        async with connect(url, max_size=MAX_SIZE, compression=None, ping_interval=None,
                           close_timeout=2, user_agent_header=f"tgws-client/{__version__}"
                           ) as ws:
            session = Session(ws, status, stderr if args.transcript else None)
            flusher = asyncio.get_running_loop().create_task(_flush_forever(out, ws))
            try:
                return await _act(args, session, out, api_key)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                status.clear()
                out.flush()
    except ClientError as err:
        if isinstance(err, Lost) and out.broken:
            raise ReaderGone from None  # we closed the socket because stdout went away
        status.error(f"tgws client: {err.message}")
        return err.code
    except InvalidURI as err:
        status.error(f"tgws client: {err}")
        return EXIT_USAGE
    except (OSError, InvalidHandshake, TimeoutError) as err:
        reason = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            reason = "timed out"
        status.error(f"tgws client: cannot connect to {url}: {reason}")
        return EXIT_CONNECTION


async def _flush_forever(out: Output, ws: ClientConnection) -> None:
    """Keep stdout fresh while a stream trickles; close the socket if the reader left."""
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        try:
            out.flush()
        except ReaderGone:
            # Closing makes the stream's recv() raise, which ends the run (quietly).
            await ws.close(1000, "client output closed")
            return


async def _act(args: argparse.Namespace, session: Session, out: Output, api_key: str) -> int:
    first = await api_login(session, api_key)
    action = args.action
    if action in ITEM_KEY:
        progress = args.progress if args.progress is not None else session.status.bar
        await stream(session, out, action, list(args.groups), latest=args.latest,
                     progress=progress)
        return EXIT_OK
    if action == "logout":
        print(await session.request(p.LOGOUT))
        return EXIT_OK
    # login
    if first == p.SESSION_EXISTS_LOGIN:
        print(first)
        return EXIT_OK
    read = terminal_reader(sys.stdin, sys.stderr)
    print(await telegram_login(session, args.phone, read))
    return EXIT_OK
