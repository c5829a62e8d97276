"""`tgws client` from parsed arguments to exit code: connect, act, report, clean up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from tgws import __version__
from tgws import protocol as p
from tgws.client.actions import ITEM_KEY, api_login, stream, telegram_login, terminal_reader
from tgws.client.arguments import DEFAULT_URL, EXIT_CONNECTION, EXIT_OK, EXIT_USAGE
from tgws.client.output import Output, ReaderGone, Status
from tgws.client.qr import QrDrawing, qr_login
from tgws.client.session import ClientError, Lost, Session
from tgws.client.watch import watch

MAX_SIZE: Final = 16 * 1024 * 1024  # one frame; a message with a long text is still far below
FLUSH_EVERY: Final = 0.2  # seconds; how stale stdout may get while a stream trickles


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
            except ClientError as err:
                # A failed reply ends the conversation normally: close with 1000 ourselves.
                # Leaving `async with` by the exception would close with 1011, which the
                # daemon logs as "closed (code 1011)", the code for a bug.
                if not isinstance(err, Lost):
                    await ws.close(1000, "done")
                raise
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
    if action == p.WATCH:
        return await watch(session, out, list(args.groups), edits=args.edits,
                           deletions=args.deletions, members=args.members, ack=args.ack)
    if action == "logout":
        print(await session.request(p.LOGOUT))
        return EXIT_OK
    # login
    if first == p.SESSION_EXISTS_LOGIN:
        print(first)
        return EXIT_OK
    read = terminal_reader(sys.stdin, sys.stderr)
    if args.qr:
        print(await qr_login(session, read, QrDrawing(sys.stderr)))
    else:
        print(await telegram_login(session, args.phone, read))
    return EXIT_OK
