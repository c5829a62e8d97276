"""The database file on disk: created private (0600) before sqlite touches it.

sqlite would create the file with 0644 under the usual umask, and the store holds Telegram
sessions (secrets): the file is created by us, exclusively, with mode 0600, and any -wal or
-shm side file looser than it is tightened when the store opens.
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


def tighten_side_files(path: str) -> None:
    """Give -wal and -shm no more permission bits than the database file itself.

    sqlite already creates them with the main file's mode; this is a second line of defence
    against side files left behind looser (by a copy, an older tool, a different umask).
    Best effort: a side file owned by another user cannot be changed and is left alone.
    """
    try:
        allowed = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    for suffix in ("-wal", "-shm"):
        side = path + suffix
        try:
            mode = stat.S_IMODE(os.stat(side).st_mode)
            if mode & ~allowed:
                os.chmod(side, mode & allowed)
        except OSError:
            continue
