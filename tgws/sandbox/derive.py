"""Deterministic numbers for the sandbox world: ids, access hashes, salts, per-message choices.

Everything the world invents is a keyed hash of (world secret, labels), and the secret is itself
derived from the seed. Two worlds built from the same seed therefore agree on every id and access
hash, which is what lets a session saved against one process log in again against the next.
"""

from __future__ import annotations

import datetime
import hashlib

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

UTC = datetime.UTC


def secret_from_seed(seed: int) -> bytes:
    """The 32-byte world secret for `seed` (keys, ids and hashes all hang off it)."""
    return hashlib.sha256(b"tgws-sandbox-secret:" + str(seed).encode()).digest()


def derive(secret: bytes, *labels: object) -> int:
    """A 64-bit unsigned number that depends only on the secret and the labels."""
    h = hashlib.blake2b(digest_size=8, key=secret[:64], person=b"tgws-sbx")
    for label in labels:
        h.update(repr(label).encode())
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def signed64(value: int) -> int:
    """Reinterpret a 64-bit unsigned number as the signed `long` TL fields carry."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def mix64(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread hash for per-message choices.

    The lazy history calls this once per message, so it must cost far less than a keyed
    cryptographic hash; it only needs to look random, not be secret.
    """
    z = (value + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def when(timestamp: int) -> datetime.datetime:
    """A Unix time as the aware UTC datetime Telethon's deserializer produces."""
    return datetime.datetime.fromtimestamp(timestamp, UTC)
