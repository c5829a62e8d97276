"""The line protocol between bench/stream.py and its worker processes.

The orchestrator writes one JSON command per line on a worker's stdin ({"cmd": NAME, ...});
the worker answers each with one JSON line on stdout, and stops at {"cmd": "quit"} or EOF.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve_commands(ready: dict[str, Any], commands: Mapping[str, Command]) -> None:
    """Announce `ready`, then run commands from stdin until "quit" or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps(ready), flush=True)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        print(json.dumps(await commands[cmd["cmd"]](cmd)), flush=True)
