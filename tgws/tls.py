"""wss:// served directly: the server's TLS context from [server] tls_cert / tls_key.

One ssl.SSLContext lives as long as the server. SIGHUP loads the (possibly renewed)
certificate chain into that same context: every handshake after it presents the new
certificate, while connections already open keep the session they negotiated. A chain
that does not load is refused before the live context is touched, so a bad renewal
(a key that does not match, a half-written file) leaves the running certificate in place.
"""

from __future__ import annotations

import ssl

from tgws.config import ServerConfig
from tgws.errors import ConfigError


def server_context(cfg: ServerConfig, source: str) -> ssl.SSLContext | None:
    """The TLS context for [server], or None for plain ws://. ConfigError (naming the config
    file `source`) if it cannot load."""
    if not cfg.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Websockets need only HTTP/1.1; say so to clients that negotiate ALPN.
    context.set_alpn_protocols(["http/1.1"])
    _load(context, cfg, source)
    return context


def reload(context: ssl.SSLContext, cfg: ServerConfig, source: str) -> None:
    """Load cfg's certificate chain into the live context; ConfigError leaves it unchanged."""
    if not cfg.tls_cert:
        raise ConfigError(f"{source}: server.tls_cert: TLS cannot be turned off by a reload "
                          "(needs a restart)")
    # A trial run on a throwaway context: load_cert_chain can fail after it replaced the
    # certificate but before the key (a mismatch), which would break the live context.
    _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cfg, source)
    _load(context, cfg, source)


def _load(context: ssl.SSLContext, cfg: ServerConfig, source: str) -> None:
    where = f"{source}: server.tls_cert/tls_key"
    try:
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    except FileNotFoundError as err:
        raise ConfigError(f"{where}: no such file: {err.filename}") from None
    except PermissionError as err:
        raise ConfigError(f"{where}: permission denied: {err.filename}") from None
    except ssl.SSLError as err:
        # The reason only (e.g. KEY_VALUES_MISMATCH, PEM_LIB): never the key's contents.
        raise ConfigError(f"{where}: {cfg.tls_cert} and {cfg.tls_key} do not load: "
                          f"{err.reason or err}") from None
    except OSError as err:
        raise ConfigError(f"{where}: {err.strerror or err}") from None
