"""The one exception the sandbox world raises for an RPC error, and its Telethon translation."""

from __future__ import annotations

from typing import Any

from telethon.errors import rpc_message_to_error
from telethon.tl.types import RpcError

# Telegram's error codes for the messages the sandbox raises; everything else is a 400.
_UNAUTHORIZED = frozenset({
    "AUTH_KEY_UNREGISTERED", "AUTH_KEY_INVALID", "AUTH_KEY_PERM_EMPTY", "USER_DEACTIVATED",
    "USER_DEACTIVATED_BAN", "SESSION_REVOKED", "SESSION_EXPIRED", "SESSION_PASSWORD_NEEDED",
})
_FLOOD_PREFIXES = ("FLOOD_WAIT_", "FLOOD_PREMIUM_WAIT_", "SLOWMODE_WAIT_", "FLOOD_TEST_PHONE_WAIT_")


def default_code(message: str) -> int:
    """The error code Telegram pairs with `message` (401, 420, 500 or 400)."""
    if message in _UNAUTHORIZED:
        return 401
    if message.startswith(_FLOOD_PREFIXES):
        return 420
    if message in ("INTERNAL", "RPC_CALL_FAIL", "TIMEOUT") or message.startswith("INTERDC_"):
        return 500
    return 400


class SandboxRpcError(Exception):
    """An RPC error as Telegram sends it: a code and an upper-case message.

    The world raises this; the sender turns it into Telethon's exception class on the future.
    The pair is kept because Telethon's RPCError subclasses forget their string
    (`UsernameNotOccupiedError().message == 'BAD_REQUEST'`), so only `rpc_message_to_error`
    fed the original pair picks the right class and its captured number (FLOOD_WAIT_2 -> 2).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, message: str, code: int | None = None) -> SandboxRpcError:
        return cls(default_code(message) if code is None else code, message)

    def to_telethon(self, request: Any) -> BaseException:
        """The exception Telethon's MTProtoSender would set on the request's future."""
        error: BaseException = rpc_message_to_error(RpcError(self.code, self.message), request)
        return error
