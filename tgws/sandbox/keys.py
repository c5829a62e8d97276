"""Authorization keys that carry their own login, so a restarted world still recognises them.

A real Telegram server remembers which user an auth key belongs to. The sandbox would lose that
on every restart, so it makes the binding *stateless*: when a login succeeds, the sender replaces
the client's key bytes in place with a key the world can verify with its secret alone:

    bytes  0..8    user id, big-endian
    bytes  8..16   the account's phone number as an integer (0 if none), so an account that was
                   created on the fly from a phone can be created again after a restart
    bytes 16..24   a random nonce, so logging in again after a log-out yields a fresh key
    bytes 24..256  HMAC-SHA256(secret, bytes 0..24 || counter) expanded to 232 bytes

Any other 256 bytes (for example the random key a fresh session gets on connect, as after a real
Diffie-Hellman exchange) verify as nobody. Logged-out keys go into the world's in-memory revoked
set; that set does not survive a restart (documented limitation).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

KEY_SIZE = 256
_HEADER = struct.Struct(">QQ8s")


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """What a verified key says about its owner."""

    user_id: int
    phone: str | None


def _expand(secret: bytes, header: bytes) -> bytes:
    blocks = [
        hmac.new(secret, header + bytes([i]), hashlib.sha256).digest() for i in range(8)
    ]
    return b"".join(blocks)[: KEY_SIZE - len(header)]


def issue_key(secret: bytes, user_id: int, phone: str | None, nonce: bytes | None = None) -> bytes:
    """A 256-byte auth key bound to `user_id` that only `secret` can have made."""
    header = _HEADER.pack(user_id, int(phone) if phone else 0, nonce or os.urandom(8))
    return header + _expand(secret, header)


def read_key(secret: bytes, key: bytes | None) -> KeyClaim | None:
    """The owner of `key` if the world with `secret` issued it, else None."""
    if key is None or len(key) != KEY_SIZE:
        return None
    header = key[: _HEADER.size]
    if not hmac.compare_digest(key[_HEADER.size :], _expand(secret, header)):
        return None
    user_id, phone, _nonce = _HEADER.unpack(header)
    return KeyClaim(user_id, str(phone) if phone else None)
