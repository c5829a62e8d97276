"""The database file on disk: created private (0600) before sqlite touches it.

sqlite would create the file with 0644 under the usual umask, and the store holds Telegram
sessions (secrets): the file is created by us, exclusively, with mode 0600, and when the store
opens, the file and its -wal and -shm are brought back to 0600 if something left them looser.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from tgws.errors import StoreError

DB_FILE_MODE: Final = 0o600
"""Mode of a database file tgws creates: the store holds Telegram sessions (secrets)."""


def create_private_file(path: str) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists. Returns whether we created it.

    sqlite would create it with 0644 (under the usual umask); creating it first means the file
    is never readable by others, not even for a moment.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DB_FILE_MODE)
    except FileExistsError:
        return False
    try:
        # The umask can only remove bits from 0600, but a umask like 0o200 would leave a file
        # sqlite cannot write: set the mode exactly.
        os.fchmod(fd, DB_FILE_MODE)
    finally:
        os.close(fd)
    return True


def prepare_path(path: str) -> None:
    """Check that ``path`` can hold the database and create it 0600 if it is new."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"store directory {parent} does not exist")
    if os.path.isdir(path):
        raise StoreError(f"store path {path} is a directory")
    try:
        create_private_file(path)
    except OSError as exc:
        raise StoreError(f"cannot create store {path}: {exc.strerror or exc}") from exc


def tighten_files(path: str) -> list[tuple[str, int]]:
    """Take away every permission bit beyond 0600 from the database and its -wal and -shm.

    A database created by an older tgws, copied with ``cp``, or restored from a backup may be
    0644: readable by every local user, and it holds Telegram sessions. Returns the files
    changed with their old modes, for the caller to log. A file owned by another user cannot
    be changed: that is an error for the database itself (we would keep serving secrets from
    a file others can read) and skipped for the side files (sqlite recreates them from the
    main file's mode).
    """
    changed: list[tuple[str, int]] = []
    for suffix in ("", "-wal", "-shm"):
        name = path + suffix
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if not suffix:
                raise StoreError(f"cannot stat store {name}: {exc.strerror or exc}") from exc
            continue
        if not mode & ~DB_FILE_MODE:
            continue
        try:
            os.chmod(name, mode & DB_FILE_MODE)
        except OSError as exc:
            if not suffix:
                raise StoreError(
                    f"store {name} has mode {mode:04o} and cannot be made private (0600): "
                    f"{exc.strerror or exc}") from exc
            continue
        changed.append((name, mode))
    return changed
