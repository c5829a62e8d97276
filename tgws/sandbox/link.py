"""The framing between a shared sandbox server (serve.py) and its senders (remote.py).

Telegram's transport carries encrypted MTProto messages; the shared sandbox carries the same TL
bytes in the clear, in frames of `length (4 bytes, big-endian) | kind (1 byte) | body`:

    client -> server
      H  hello, JSON {"v", "key": hex | null, "dc", "origin", "session"}; a null key asks the
         server for one (the key exchange)
      R  request: id (8 bytes) | the request's TL bytes (bytes(request), wrappers included)
      A  admin, JSON {"op": ...}: answered with one `a` frame (serve.py lists the ops)
      p  heartbeat (either way): "this end is alive"
    server -> client
      h  hello answered, JSON {"key": hex, "heartbeat": seconds} or {"refused": true}
      r  result: id | the result's TL bytes (what request.read_result() reads)
      k  result of a login: id | the new auth key (256 bytes) | the result's TL bytes
      e  RPC error: id | JSON {"code", "message"}
      u  pushed updates: TL bytes of an Updates object
      a  admin answer, JSON

A dropped connection is a closed socket. `origin` names the process (it stands for Telegram's
"IP address": one auth key used from two origins at once is AUTH_KEY_DUPLICATED); `session`
names one sender, as MTProto's session id does.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any
from urllib.parse import urlsplit

MAX_FRAME = 64 * 1024 * 1024  # a history page is well under 1 MiB
_LENGTH = struct.Struct(">I")
ID = struct.Struct(">Q")
KEY_SIZE = 256
PROTOCOL_VERSION = 1


class FrameError(EOFError):
    """The peer sent something that is not a frame of this protocol (or closed mid-frame)."""


def frame(kind: bytes, body: bytes = b"") -> bytes:
    return _LENGTH.pack(len(body) + 1) + kind + body


def json_frame(kind: bytes, value: Any) -> bytes:
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(kind, body). EOFError (IncompleteReadError) on a closed connection, FrameError on junk."""
    header = await reader.readexactly(_LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if not 1 <= length <= MAX_FRAME:  # e.g. "HTTP" read as a length
        raise FrameError(f"not a sandbox frame (length {length})")
    body = await reader.readexactly(length)
    return body[:1], body[1:]


def parse_address(url: str) -> tuple[str, int]:
    """"tcp://127.0.0.1:PORT" or "127.0.0.1:PORT" -> (host, port); ValueError otherwise."""
    text = url.strip()
    if "://" not in text:
        text = "tcp://" + text
    parts = urlsplit(text)
    if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not tcp://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port:
        raise ValueError(f"{url!r} names no port")
    return parts.hostname, port
