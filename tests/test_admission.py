"""tgws.admission, the pure rules of the edge: pools, client address, Origin, close reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgws.admission import Networks, Pools, client_address, close_reason, origin_allowed
from tgws.config import load
from tgws.errors import ConfigError


@given(st.text())
def test_close_reason_fits_a_close_frame_and_is_a_prefix(text: str) -> None:
    reason = close_reason(text)
    assert len(reason.encode("utf-8")) <= 123
    assert text.startswith(reason)
    # Nothing is cut that fits, and no more than one character's worth is lost.
    if len(text.encode("utf-8")) <= 123:
        assert reason == text
    else:
        assert len(reason.encode("utf-8")) > 123 - 4


def test_pool_full_drops_the_oldest_never_the_newcomer() -> None:
    pools: Pools[str] = Pools(max_unverified=3, per_address=3)
    assert pools.admit("a", "1.1.1.1") == []
    assert pools.admit("b", "2.2.2.2") == []
    assert pools.admit("c", "3.3.3.3") == []
    assert pools.admit("d", "4.4.4.4") == ["a"]
    assert pools.unverified == 3


def test_per_address_share_drops_that_address_oldest_only() -> None:
    pools: Pools[str] = Pools(max_unverified=10, per_address=2)
    pools.admit("other", "9.9.9.9")
    pools.admit("a1", "1.1.1.1")
    pools.admit("a2", "1.1.1.1")
    assert pools.admit("a3", "1.1.1.1") == ["a1"]
    assert pools.is_unverified("other")


def test_verified_connections_leave_the_pool() -> None:
    pools: Pools[str] = Pools(max_unverified=1, per_address=1)
    pools.admit("a", "1.1.1.1")
    pools.verify("a")
    assert pools.admit("b", "1.1.1.1") == []
    assert (pools.verified, pools.unverified) == (1, 1)
    pools.gone("a")
    assert pools.verified == 0


def test_rebucket_counts_a_proxied_connection_under_its_client() -> None:
    pools: Pools[str] = Pools(max_unverified=10, per_address=1)
    pools.admit("a", "5.5.5.5")
    pools.admit("b", None)  # from a trusted proxy: address unknown yet
    assert pools.rebucket("b", "5.5.5.5") == ["a"]
    assert pools.is_unverified("b") and not pools.is_unverified("a")


PROXY = Networks(["10.0.0.0/8", "127.0.0.1"])


def test_forwarded_headers_are_read_only_from_trusted_proxies() -> None:
    assert client_address("192.0.2.1", [], ["203.0.113.5"], PROXY) == "192.0.2.1"
    assert client_address("10.1.2.3", [], ["203.0.113.5"], PROXY) == "203.0.113.5"


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    hops = ["198.51.100.9, 203.0.113.5, 10.0.0.7"]
    assert client_address("127.0.0.1", [], hops, PROXY) == "203.0.113.5"


def test_forwarded_wins_over_x_forwarded_for_and_parses_rfc7239() -> None:
    forwarded = ['for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"']
    assert client_address("127.0.0.1", forwarded, ["203.0.113.5"], PROXY) == \
        "2001:db8:cafe::17"


def test_no_header_from_a_proxy_means_the_proxy() -> None:
    assert client_address("10.0.0.1", [], [], PROXY) == "10.0.0.1"


def test_origin_rules() -> None:
    allowed = ["https://app.example.org"]
    assert origin_allowed(None, "127.0.0.1:8000", allowed)
    assert origin_allowed("https://app.example.org", "127.0.0.1:8000", allowed)
    assert origin_allowed("https://APP.example.org:443", "127.0.0.1:8000", allowed)
    assert not origin_allowed("http://evil.example", "127.0.0.1:8000", allowed)
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", [])
    assert origin_allowed("http://localhost:8000", "localhost:8000", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", [])
    # DNS rebinding: a name matching Host is not the server's own origin.
    assert not origin_allowed("http://rebind.example:8000", "rebind.example:8000", [])
    assert not origin_allowed("null", "127.0.0.1:8000", [])


# --- the [server] keys behind these rules ------------------------------------------------------
def test_list_keys_load_as_tuples_and_bad_entries_are_named() -> None:
    config = load(None, environ={}, overrides={"server.trusted_proxies": ["10.0.0.0/8"],
                                               "server.allowed_origins": ["https://a.org"]})
    assert config.server.trusted_proxies == ("10.0.0.0/8",)
    assert config.server.allowed_origins == ("https://a.org",)
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies: .*'not-an-ip'"):
        load(None, environ={}, overrides={"server.trusted_proxies": ["not-an-ip"]})
    with pytest.raises(ConfigError, match=r"server\.allowed_origins: .*'a.org/path'"):
        load(None, environ={}, overrides={"server.allowed_origins": ["a.org/path"]})
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies: expected a list of strings"):
        load(None, environ={}, overrides={"server.trusted_proxies": "10.0.0.1"})
    with pytest.raises(ConfigError, match=r"server\.max_write_buffer"):
        load(None, environ={}, overrides={"server.max_write_buffer": 65536})
