"""Admin keys: ``syncline-admin:<43 url-safe chars>``, one per deployment.

The key is stored in ``<data dir>/admin_key`` (mode 0600), created atomically
on first use, and compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from syncline.errors import InternalError
from syncline.private_paths import private_dir

__all__ = ["ADMIN_KEY_FILE", "check_admin_key", "generate_admin_key", "load_or_create_admin_key"]

logger = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin_key"
_ADMIN_KEY_PREFIX = "syncline-admin"


def generate_admin_key() -> str:
    """A new admin key: ``syncline-admin:`` and 256 random bits, url-safe base64.

    The random part never contains ``:``, so a key followed by an acting-as
    suffix (``<key>:<base64 JSON>``) splits unambiguously.
    """
    return f"{_ADMIN_KEY_PREFIX}:{secrets.token_urlsafe(32)}"


def _read_admin_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    key = text.strip()
    if not key:
        raise InternalError(
            f"admin key file {path} is empty; delete it to have a new key generated"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "admin key file %s is accessible to other users (mode %03o); run `chmod 600` on it",
            path,
            mode,
        )
    return key


def load_or_create_admin_key(data_dir: Path, *, new_key: str | None = None) -> str:
    """The deployment's admin key, read from ``data_dir/admin_key`` or created there.

    A new file holds ``new_key`` (default: a newly generated key).

    A new key is written to a private temporary file (mode 0600), flushed, and
    then hard-linked into place, so readers never see a partial file and two
    processes starting at once agree on a single key.
    """
    path = data_dir / ADMIN_KEY_FILE
    existing = _read_admin_key(path)
    if existing is not None:
        return existing
    private_dir(data_dir)
    key = new_key or generate_admin_key()
    tmp = data_dir / f".{ADMIN_KEY_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only narrow the mode; make it exact
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            winner = _read_admin_key(path)
            if winner is None:
                raise InternalError(f"admin key file {path} vanished while being created") from None
            return winner
        except OSError:
            # Filesystems without hard links: an atomic rename is the next best thing.
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def check_admin_key(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented key with the deployment's key.

    Surrounding whitespace is ignored on both; an empty expected key matches nothing.
    """
    want = expected.strip().encode()
    if not want:
        return False
    return hmac.compare_digest(presented.strip().encode(), want)


# ---------------------------------------------------------------------------
