"""How often `telegram login` may ask Telegram for a code or check a password. Pure: no I/O.

Every auth.SendCode spends a budget Telegram keeps per api_id, which all API keys of a daemon
share, and texts a code to a phone that may not belong to whoever asks. So codes are counted
per API key and per phone number (whichever key asks) over a sliding window ([limits]
send_code_per_key, send_code_per_phone, send_code_window); a request past either limit is
refused before it reaches Telegram, with the seconds until the oldest counted code leaves the
window. The limits are read at each call, so a SIGHUP reload applies them at once.

Memory stays bounded: a phone is counted only after its API key passed its own limit, so the
entries grow with (API keys x send_code_per_key) at most, and expired ones are dropped.

Telegram's login floods (PHONE_NUMBER_FLOOD, PHONE_PASSWORD_FLOOD) say nothing about how long
they last, and every attempt made meanwhile extends them. So LoginFloods holds each one for a
cool-down of tgws's own ([limits] phone_flood_cooldown, password_flood_cooldown): codes for
a flooded phone (whichever key asks), or passwords of a flooded API key, are refused before
they reach Telegram, with the seconds left. A phone is held only when Telegram answered a
flood for it, i.e. after a code the limits above let through, so those holds are bounded the
same way; password holds are one per API key at most. Expired holds are dropped.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Final, Generic, TypeVar

_PHONE_DIGITS: Final = re.compile(r"\+?[0-9]{7,15}")
_PHONE_NOISE: Final = re.compile(r"[\s().-]")

K = TypeVar("K")


def compact_phone(phone: str) -> str | None:
    """'+91 (98765) 43-210' -> '+919876543210'; None when it cannot be a phone number."""
    compact = _PHONE_NOISE.sub("", phone)
    return compact if _PHONE_DIGITS.fullmatch(compact) else None


def phone_key(compact: str) -> str:
    """One count per number, with or without its '+'."""
    return compact.lstrip("+")


class SendCodeLimiter:
    """Sliding-window counts of codes sent, per API key and per phone."""

    def __init__(self) -> None:
        self._by_key: dict[int, deque[float]] = {}
        self._by_phone: dict[str, deque[float]] = {}

    def take(self, api_key_id: int, phone: str, *, per_key: int, per_phone: int,
             window: float, now: float) -> int:
        """Count one code for (key, phone) and return 0, or return the seconds to wait
        (at least 1) and count nothing."""
        self._expire(now - window)
        by_key = self._by_key.get(api_key_id, deque())
        by_phone = self._by_phone.get(phone, deque())
        waits = [q[-limit] + window - now for q, limit in ((by_key, per_key),
                                                            (by_phone, per_phone))
                 if len(q) >= limit]
        if waits:
            return max(1, math.ceil(max(waits)))
        self._by_key.setdefault(api_key_id, by_key).append(now)
        self._by_phone.setdefault(phone, by_phone).append(now)
        return 0

    def _expire(self, oldest: float) -> None:
        for key_id in [k for k, q in self._by_key.items() if _drop_old(q, oldest)]:
            del self._by_key[key_id]
        for phone in [p for p, q in self._by_phone.items() if _drop_old(q, oldest)]:
            del self._by_phone[phone]

    def __len__(self) -> int:
        """Entries held (for the memory-bound test)."""
        return len(self._by_key) + len(self._by_phone)


def _drop_old(times: deque[float], oldest: float) -> bool:
    """Drop times at or before `oldest`; True when nothing is left."""
    while times and times[0] <= oldest:
        times.popleft()
    return not times


class Cooldowns(Generic[K]):
    """Keys held until a time each; a held key answers the seconds left."""

    def __init__(self) -> None:
        self._until: dict[K, float] = {}

    def hold(self, key: K, seconds: float, *, now: float) -> int:
        """Hold `key` for `seconds` from `now` (never shorter than a hold it already has);
        the whole seconds it is held for (at least 1)."""
        self._expire(now)
        until = max(self._until.get(key, now), now + seconds)
        self._until[key] = until
        return _whole_seconds(until - now)

    def left(self, key: K, *, now: float) -> int:
        """0 when `key` is free, else the whole seconds until it is (at least 1)."""
        self._expire(now)
        until = self._until.get(key)
        return 0 if until is None else _whole_seconds(until - now)

    def _expire(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]

    def __len__(self) -> int:
        """Entries held (for the memory-bound test)."""
        return len(self._until)


class LoginFloods:
    """Telegram's login floods held by tgws: per phone (phone_key) and per API key id."""

    def __init__(self) -> None:
        self.phone: Cooldowns[str] = Cooldowns()  # PHONE_NUMBER_FLOOD: no codes sent
        self.password: Cooldowns[int] = Cooldowns()  # PHONE_PASSWORD_FLOOD: no passwords


def _whole_seconds(seconds: float) -> int:
    # Rounded up: a client that waits the seconds it was told finds the hold gone. First to
    # the microsecond, so float noise ((now + 600) - now = 600.0000000001) is not a second.
    return max(1, math.ceil(round(seconds, 6)))
