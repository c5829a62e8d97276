"""Writing a stream's items: one JSON item per websocket text frame, many frames per write.

The seed's format is one JSON message per frame; only the syscalls are shared. Frames of a
batch go out together, then the sender waits in drain() while the socket's buffer is above
[server] write_limit (the backpressure that keeps memory flat: the Telethon iterator is not
advanced meanwhile).

websockets has no public "send many". The fast path (hand-built frames, one transport
write per batch) uses its internals and lives, fenced and checked, in tgws/fastpath.py;
when those internals are missing, each frame goes through the public `ws.send`, which
also drains with flow control. Both paths put the same bytes on the wire.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection

from tgws import fastpath


async def send_frames(ws: ServerConnection, frames: list[bytes]) -> None:
    """Send each of `frames` (UTF-8 JSON) as one text frame, waiting while the buffer is full."""
    if fastpath.can_write(ws):
        await fastpath.write_frames(ws, frames)
        return
    for frame in frames:
        await ws.send(frame, text=True)
