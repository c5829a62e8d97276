"""`tgws client watch GROUP...`: one JSON line per live item, acked only once it is written.

Each item is printed as it arrives, flushed at once (a watch trickles: nothing waits for a
64 KiB chunk), as the item object with "group", "kind" and "path" first:
  {"group":"testgroup00001","kind":"message","path":"live","id":1001,"text":"...",...}
  {"group":"testgroup00001","kind":"member_left","path":"live","user_id":5,"by":null,...}

With --ack the watch asks for client acks ("ack": "client") and acks an item only after its
line was flushed to stdout, so a client killed at any moment loses nothing the server
committed. SIGINT and SIGTERM end the watch in order: flush, ack what was written, close with
1000 (a buffered client killed by a signal would otherwise lose what it had not written yet,
while the pong barrier had already committed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, Final

import orjson
from websockets.exceptions import ConnectionClosed

from tgws import protocol as p
from tgws.client.output import Output
from tgws.client.session import ClientError, Failed, Session, event_of, reply_data, short

# The object each item kind carries in "message", beside "group".
KIND_KEY: Final = {p.KIND_MESSAGE: "chat", p.KIND_EDIT: "chat", p.KIND_MEMBER: "user",
                   p.KIND_DELETION: "deleted", p.KIND_MEMBER_LEFT: "left"}
EXIT_SIGINT: Final = 130
EXIT_SIGTERM: Final = 143
CANCEL_WAIT: Final = 5.0  # seconds for the server to confirm the end of the watch


def item_line(data: dict[str, Any]) -> bytes | None:
    """The output line of one watch item's `data`, or None when it is not an item."""
    message = data.get("message")
    kind = data.get("kind")
    if data.get("status") != p.SUCCESS or not isinstance(message, dict) or kind not in KIND_KEY:
        return None
    item = message.get(KIND_KEY[str(kind)])
    if not isinstance(item, dict):
        return None
    line: dict[str, Any] = {"group": message.get("group"), "kind": kind, "path": data.get("path")}
    line.update((k, v) for k, v in item.items() if k not in line)
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


async def watch(session: Session, out: Output, groups: list[str], *, edits: bool,
                deletions: bool, members: bool, ack: bool) -> int:
    """Watch until the server ends it or a signal arrives; the exit code."""
    request: dict[str, Any] = {"group": groups, "messages": True, "edits": edits,
                               "deletions": deletions, "members": members}
    if ack:
        request["ack"] = "client"
    first = await session.request(p.WATCH, request)
    if first != p.WATCHING:
        raise ClientError(f"unexpected reply to 'watch': {first!r}")
    stop: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with _signals(stop):
        return await _items(session, out, stop, ack)


async def _items(session: Session, out: Output, stop: asyncio.Future[int], ack: bool) -> int:
    written = acked = 0  # seq of the last item written (and flushed) / acked
    while True:
        receiving = asyncio.ensure_future(session.recv_raw("the next watch item"))
        waiting: list[asyncio.Future[Any]] = [receiving, stop]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            # A frame that arrived together with the signal is still written and acked.
            if receiving.done() and not receiving.cancelled() and receiving.exception() is None:
                written = _write(out, reply_data(receiving.result()), written)
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await receiving
            out.flush()
            if ack and written > acked:
                await session.send(p.ACK, {"seq": written})
            await _cancel(session, out)
            session.status.note(f"watch stopped by a signal; {out.lines} items written")
            with contextlib.suppress(ConnectionClosed):
                await session.ws.close(1000, "client stopped")
            return stop.result()
        data = reply_data(receiving.result())
        if item_line(data) is None:
            _other_reply(session, data)
            continue
        written = _write(out, data, written)
        out.flush()  # before the ack: the server commits only what is on stdout
        if ack and written > acked:
            await session.send(p.ACK, {"seq": written})
            acked = written


async def _cancel(session: Session, out: Output) -> None:
    """End the watch and wait for "cancelled": the server reads frames in order, so then it
    has processed the acks before it (a close right after them could overtake them).
    Items still arriving are written, not acked: the next watch sends them again."""
    with contextlib.suppress(ClientError, TimeoutError):
        await session.send(p.CANCEL)
        async with asyncio.timeout(CANCEL_WAIT):
            while True:
                data = reply_data(await session.recv_raw("the end of the watch"))
                if data.get("event_of") == p.CANCEL:
                    break
                _write(out, data, 0)
    out.flush()


def _write(out: Output, data: dict[str, Any], written: int) -> int:
    line = item_line(data)
    if line is None:
        return written
    out.write(line)
    seq = data.get("seq")
    return seq if isinstance(seq, int) else written


def _other_reply(session: Session, data: dict[str, Any]) -> None:
    status, message = data.get("status"), data.get("message")
    if status == p.PROGRESS:
        session.notice(data)
    elif status == p.FAILED:
        raise Failed(event_of(data, p.WATCH), str(message))
    else:
        raise ClientError(f"unexpected reply during the watch: {short(data)}")


@contextlib.contextmanager
def _signals(stop: asyncio.Future[int]) -> Any:
    """SIGINT/SIGTERM resolve `stop` with the exit code instead of killing the client."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig, code in ((signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)):
        def on_signal(code: int = code) -> None:
            if not stop.done():
                stop.set_result(code)
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
