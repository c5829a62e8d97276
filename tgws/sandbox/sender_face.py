"""What both sandbox senders show Telethon alike: SandboxSender (in process, sender.py) and
RemoteSandboxSender (over TCP, remote.py) differ in how a request is answered, not in the
face MTProtoSender turns to TelegramClient: connection state, keep-alive pings, the
`disconnected` future and `send` (a future per request, a list for a list)."""

from __future__ import annotations

import asyncio
from typing import Any

from telethon.tl.functions import PingRequest
from telethon.utils import is_list_like


class SenderFace:
    """The MTProtoSender methods both sandbox senders implement the same way.

    A subclass sets `_user_connected`, `_reconnecting`, `_ping` and `_disconnected_future`,
    and provides `_enqueue(request) -> future` and `_start_reconnect()`."""

    _user_connected: bool
    _reconnecting: bool
    _ping: int | None
    _disconnected_future: asyncio.Future[None] | None

    def _enqueue(self, request: Any) -> asyncio.Future[Any]:
        raise NotImplementedError

    def _start_reconnect(self) -> None:
        raise NotImplementedError

    def send(self, request: Any, ordered: bool = False) -> Any:
        """A future per request, like MTProtoSender."""
        if not self._user_connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if is_list_like(request):
            return [self._enqueue(item) for item in request]
        return self._enqueue(request)

    def is_connected(self) -> bool:
        return self._user_connected

    def _transport_connected(self) -> bool:
        return self._user_connected and not self._reconnecting

    def _keepalive_ping(self, rnd_id: int) -> None:
        """MTProtoSender's: a ping still unanswered at the next keep-alive means a dead link."""
        if self._ping is None:
            self._ping = rnd_id
            future = self._enqueue(PingRequest(rnd_id))
            future.add_done_callback(self._pong)
        else:
            self._start_reconnect()

    def _pong(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        if getattr(future.result(), "ping_id", None) == self._ping:
            self._ping = None

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected_future is None:
            self._disconnected_future = asyncio.get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return asyncio.shield(self._disconnected_future)
