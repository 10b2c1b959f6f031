"""The log history's SQLite file: append batches, keep it bounded, answer queries.

One file, ``logs.sqlite3`` in the data folder (beside the database, the lock
and the admin key), in WAL mode so that every worker of ``serve --workers N``
appends to it while the admin endpoint reads it. It is not the application's
database: no function ever reads it, so it never enters a read set, a commit
or the commit log.

Retention (checked by :meth:`LogStore.prune`, which the writer calls every few
seconds): records older than ``max_age_ms`` go; then, while the pages in use
exceed ``max_bytes``, the oldest records go (enough to get under 80% of it),
and the freed pages are returned to the file system (``auto_vacuum =
INCREMENTAL``). Between two checks the file can exceed ``max_bytes`` by what
was written meanwhile; its write-ahead log (``-wal``, checkpointed at about
4 MiB) comes on top.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from syncline.call_log.query import LogQuery
from syncline.persistence.sqlite_rows import RowsInsert

__all__ = ["LOG_FILE", "MIN_MAX_BYTES", "LogStore", "query_log", "store_path"]

#: the log history's file name, in the data folder
LOG_FILE = "logs.sqlite3"
#: the smallest size bound accepted (a few batches of records)
MIN_MAX_BYTES = 64 * 1024
#: how far below ``max_bytes`` a size prune goes (so it does not run on every check)
_PRUNE_TO = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_ts ON calls (ts);
CREATE INDEX IF NOT EXISTS calls_by_path ON calls (path, id);
CREATE INDEX IF NOT EXISTS calls_by_request ON calls (request_id);
"""
_INSERT_CALLS = RowsInsert("INSERT INTO calls (ts, path, status, request_id, record)", 5)


def store_path(data_dir: Path) -> Path:
    """Where the log history of the deployment whose data folder is ``data_dir`` lives."""
    return data_dir / LOG_FILE


class LogStore:
    """The writer's side of the file: :meth:`append` batches and :meth:`prune` them."""

    def __init__(self, path: Path, *, max_bytes: int, max_age_ms: float) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        if max_age_ms <= 0:
            raise ValueError(f"max_age_ms must be positive, got {max_age_ms}")
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        # Before any table exists: freed pages can then be given back to the file system.
        self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Add records (each as :func:`~syncline.call_log.records.call_record` makes them)."""
        rows = [
            (r["timestamp"], r["path"], r["status"], r["requestId"], orjson.dumps(r))
            for r in records
        ]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            _INSERT_CALLS.run(conn, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def used_bytes(self) -> int:
        """Bytes of the file's pages in use (free pages not counted)."""
        conn = self._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def prune(self, now_ms: float) -> int:
        """Apply the retention (see the module docstring); how many records went."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            removed = conn.execute(
                "DELETE FROM calls WHERE ts < ?", (now_ms - self.max_age_ms,)
            ).rowcount
            used = self.used_bytes()
            if used > self.max_bytes:
                count = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
                excess = math.ceil(count * (1 - _PRUNE_TO * self.max_bytes / used))
                removed += conn.execute(
                    "DELETE FROM calls WHERE id IN (SELECT id FROM calls ORDER BY id LIMIT ?)",
                    (excess,),
                ).rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if removed:
            conn.execute("PRAGMA incremental_vacuum")
        return int(removed)


def query_log(path: Path, query: LogQuery) -> tuple[list[dict[str, Any]], int]:
    """The records ``query`` selects (each with its ``id``), and the newest id ever written.

    A file that does not exist yet holds no records.
    """
    if not path.exists():
        return [], 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    try:
        # One snapshot for both reads: a record written in between is never skipped by
        # a reader that continues after ``last``.
        conn.execute("BEGIN")
        where, params = _conditions(query)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        newest_first = query.after_id is None
        order = "DESC" if newest_first else "ASC"
        rows = conn.execute(
            f"SELECT id, record FROM calls {clause} ORDER BY id {order} LIMIT ?",
            (*params, query.limit),
        ).fetchall()
        last = conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'calls'), 0)"
        ).fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return [], 0
        raise
    finally:
        conn.close()
    if newest_first:
        rows.reverse()
    return [{"id": row_id, **orjson.loads(record)} for row_id, record in rows], int(last)


def _conditions(query: LogQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.since_ms is not None:
        where.append("ts >= ?")
        params.append(query.since_ms)
    if query.function is not None:
        if ":" in query.function:
            where.append("path = ?")
            params.append(query.function)
        else:
            where.append("substr(path, 1, ?) = ?")
            params.extend([len(query.function) + 1, query.function + ":"])
    if query.status is not None:
        where.append("status = ?")
        params.append(query.status)
    if query.request_id is not None:
        where.append("request_id = ?")
        params.append(query.request_id)
    if query.after_id is not None:
        where.append("id > ?")
        params.append(query.after_id)
    return where, params
