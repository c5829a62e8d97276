"""tgws.auth: API key format and hashing, and the failed-login throttle (with a fake clock)."""

from __future__ import annotations

import base64
import hashlib
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgws.auth import (
    API_KEY_PREFIX,
    LoginLimiter,
    hash_api_key,
    keys_match,
    new_api_key,
    peer_key,
)

URLSAFE = set(string.ascii_letters + string.digits + "-_")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- keys -------------------------------------------------------------------------------------


def test_new_api_key_is_prefixed_urlsafe_and_carries_256_random_bits() -> None:
    key = new_api_key()
    assert key.startswith(API_KEY_PREFIX)
    body = key.removeprefix(API_KEY_PREFIX)
    assert len(body) == 43
    assert set(body) <= URLSAFE
    assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_new_api_keys_are_unique() -> None:
    keys = {new_api_key() for _ in range(2000)}
    assert len(keys) == 2000


def test_new_api_keys_use_the_whole_alphabet() -> None:
    # A crude entropy check: 200 keys * 43 chars cover all 64 URL-safe symbols.
    seen = set("".join(new_api_key().removeprefix(API_KEY_PREFIX) for _ in range(200)))
    assert seen == URLSAFE


def test_hash_api_key_is_sha256_hex_of_utf8() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert hash_api_key("ключ") == hashlib.sha256("ключ".encode()).hexdigest()


def test_hash_api_key_is_stable_and_distinguishes_keys() -> None:
    key = new_api_key()
    assert hash_api_key(key) == hash_api_key(key)
    assert hash_api_key(key) != hash_api_key(key + "x")
    assert len(hash_api_key(key)) == 64
    assert key not in hash_api_key(key)


def test_keys_match_accepts_the_right_key_only() -> None:
    key = new_api_key()
    stored = hash_api_key(key)
    assert keys_match(stored, key)
    assert not keys_match(stored, new_api_key())
    assert not keys_match(stored, "")
    assert not keys_match(stored, key[:-1])


def test_keys_match_survives_a_corrupt_stored_hash() -> None:
    assert not keys_match("ü" * 64, new_api_key())
    assert not keys_match("", new_api_key())


@given(st.text(max_size=200))
def test_every_text_matches_its_own_hash_and_not_a_neighbours(key: str) -> None:
    assert keys_match(hash_api_key(key), key)
    assert not keys_match(hash_api_key(key + "\x00"), key)


# -- peer buckets -----------------------------------------------------------------------------


def test_ipv4_peers_are_counted_per_address() -> None:
    assert peer_key("192.0.2.1") == "192.0.2.1"
    assert peer_key("192.0.2.1") != peer_key("192.0.2.2")


def test_ipv6_peers_are_counted_per_slash_64() -> None:
    assert peer_key("2001:db8:1:2::1") == peer_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert peer_key("2001:db8:1:3::1") != peer_key("2001:db8:1:2::1")


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    assert peer_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_non_ip_peers_are_used_verbatim() -> None:
    assert peer_key("/run/tgws.sock") == "/run/tgws.sock"
    assert peer_key("") == ""


# -- limiter: delays --------------------------------------------------------------------------


def test_delay_doubles_per_connection_failure_up_to_the_cap() -> None:
    limiter = LoginLimiter(clock=FakeClock())
    delays = [limiter.delay_for("192.0.2.1", n) for n in range(8)]
    assert delays == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_delay_follows_the_peer_so_reconnecting_does_not_reset_it() -> None:
    limiter = LoginLimiter(clock=FakeClock())
    for _ in range(3):
        limiter.record_failure("192.0.2.1")
    # A fresh connection's first failure is answered as the peer's third.
    assert limiter.delay_for("192.0.2.1", 1) == 1.0
    assert limiter.delay_for("192.0.2.99", 1) == 0.25


def test_delay_with_an_absurd_failure_count_is_capped_not_an_overflow() -> None:
    limiter = LoginLimiter(clock=FakeClock())
    assert limiter.delay_for("p", 10**9) == 4.0


@given(
    base=st.floats(min_value=0, max_value=10, allow_nan=False),
    cap=st.floats(min_value=0, max_value=100, allow_nan=False),
    n=st.integers(min_value=-5, max_value=10**6),
)
def test_delay_is_bounded_and_monotonic(base: float, cap: float, n: int) -> None:
    limiter = LoginLimiter(base_delay=base, max_delay=cap, clock=FakeClock())
    delay = limiter.delay_for("p", n)
    assert 0.0 <= delay <= cap
    assert limiter.delay_for("p", n + 1) >= delay


# -- limiter: blocking ------------------------------------------------------------------------


def test_connection_is_blocked_at_its_failure_limit() -> None:
    limiter = LoginLimiter(max_failures_per_connection=5, clock=FakeClock())
    assert not limiter.connection_blocked(4)
    assert limiter.connection_blocked(5)
    assert limiter.connection_blocked(6)


def test_peer_is_blocked_at_its_failure_limit_and_others_are_not() -> None:
    limiter = LoginLimiter(max_failures_per_peer=20, clock=FakeClock())
    for _ in range(19):
        limiter.record_failure("192.0.2.1")
    assert not limiter.peer_blocked("192.0.2.1")
    limiter.record_failure("192.0.2.1")
    assert limiter.peer_blocked("192.0.2.1")
    assert not limiter.peer_blocked("192.0.2.2")


def test_rotating_ipv6_addresses_inside_a_slash_64_does_not_escape_the_block() -> None:
    limiter = LoginLimiter(max_failures_per_peer=3, clock=FakeClock())
    for host in range(3):
        limiter.record_failure(f"2001:db8::{host + 1}")
    assert limiter.peer_blocked("2001:db8::ffff")


def test_peer_block_lifts_as_failures_leave_the_sliding_window() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_failures_per_peer=3, window=60.0, clock=clock)
    limiter.record_failure("p")  # t=0
    clock.advance(10)
    limiter.record_failure("p")  # t=10
    limiter.record_failure("p")  # t=10
    assert limiter.peer_blocked("p")
    clock.advance(49.9)  # t=59.9: the first failure is still inside
    assert limiter.peer_blocked("p")
    clock.advance(0.1)  # t=60: it has left; two remain
    assert not limiter.peer_blocked("p")
    assert limiter.peer_failures("p") == 2
    clock.advance(10)
    assert limiter.peer_failures("p") == 0


def test_success_has_no_reset_a_peer_counter_only_ages_out() -> None:
    # Documented decision: a successful login does not wipe the peer's failures.
    assert not hasattr(LoginLimiter, "reset")


# -- limiter: memory --------------------------------------------------------------------------


def test_tracked_peers_are_capped_dropping_the_quietest_first() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_failures_per_peer=2, clock=clock, max_peers=100)
    for i in range(1000):
        clock.advance(0.001)
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert limiter.tracked_peers() == 100
    assert limiter.peer_failures("10.0.0.0") == 0  # evicted: oldest
    assert limiter.peer_failures("10.0.3.231") == 1  # the 1000th: kept


def test_a_peer_keeps_only_as_many_stamps_as_the_limit_needs() -> None:
    limiter = LoginLimiter(max_failures_per_peer=5, clock=FakeClock())
    for _ in range(10_000):
        limiter.record_failure("p")
    assert limiter.peer_failures("p") == 5
    assert limiter.peer_blocked("p")


def test_peers_whose_failures_left_the_window_are_pruned() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(window=60.0, clock=clock)
    for i in range(500):
        limiter.record_failure(f"10.1.{i // 256}.{i % 256}")
    clock.advance(61)
    limiter.record_failure("192.0.2.1")
    assert limiter.tracked_peers() == 1


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(min_value=0, max_value=30)),
        max_size=80,
    )
)
def test_peer_counts_agree_with_a_naive_model(events: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_failures_per_peer=4, window=60.0, clock=clock)
    history: dict[str, list[float]] = {}
    for peer, pause in events:
        clock.advance(pause)
        limiter.record_failure(peer)
        history.setdefault(peer, []).append(clock.now)
        for other in "abcd":
            recent = [t for t in history.get(other, []) if t > clock.now - 60.0]
            assert limiter.peer_failures(other) == min(len(recent), 4)
            assert limiter.peer_blocked(other) == (len(recent) >= 4)
    assert limiter.tracked_peers() <= 4


# -- limiter: configuration -------------------------------------------------------------------


def test_defaults_match_the_documented_limits() -> None:
    limiter = LoginLimiter()
    assert (limiter.max_failures_per_connection, limiter.max_failures_per_peer) == (5, 20)
    assert (limiter.window, limiter.base_delay, limiter.max_delay) == (600.0, 0.25, 4.0)
    assert limiter.max_peers == 10_000


def test_configure_changes_limits_at_runtime_and_keeps_recorded_failures() -> None:
    limiter = LoginLimiter(max_failures_per_peer=10, clock=FakeClock())
    for _ in range(4):
        limiter.record_failure("p")
    assert not limiter.peer_blocked("p")
    limiter.configure(max_failures_per_peer=3, max_failures_per_connection=2, max_delay=1.0)
    assert limiter.peer_blocked("p")
    assert limiter.connection_blocked(2)
    assert limiter.delay_for("p", 1) == 1.0
    assert limiter.window == 600.0  # untouched


def test_configure_shrinking_max_peers_evicts_at_once() -> None:
    limiter = LoginLimiter(clock=FakeClock())
    for i in range(50):
        limiter.record_failure(f"10.2.0.{i}")
    limiter.configure(max_peers=10)
    assert limiter.tracked_peers() == 10


@pytest.mark.parametrize(
    "bad",
    [
        {"max_failures_per_connection": 0},
        {"max_failures_per_peer": 0},
        {"window": 0.0},
        {"window": float("inf")},
        {"base_delay": -1.0},
        {"max_delay": float("nan")},
        {"max_peers": 0},
    ],
)
def test_invalid_limits_are_refused_and_change_nothing(bad: dict[str, Any]) -> None:
    limiter = LoginLimiter(clock=FakeClock())
    with pytest.raises(ValueError):
        limiter.configure(**bad)
    assert limiter.max_failures_per_peer == 20
    assert limiter.window == 600.0
    with pytest.raises(ValueError):
        LoginLimiter(**bad)
