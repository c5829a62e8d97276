"""A minimal tgws client: log in, then print every message of one group as a JSON line.

Usage, against `tgws demo` (it prints the URL and an API key):
    python examples/python_client.py --url ws://127.0.0.1:8000/ws/telegram/ \\
        --api-key KEY --phone +919876543210 --code 12345 UnderWorld4444
TGWS_URL, TGWS_API_KEY, TGWS_PHONE, TGWS_CODE and TGWS_PASSWORD (2FA) work too. The phone
and code are used only when the server holds no Telegram session for the key yet.
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
    while True:
        reply = json.loads(await ws.recv())["data"]
        if reply["status"] == "failed":
            sys.exit(f"{event} failed: {reply['message']}")
        if reply["status"] == "success":  # skip "progress" notices (e.g. flood waits)
            return reply["message"]


async def main(args: argparse.Namespace) -> None:
    async with connect(args.url, max_size=2**24, compression=None) as ws:
        if await ask(ws, "login", {"apiKey": args.api_key}) == "send phone number":
            reply = await ask(ws, "telegram login", {"phone": args.phone})  # "send code"
            reply = await ask(ws, "telegram login", {"code": args.code})
            if reply == "send password":  # the account has two-step verification
                await ask(ws, "telegram login", {"password": args.password})
        await ask(ws, "chats", {"group": [{"name": args.group, "status": ""}], "status": ""})
        async for frame in ws:  # one message per chat message, then "done"
            data = json.loads(frame)["data"]
            if data["status"] == "failed":
                sys.exit(f"chats failed: {data['message']}")
            if data["message"] == "done":  # the summary on stderr: stdout stays JSON lines
                print(f"done: {data.get('count')} messages", file=sys.stderr)
                break
            if data["status"] == "success":
                print(json.dumps(data["message"]["chat"], ensure_ascii=False))


if __name__ == "__main__":
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Print the messages of a Telegram group.")
    parser.add_argument("group")
    parser.add_argument("--url", default=env("TGWS_URL", "ws://127.0.0.1:8000/ws/telegram/"))
    parser.add_argument("--api-key", default=env("TGWS_API_KEY"))
    parser.add_argument("--phone", default=env("TGWS_PHONE"))
    parser.add_argument("--code", default=env("TGWS_CODE"))
    parser.add_argument("--password", default=env("TGWS_PASSWORD"))
    asyncio.run(main(parser.parse_args()))
