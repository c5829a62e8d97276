"""A minimal tgws watcher: every new message of some groups, as it happens, acked once printed.

Usage, against `tgws demo --tick 2` (it prints the URL and an API key; --tick makes news):
    python examples/watch_client.py --url ws://127.0.0.1:8000/ws/telegram/ \\
        --api-key KEY --phone +919876543210 --code 12345 testgroup00001 UnderWorld4444
TGWS_URL, TGWS_API_KEY, TGWS_PHONE and TGWS_CODE work too. First comes what is new since this
key's last stream ("path": "catch-up"), then each new message ("live", or "reconcile" when
tgws found one Telegram did not push). Each line is acked after it is printed ("ack":
"client"), so a watcher that dies loses nothing: the next run starts after the last ack.
"""

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


async def ask(ws: ClientConnection, event: str, data: dict[str, Any]) -> Any:
    """Send one request; return the message of its reply (exit on a failed one)."""
    await ws.send(json.dumps({"event": event, "data": data}))
    reply = json.loads(await ws.recv())["data"]
    if reply["status"] == "failed":
        sys.exit(f"{event} failed: {reply['message']}")
    return reply["message"]


async def main(args: argparse.Namespace) -> None:
    async with connect(args.url, compression=None) as ws:
        if await ask(ws, "login", {"apiKey": args.api_key}) == "send phone number":
            await ask(ws, "telegram login", {"phone": args.phone})
            await ask(ws, "telegram login", {"code": args.code})
        await ask(ws, "watch", {"group": args.groups, "ack": "client"})  # "watching"
        async for frame in ws:
            data = json.loads(frame)["data"]
            if data["status"] == "failed":
                sys.exit(f"watch failed: {data['message']}")
            if data.get("kind") == "message":
                chat = data["message"]["chat"]
                print(json.dumps({"group": data["message"]["group"], "path": data["path"],
                                  "id": chat["id"], "text": chat["text"]}), flush=True)
                await ws.send(json.dumps({"event": "ack", "data": {"seq": data["seq"]}}))


if __name__ == "__main__":
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", help="group or channel usernames")
    parser.add_argument("--url", default=env("TGWS_URL", "ws://127.0.0.1:8000/ws/telegram/"))
    parser.add_argument("--api-key", default=env("TGWS_API_KEY"), required=not env("TGWS_API_KEY"))
    parser.add_argument("--phone", default=env("TGWS_PHONE"))
    parser.add_argument("--code", default=env("TGWS_CODE"))
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
