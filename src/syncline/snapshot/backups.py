"""Scheduled backups of a running deployment (``syncline serve --backup-every 6h``).

Every interval the server writes a snapshot ZIP (:func:`export_snapshot`, one
consistent snapshot while writes go on) into the backup folder as
``backup_<UTC date>-<time>.zip``: written under a temporary name and renamed,
so a backup file is always complete. Then the oldest backups beyond ``keep``
are deleted. A failed backup (a full disk, a missing folder) is logged and
the next one is tried at the next interval: backups never stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from syncline.blobs.base import BlobStore
from syncline.database.database import Database
from syncline.snapshot.export import export_snapshot

__all__ = [
    "BACKUP_PATTERN",
    "BackupSchedule",
    "parse_interval",
    "prune",
    "run_backups",
    "write_backup",
]

log = logging.getLogger("syncline.backups")

#: backup file names: sortable by time
BACKUP_PATTERN = re.compile(r"backup_\d{8}-\d{6}-\d{6}\.zip\Z")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)([smhd])\Z")


def parse_interval(text: str) -> float:
    """``"6h"``, ``"30m"``, ``"1d"``, ``"45s"`` in seconds; ValueError otherwise."""
    match = _INTERVAL.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"expected a positive interval like 30s, 15m, 6h or 1d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class BackupSchedule:
    """Back up every ``every_s`` seconds into ``folder``, keeping the newest ``keep`` files."""

    every_s: float
    folder: Path
    keep: int


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete the oldest backup files in ``folder`` beyond the newest ``keep``; those deleted."""
    backups = sorted(p for p in folder.iterdir() if BACKUP_PATTERN.match(p.name))
    doomed = backups[: max(len(backups) - keep, 0)]
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return doomed


def write_backup(database: Database, schedule: BackupSchedule, blobs: BlobStore | None) -> Path:
    """Write one backup now and prune the folder; the new file's path. Run it in a thread."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S-%f")
    path = schedule.folder / f"backup_{stamp}.zip"
    result = export_snapshot(database, path, blobs=blobs)
    removed = prune(schedule.folder, schedule.keep)
    documents = sum(result.tables.values())
    log.info(
        "backup written: %s (%d documents at ts %s)%s",
        path,
        documents,
        result.ts,
        f"; removed {len(removed)} old backup(s)" if removed else "",
    )
    return path


async def run_backups(
    database: Database, schedule: BackupSchedule, blobs: BlobStore | None
) -> None:
    """Write a backup every interval until cancelled; a failure is logged, never raised."""
    while True:
        await asyncio.sleep(schedule.every_s)
        try:
            await asyncio.to_thread(write_backup, database, schedule, blobs)
        except Exception:
            log.exception(
                "scheduled backup into %s failed; the next one is due in %gs",
                schedule.folder,
                schedule.every_s,
            )
