"""SQLite persistence: one writer connection, a pool of snapshot readers (WAL).

Readers run in WAL mode, so each read transaction is a stable snapshot that
never blocks the writer. The snapshot's ts is read from ``globals`` inside the
same read transaction, so it names exactly the last commit the reader sees.

Durability: ``durability="full"`` fsyncs the WAL on every commit (the engine
groups many mutations into one commit, so one fsync covers them all);
``"normal"`` survives a process crash but not power loss; ``"off"`` is for
tests.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from syncline.errors import InternalError
from syncline.persistence.base import (
    Durability,
    IndexRow,
    LogEntry,
    Persistence,
    ReadConnection,
    TableRow,
    WriteConnection,
)
from syncline.private_paths import private_dir, private_file, tighten

_SCHEMA = """
CREATE TABLE IF NOT EXISTS globals (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tables (number INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS indexes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    table_number INTEGER NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    UNIQUE (table_number, name)
);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    table_number INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    index_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    doc_id TEXT NOT NULL,
    PRIMARY KEY (index_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutation_requests (
    session_id TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (session_id, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mutation_requests_by_ts ON mutation_requests (ts);
CREATE TABLE IF NOT EXISTS used_upload_tokens (
    nonce BLOB PRIMARY KEY,
    ts INTEGER NOT NULL,
    storage_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS used_upload_tokens_by_ts ON used_upload_tokens (ts);
CREATE TABLE IF NOT EXISTS log (
    ts INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    table_number INTEGER NOT NULL,
    value BLOB,
    PRIMARY KEY (ts, doc_id)
) WITHOUT ROWID;
"""

_SCAN_ASC = (
    "SELECT e.key, e.doc_id, d.value FROM index_entries e JOIN documents d ON d.id = e.doc_id "
    "WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key ASC LIMIT ?"
)
_SCAN_DESC = (
    "SELECT e.key, e.doc_id, d.value FROM index_entries e JOIN documents d ON d.id = e.doc_id "
    "WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key DESC LIMIT ?"
)


_CACHE_KIB = 64 * 1024
#: the writer's page cache while a transaction bulk-inserts (import): its working set
#: stays in memory instead of spilling to the WAL in the middle of the transaction
_BULK_CACHE_KIB = 256 * 1024


def _connect(path: str, *, readonly: bool, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")  # 64 MiB page cache per connection
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


#: Where data folders before the mutation/upload-token split kept both kinds of record.
_OLD_TOKEN_SESSION_PREFIX = "syncline:upload-token:"


def _migrate_session_requests(conn: sqlite3.Connection) -> None:
    """Replace the pre-split ``session_requests`` table (one key space for two kinds of record).

    Its used upload tokens move to ``used_upload_tokens``, so a token used before
    the upgrade stays used. Its mutation records are dropped: they carry no call
    fingerprint to check a replay against, and they live an hour at most (a
    client resending across the upgrade runs its mutation again).
    """
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others then find nothing
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_requests'"
        ).fetchone()
        if exists is not None:
            conn.executemany(
                "INSERT OR IGNORE INTO used_upload_tokens (nonce, ts, storage_id) VALUES (?, ?, ?)",
                _old_token_records(conn),
            )
            conn.execute("DROP TABLE session_requests")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _old_token_records(conn: sqlite3.Connection) -> list[tuple[bytes, int, str]]:
    rows = conn.execute(
        "SELECT session_id, ts, result FROM session_requests WHERE request_id = 0 "
        "AND substr(session_id, 1, ?) = ?",
        (len(_OLD_TOKEN_SESSION_PREFIX), _OLD_TOKEN_SESSION_PREFIX),
    ).fetchall()
    tokens = []
    for session_id, ts, result in rows:
        try:
            nonce = bytes.fromhex(session_id[len(_OLD_TOKEN_SESSION_PREFIX) :])
            storage_id = orjson.loads(result)
        except (ValueError, orjson.JSONDecodeError):
            continue  # not a token record (a client's session id that looked like one)
        if isinstance(storage_id, str):
            tokens.append((nonce, int(ts), storage_id))
    return tokens


class _SqliteReader(ReadConnection):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.ts = 0

    def _begin(self) -> None:
        self.conn.execute("BEGIN")
        # The first read starts the WAL snapshot; reading the ts here pins it.
        row = self.conn.execute("SELECT value FROM globals WHERE key = 'ts'").fetchone()
        self.ts = int(row[0]) if row else 0

    def _end(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def get_document(self, doc_id: str) -> tuple[int, bytes] | None:
        row = self.conn.execute(
            "SELECT table_number, value FROM documents WHERE id = ?", (doc_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def scan(
        self, index_id: int, start: bytes, end: bytes, *, reverse: bool, limit: int
    ) -> list[tuple[bytes, str, bytes]]:
        if start >= end:
            return []
        sql = _SCAN_DESC if reverse else _SCAN_ASC
        return self.conn.execute(sql, (index_id, start, end, limit)).fetchall()

    def count(self, index_id: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM index_entries WHERE index_id = ?", (index_id,)
        ).fetchone()
        return int(row[0])

    def tables(self) -> list[TableRow]:
        rows = self.conn.execute("SELECT number, name FROM tables ORDER BY number").fetchall()
        return [TableRow(number, name) for number, name in rows]

    def indexes(self) -> list[IndexRow]:
        rows = self.conn.execute(
            "SELECT id, table_number, name, fields FROM indexes ORDER BY id"
        ).fetchall()
        return [
            IndexRow(id_, table, name, tuple(fields.split(",")) if fields else ())
            for id_, table, name, fields in rows
        ]

    def get_global(self, key: str) -> bytes | None:
        row = self.conn.execute("SELECT value FROM globals WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = row[0]
        return value if isinstance(value, bytes) else str(value).encode()

    def log_since(self, ts: int, *, limit: int) -> list[LogEntry]:
        rows = self.conn.execute(
            "SELECT ts, doc_id, table_number, value FROM log WHERE ts > ? ORDER BY ts, doc_id LIMIT ?",
            (ts, limit),
        ).fetchall()
        return [LogEntry(*row) for row in rows]

    def get_mutation_request(
        self, session_id: str, request_id: int
    ) -> tuple[int, bytes, bytes] | None:
        row = self.conn.execute(
            "SELECT ts, fingerprint, result FROM mutation_requests "
            "WHERE session_id = ? AND request_id = ?",
            (session_id, request_id),
        ).fetchone()
        return (int(row[0]), row[1], row[2]) if row else None

    def get_used_upload_token(self, nonce: bytes) -> str | None:
        row = self.conn.execute(
            "SELECT storage_id FROM used_upload_tokens WHERE nonce = ?", (nonce,)
        ).fetchone()
        return str(row[0]) if row else None


class _SqliteWriter(_SqliteReader, WriteConnection):
    #: the page cache is enlarged for the current transaction's bulk inserts
    bulk_cache = False

    def savepoint(self, name: str) -> None:
        self.conn.execute(f"SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.conn.execute(f"RELEASE {name}")

    def rollback_to(self, name: str) -> None:
        self.conn.execute(f"ROLLBACK TO {name}")
        self.conn.execute(f"RELEASE {name}")

    def put_document(self, doc_id: str, table_number: int, ts: int, value: bytes) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO documents (id, table_number, ts, value) VALUES (?, ?, ?, ?)",
            (doc_id, table_number, ts, value),
        )

    def insert_bulk(
        self,
        documents: Sequence[tuple[str, int, int, bytes]],
        index_entries: Sequence[tuple[int, bytes, str]],
    ) -> None:
        if not self.bulk_cache:
            self.conn.execute(f"PRAGMA cache_size=-{_BULK_CACHE_KIB}")
            self.bulk_cache = True
        # OR REPLACE needs no statement journal (a plain INSERT may abort, so SQLite
        # saves the pages each row touches): measurably faster. The rows are new by
        # contract; for the log, it also replaces a deletion logged by this transaction.
        self.conn.executemany(
            "INSERT OR REPLACE INTO documents (id, table_number, ts, value) VALUES (?, ?, ?, ?)",
            documents,
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO index_entries (index_id, key, doc_id) VALUES (?, ?, ?)",
            index_entries,
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO log (doc_id, table_number, ts, value) VALUES (?, ?, ?, ?)",
            documents,
        )

    def delete_document(self, doc_id: str) -> None:
        self.conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def insert_index_entries(self, entries: Iterable[tuple[int, bytes, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?, ?, ?)", entries
        )

    def delete_index_entries(self, entries: Iterable[tuple[int, bytes]]) -> None:
        self.conn.executemany("DELETE FROM index_entries WHERE index_id = ? AND key = ?", entries)

    def append_log(self, entries: Iterable[LogEntry]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO log (ts, doc_id, table_number, value) VALUES (?, ?, ?, ?)",
            [(e.ts, e.doc_id, e.table_number, e.value) for e in entries],
        )

    def set_global(self, key: str, value: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO globals (key, value) VALUES (?, ?)", (key, value))

    def create_table(self, name: str, number: int) -> None:
        self.conn.execute("INSERT INTO tables (number, name) VALUES (?, ?)", (number, name))

    def create_index(self, table_number: int, name: str, fields: tuple[str, ...]) -> int:
        cur = self.conn.execute(
            "INSERT INTO indexes (table_number, name, fields) VALUES (?, ?, ?)",
            (table_number, name, ",".join(fields)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def drop_index(self, index_id: int) -> None:
        self.conn.execute("DELETE FROM index_entries WHERE index_id = ?", (index_id,))
        self.conn.execute("DELETE FROM indexes WHERE id = ?", (index_id,))

    def delete_table_documents(self, table_number: int) -> None:
        index_ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM indexes WHERE table_number = ?", (table_number,)
            )
        ]
        for index_id in index_ids:
            self.conn.execute("DELETE FROM index_entries WHERE index_id = ?", (index_id,))
        self.conn.execute("DELETE FROM documents WHERE table_number = ?", (table_number,))

    def renumber_table(self, old_number: int, new_number: int) -> None:
        # Every document has a by_id entry; the index_entries primary key makes this cheap.
        if self.conn.execute(
            "SELECT 1 FROM index_entries WHERE index_id IN "
            "(SELECT id FROM indexes WHERE table_number = ?) LIMIT 1",
            (old_number,),
        ).fetchone():
            raise InternalError(f"Table number {old_number} has documents: it cannot be renumbered")
        self.conn.execute("UPDATE tables SET number = ? WHERE number = ?", (new_number, old_number))
        self.conn.execute(
            "UPDATE indexes SET table_number = ? WHERE table_number = ?", (new_number, old_number)
        )

    def prune_log(self, before_ts: int) -> int:
        cur = self.conn.execute("DELETE FROM log WHERE ts < ?", (before_ts,))
        return cur.rowcount

    def put_mutation_request(
        self, session_id: str, request_id: int, ts: int, fingerprint: bytes, result: bytes
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO mutation_requests "
            "(session_id, request_id, ts, fingerprint, result) VALUES (?, ?, ?, ?, ?)",
            (session_id, request_id, ts, fingerprint, result),
        )

    def put_used_upload_token(self, nonce: bytes, ts: int, storage_id: str) -> None:
        self.conn.execute(
            "INSERT INTO used_upload_tokens (nonce, ts, storage_id) VALUES (?, ?, ?)",
            (nonce, ts, storage_id),
        )

    def prune_request_records(self, before_ts: int) -> int:
        removed = self.conn.execute("DELETE FROM mutation_requests WHERE ts < ?", (before_ts,))
        tokens = self.conn.execute("DELETE FROM used_upload_tokens WHERE ts < ?", (before_ts,))
        return removed.rowcount + tokens.rowcount


class SqlitePersistence(Persistence):
    """SQLite in WAL mode at ``path``; up to ``max_readers`` pooled snapshot connections."""

    def __init__(
        self, path: str | Path, *, durability: Durability = "full", max_readers: int = 8
    ) -> None:
        self.path = str(path)
        self.durability = durability
        if self.path != ":memory:":
            private_dir(Path(self.path).parent)
            # Created 0600 before SQLite opens it: the -wal and -shm files copy its mode.
            private_file(self.path)
            for companion in (f"{self.path}-wal", f"{self.path}-shm"):
                tighten(companion)
        else:
            raise InternalError("SQLite persistence needs a file: readers and writer share it")
        self._writer = _SqliteWriter(_connect(self.path, readonly=False, durability=durability))
        self._writer.conn.executescript(_SCHEMA)
        _migrate_session_requests(self._writer.conn)
        self._writer_busy = threading.Lock()
        self._idle: queue.SimpleQueue[_SqliteReader] = queue.SimpleQueue()
        self._readers_made = 0
        self._max_readers = max_readers
        self._made_lock = threading.Lock()
        self._all_readers: list[_SqliteReader] = []
        self._slots = threading.BoundedSemaphore(max_readers)
        self._closed = False

    def reader(self) -> ReadConnection:
        self._slots.acquire()
        try:
            reader = self._idle.get_nowait()
        except queue.Empty:
            with self._made_lock:
                reader = _SqliteReader(_connect(self.path, readonly=True, durability="off"))
                self._all_readers.append(reader)
        try:
            reader._begin()
        except BaseException:
            self._idle.put(reader)
            self._slots.release()
            raise
        return reader

    def release_reader(self, conn: ReadConnection) -> None:
        assert isinstance(conn, _SqliteReader)
        try:
            conn._end()
        finally:
            self._idle.put(conn)
            self._slots.release()

    def begin_write(self) -> WriteConnection:
        self._writer_busy.acquire()
        try:
            self._writer.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._writer_busy.release()
            raise
        return self._writer

    def commit_write(self, conn: WriteConnection) -> None:
        try:
            self._writer.conn.execute("COMMIT")
        finally:
            self._end_write()

    def abort_write(self, conn: WriteConnection) -> None:
        try:
            if self._writer.conn.in_transaction:
                self._writer.conn.execute("ROLLBACK")
        finally:
            self._end_write()

    def _end_write(self) -> None:
        try:
            if self._writer.bulk_cache:
                self._writer.bulk_cache = False
                self._writer.conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        finally:
            self._writer_busy.release()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for reader in self._all_readers:
            reader.conn.close()
        self._writer.conn.close()
