"""Encryption at rest of stored Telegram sessions ([store] secret_key_file).

A stored session is the account's MTProto auth key: whoever reads it owns the account. With a
key file configured, the store keeps every session sealed with AES-256-GCM (the `cryptography`
package), so a copied database file, a backup or a stray -wal file is worth nothing without the
key file, which lives elsewhere (another disk, a systemd credential).

Key file
    Text, one key per line: 32 random bytes in URL-safe base64 (``tgws secret-key create``
    writes one, mode 0600). The first key seals; every key in the file opens. Lines that are
    empty or start with ``#`` are ignored. A file readable by group or others is refused, as
    ssh refuses a loose private key: the key is worth as much as every session it protects.

Sealed form
    ``tgws-sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id is the first
    8 bytes of SHA-256 over the key (hex), so opening picks the right key without trying them
    all and a missing key can be named. The nonce is 12 random bytes per seal. The associated
    data binds the ciphertext to its API key id: a sealed session copied into another key's
    row fails to open instead of handing that key someone else's account.

A Telethon StringSession starts with "1" and never with "tgws-sealed:", so plaintext rows
(written before encryption was switched on) are told apart and sealed at the next start.
Pure apart from reading and writing the key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tgws.errors import ConfigError, StoreError

SEALED_PREFIX: Final = "tgws-sealed:v1:"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_FILE_MODE: Final = 0o600
_AAD_PREFIX: Final = b"tgws session v1\x00api_key_id="


class SessionUnreadable(StoreError):
    """A stored session cannot be opened: sealed with a key we lack, or tampered with."""


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"tgws secret key id\x00" + key).hexdigest()[:16]


def sealed_key_id(value: str) -> str | None:
    """The id of the key that sealed ``value``, or None for a plaintext session."""
    if not is_sealed(value):
        return None
    return value[len(SEALED_PREFIX):].split(":", 1)[0]


def _aad(api_key_id: int) -> bytes:
    return _AAD_PREFIX + str(api_key_id).encode()


@dataclass(frozen=True, slots=True)
class Keyring:
    """The keys of one key file: ``keys[0]`` seals, all of them open."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys or any(len(k) != KEY_BYTES for k in self.keys):
            raise ValueError(f"a keyring holds one or more {KEY_BYTES}-byte keys")

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def seal(self, api_key_id: int, session: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, session.encode(), _aad(api_key_id))
        blob = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{SEALED_PREFIX}{self.primary_id}:{blob}"

    def open(self, api_key_id: int, value: str) -> str:
        """The plaintext of a sealed session (a plaintext one is returned as it is)."""
        if not is_sealed(value):
            return value
        kid, _, blob = value[len(SEALED_PREFIX):].partition(":")
        key = next((k for k in self.keys if key_id(k) == kid), None)
        if key is None:
            raise SessionUnreadable(
                f"the session of API key #{api_key_id} is sealed with key {kid}, which is not "
                "in [store] secret_key_file")
        try:
            raw = base64.urlsafe_b64decode(blob.encode())
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(api_key_id))
        except (InvalidTag, binascii.Error, ValueError):
            raise SessionUnreadable(
                f"the session of API key #{api_key_id} fails authentication: it was altered "
                "or moved from another API key's row") from None
        return plain.decode()


def open_session(keyring: Keyring | None, api_key_id: int, value: str) -> str:
    """Open ``value`` with ``keyring``; a sealed session without a keyring is unreadable."""
    if keyring is not None:
        return keyring.open(api_key_id, value)
    if is_sealed(value):
        raise SessionUnreadable(
            f"the session of API key #{api_key_id} is encrypted at rest and no "
            "[store] secret_key_file is configured")
    return value


# -- the key file ---------------------------------------------------------------------------


def new_key_line() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def _parse_key_file(path: str, text: str) -> Keyring:
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.urlsafe_b64decode(line.encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"store.secret_key_file: {path} line {number} is not a {KEY_BYTES}-byte key in "
                "URL-safe base64 (create one with `tgws secret-key create FILE`)")
        keys.append(key)
    if not keys:
        raise ConfigError(f"store.secret_key_file: {path} holds no key")
    return Keyring(tuple(keys))


def load_keyring(path: str) -> Keyring | None:
    """The keyring in ``path``; None when ``path`` is empty (encryption at rest is off).

    ConfigError (one line, exit 2) when the file is missing, unreadable, readable by group or
    others, or holds anything but keys.
    """
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"store.secret_key_file: {path} has mode {mode:04o}; it must be readable by "
                    f"its owner only (chmod 600 {path})")
            text = handle.read()
    except OSError as err:
        raise ConfigError(
            f"store.secret_key_file: cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"store.secret_key_file: {path} is not a text key file") from None
    return _parse_key_file(path, text)


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (mode 0600, never over an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # exactly 0600, whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_private(path: str, data: bytes) -> None:
    """Replace ``path`` by a 0600 file holding ``data``: written beside it, then renamed, so a
    crash leaves the old file or the new one, never half of one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    _write_private(tmp, data)
    os.replace(tmp, path)


def create_key_file(path: str) -> str:
    """Write a new key file (mode 0600, never over an existing file); returns the key id."""
    line = new_key_line()
    _write_private(path, f"{line}\n".encode())
    return key_id(base64.urlsafe_b64decode(line))


def rotate_key_file(path: str) -> str:
    """Put a new key first in ``path``; the old ones stay, to open what they sealed.

    Returns the new key id. Sessions move to the new key at the daemon's next start or with
    ``tgws secret-key reseal``; then ``tgws secret-key prune`` drops the old keys.
    """
    load_keyring(path)  # refuse to rotate a file we could not use
    with open(path, encoding="ascii") as handle:
        text = handle.read()
    line = new_key_line()
    _replace_private(path, f"{line}\n{text}".encode())
    return key_id(base64.urlsafe_b64decode(line))


def prune_key_file(path: str) -> int:
    """Keep only the first key in ``path``; returns how many keys were removed."""
    keyring = load_keyring(path)
    assert keyring is not None
    _replace_private(path, base64.urlsafe_b64encode(keyring.keys[0]) + b"\n")
    return len(keyring.keys) - 1
