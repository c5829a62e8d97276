"""Building TelegramClients: connection mode, options, and the operator's server RSA key.

The gateway never constructs a client itself; it is handed a `ClientFactory` (this module's
`telegram_client_factory` in production, the sandbox's in tests and `tgws demo`), so the
same Account code runs against Telegram, an operator's MTProto server, or the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import rsa as rsa_keys  # Telethon's own dependency, used to read the operator's PEM key
from telethon import TelegramClient
from telethon.crypto import rsa as telethon_rsa
from telethon.network import connection as tl_connection
from telethon.sessions import StringSession
from telethon.tl.types import channels as tl_channels
from telethon.tl.types import messages as tl_messages

from tgws import fastpath
from tgws.config import TelegramConfig
from tgws.errors import ConfigError

ClientFactory = Callable[[StringSession], Any]  # returns a telethon TelegramClient

# The pages tgws streams: every result of these types lists up to 200 users (and chats).
_LISTINGS = (tl_channels.ChannelParticipants, tl_messages.ChannelMessages,
             tl_messages.Messages, tl_messages.MessagesSlice)

_CONNECTIONS = {
    "full": tl_connection.ConnectionTcpFull,
    "intermediate": tl_connection.ConnectionTcpIntermediate,
    "abridged": tl_connection.ConnectionTcpAbridged,
}


def register_public_key(path: str) -> int:
    """Register the operator's MTProto server RSA key with Telethon; returns its fingerprint."""
    try:
        pem = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(
            f"telegram.server.public_key_file: cannot read {path}: {err.strerror}"
        ) from None
    try:
        if b"BEGIN RSA PUBLIC KEY" in pem:
            key = rsa_keys.PublicKey.load_pkcs1(pem)
        else:
            key = rsa_keys.PublicKey.load_pkcs1_openssl_pem(pem)
    except Exception:
        raise ConfigError(
            f"telegram.server.public_key_file: {path} is not an RSA public key in PEM"
        ) from None
    telethon_rsa.add_key(key.save_pkcs1().decode(), old=False)
    return fastpath.rsa_fingerprint(key)


def telegram_client_factory(config: TelegramConfig) -> ClientFactory:
    """Clients for Telegram's servers, or the MTProto server named in [telegram.server]."""
    if config.server.enabled and config.server.public_key_file:
        register_public_key(config.server.public_key_file)
    connection = _CONNECTIONS[config.connection]

    def make(session: StringSession) -> Any:
        if config.server.enabled and session.auth_key is None:
            # Only a fresh session is pointed at the override; a saved one knows its DC.
            session.set_dc(config.server.dc_id, config.server.host, config.server.port)
        return TelegramClient(skip_listed_entities(session), config.api_id, config.api_hash,
                              **client_options(config, connection=connection))

    return make


def skip_listed_entities(session: Any) -> Any:
    """`session`, made to skip the entities of the pages tgws streams (returned as is).

    Telethon's `_call` hands every result to `session.process_entities`, which turns each
    user and chat in it into a row of the session's in-memory entity set: 1.7 µs and ~130
    bytes kept (for the client's life) per listed member, and nothing of tgws ever reads
    them back. Names are resolved with contacts.ResolveUsername
    and tgws's own store (peers.py), input peers are built from tgws's Peer, and Telethon
    itself builds each page's messages from that page's own users and chats. A
    StringSession never saves entities. Every other result (the login's user, updates'
    entities for `watch`, Telethon's "self" row) still goes through, so nothing Telethon
    reads from its session changes.
    """
    process = session.process_entities

    def process_entities(tlo: Any) -> Any:
        if isinstance(tlo, _LISTINGS):
            return None
        return process(tlo)

    session.process_entities = process_entities
    return session


def client_options(config: TelegramConfig, **extra: Any) -> dict[str, Any]:
    """TelegramClient keyword arguments shared by every backend."""
    options: dict[str, Any] = {
        # We handle flood waits ourselves, to tell the websocket client and to cap them.
        "flood_sleep_threshold": 0,
        # No pushes until a connection of the account watches: tgws/account_updates.py
        # switches updates on for the first `watch` and off after the last, so accounts that
        # only pull pay nothing for them. No catch-up either: a watch reconciles from history.
        "receive_updates": False,
        "catch_up": False,
        "request_retries": config.request_retries,
        # After the last retry, the real RPC error (a 5xx, say), not a bare ValueError:
        # the gateway tells "Telegram failed" from "Telegram said no" by it.
        "raise_last_call_error": True,
        "connection_retries": config.connection_retries,
        # Telethon's deadline for each TCP connect attempt; the gateway's connect_timeout
        # bounds the whole connect (key exchange included, which Telethon leaves open).
        "timeout": config.connect_timeout,
        "device_model": config.device_model,
        "app_version": "tgws",
        "base_logger": "tgws.telethon",
    }
    options.update(extra)
    return options
