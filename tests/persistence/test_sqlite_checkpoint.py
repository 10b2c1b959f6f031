"""WAL checkpoints on their own thread (``syncline.persistence.sqlite_checkpoint``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.persistence.sqlite_checkpoint import BACKSTOP_PAGES


def _insert(db: Database, n: int) -> None:
    def body(tx: Any) -> None:
        for i in range(n):
            tx.insert("items", {"n": float(i), "pad": "x" * 500})

    db.write_sync(body)


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "syncline-checkpoint"]


def test_commits_are_checkpointed_by_the_thread_not_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    persistence = SqlitePersistence(path, durability="normal")
    db = Database(persistence)
    checkpointer = persistence._checkpointer
    assert checkpointer is not None
    try:
        writer = persistence._writer.conn
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        for _ in range(20):
            _insert(db, 50)
        deadline = time.monotonic() + 10
        while checkpointer.runs == 0:
            assert time.monotonic() < deadline, "no checkpoint ran"
            time.sleep(0.01)
        time.sleep(0.2)  # the checkpoint after the last commit
        # Everything in the WAL is in the database file already: nothing left to copy.
        probe = sqlite3.connect(path)
        busy, wal_pages, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0 and wal_pages == copied
    finally:
        db.close()


def test_the_thread_starts_with_the_first_commit_and_stops_on_close(tmp_path: Path) -> None:
    before = set(_checkpoint_threads())
    persistence = SqlitePersistence(tmp_path / "db.sqlite3", durability="off")
    db = Database(persistence)
    try:
        _insert(db, 1)
        started = set(_checkpoint_threads()) - before
        assert len(started) == 1
    finally:
        db.close()
    (thread,) = started
    assert not thread.is_alive()


def test_with_durability_full_sqlite_checkpoints_inside_the_commit(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "db.sqlite3", durability="full")
    db = Database(persistence)
    try:
        _insert(db, 1)
        assert persistence._checkpointer is None
        assert persistence._writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        db.close()


def test_an_idle_store_is_not_woken(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "db.sqlite3", durability="off")
    db = Database(persistence)
    checkpointer = persistence._checkpointer
    assert checkpointer is not None
    try:
        _insert(db, 1)
        time.sleep(0.3)
        runs = checkpointer.runs
        time.sleep(0.3)
        assert checkpointer.runs == runs  # no commit, no checkpoint
    finally:
        db.close()
