"""How CLI commands find the server running on a data directory.

A running ``syncline serve|dev`` holds the data directory's lock, so other
commands cannot open the database. While it serves, it records where it
listens in ``<data dir>/server.json`` (``{"url", "site_url", "pid"}``); a
command that finds the directory locked reads it and talks to that server
over HTTP with the admin key from the same directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

FILE_NAME = "server.json"
log = logging.getLogger("syncline.server")


def connect_host(host: str) -> str:
    """The address to connect to for a server listening on ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def write(data_dir: Path, *, url: str, site_url: str | None) -> Path | None:
    """Record this process as the server of ``data_dir`` (None if that was not possible)."""
    path = data_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"url": url, "site_url": site_url, "pid": os.getpid()}))
        tmp.replace(path)
    except OSError as exc:
        # Serving matters more than discovery: CLI commands can still be given --url.
        log.warning("could not write %s: %s", path, exc)
        return None
    return path


def remove(data_dir: Path) -> None:
    path = data_dir / FILE_NAME
    with contextlib.suppress(OSError, ValueError):
        # Only our own record: a newer server may have replaced it.
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(data_dir: Path) -> dict[str, Any] | None:
    """The record of the server running on ``data_dir``, or None (absent or stale)."""
    try:
        record = json.loads((data_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("url"), str):
        return None
    return record if _alive(record.get("pid")) else None
