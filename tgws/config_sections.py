"""The sections of tgws.toml: one frozen dataclass per TOML table, each checking its values.

tgws/config.py loads a file, the environment and flags into these (and re-exports every
name here, so `from tgws.config import ServerConfig` keeps working). Adding a key means a
field here, its line in tgws.toml.example, and nothing in the loader: it walks the
dataclasses. `validate()` raises Invalid(key, expected); the loader names the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tgws.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
_API_HASH = re.compile(r"^[0-9a-fA-F]{32}$")
CONNECTIONS = ("full", "intermediate", "abridged")
BACKENDS = ("telegram", "sandbox")
# tgws.sandbox.faults.KINDS, repeated so config stays free of Telethon (a test keeps them equal).
SANDBOX_FAULT_KINDS = ("internal", "rpc_call_fail", "timeout", "flood", "drop")


def default_db_path(environ: Mapping[str, str] | None = None) -> str:
    """`tgws.db` in systemd's state directory when it sets one, else the working directory."""
    state = (os.environ if environ is None else environ).get("STATE_DIRECTORY")
    if state:
        # systemd may pass several colon-separated directories; the first is ours.
        return str(Path(state.split(":")[0]) / "tgws.db")
    return "tgws.db"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/ws/telegram/"
    max_message_size: int = 65536
    idle_timeout: float = 900.0
    max_connections: int = 1000
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    write_limit: int = 65536
    compression: bool = False
    shutdown_timeout: float = 10.0
    gc_threshold: int = 20000
    # The edge (docs/security.md): what a connection may cost before it proves an API key.
    login_timeout: float = 10.0
    max_unverified: int = 64
    max_unverified_per_address: int = 8
    max_connections_per_key: int = 32
    max_write_buffer: int = 1048576
    write_timeout: float = 60.0
    trusted_proxies: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # wss:// served directly (tgws.tls); both or neither. Re-read on SIGHUP.
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"

    def validate(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", "an integer from 0 to 65535")
        _require(bool(self.tls_cert) == bool(self.tls_key), "server.tls_key",
                 "tls_cert and tls_key set together (or neither)")
        _require(self.path.startswith("/"), "server.path", "a path starting with '/'")
        _require(self.max_message_size >= 1024, "server.max_message_size", "at least 1024")
        _require(self.idle_timeout >= 0, "server.idle_timeout", "seconds >= 0 (0 = never)")
        _require(self.max_connections >= 1, "server.max_connections", "at least 1")
        _require(self.ping_interval >= 0, "server.ping_interval", "seconds >= 0")
        _require(self.ping_timeout >= 0, "server.ping_timeout", "seconds >= 0")
        _require(self.write_limit >= 1024, "server.write_limit", "at least 1024 bytes")
        _require(self.shutdown_timeout > 0, "server.shutdown_timeout", "seconds > 0")
        _require(self.gc_threshold >= 0, "server.gc_threshold",
                 "an integer >= 0 (0 = CPython's default)")
        _require(0 < self.login_timeout <= 300, "server.login_timeout",
                 "seconds > 0 and at most 300")
        _require(self.max_unverified >= 1, "server.max_unverified", "at least 1")
        _require(1 <= self.max_unverified_per_address <= self.max_unverified,
                 "server.max_unverified_per_address", "from 1 to server.max_unverified")
        _require(self.max_connections_per_key >= 1, "server.max_connections_per_key",
                 "at least 1")
        _require(self.max_write_buffer >= 2 * self.write_limit, "server.max_write_buffer",
                 "at least twice server.write_limit")
        _require(self.write_timeout > 0, "server.write_timeout", "seconds > 0")
        for entry in self.trusted_proxies:
            _require(_is_network(entry), "server.trusted_proxies",
                     f"IP addresses or CIDR networks, got {entry!r}")
        for origin in self.allowed_origins:
            _require(_is_origin(origin), "server.allowed_origins",
                     f"origins like \"https://example.org\" (scheme://host[:port]), got {origin!r}")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = field(default_factory=default_db_path)
    secret_key_file: str = ""  # "" = sessions are not encrypted at rest (tgws.sealing)
    # "" = the sqlite file at `path`; "postgresql://user:password@host:port/db" = PostgreSQL
    # (tgws.store.postgres), for several daemons sharing one database.
    url: str = ""
    timeout: float = 5.0  # seconds any one database call may take (tgws.store.base)
    # PostgreSQL only (docs/scaling.md): how long an account's lease lasts without a heartbeat,
    # and the address other daemons forward this daemon's accounts' clients to.
    lease_ttl: float = 15.0
    internal_address: str = ""  # "" = ws://<server.host or 127.0.0.1>:<listening port>

    @property
    def target(self) -> str:
        """What Store.open() opens: the PostgreSQL URL when one is set, else the file."""
        return self.url or self.path

    def validate(self) -> None:
        _require(bool(self.path), "store.path", "a non-empty file path")
        _require(not self.url or self.url.startswith(("postgresql://", "postgres://")),
                 "store.url", '"" or a URL like "postgresql://user:password@host:5432/tgws"')
        _require(0 < self.timeout <= 300, "store.timeout", "seconds > 0 and at most 300")
        _require(0.5 <= self.lease_ttl <= 300, "store.lease_ttl", "seconds from 0.5 to 300")
        _require(not self.internal_address
                 or self.internal_address.startswith(("ws://", "wss://")),
                 "store.internal_address", '"" or a URL like "ws://10.0.0.11:9000"')


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    failed_logins_per_connection: int = 5
    failed_logins_per_peer: int = 20
    failed_login_window: float = 600.0
    failed_login_delay: float = 0.25
    send_code_per_key: int = 5
    send_code_per_phone: int = 3
    send_code_window: float = 3600.0
    phone_flood_cooldown: float = 3600.0
    password_flood_cooldown: float = 3600.0

    def validate(self) -> None:
        _require(self.failed_logins_per_connection >= 1,
                 "limits.failed_logins_per_connection", "at least 1")
        _require(self.failed_logins_per_peer >= 1, "limits.failed_logins_per_peer", "at least 1")
        _require(self.failed_login_window > 0, "limits.failed_login_window", "seconds > 0")
        _require(self.failed_login_delay >= 0, "limits.failed_login_delay", "seconds >= 0")
        _require(self.send_code_per_key >= 1, "limits.send_code_per_key", "at least 1")
        _require(self.send_code_per_phone >= 1, "limits.send_code_per_phone", "at least 1")
        _require(self.send_code_window > 0, "limits.send_code_window", "seconds > 0")
        _require(self.phone_flood_cooldown > 0, "limits.phone_flood_cooldown", "seconds > 0")
        _require(self.password_flood_cooldown > 0, "limits.password_flood_cooldown",
                 "seconds > 0")


@dataclass(frozen=True, slots=True)
class TelegramServerConfig:
    dc_id: int = 0
    host: str = ""
    port: int = 443
    public_key_file: str = ""

    @property
    def enabled(self) -> bool:
        return self.dc_id != 0

    def validate(self) -> None:
        if not self.enabled:
            return
        _require(self.dc_id > 0, "telegram.server.dc_id", "a positive DC id")
        _require(bool(self.host), "telegram.server.host", "an IP address when dc_id is set")
        _require(0 < self.port <= 65535, "telegram.server.port", "an integer from 1 to 65535")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    backend: str = "telegram"
    api_id: int = 0
    api_hash: str = ""
    connection: str = "full"
    flood_wait_ceiling: int = 60
    idle_disconnect: float = 300.0
    request_retries: int = 5
    # Deadlines and retries when Telegram fails or stalls (docs/protocol.md, "failures").
    connection_retries: int = 5
    connect_timeout: float = 15.0
    call_timeout: float = 30.0
    stream_retries: int = 5
    retry_backoff: float = 1.0
    member_sweep: bool = False
    entity_cache_ttl: float = 86400.0
    device_model: str = "tgws"
    # A QR login ({"qr": true}) waits this long for a scan, refreshing the code as Telegram
    # expires it, before it fails (docs/protocol.md).
    qr_login_timeout: float = 120.0
    server: TelegramServerConfig = field(default_factory=TelegramServerConfig)

    def validate(self) -> None:
        _require(self.backend in BACKENDS, "telegram.backend", f"one of {_alts(BACKENDS)}")
        _require(self.connection in CONNECTIONS, "telegram.connection",
                 f"one of {_alts(CONNECTIONS)}")
        _require(self.api_id >= 0, "telegram.api_id", "a positive integer")
        _require(self.flood_wait_ceiling >= 0, "telegram.flood_wait_ceiling", "seconds >= 0")
        _require(self.idle_disconnect >= 0, "telegram.idle_disconnect", "seconds >= 0")
        # Telethon follows a PHONE_/USER_MIGRATE (an account on another data centre) by sending
        # the request again: with no retry left, such a login fails with ERROR_SEE_OTHER.
        _require(self.request_retries >= 1, "telegram.request_retries", "an integer >= 1")
        _require(self.connection_retries >= 0, "telegram.connection_retries",
                 "an integer >= 0")
        _require(0 < self.connect_timeout <= 300, "telegram.connect_timeout",
                 "seconds > 0 and at most 300")
        _require(0 < self.call_timeout <= 300, "telegram.call_timeout",
                 "seconds > 0 and at most 300")
        _require(self.stream_retries >= 0, "telegram.stream_retries", "an integer >= 0")
        _require(0 < self.qr_login_timeout <= 3600, "telegram.qr_login_timeout",
                 "seconds > 0 and at most 3600")
        _require(0 <= self.retry_backoff <= 60, "telegram.retry_backoff",
                 "seconds from 0 to 60")
        _require(self.entity_cache_ttl >= 0, "telegram.entity_cache_ttl",
                 "seconds >= 0 (0 = keep entries forever)")
        self.server.validate()

    def require_credentials(self) -> None:
        """The real backend needs api_id/api_hash from https://my.telegram.org."""
        if self.backend == "telegram" and (not self.api_id or not self.api_hash):
            raise ConfigError(
                "telegram.api_id and telegram.api_hash are required for backend 'telegram' "
                "(get them at https://my.telegram.org; or set TGWS_API_ID / TGWS_API_HASH)"
            )


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    progress_every: int = 1000
    progress_interval: float = 2.0
    batch_size: int = 100
    ack_every: int = 1000
    ack_interval: float = 0.25
    ack_timeout: float = 60.0

    def validate(self) -> None:
        _require(self.progress_every >= 1, "streaming.progress_every", "at least 1")
        _require(self.progress_interval > 0, "streaming.progress_interval", "seconds > 0")
        _require(1 <= self.batch_size <= 1000, "streaming.batch_size", "from 1 to 1000")
        _require(self.ack_every >= 1, "streaming.ack_every", "at least 1")
        _require(self.ack_interval > 0, "streaming.ack_interval", "seconds > 0")
        _require(self.ack_timeout > 0, "streaming.ack_timeout", "seconds > 0")


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """`watch` (tgws/live.py): how often each watched group is checked against its history."""

    reconcile_interval: float = 60.0
    # After a live message that leaves a hole behind it (a push lost, or Telegram's own
    # channelDifferenceTooLong), wait this long for Telethon to fill it before reading history.
    gap_delay: float = 1.0

    def validate(self) -> None:
        _require(self.reconcile_interval > 0, "watch.reconcile_interval", "seconds > 0")
        _require(self.gap_delay >= 0, "watch.gap_delay", "seconds >= 0")


_SANDBOX_URL = re.compile(r"(tcp://)?[^:/\s]+:\d{1,5}/?")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """The in-process sandbox Telegram (used when telegram.backend = "sandbox")."""

    seed: int = 0
    tick: float = 0.0
    wire: bool = False
    # The hostile world (docs/sandbox.md); the fault knobs apply only when hostile is true.
    hostile: bool = False
    fault_rate: float = 0.05
    fault_kinds: str = "internal,rpc_call_fail,timeout,flood,drop"
    flood_wait: int = 1
    latency: float = 0.0
    # QR login in the sandbox (tgws/sandbox/qr.py): a login token lives qr_token_ttl seconds;
    # with qr_accept_after > 0 the app of phone qr_accept_as scans each one that many seconds
    # after it is shown (`tgws demo` sets 3), so a QR login can be tried by hand.
    qr_token_ttl: float = 30.0
    qr_accept_after: float = 0.0
    qr_accept_as: str = "+15550000001"
    # "" = the world lives in this process; "tcp://127.0.0.1:PORT" = the shared sandbox that
    # `tgws sandbox serve` runs for several daemons (tgws/sandbox/remote.py); the world keys
    # above are then the server's business.
    url: str = ""

    def validate(self) -> None:
        _require(not self.url or bool(_SANDBOX_URL.fullmatch(self.url)), "sandbox.url",
                 '"" or "tcp://HOST:PORT" (a `tgws sandbox serve` port)')
        _require(self.qr_token_ttl > 0, "sandbox.qr_token_ttl", "seconds > 0")
        _require(self.qr_accept_after >= 0, "sandbox.qr_accept_after",
                 "seconds >= 0 (0 = nobody scans)")
        _require(self.tick >= 0, "sandbox.tick", "seconds >= 0 (0 = the world stands still)")
        _require(0 <= self.fault_rate <= 1, "sandbox.fault_rate", "a fraction from 0 to 1")
        kinds = [kind.strip() for kind in self.fault_kinds.split(",") if kind.strip()]
        _require(all(kind in SANDBOX_FAULT_KINDS for kind in kinds), "sandbox.fault_kinds",
                 f"a comma-separated list of {', '.join(SANDBOX_FAULT_KINDS)}")
        _require(self.flood_wait >= 0, "sandbox.flood_wait", "seconds >= 0")
        _require(self.latency >= 0, "sandbox.latency", "seconds >= 0")


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # "json": one object per line (tgws.logging_setup)

    def validate(self) -> None:
        _require(self.level in LOG_LEVELS, "log.level", f"one of {_alts(LOG_LEVELS)}")
        _require(self.format in LOG_FORMATS, "log.format", f"one of {_alts(LOG_FORMATS)}")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """GET /metrics in Prometheus' text format (tgws.metrics; docs/metrics.md)."""

    enabled: bool = False
    # Networks whose clients may scrape; others get HTTP 403.
    allow: tuple[str, ...] = ("127.0.0.1/8", "::1/128")

    def validate(self) -> None:
        for entry in self.allow:
            _require(_is_network(entry), "metrics.allow",
                     f"IP addresses or CIDR networks, got {entry!r}")


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    source: str = "<defaults>"  # which file this came from, for messages

    def validate(self) -> None:
        for section in (self.server, self.store, self.telegram, self.limits,
                        self.streaming, self.watch, self.sandbox, self.log, self.metrics):
            section.validate()

    def require_credentials(self) -> None:
        """What `tgws serve` and `check-config` demand of the real backend, naming the file:
        api_id and api_hash set, and api_hash the 32 hex digits my.telegram.org gives."""
        where = self.source if self.source != "<defaults>" else "no config file"
        try:
            self.telegram.require_credentials()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        if self.telegram.backend == "telegram" and not _API_HASH.match(self.telegram.api_hash):
            raise ConfigError(f"{where}: telegram.api_hash: expected the 32 hex digits "
                              "my.telegram.org shows, got a string of "
                              f"{len(self.telegram.api_hash)} characters")


class Invalid(Exception):
    """Raised by validate(); load() adds the file name to it."""

    def __init__(self, key: str, expected: str, *, problem: str | None = None) -> None:
        super().__init__(key, expected)
        self.key = key
        self.expected = expected
        self.problem = problem  # replaces "expected …" when the value is not the issue

    def describe(self) -> str:
        return self.problem or f"expected {self.expected}"


def _require(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise Invalid(key, expected)


def _alts(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


_ORIGIN = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://[^/?#\s@]+$")


def _is_origin(text: str) -> bool:
    return _ORIGIN.match(text) is not None
