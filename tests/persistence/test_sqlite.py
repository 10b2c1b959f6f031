"""SQLite storage: by_id reads from the documents table, upgrading older data folders, and
the writers' file lock shared by several processes."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from syncline.database.catalog import BY_CREATION_TIME, BY_ID
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.writes import decode_write_set
from syncline.persistence.base import LOG_PRUNED_GLOBAL
from syncline.persistence.by_id import key_of_id
from syncline.persistence.sqlite import SqlitePersistence
from syncline.values.keys import after, encode_key


def _fill(db: Database) -> dict[str, list[str]]:
    def body(tx: object) -> dict[str, list[str]]:
        assert hasattr(tx, "insert")
        return {
            table: [tx.insert(table, {"n": float(i)}) for i in range(30)]
            for table in ("a", "b", "c")
        }

    return db.write_sync(body).value


def test_by_id_scans_and_counts_come_from_the_tables_own_documents(tmp_path: Path) -> None:
    db = Database(SqlitePersistence(tmp_path / "db.sqlite3", durability="off"))
    try:
        ids = _fill(db)
        with db.storage_snapshot() as (conn, catalog):
            for table, table_ids in ids.items():
                info = catalog.table(table)
                assert info is not None
                index_id = info.indexes[BY_ID].id
                assert conn.count(index_id) == len(table_ids)
                keys = sorted(key_of_id(i) for i in table_ids)
                bounds = [b"", b"\xff", keys[3], keys[3] + b"\x00", after(keys[9])]
                bounds += [keys[20][:-1], keys[12][:6], keys[12][:6] + b"\x00\xff"]
                for start in bounds:
                    for end in bounds:
                        for reverse in (False, True):
                            rows = conn.scan(index_id, start, end, reverse=reverse, limit=7)
                            expected = [k for k in keys if start <= k < end]
                            expected = expected[::-1][:7] if reverse else expected[:7]
                            assert [key for key, _, _ in rows] == expected
                            assert all(key == key_of_id(doc_id) for key, doc_id, _ in rows)
    finally:
        db.close()


def test_no_by_id_entries_are_stored(tmp_path: Path) -> None:
    db = Database(SqlitePersistence(tmp_path / "db.sqlite3", durability="off"))
    try:
        _fill(db)
    finally:
        db.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        stored = conn.execute(
            "SELECT count(*) FROM index_entries WHERE index_id IN "
            "(SELECT id FROM indexes WHERE name = 'by_id')"
        ).fetchone()[0]
        by_creation_time = conn.execute(
            "SELECT count(*) FROM index_entries WHERE index_id IN "
            "(SELECT id FROM indexes WHERE name = 'by_creation_time')"
        ).fetchone()[0]
    finally:
        conn.close()
    assert stored == 0
    assert by_creation_time >= 90


#: the documents table as data folders before the (table number, id) key held it
_LEGACY_DOCUMENTS = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    table_number INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID
"""


def _downgrade_to_legacy_layout(path: Path) -> None:
    """Rewrite a data folder into the earlier layout: documents keyed by id, by_id entries."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows = conn.execute("SELECT id, table_number, ts, value FROM documents").fetchall()
        conn.execute("DROP TABLE documents")
        conn.execute(_LEGACY_DOCUMENTS)
        conn.executemany("INSERT INTO documents VALUES (?, ?, ?, ?)", rows)
        by_id = dict(conn.execute("SELECT table_number, id FROM indexes WHERE name = 'by_id'"))
        conn.executemany(
            "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?, ?, ?)",
            [(by_id[number], encode_key((doc_id,)), doc_id) for doc_id, number, _, _ in rows],
        )
        conn.execute("COMMIT")
        assert conn.execute(
            "SELECT pk FROM pragma_table_info('documents') WHERE name = 'id'"
        ).fetchone() == (1,)
    finally:
        conn.close()


def test_a_data_folder_in_the_earlier_layout_opens_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database(SqlitePersistence(path, durability="off"))
    try:
        ids = _fill(db)
    finally:
        db.close()
    _downgrade_to_legacy_layout(path)

    db = Database(SqlitePersistence(path, durability="off"))
    try:
        for table, table_ids in ids.items():
            docs = db.run_read(lambda tx, t=table: Query(tx, t).collect()).value
            assert [d["_id"] for d in docs] == table_ids  # by_creation_time
            ordered = db.run_read(
                lambda tx, t=table: list(tx.scan(t, BY_ID, b"", b"\xff", reverse=True))
            ).value
            assert [doc["_id"] for _, doc in ordered] == sorted(table_ids, reverse=True)
            assert db.run_read(lambda tx, d=table_ids[4]: tx.get(d)).value["n"] == 4.0
            assert db.run_read(lambda tx, t=table: tx.count(t)).value == 30
        new = db.write_sync(lambda tx: tx.insert("a", {"n": 100.0})).value
        db.write_sync(lambda tx: tx.delete(ids["b"][0]))
        assert db.run_read(lambda tx: tx.get(new)).value["n"] == 100.0
        assert db.run_read(lambda tx: tx.get(ids["b"][0])).value is None
        with db.storage_snapshot() as (conn, catalog):
            info = catalog.table("b")
            assert info is not None
            assert len(list(Database.scan_table(conn, info))) == 29
            assert len(list(Database.scan_table(conn, info, BY_CREATION_TIME))) == 29
    finally:
        db.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute(
            "SELECT name, pk FROM pragma_table_info('documents') WHERE pk > 0 ORDER BY pk"
        ).fetchall() == [("table_number", 1), ("id", 2)]
        assert conn.execute(
            "SELECT count(*) FROM index_entries WHERE index_id IN "
            "(SELECT id FROM indexes WHERE name = 'by_id')"
        ).fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_opening_twice_migrates_once(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "db.sqlite3"
    Database(SqlitePersistence(path, durability="off")).close()
    _downgrade_to_legacy_layout(path)
    for _ in range(2):
        db = Database(SqlitePersistence(path, durability=durability))  # type: ignore[arg-type]
        try:
            assert db.write_sync(lambda tx: tx.insert("x", {})).value
        finally:
            db.close()


def test_each_commit_is_logged_with_its_write_set_and_pruned_with_the_log(
    tmp_path: Path,
) -> None:
    db = Database(SqlitePersistence(tmp_path / "db.sqlite3", durability="off"))
    try:
        results = [db.write_sync(lambda tx: tx.insert("t", {"n": 1.0})) for _ in range(3)]
        persistence = db.persistence
        with db.storage_snapshot() as (conn, _catalog):
            rows = conn.commits_since(results[0].ts - 1, limit=10)
            assert [row.ts for row in rows] == [r.ts for r in results]
            assert decode_write_set(rows[0].writes) == results[0].writes
            assert conn.log_since(results[0].ts - 1, limit=10)
        writer = persistence.begin_write()
        try:
            writer.prune_log(results[1].ts)
        finally:
            persistence.commit_write(writer)
        with db.storage_snapshot() as (conn, _catalog):
            assert [row.ts for row in conn.commits_since(0, limit=10)] == [
                r.ts for r in results[1:]
            ]
            assert {e.ts for e in conn.log_since(0, limit=10)} == {r.ts for r in results[1:]}
            # The newest commit pruned: a reader behind it has missed commits.
            assert conn.get_global(LOG_PRUNED_GLOBAL) == str(results[0].ts).encode()
    finally:
        db.close()


def test_a_commit_that_fails_ends_the_write_and_the_next_one_begins(tmp_path: Path) -> None:
    store = SqlitePersistence(tmp_path / "db.sqlite3", durability="off")
    try:
        raw = store._writer.conn
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        raw.execute(
            "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )
        writer = store.begin_write()
        raw.execute("INSERT INTO child VALUES (1)")  # checked at COMMIT, which fails
        with pytest.raises(sqlite3.IntegrityError):
            store.commit_write(writer)
        assert not raw.in_transaction
        store.commit_write(store.begin_write())  # the lock was given back, once
        assert raw.execute("SELECT count(*) FROM child").fetchone() == (0,)
    finally:
        store.close()


def _other_process_has_the_writers_lock(path: Path) -> bool:
    """Whether a writer holds ``<db>-writer`` (another open file behaves as another process)."""
    fd = os.open(f"{path}-writer", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the file releases a lock taken on it
    return False


def test_writers_of_several_processes_queue_on_the_writer_file_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqlitePersistence(path, durability="off")
    other = os.open(f"{path}-writer", os.O_RDWR)
    try:
        # Held through a write, given back by its commit and by its abort.
        for end in (store.commit_write, store.abort_write):
            writer = store.begin_write()
            assert _other_process_has_the_writers_lock(path)
            end(writer)
            assert not _other_process_has_the_writers_lock(path)
        # Another process writing: this one waits for it, then writes.
        fcntl.flock(other, fcntl.LOCK_EX)
        began = threading.Event()
        waiting = threading.Thread(
            target=lambda: (store.commit_write(store.begin_write()), began.set())
        )
        waiting.start()
        assert not began.wait(0.3)
        fcntl.flock(other, fcntl.LOCK_UN)
        assert began.wait(5)
        waiting.join(5)
    finally:
        os.close(other)
        store.close()
