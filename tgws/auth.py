"""API keys and the failed-login throttle. Pure: no I/O, no asyncio, no clock of its own.

API keys
    An API key is ``"tgws_"`` followed by 43 URL-safe characters (32 random bytes from
    :mod:`secrets`, 256 bits). The prefix makes a leaked key recognisable to secret scanners
    and to an operator reading a config file. Only ``hash_api_key(key)`` is ever stored.

Failed-login throttle
    :class:`LoginLimiter` slows down and finally stops a client that keeps sending wrong keys:

    * every failed ``login`` is answered only after ``delay_for(...)`` seconds, which doubles
      with each failure (``base_delay * 2**(n-1)``, capped at ``max_delay``);
    * a connection that has failed ``max_failures_per_connection`` times is closed
      (the caller counts a connection's failures; the limiter keeps no per-connection state);
    * a peer address with ``max_failures_per_peer`` failures inside the sliding ``window`` is
      refused outright until enough of those failures age out of the window.

    A successful login does **not** reset the peer's counter: many clients can share one address
    (NAT, a proxy, an office), and a client holding one valid key must not be able to wipe the
    record of the failures it or its neighbours caused. The failures simply age out.

    Keys are 256-bit random, so the throttle is not what keeps them secret; it keeps a broken
    or hostile client from burning CPU, log space and database reads in a tight loop.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = [
    "API_KEY_PREFIX",
    "LoginLimiter",
    "hash_api_key",
    "keys_match",
    "new_api_key",
    "peer_key",
]

API_KEY_PREFIX = "tgws_"
_KEY_BYTES = 32  # 256 bits of entropy

# Highest exponent used by delay_for. 2**64 * any sane base_delay is far above any max_delay,
# and bounding it keeps `2 ** (n - 1)` from building huge ints (or overflowing a float) for a
# connection that somehow reports an absurd failure count.
_MAX_EXPONENT = 64


def new_api_key() -> str:
    """Return a fresh API key: ``"tgws_"`` + 43 URL-safe characters (256 random bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def hash_api_key(key: str) -> str:
    """Return the SHA-256 hex digest of the UTF-8 encoded key: what the store keeps.

    A plain fast hash is the right tool here, unlike for passwords: slow, salted KDFs (bcrypt,
    scrypt, argon2) exist to make guessing *low-entropy* secrets expensive after a database leak.
    Our keys carry 256 random bits, so no amount of guessing recovers one from its hash, and
    salting buys nothing. An unsalted digest also lets the store find a key by an indexed
    lookup of its hash instead of running a deliberately slow KDF against every row on every
    login attempt, which would turn the login path into a CPU-exhaustion lever.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keys_match(stored_hash: str, key: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash``, compared in constant time."""
    # compare_digest on ASCII str is constant-time in the content (it may still reveal the
    # length, which for a hex SHA-256 is public anyway).
    # Encoding first avoids compare_digest's TypeError on a non-ASCII str (a corrupt row).
    expected = hash_api_key(key).encode("ascii")
    return hmac.compare_digest(stored_hash.encode("utf-8", "replace"), expected)


def peer_key(peer: str) -> str:
    """The bucket a peer address is counted in.

    IPv6 clients usually own a whole /64 and can rotate addresses inside it at will, so an IPv6
    address is counted by its /64 network. An IPv4-mapped IPv6 address counts as the IPv4
    address it maps. Anything that does not parse as an IP address (a Unix socket path, an
    empty string) is used as it is.
    """
    try:
        address = ipaddress.ip_address(peer.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginLimiter:
    """Failed-login throttle per connection and per peer address (see the module docstring).

    Memory stays bounded: each tracked peer keeps at most ``max_failures_per_peer`` timestamps
    (the most recent ones are all that "≥ N failures within the window" needs), peers whose
    newest failure has left the window are pruned on every update, and at most ``max_peers``
    peers are tracked: past that, the peer whose last failure is oldest is forgotten first.

    All limits can be changed at runtime with :meth:`configure` (for a SIGHUP reload); failures
    already recorded are kept.
    """

    def __init__(
        self,
        max_failures_per_connection: int = 5,
        max_failures_per_peer: int = 20,
        window: float = 600.0,
        base_delay: float = 0.25,
        max_delay: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_peers: int = 10_000,
    ) -> None:
        _validate(
            max_failures_per_connection=max_failures_per_connection,
            max_failures_per_peer=max_failures_per_peer,
            window=window,
            base_delay=base_delay,
            max_delay=max_delay,
            max_peers=max_peers,
        )
        self._max_conn = max_failures_per_connection
        self._max_peer = max_failures_per_peer
        self._window = float(window)
        self._base_delay = float(base_delay)
        self._max_delay = float(max_delay)
        self._max_peers = max_peers
        self._clock = clock
        # peer bucket -> timestamps of its most recent failures, oldest first. The dict is kept
        # ordered by each peer's newest failure (move_to_end on every failure), so the peers
        # that have gone quiet longest are always at the front: pruning and eviction pop from
        # there in amortised O(1).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    # -- limits ---------------------------------------------------------------------------

    @property
    def max_failures_per_connection(self) -> int:
        return self._max_conn

    @property
    def max_failures_per_peer(self) -> int:
        return self._max_peer

    @property
    def window(self) -> float:
        return self._window

    @property
    def base_delay(self) -> float:
        return self._base_delay

    @property
    def max_delay(self) -> float:
        return self._max_delay

    @property
    def max_peers(self) -> int:
        return self._max_peers

    def configure(
        self,
        *,
        max_failures_per_connection: int | None = None,
        max_failures_per_peer: int | None = None,
        window: float | None = None,
        base_delay: float | None = None,
        max_delay: float | None = None,
        max_peers: int | None = None,
    ) -> None:
        """Change some limits in place (SIGHUP reload). Unnamed limits keep their value.

        Raises ValueError, changing nothing, if the resulting set of limits is invalid.
        """
        new_conn = max_failures_per_connection
        if new_conn is None:
            new_conn = self._max_conn
        new_peer = self._max_peer if max_failures_per_peer is None else max_failures_per_peer
        new_window = self._window if window is None else float(window)
        new_base = self._base_delay if base_delay is None else float(base_delay)
        new_max_delay = self._max_delay if max_delay is None else float(max_delay)
        new_max_peers = self._max_peers if max_peers is None else max_peers
        _validate(
            max_failures_per_connection=new_conn,
            max_failures_per_peer=new_peer,
            window=new_window,
            base_delay=new_base,
            max_delay=new_max_delay,
            max_peers=new_max_peers,
        )
        self._max_conn = new_conn
        self._window = new_window
        self._base_delay = new_base
        self._max_delay = new_max_delay
        self._max_peers = new_max_peers
        if new_peer != self._max_peer:
            self._max_peer = new_peer
            for bucket, stamps in list(self._failures.items()):
                self._failures[bucket] = deque(stamps, maxlen=new_peer)
        self._prune(self._clock())

    # -- queries and updates --------------------------------------------------------------

    def delay_for(self, peer: str, conn_failures: int) -> float:
        """Seconds to wait before answering a failed login.

        ``n`` is the larger of the connection's failure count (including the one being
        answered) and the peer's failures within the window, so a client cannot reset its
        slow-down by reconnecting. The delay is ``base_delay * 2**(n-1)``, at most
        ``max_delay``, and 0 when ``n`` is 0.
        """
        n = max(conn_failures, self.peer_failures(peer))
        if n <= 0:
            return 0.0
        delay = self._base_delay * math.ldexp(1.0, min(n - 1, _MAX_EXPONENT))
        return min(delay, self._max_delay)

    def record_failure(self, peer: str) -> None:
        """Count one failed login from ``peer`` now."""
        now = self._clock()
        bucket = peer_key(peer)
        stamps = self._failures.get(bucket)
        if stamps is None:
            stamps = deque(maxlen=self._max_peer)
            self._failures[bucket] = stamps
        else:
            self._failures.move_to_end(bucket)
        stamps.append(now)
        self._prune(now)

    def peer_failures(self, peer: str) -> int:
        """How many failures of ``peer`` are inside the window (at most max_failures_per_peer)."""
        stamps = self._failures.get(peer_key(peer))
        if not stamps:
            return 0
        horizon = self._clock() - self._window
        return sum(1 for stamp in stamps if stamp > horizon)

    def peer_blocked(self, peer: str) -> bool:
        """Whether ``peer`` has at least max_failures_per_peer failures inside the window."""
        return self.peer_failures(peer) >= self._max_peer

    def connection_blocked(self, conn_failures: int) -> bool:
        """Whether a connection with this many failures must be closed."""
        return conn_failures >= self._max_conn

    def tracked_peers(self) -> int:
        """How many peer buckets are held in memory (for tests and metrics)."""
        return len(self._failures)

    # -- internals ------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        horizon = now - self._window
        failures = self._failures
        # Front = peer whose newest failure is oldest; once that one is inside the window,
        # every later peer is too.
        while failures:
            bucket, stamps = next(iter(failures.items()))
            if stamps and stamps[-1] > horizon:
                break
            del failures[bucket]
        while len(failures) > self._max_peers:
            failures.popitem(last=False)


def _validate(
    *,
    max_failures_per_connection: int,
    max_failures_per_peer: int,
    window: float,
    base_delay: float,
    max_delay: float,
    max_peers: int,
) -> None:
    if max_failures_per_connection < 1:
        raise ValueError("max_failures_per_connection must be at least 1")
    if max_failures_per_peer < 1:
        raise ValueError("max_failures_per_peer must be at least 1")
    if not (math.isfinite(window) and window > 0):
        raise ValueError("window must be a positive number of seconds")
    if not (math.isfinite(base_delay) and base_delay >= 0):
        raise ValueError("base_delay must be a non-negative number of seconds")
    if not (math.isfinite(max_delay) and max_delay >= 0):
        raise ValueError("max_delay must be a non-negative number of seconds")
    if max_peers < 1:
        raise ValueError("max_peers must be at least 1")
