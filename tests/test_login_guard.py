"""The send-code limiter, without I/O: sliding windows per API key and per phone."""

from __future__ import annotations

import pytest

from tgws.login_guard import SendCodeLimiter, compact_phone, phone_key


def take(limiter: SendCodeLimiter, key_id: int, phone: str, now: float) -> int:
    """At most 2 codes per key and 3 per phone in any 100 s."""
    return limiter.take(key_id, phone, per_key=2, per_phone=3, window=100.0, now=now)


def test_the_wait_is_until_the_oldest_counted_code_leaves_the_window() -> None:
    limiter = SendCodeLimiter()
    assert take(limiter, 1, "15550001", 0.0) == 0
    assert take(limiter, 1, "15550002", 10.0) == 0
    # Third code for key 1: the first counted one (t=0) leaves the window at t=100.
    assert take(limiter, 1, "15550003", 30.5) == 70
    # A refused request is not counted: the wait does not grow with retries.
    assert take(limiter, 1, "15550003", 99.5) == 1
    assert take(limiter, 1, "15550003", 100.0) == 0


def test_a_phone_is_limited_across_keys_and_keys_do_not_share_limits() -> None:
    limiter = SendCodeLimiter()
    for key_id in (1, 2, 3):
        assert take(limiter, key_id, "15550001", 0.0) == 0
    assert take(limiter, 4, "15550001", 1.0) == 99
    assert take(limiter, 4, "15550002", 1.0) == 0


def test_expired_entries_are_dropped_so_memory_stays_bounded() -> None:
    limiter = SendCodeLimiter()
    for i in range(1000):
        take(limiter, i, f"1555{i:07d}", float(i))
    # Only what is still inside the window (t > 899) remains: 100 keys and 100 phones.
    assert len(limiter) == 200


@pytest.mark.parametrize(("raw", "compact"), [
    ("+91 (98765) 43-210", "+919876543210"), ("15551234567", "15551234567"),
    ("+1.555.123.4567", "+15551234567"), ("12345", None), ("+1555abc4567", None),
    ("", None), ("+" + "1" * 16, None)])
def test_phones_are_compacted_or_refused(raw: str, compact: str | None) -> None:
    assert compact_phone(raw) == compact


def test_one_number_with_or_without_plus_is_one_phone() -> None:
    assert phone_key("+15551234567") == phone_key("15551234567")
