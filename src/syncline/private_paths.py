"""Folders and files only the server's user may read: the data folder and what it holds.

The data folder holds every document, the environment variables (secrets,
often), the admin key and uploaded files. Whatever the process umask, what
Syncline creates there is private: folders 0700, files 0600. Files that
already exist with looser modes (made by an older version under umask 022)
are tightened when the server opens them; folders that already exist are left
as they are, since an operator may have chosen them (``--db``, ``--files``).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "private_dir", "private_file", "tighten"]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger("syncline")


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is kept as is."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    for made in missing:
        # mkdir's mode is narrowed by the umask and ignored for parents: make it exact.
        os.chmod(made, PRIVATE_DIR_MODE)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists with mode 0600 (created empty if missing, tightened if looser).

    Call it before a library creates the file with its own default mode
    (SQLite creates a database 0644 under umask 022; its ``-wal`` and ``-shm``
    files copy the database file's mode).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten(path)
    else:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        finally:
            os.close(fd)
    return path


def tighten(path: str | os.PathLike[str]) -> None:
    """Remove group and other access from an existing file of ours (logged when it had any)."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning(
            "%s was readable by other users (mode %03o); it is now %03o",
            path,
            mode,
            mode & 0o700,
        )
