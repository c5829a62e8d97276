"""Raw-socket clients that misbehave on purpose (tests/test_abuse.py, tests/test_abuse_soak.py).

websockets' own client is too polite to attack with: it reads every pong and finishes every
handshake. These speak just enough RFC 6455 by hand.
"""

from __future__ import annotations

import asyncio
import socket

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\n"
    "Host: 127.0.0.1:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "{extra}"
    "\r\n"
)

# A masked ping with a 125-byte payload (the most a control frame carries); the mask key is
# all zeros, so the payload goes out as it is.
PING = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125


def raw_socket(source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Set before connect so the advertised window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


async def raw_connect(port: int, source: str = "127.0.0.1",
                      rcvbuf: int | None = None) -> socket.socket:
    sock = raw_socket(source, rcvbuf)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def raw_upgrade(port: int, path: str, source: str = "127.0.0.1",
                      rcvbuf: int | None = None, extra: str = "") -> socket.socket:
    """A socket that completed the websocket handshake (101) and reads nothing more."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port, source, rcvbuf)
    await loop.sock_sendall(sock, HANDSHAKE.format(path=path, port=port, extra=extra).encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await loop.sock_recv(sock, 4096)
        assert chunk, f"closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def half_handshake(port: int, path: str, source: str = "127.0.0.1") -> socket.socket:
    """A socket that sent part of a handshake and will never send the rest."""
    sock = await raw_connect(port, source)
    await asyncio.get_running_loop().sock_sendall(
        sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    return sock


async def ping_until_refused(sock: socket.socket, limit: int, chunk: int = 64) -> int:
    """Send pings (never reading a pong) until the server cuts us off or `limit` bytes.

    Returns the bytes sent before the server reset or closed the connection, or `limit`
    if it never did.
    """
    loop = asyncio.get_running_loop()
    burst = PING * chunk
    sent = 0
    while sent < limit:
        try:
            await loop.sock_sendall(sock, burst)
        except (ConnectionResetError, BrokenPipeError):
            return sent
        sent += len(burst)
    return limit


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed or reset this socket (reads drain anything pending)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
