"""What `tgws client` does once connected: log in with the API key, stream, Telegram login."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import threading
from collections.abc import Callable
from typing import Any, Final, TextIO

import orjson

from tgws import protocol as p
from tgws.client.output import Output, Status
from tgws.client.session import ClientError, Failed, Session, event_of, reply_data, short

# What the server sends per item, by event: {"message": {"group": G, KEY: {...}}}.
ITEM_KEY: Final = {p.USERS: "user", p.CHATS: "chat"}


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
    last_group = groups[0] if groups else ""
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
                last_group = str(group)
                draw(event, received, last_group)
            continue
        data = reply_data(raw)
        reply_status, message = data.get("status"), data.get("message")
        if reply_status == p.PROGRESS:
            session.notice(data)
        elif reply_status == p.FAILED:
            raise Failed(event_of(data, event), str(message))
        elif reply_status == p.SUCCESS and message == p.DONE:
            out.flush()
            session.status.finish(event, received, last_group)
            _summarize(session.status, event, data, received)
            return
        else:
            raise ClientError(f"unexpected reply during the {event} stream: {short(data)}")


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
    return await finish_login(session, await session.request(event, {"phone": phone}), read)


async def finish_login(session: Session, message: str,
                       read: Callable[[str, bool], Any]) -> str:
    """Answer the server's "send code" / "send password" until it says we are in."""
    event = p.TELEGRAM_LOGIN
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
