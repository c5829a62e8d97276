"""The reading side of bench/stream.py: a websocket client in its own process.

Run by bench/stream.py, never by hand. It reads one JSON command per stdin line and answers with
one JSON line on stdout, so the orchestrator can bracket each stream with the daemon's CPU
readings.

Which reader: `websockets.asyncio.client` (the same library and version the daemon uses), with
`compression=None` and `recv(decode=False)`: frames stay bytes, so the client pays no UTF-8
decoding per item. It answers the daemon's pings by itself, which the daemon's ack barrier
(tgws/streaming.py) needs before it commits offsets. perf-physics §1 measured this client at
70-115 k frames/s on one core, several times what the daemon produces, so it is not the
bottleneck; its CPU per item is reported anyway so a reader can check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

from command_loop import Command, serve_commands
from websockets.asyncio.client import ClientConnection, connect

# Item frames are orjson's compact output (tgws/serialize/); every other reply goes through
# json.dumps with spaces (tgws/protocol.py). So a prefix test classifies a frame without parsing
# it, and no message text can fake a "done".
_ITEM_PREFIX = {
    "chats": b'{"event":"chats","data":{"status":"success","message":{',
    "users": b'{"event":"users","data":{"status":"success","message":{',
}
CONNECT_CONCURRENCY = 50  # handshakes in flight: stays under the listen backlog (100)


class Client:
    def __init__(self, url: str, key: str, phone: str) -> None:
        self.url = url
        self.key = key
        self.phone = phone
        self.ws: ClientConnection | None = None
        self.idle_conns: list[ClientConnection] = []

    async def _open(self) -> ClientConnection:
        return await connect(self.url, compression=None, max_size=None, open_timeout=60)

    async def _ask(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send(json.dumps({"event": event, "data": data}))
        reply: dict[str, Any] = json.loads(await self.ws.recv())
        return reply

    async def login(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """API key, then (first time only) phone and code 12345, as tests/support.logged_in."""
        self.ws = await self._open()
        reply = await self._ask("login", {"apiKey": self.key})
        steps = [reply["data"]["message"]]
        if reply["data"]["message"] == "send phone number":
            for data in ({"phone": self.phone}, {"code": "12345"}):
                reply = await self._ask("telegram login", data)
                if reply["data"]["status"] != "success":
                    raise RuntimeError(f"telegram login failed: {reply}")
                steps.append(reply["data"]["message"])
        return {"steps": steps}

    async def stream(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one users/chats request; count item frames until "done"."""
        ws = self.ws
        assert ws is not None
        event, group = cmd["event"], cmd["group"]
        prefix = _ITEM_PREFIX[event]
        if event == "chats":
            request = {"group": [{"name": group, "status": ""}], "status": ""}
        else:
            request = {"group": [group], "status": ""}
        count = 0
        cpu = time.process_time()
        started = time.perf_counter()
        await ws.send(json.dumps({"event": event, "data": request}))
        first_item = 0.0
        while True:
            frame = await ws.recv(decode=False)
            if frame.startswith(prefix):
                if not count:
                    first_item = time.perf_counter() - started
                count += 1
                continue
            reply = json.loads(frame)
            data = reply["data"]
            if data["status"] == "progress" or data["message"] == f"sending {event}":
                continue
            if data["status"] != "success" or data["message"] != "done":
                raise RuntimeError(f"unexpected reply: {reply}")
            return {"count": count, "done_count": data["count"],
                    "wall": time.perf_counter() - started, "first_item": first_item,
                    "client_cpu": time.process_time() - cpu}

    async def idle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open n connections and leave them idle (handshake only, no login)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        started = time.perf_counter()
        remaining = int(cmd["n"])
        while remaining > 0:
            batch = min(remaining, CONNECT_CONCURRENCY)
            self.idle_conns += await asyncio.gather(*(self._open() for _ in range(batch)))
            remaining -= batch
        return {"open": len(self.idle_conns), "wall": time.perf_counter() - started}

    async def close_idle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        closing, self.idle_conns = self.idle_conns, []
        await asyncio.gather(*(ws.close() for ws in closing), return_exceptions=True)
        return {"closed": len(closing)}

    async def close(self) -> None:
        await self.close_idle({})
        if self.ws is not None:
            await self.ws.close()


async def serve(args: argparse.Namespace) -> None:
    client = Client(args.url, args.key, args.phone)
    commands: dict[str, Command] = {"login": client.login, "stream": client.stream,
                                    "idle": client.idle, "close_idle": client.close_idle}
    try:
        await serve_commands({"ready": True}, commands)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--phone", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
