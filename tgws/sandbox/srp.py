"""The server half of Telegram's SRP-2048 password check, done for real.

Telethon's `telethon.password.compute_check` computes the client half (A, M1) from the
`account.Password` we send. This module is the other side, written from Telegram's
specification (https://core.telegram.org/api/srp) rather than by calling Telethon's helpers, so
that a wrong password really fails the proof instead of two copies of one function agreeing:

    x  = PH2(password, salt1, salt2)          the password hash below
    v  = g^x mod p                            the verifier, kept by the server
    B  = (k*v + g^b) mod p,  k = H(p | g)     sent with a random b
    u  = H(A | B)
    S  = (A * v^u)^b mod p,  K = H(S)
    M1 = H(H(p) xor H(g) | H(salt1) | H(salt2) | A | B | K)   compared with the client's

p is Telegram's 2048-bit safe prime and g = 3, the pair Telethon accepts without factorising.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

P_BYTES = bytes.fromhex(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B"
)
P = int.from_bytes(P_BYTES, "big")
G = 3
_SIZE = 256


def _h(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _pad(number: int) -> bytes:
    return number.to_bytes(_SIZE, "big")


def password_hash(password: str, salt1: bytes, salt2: bytes) -> int:
    """x = PH2: SH(SH(salt1 | password | salt1) ...) then PBKDF2-HMAC-SHA512, 100000 rounds."""
    ph1 = _h(salt2, _h(salt1, password.encode(), salt1), salt2)
    return int.from_bytes(_h(salt2, hashlib.pbkdf2_hmac("sha512", ph1, salt1, 100_000), salt2),
                          "big")


def verifier(password: str, salt1: bytes, salt2: bytes) -> int:
    """v = g^x mod p. Costs one 100000-round PBKDF2, so callers cache it per account."""
    return pow(G, password_hash(password, salt1, salt2), P)


def _good_mod_exp(value: int) -> bool:
    # Telethon's is_good_mod_exp_first: both value and p - value must be about 2048 bits long,
    # so a client refuses a B whose g^b part would be degenerate.
    floor = 2048 - 64
    return 0 < value < P and value.bit_length() >= floor and (P - value).bit_length() >= floor


@dataclass(frozen=True, slots=True)
class Challenge:
    """One server round: the secret b and the public B sent in account.Password."""

    b: int
    B: bytes


def challenge(v: int, rand: Callable[[int], bytes] = os.urandom) -> Challenge:
    k = int.from_bytes(_h(P_BYTES, _pad(G)), "big")
    while True:
        b = int.from_bytes(rand(_SIZE), "big")
        g_b = pow(G, b, P)
        if _good_mod_exp(g_b):
            return Challenge(b, _pad((k * v + g_b) % P))


def check(v: int, server: Challenge, salt1: bytes, salt2: bytes, a: bytes, m1: bytes) -> bool:
    """Whether the client's (A, M1) proves knowledge of the password behind `v`."""
    big_a = int.from_bytes(a, "big")
    if not 0 < big_a % P or len(a) > _SIZE:
        return False
    a_bytes = _pad(big_a)
    u = int.from_bytes(_h(a_bytes, server.B), "big")
    if u == 0:
        return False
    s = pow(big_a * pow(v, u, P) % P, server.b, P)
    k_session = _h(_pad(s))
    h_p, h_g = _h(P_BYTES), _h(_pad(G))
    expected = _h(bytes(x ^ y for x, y in zip(h_p, h_g, strict=True)), _h(salt1), _h(salt2),
                  a_bytes, server.B, k_session)
    return hmac.compare_digest(expected, m1)
