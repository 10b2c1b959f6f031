"""Durability: a write is acknowledged only once its commit is synced to disk.

``test_crash.py`` kills the writer with SIGKILL; the kernel keeps a killed
process's writes in its page cache, so that test proves atomicity and that
nothing acknowledged is lost *by the process*, but it cannot notice a missing
fsync. Power loss could; a test cannot pull the plug. What makes SQLite fsync
the WAL at every COMMIT is ``PRAGMA synchronous=FULL`` on the connection that
commits, so these tests check that setting (per durability level) and, with a
recorder around the writer connection, that every acknowledged write was
committed at that level *before* it was acknowledged. They fail if the sync is
turned down, if a write is acknowledged before its COMMIT, or if commits go
through a connection that bypasses the writer.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any, cast

import pytest

from stores import sqlite_only
from syncline.database.database import Database, WriteResult
from syncline.database.transaction import Transaction
from syncline.persistence.base import Durability
from syncline.persistence.sqlite import SqlitePersistence

pytestmark = sqlite_only

#: ``PRAGMA synchronous`` values: 0 = OFF, 1 = NORMAL, 2 = FULL
SYNC_LEVEL = {"off": 0, "normal": 1, "full": 2}


@pytest.mark.parametrize("durability", ["full", "normal", "off"])
def test_the_writer_connection_syncs_as_configured(tmp_path: Path, durability: Durability) -> None:
    persistence = SqlitePersistence(str(tmp_path / "db.sqlite3"), durability=durability)
    try:
        writer = persistence._writer.conn
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == SYNC_LEVEL[durability]
    finally:
        persistence.close()


class CommitRecorder:
    """The writer's sqlite3 connection, recording each COMMIT: its sync level and ts."""

    def __init__(self, conn: sqlite3.Connection, events: list[tuple[str, int, int]]) -> None:
        self._conn = conn
        self._events = events

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.strip().upper() != "COMMIT":
            return self._conn.execute(sql, *args)
        level = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        row = self._conn.execute("SELECT value FROM globals WHERE key = 'ts'").fetchone()
        cursor = self._conn.execute(sql, *args)
        self._events.append(("commit", level, int(row[0]) if row else 0))
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_every_write_is_acknowledged_after_a_synced_commit(tmp_path: Path) -> None:
    persistence = SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="full")
    events: list[tuple[str, int, int]] = []
    recorder = CommitRecorder(persistence._writer.conn, events)
    persistence._writer.conn = cast(sqlite3.Connection, recorder)
    db = Database(persistence)

    def acknowledged(future: Future[WriteResult[Any]]) -> None:
        events.append(("ack", SYNC_LEVEL["full"], future.result().ts))

    def insert(n: int) -> Any:
        def body(tx: Transaction) -> str:
            return tx.insert("items", {"n": float(n)})

        return body

    try:
        for batch in range(5):
            futures = [db.submit_write(insert(batch * 10 + i)) for i in range(4)]
            for future in futures:
                future.add_done_callback(acknowledged)
            wait(futures)
    finally:
        db.close()

    acks = [(i, ts) for i, (kind, _, ts) in enumerate(events) if kind == "ack"]
    assert len(acks) == 20
    for position, ts in acks:
        covering = [e for e in events[:position] if e[0] == "commit" and e[2] >= ts]
        assert covering, f"the write at ts {ts} was acknowledged before any COMMIT covering it"
        level = covering[0][1]
        assert level == SYNC_LEVEL["full"], (
            f"the write at ts {ts} was committed with PRAGMA synchronous={level}, not FULL (2): "
            "the WAL is not fsynced at that commit"
        )
