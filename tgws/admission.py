"""Who gets a connection slot, and who the client really is. Pure: no I/O, no asyncio.

Pools (docs/security.md, "Connections that never log in")
    Every TCP connection starts *unverified* and stays so until its ``login`` proves an API
    key. Unverified connections (websocket handshakes in progress included) live in a pool
    of ``max_unverified``, at most ``max_unverified_per_address`` of them per client
    address. A full pool never refuses the newcomer: its *oldest* unverified connection
    makes room. A real client logs in within a round trip or two of connecting, so it is
    always younger than anything that is squatting; to push it out, an attacker must open a
    whole pool's worth of new connections inside that round trip. Logged-in connections
    are counted apart (``[server] max_connections``), so clients that never log in can
    never make the server answer HTTP 503.

    A connection from a trusted proxy has no client address until its handshake names one
    (``rebucket``): until then it counts only in the global pool.

Client address
    ``client_address`` believes ``Forwarded`` / ``X-Forwarded-For`` only when the TCP peer
    is a trusted proxy, and then takes the rightmost hop that is not itself a trusted
    proxy: hops to the left of it were written by the client and prove nothing.

Origin
    ``origin_allowed``: a browser always sends ``Origin``; other clients do not. Without it
    the request is allowed; with it, only listed origins and the server's own one are.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

__all__ = [
    "Networks",
    "Pools",
    "client_address",
    "close_reason",
    "origin_allowed",
]

T = TypeVar("T", bound=Hashable)

# RFC 6455 §5.5: a control frame carries at most 125 bytes; the close code takes 2.
MAX_CLOSE_REASON_BYTES = 123

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def close_reason(text: str, limit: int = MAX_CLOSE_REASON_BYTES) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    # errors="ignore" drops the partial character the byte cut may leave at the end.
    return data[:limit].decode("utf-8", errors="ignore")


def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # RFC 7239 quotes IPv6 as "[2001:db8::1]:4711"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Networks:
    """A set of IP networks ([server] trusted_proxies)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._nets: list[IPNetwork] = [ipaddress.ip_network(e, strict=False) for e in entries]

    def __bool__(self) -> bool:
        return bool(self._nets)

    def contains(self, address: str | IPAddress | None) -> bool:
        if not self._nets or address is None:
            return False
        ip = _parse_ip(address) if isinstance(address, str) else address
        if ip is None:
            return False
        return any(ip.version == net.version and ip in net for net in self._nets)


_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for\s*=\s*("[^"]*"|[^;,\s]+)')


def _forwarded_hops(forwarded: Sequence[str], x_forwarded_for: Sequence[str]) -> list[str]:
    """The addresses a proxy chain recorded, leftmost (farthest) first.

    RFC 7239 ``Forwarded`` wins when present; otherwise ``X-Forwarded-For``. Several header
    lines are one list in order (RFC 9110 §5.3).
    """
    if forwarded:
        hops: list[str] = []
        for line in forwarded:
            for element in line.split(","):
                match = _FORWARDED_FOR.search(element)
                # An element without for= (or "unknown") is still a hop we cannot trust.
                hops.append(match.group(1).strip('"') if match else "")
        return hops
    return [hop.strip() for line in x_forwarded_for for hop in line.split(",")]


def client_address(tcp_peer: str, forwarded: Sequence[str], x_forwarded_for: Sequence[str],
                   trusted: Networks) -> str:
    """The client's address: the TCP peer, or what trusted proxies say it is.

    Walks the recorded hops from the right (the one our proxy added) and returns the first
    that is not a trusted proxy. An unparsable hop ends the walk: it is returned as-is if it
    is the first untrusted entry, so garbage from a client buckets that client by its own
    garbage rather than by the proxy's address.
    """
    if not trusted.contains(tcp_peer):
        return tcp_peer
    hops = _forwarded_hops(forwarded, x_forwarded_for)
    candidate = tcp_peer
    for hop in reversed(hops):
        ip = _parse_ip(hop)
        if ip is None:
            return hop or candidate
        candidate = str(ip)
        if not trusted.contains(ip):
            return candidate
    return candidate  # every hop is a trusted proxy: the leftmost one is the client


def _origin_key(origin: str) -> str | None:
    """scheme://host:port, lowercased, default ports made explicit; None if malformed."""
    match = re.fullmatch(r"([a-z][a-z0-9+.-]*)://([^/?#\s@]+)/?", origin.strip().lower())
    if match is None:
        return None
    scheme, authority = match.groups()
    return f"{scheme}://{_authority_key(authority, scheme)}"


_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}


def _authority_key(authority: str, scheme: str = "http") -> str:
    host, port = _split_host_port(authority)
    return f"{host}:{port or _DEFAULT_PORTS.get(scheme, '')}"


def _split_host_port(authority: str) -> tuple[str, str]:
    authority = authority.lower()
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if authority.count(":") == 1:
        host, port = authority.split(":")
        return host, port
    return authority, ""


def _is_literal_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a handshake's ``Origin`` may open the websocket.

    No Origin (not a browser): allowed. Listed in ``allowed``: allowed. The server's own
    origin: allowed when Origin's host:port equals the Host header *and* that host is an IP
    literal or ``localhost``; a name is not enough, since DNS rebinding can point any name
    at this server and the browser would then send a matching Host.
    """
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:
        return False
    if any(_origin_key(entry) == key for entry in allowed):
        return True
    if not host:
        return False
    scheme, _, authority = key.partition("://")
    own_host, _ = _split_host_port(host)
    return (_is_literal_or_localhost(own_host)
            and authority == _authority_key(host, scheme))


class Pools(Generic[T]):
    """The unverified pool and its per-address share (see the module docstring).

    Items are whatever identifies a connection (the server uses the connection object).
    ``admit`` and ``rebucket`` return the connections that must go to make room, oldest
    first; the caller closes them and reports each with ``gone``.
    """

    def __init__(self, max_unverified: int, per_address: int) -> None:
        self.max_unverified = max_unverified
        self.per_address = per_address
        # Insertion order is age: the first entry is the oldest unverified connection.
        self._unverified: OrderedDict[T, str | None] = OrderedDict()
        self._by_address: dict[str, OrderedDict[T, None]] = {}
        self._verified: set[T] = set()

    @property
    def unverified(self) -> int:
        return len(self._unverified)

    @property
    def verified(self) -> int:
        return len(self._verified)

    def is_unverified(self, item: T) -> bool:
        return item in self._unverified

    def admit(self, item: T, address: str | None) -> list[T]:
        """Count a new connection from `address` (None: not known yet)."""
        self._unverified[item] = address
        if address is not None:
            self._by_address.setdefault(address, OrderedDict())[item] = None
        return self._make_room(address, keep=item)

    def rebucket(self, item: T, address: str) -> list[T]:
        """The handshake named the client (a trusted proxy's header): count it there."""
        if item not in self._unverified:
            return []
        self._drop_address(item)
        self._unverified[item] = address
        self._by_address.setdefault(address, OrderedDict())[item] = None
        return self._make_room(address, keep=item)

    def verify(self, item: T) -> None:
        """The connection passed `login`: it leaves the pool and counts as logged in."""
        if item in self._unverified:
            self._drop_address(item)
            del self._unverified[item]
        self._verified.add(item)

    def gone(self, item: T) -> None:
        if item in self._unverified:
            self._drop_address(item)
            del self._unverified[item]
        self._verified.discard(item)

    def _drop_address(self, item: T) -> None:
        address = self._unverified[item]
        if address is None:
            return
        bucket = self._by_address[address]
        del bucket[item]
        if not bucket:
            del self._by_address[address]

    def _make_room(self, address: str | None, keep: T | None = None) -> list[T]:
        victims: list[T] = []
        if address is not None:
            bucket = self._by_address[address]
            over = len(bucket) - self.per_address
            for old in bucket:
                if over <= 0:
                    break
                if old is not keep:
                    victims.append(old)
                    over -= 1
        excess = len(self._unverified) - len(victims) - self.max_unverified
        if excess > 0:
            for old in self._unverified:
                if excess <= 0:
                    break
                if old in victims or old is keep:
                    continue
                victims.append(old)
                excess -= 1
        for victim in victims:
            self.gone(victim)
        return victims
