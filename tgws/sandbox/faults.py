"""Faults as data: a seeded plan that decides how the sandbox Telegram answers each request.

The world code never asks "am I hostile?". Every request a SandboxSender transmits gets one
`Decision` from its world's FaultPlan, and the sender carries it out:

- answer normally, after `latency` (+ up to `jitter`) seconds;
- fail with Telegram's RPC error for a fault kind (`ERRORS`): INTERNAL (500), RPC_CALL_FAIL
  (500), "Timeout" (-503, Telethon's TimedOutError) or FLOOD_WAIT_<flood_wait> (420);
- "drop": the connection dies before the answer arrives. The sender does what Telethon's
  MTProtoSender does: it reconnects in the background and re-sends every request still
  waiting, unless reconnecting keeps failing (see `refuse()`), in which case they fail with
  ConnectionError after the client's `connection_retries`;
- "stall": the endpoint stops answering (see `stall()`).

Determinism ("per call index"): the plan numbers the requests its world receives, 0, 1, 2, ...
in the order senders transmit them (all clients of the world share one counter; a request
re-sent after a reconnect gets a new number). Whether call n faults, and with which kind,
depends only on (seed, n): two draws u1, u2 = hash(seed, n, ...) in [0, 1); the call faults
when u1 < rate, with kind kinds[int(u2 * len(kinds))]. So the same seed and the same calls give
the same faults, and raising the rate only adds faults (the calls failing at 1 % also fail
at 5 %). `preview(n)` tells a test what call n will meet.

Scripted faults (`script()`, and World.fail() for any RPC error) come first: the next `times`
calls of one method after `after` of them pass. They are how a test puts a fault exactly
where it wants one ("drop the 4th GetHistory").

Requests exempt from random faults (`EXEMPT`): keep-alive pings, and the initConnection that
Telethon's connect() sends outside its retry loop. They take no call number, still wait out
latency and stalls, and meet only faults scripted for them by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from telethon.tl import TLRequest, alltlobjects

from tgws.sandbox.errors import SandboxRpcError

# fault kind -> the (code, message) Telegram answers with; "flood" takes its seconds from
# FaultPlan.flood_wait. "drop" and "stall" are not errors: the sender carries them out.
ERRORS: dict[str, tuple[int, str]] = {
    "internal": (500, "INTERNAL"),
    "rpc_call_fail": (500, "RPC_CALL_FAIL"),
    "timeout": (-503, "Timeout"),
}
KINDS = ("internal", "rpc_call_fail", "timeout", "flood", "drop")
SCRIPT_KINDS = (*KINDS, "stall")
EXEMPT = frozenset({"PingRequest", "PingDelayDisconnectRequest", "InitConnectionRequest"})
_SCALE = float(1 << 64)
LOG_LIMIT = 100_000  # FaultPlan.log keeps at least the last LOG_LIMIT // 2 faults


def parse_kinds(text: str | Iterable[str]) -> tuple[str, ...]:
    """"internal, drop" or an iterable of names -> a tuple of known kinds (ValueError else)."""
    names = [part.strip() for part in text.split(",")] if isinstance(text, str) else list(text)
    kinds = tuple(dict.fromkeys(name for name in names if name))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")
    return kinds


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one transmitted request."""

    index: int  # the call number (see the module docstring)
    method: str  # the request's class name, e.g. "GetHistoryRequest"
    kind: str | None  # None: a normal answer; else a KINDS / SCRIPT_KINDS name, or "error"
    error: SandboxRpcError | None  # the RPC error to answer with, if any
    delay: float  # seconds before the answer (or the fault) arrives


@dataclass(slots=True)
class _Rule:
    method: str
    kind: str  # a SCRIPT_KINDS name, or "error" (World.fail: any RPC error)
    error: SandboxRpcError | None
    times: int | None  # None: for ever
    after: int


class Endpoint(Protocol):
    """What the plan needs from a connected sender (SandboxSender)."""

    def drop_connection(self) -> None: ...
    def release_held(self) -> None: ...


class FaultPlan:
    """The faults of one world. Plain attributes are the knobs; methods switch modes.

    rate      fraction of (non-exempt) calls that meet a random fault (0: none)
    kinds     the kinds random faults are drawn from (KINDS by default)
    methods   None, or the request class names random faults may hit (e.g. {"GetHistoryRequest"})
    flood_wait  N in FLOOD_WAIT_N
    latency   seconds before every answer; jitter adds up to that many more, drawn per call
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rate = 0.0
        self.kinds: tuple[str, ...] = KINDS
        self.methods: frozenset[str] | None = None
        self.flood_wait = 1
        self.latency = 0.0
        self.jitter = 0.0
        self.calls = 0  # requests decided so far (the next call's index)
        # Requests decided so far per method (class name): what a client cost Telegram.
        self.per_method: Counter[str] = Counter()
        self.log: list[Decision] = []  # the faults carried out, in call order (see LOG_LIMIT)
        self._rules: list[_Rule] = []
        self._mode = "up"  # "up", "stall", "refuse" or "garbage"
        self._refusals: int | None = None  # refuse(attempts): refusals left (None: no limit)
        self._waiters: list[asyncio.Future[None]] = []
        self._senders: weakref.WeakSet[Endpoint] = weakref.WeakSet()

    # --- knobs ---------------------------------------------------------------------------

    def set(self, *, rate: float | None = None, kinds: str | Iterable[str] | None = None,
            methods: Iterable[str] | None = None, flood_wait: int | None = None,
            latency: float | None = None, jitter: float | None = None) -> FaultPlan:
        """Change several knobs at once (None leaves one as it is); returns the plan."""
        if rate is not None:
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rate must be between 0 and 1")
            self.rate = rate
        if kinds is not None:
            self.kinds = parse_kinds(kinds)
        if methods is not None:
            self.methods = frozenset(_request_name(name) for name in methods)
        if flood_wait is not None:
            if flood_wait < 0:
                raise ValueError("flood_wait must be >= 0")
            self.flood_wait = flood_wait
        if latency is not None:
            self.latency = max(0.0, latency)
        if jitter is not None:
            self.jitter = max(0.0, jitter)
        return self

    def calm(self) -> None:
        """No random faults, no scripted ones, no latency, and answering."""
        self.rate = 0.0
        self.latency = self.jitter = 0.0
        self._rules.clear()
        self.resume()

    @property
    def quiet(self) -> bool:
        """True when no call can meet a fault (the calm world's state)."""
        return self.rate <= 0 and not self._rules and self._mode == "up"

    # --- scripted faults -------------------------------------------------------------------

    def script(self, method: str, kind: str, *, times: int | None = 1, after: int = 0) -> None:
        """The next `times` calls of `method` (class name, "Request" optional) after `after`
        of them pass meet `kind` (a SCRIPT_KINDS name); times=None: every one after that.
        "stall" switches the whole world to stall mode when the call arrives."""
        if kind not in SCRIPT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(SCRIPT_KINDS)})")
        self._rules.append(_Rule(_request_name(method), kind, None, times, after))

    def script_error(self, method: str, error: SandboxRpcError, *, times: int | None = 1,
                     after: int = 0) -> None:
        """As script(), with any RPC error (World.fail is built on this)."""
        self._rules.append(_Rule(_request_name(method), "error", error, times, after))

    def _scripted(self, method: str) -> _Rule | None:
        for rule in self._rules:
            if rule.method != method:
                continue
            if rule.after > 0:
                rule.after -= 1
                continue
            if rule.times is not None:
                if rule.times <= 0:
                    continue
                rule.times -= 1
            return rule
        return None

    def check(self, method: str) -> None:
        """Raise the scripted RPC error due for one call of `method`, if any (counts it)."""
        rule = self._scripted(method)
        if rule is not None:
            error = rule.error if rule.error is not None else self._error(rule.kind)
            if error is not None:
                raise error

    # --- deciding --------------------------------------------------------------------------

    def _unit(self, index: int, salt: str) -> float:
        digest = hashlib.blake2b(f"{self.seed}:{index}:{salt}".encode(), digest_size=8,
                                 person=b"tgws-flt").digest()
        return int.from_bytes(digest, "big") / _SCALE

    def _error(self, kind: str) -> SandboxRpcError | None:
        if kind == "flood":
            return SandboxRpcError(420, f"FLOOD_WAIT_{self.flood_wait}")
        pair = ERRORS.get(kind)
        return None if pair is None else SandboxRpcError(*pair)

    def _random_kind(self, index: int, method: str, exempt: bool) -> str | None:
        if (self.rate <= 0 or exempt or not self.kinds
                or (self.methods is not None and method not in self.methods)):
            return None
        if self._unit(index, "fault") >= self.rate:
            return None
        return self.kinds[min(int(self._unit(index, "kind") * len(self.kinds)),
                              len(self.kinds) - 1)]

    def preview(self, index: int, method: str = "GetHistoryRequest") -> str | None:
        """The random fault kind call `index` of `method` would meet (scripts aside)."""
        return self._random_kind(index, method, method in EXEMPT)

    def decide(self, method: str, *, exempt: bool = False) -> Decision:
        """The fate of the next call (the sender calls this once per transmitted request).
        Exempt calls take no number (index -1), so timers (keep-alive pings) cannot shift
        the sequence the other calls meet."""
        if exempt:
            index = -1
        else:
            index = self.calls
            self.calls += 1
            self.per_method[method] += 1
        delay = self.latency
        if self.jitter > 0:
            delay += self.jitter * self._unit(index, "jitter")
        kind: str | None = None
        error: SandboxRpcError | None = None
        rule = self._scripted(method) if self._rules else None
        if rule is not None:
            kind, error = rule.kind, rule.error
        else:
            kind = self._random_kind(index, method, exempt)
        if kind is not None and error is None:
            error = self._error(kind)
        decision = Decision(index, method, kind, error, delay)
        if kind is not None:
            self.log.append(decision)
            if len(self.log) > LOG_LIMIT:  # a demo left running for days stays bounded
                del self.log[: LOG_LIMIT // 2]
        if kind == "stall":
            self.stall()
        return decision

    # --- the endpoint's mode ----------------------------------------------------------------

    @property
    def mode(self) -> str:
        """"up" (answering), "stall" (accepts, never answers), "refuse" (down) or "garbage"
        (answers, but not MTProto)."""
        return self._mode

    @property
    def stalled(self) -> bool:
        return self._mode == "stall"

    @property
    def refusing(self) -> bool:
        return self._mode == "refuse"

    @property
    def garbage(self) -> bool:
        return self._mode == "garbage"

    def stall(self) -> None:
        """The endpoint keeps connections open and stops answering: answers in flight and
        every later request wait (connect() without an auth key hangs in the key exchange)
        until resume(). Telethon's keep-alive ping, unanswered, makes it reconnect; the
        reconnect succeeds (TCP is accepted) and the re-sent requests wait again."""
        self._mode = "stall"

    def refuse(self, attempts: int | None = None) -> None:
        """The endpoint goes down: every connection drops and new ones are refused, so
        Telethon retries `connection_retries` times and then fails what was waiting with
        ConnectionError (client.connect() raises it too) — until resume(). With `attempts`,
        only that many connection attempts (all senders together) are refused; then the
        endpoint is up again by itself (a reconnect that succeeds on its third try)."""
        if attempts is not None and attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._mode = "refuse"
        self._refusals = attempts
        self.drop_connections()

    def accepts_connection(self) -> bool:
        """One connection attempt: False while refusing (and counts a limited refusal)."""
        if self._mode != "refuse":
            return True
        if self._refusals is not None:
            self._refusals -= 1
            if self._refusals <= 0:
                self._mode = "up"
                self._refusals = None
        return False

    def garble(self) -> None:
        """The endpoint answers something other than MTProto (say, an HTTP 400 page) and
        closes. What Telethon 1.45 does with that: a key exchange reads the junk as a packet
        length and fails with asyncio.IncompleteReadError, which escapes client.connect();
        with a key, each answer breaks the connection, so the sender reconnects and re-sends
        for ever (one round every 10 ms here) and the calls never complete — until resume()."""
        self._mode = "garbage"
        self.drop_connections()

    def resume(self) -> None:
        """Back to answering: held answers are delivered, waiting connects complete."""
        self._mode = "up"
        self._refusals = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for sender in list(self._senders):
            sender.release_held()

    def drop_connections(self) -> None:
        """Drop every open connection once now (each sender reconnects and re-sends)."""
        for sender in list(self._senders):
            sender.drop_connection()

    async def until_answering(self) -> None:
        """Wait while the endpoint is stalled (what a key exchange meets)."""
        while self._mode == "stall":
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def attach(self, sender: Endpoint) -> None:
        self._senders.add(sender)

    def detach(self, sender: Endpoint) -> None:
        self._senders.discard(sender)


REQUEST_NAMES = frozenset(
    cls.__name__ for cls in alltlobjects.tlobjects.values() if issubclass(cls, TLRequest))


def _request_name(method: str) -> str:
    """"GetHistory" or "GetHistoryRequest" -> "GetHistoryRequest"; ValueError for no request."""
    name = method if method.endswith("Request") else method + "Request"
    if name not in REQUEST_NAMES:
        raise ValueError(f"no Telegram request is called {method!r}")
    return name
