"""The data dir and its files: private (dir 0700, files 0600) whatever the umask.

The database holds API-key hashes, payment records and sealed webhook secrets; the key file
unseals those secrets. Only the account the bridge runs as (and root) may read any of it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["private_dir", "private_file", "tighten"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700, whatever the umask or its old mode."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask, and the dir may predate us
    return path


def private_file(path: Path) -> None:
    """Create `path` empty if missing, and make it 0600 (SQLite gives -wal / -shm the db file's mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def tighten(*paths: Path) -> None:
    """Make existing files 0600 (those that do not exist are skipped)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, FILE_MODE)
