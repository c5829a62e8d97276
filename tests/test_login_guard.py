"""The send-code limiter and the login-flood cool-downs, without I/O: sliding windows per
API key and per phone, and holds that end at a time."""

from __future__ import annotations

import pytest

from tgws.login_guard import Cooldowns, LoginFloods, SendCodeLimiter, compact_phone, phone_key


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


# -- login floods: cool-downs ----------------------------------------------------------------


def test_a_hold_answers_the_whole_seconds_left_until_it_ends() -> None:
    held: Cooldowns[str] = Cooldowns()
    assert held.left("15550001", now=0.0) == 0
    assert held.hold("15550001", 600.0, now=10.0) == 600
    assert held.left("15550001", now=10.0) == 600
    # Rounded up: a client that waits what it was told finds the hold gone.
    assert held.left("15550001", now=309.5) == 301
    assert held.left("15550001", now=609.9) == 1
    assert held.left("15550001", now=610.0) == 0


def test_a_hold_never_says_less_than_one_second() -> None:
    held: Cooldowns[int] = Cooldowns()
    assert held.hold(7, 0.25, now=0.0) == 1
    assert held.left(7, now=0.2) == 1
    assert held.left(7, now=0.25) == 0


def test_holds_are_per_key() -> None:
    held: Cooldowns[str] = Cooldowns()
    held.hold("15550001", 100.0, now=0.0)
    assert held.left("15550002", now=1.0) == 0
    assert held.left("15550001", now=1.0) == 99


def test_a_second_flood_extends_a_hold_and_a_shorter_one_never_shortens_it() -> None:
    held: Cooldowns[str] = Cooldowns()
    held.hold("15550001", 100.0, now=0.0)
    # The cool-down was lowered by a reload meanwhile: the hold already given stands.
    assert held.hold("15550001", 10.0, now=50.0) == 50
    assert held.hold("15550001", 100.0, now=60.0) == 100
    assert held.left("15550001", now=159.0) == 1


def test_ended_holds_are_dropped_so_memory_stays_bounded() -> None:
    held: Cooldowns[int] = Cooldowns()
    for i in range(1000):
        held.hold(i, 100.0, now=float(i))
    # Only holds that end after t=999 remain: those started after t=899.
    assert held.left(0, now=999.0) == 0
    assert len(held) == 100


def test_phone_and_password_floods_are_held_apart() -> None:
    floods = LoginFloods()
    floods.phone.hold(phone_key("+15551234567"), 60.0, now=0.0)
    floods.password.hold(3, 30.0, now=0.0)
    assert floods.phone.left(phone_key("15551234567"), now=1.0) == 59
    assert floods.password.left(3, now=1.0) == 29
    assert floods.password.left(4, now=1.0) == 0
