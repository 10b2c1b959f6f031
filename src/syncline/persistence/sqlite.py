"""SQLite persistence: one writer connection, a pool of snapshot readers (WAL).

Readers run in WAL mode, so each read transaction is a stable snapshot that
never blocks the writer. The snapshot's ts is read from ``globals`` inside the
same read transaction, so it names exactly the last commit the reader sees.

Durability: ``durability="full"`` fsyncs the WAL on every commit (the engine
groups many mutations into one commit, so one fsync covers them all);
``"normal"`` survives a process crash but not power loss; ``"off"`` is for
tests.

Several processes (``serve --workers N``) write one file: a writer first takes
an exclusive ``flock`` on ``<database>-writer``, then SQLite's write lock.
The kernel wakes the next waiting process as soon as the lock is released,
where SQLite's busy handler would poll after sleeping 1, 2, 5, 10 ms... SQLite's
lock still decides who writes (a process without the file lock, such as the
``sqlite3`` shell, only waits in the busy handler as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import orjson

from syncline.errors import InternalError
from syncline.persistence import sqlite_search
from syncline.persistence.base import (
    BY_ID_INDEX,
    CATALOG_VERSION_GLOBAL,
    LOG_PRUNED_GLOBAL,
    TS_GLOBAL,
    CommitRow,
    Durability,
    IndexRow,
    LogEntry,
    MutationRecord,
    Persistence,
    ReadConnection,
    SearchEntry,
    SearchIndexRow,
    SearchRequest,
    TableRow,
    WriteConnection,
)
from syncline.persistence.by_id import IndexKinds, id_bound, key_of_id
from syncline.persistence.pool import ReaderPool
from syncline.persistence.sqlite_checkpoint import BACKSTOP_PAGES, Checkpointer
from syncline.persistence.sqlite_rows import RowsInsert, multi_row
from syncline.private_paths import private_dir, private_file, tighten
from syncline.values.ids import table_number_of

log = logging.getLogger("syncline.persistence")

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
    table_number INTEGER NOT NULL,
    id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (table_number, id)
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
CREATE TABLE IF NOT EXISTS commits (
    ts INTEGER PRIMARY KEY,
    flags INTEGER NOT NULL,
    writes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    ts INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    table_number INTEGER NOT NULL,
    value BLOB,
    PRIMARY KEY (ts, doc_id)
) WITHOUT ROWID;
"""

# Documents are keyed by (table number, id): the index's table number (one lookup,
# in the same snapshot) turns each entry's document id into a primary-key lookup.
_TABLE_OF_INDEX = "(SELECT table_number FROM indexes WHERE id = ?1)"
_SCAN_ASC = (
    "SELECT e.key, e.doc_id, d.value FROM index_entries e "
    f"JOIN documents d ON d.table_number = {_TABLE_OF_INDEX} AND d.id = e.doc_id "
    "WHERE e.index_id = ?1 AND e.key >= ?2 AND e.key < ?3 ORDER BY e.key ASC LIMIT ?4"
)
_SCAN_DESC = _SCAN_ASC.replace("ASC", "DESC")
# A by_id index has no entries: a table's documents, in id order, are its entries.
_SCAN_IDS_ASC = (
    f"SELECT id, value FROM documents WHERE table_number = {_TABLE_OF_INDEX} "
    "AND id >= ?2 AND id < ?3 ORDER BY id ASC LIMIT ?4"
)
_SCAN_IDS_DESC = _SCAN_IDS_ASC.replace("ASC", "DESC")
_COUNT_IDS = f"SELECT count(*) FROM documents WHERE table_number = {_TABLE_OF_INDEX}"
_GET = "SELECT value FROM documents WHERE table_number = ? AND id = ?"
_PUT = "INSERT OR REPLACE INTO documents (table_number, id, ts, value) VALUES (?, ?, ?, ?)"
#: a snapshot's (or the writer's) last commit ts and catalog version, in one statement
_HEAD_TS = f"SELECT value FROM globals WHERE key = '{TS_GLOBAL}'"
_HEAD = (
    f"SELECT (SELECT value FROM globals WHERE key = '{TS_GLOBAL}'), "
    f"(SELECT value FROM globals WHERE key = '{CATALOG_VERSION_GLOBAL}')"
)
_COMMITS_SINCE = "SELECT ts, flags, writes FROM commits WHERE ts > ? ORDER BY ts LIMIT ?"
#: the one savepoint name: reusing it keeps the statement cache to one entry each
_SAVEPOINT = "SAVEPOINT m"
_RELEASE = "RELEASE m"
_ROLLBACK_TO = "ROLLBACK TO m"

#: rows per multi-row INSERT (one statement writes every index entry of a document)
_MULTI_ROW_MAX = 16


_INSERT_ENTRIES = [
    multi_row("INSERT INTO index_entries (index_id, key, doc_id)", 3, n)
    for n in range(_MULTI_ROW_MAX + 1)
]
_SET_GLOBALS = [
    multi_row("INSERT OR REPLACE INTO globals (key, value)", 2, n)
    for n in range(_MULTI_ROW_MAX + 1)
]
#: a group commit's rows (see sqlite_rows)
_PUT_REQUESTS = RowsInsert(
    "INSERT OR REPLACE INTO mutation_requests (session_id, request_id, ts, fingerprint, result)",
    5,
)
_PUT_LOG = RowsInsert("INSERT OR REPLACE INTO log (ts, doc_id, table_number, value)", 4)
_PUT_DOCUMENTS = RowsInsert("INSERT OR REPLACE INTO documents (id, table_number, ts, value)", 4)
_PUT_ENTRIES = RowsInsert("INSERT INTO index_entries (index_id, key, doc_id)", 3)
_PUT_COMMITS = RowsInsert("INSERT INTO commits (ts, flags, writes)", 3)


#: SQLite's own page cache per connection, in KiB (PRAGMA cache_size), held privately
#: by the writer and by each pooled reader until it closes. The OS page cache holds
#: the file too, so a miss here costs a read from memory, not from disk. A reader's
#: cache is emptied whenever another connection commits (WAL), so under writes it
#: holds the pages of a snapshot or two; the writer's lasts and fills with what
#: recent transactions touched, up to its size. Checked with bench/page_cache.py
#: (CPU per operation) and bench/soak.py (resident memory levels off).
_WRITER_CACHE_KIB = 8 * 1024
_READER_CACHE_KIB = 4 * 1024
#: the writer's page cache while a transaction bulk-inserts (import): its working set
#: stays in memory instead of spilling to the WAL in the middle of the transaction
_BULK_CACHE_KIB = 256 * 1024


def _connect(path: str, *, readonly: bool, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{_READER_CACHE_KIB if readonly else _WRITER_CACHE_KIB}")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def _connect_checkpointer(path: str, durability: Durability) -> sqlite3.Connection:
    """The checkpoint thread's connection: it syncs as the writer does, and caches little."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    conn.execute("PRAGMA cache_size=-256")
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


def _migrate_documents_by_table(conn: sqlite3.Connection) -> None:
    """Re-key a data folder's documents by (table number, id) and drop its by_id entries.

    Before this layout, documents were keyed by id alone and every ``by_id``
    index held one entry per document; now a table's documents are one range
    of the primary key, which serves ``by_id`` reads and scans itself.
    """
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others then find nothing
    try:
        row = conn.execute(
            "SELECT pk FROM pragma_table_info('documents') WHERE name = 'table_number'"
        ).fetchone()
        if row is not None and row[0] == 0:
            log.info("re-keying documents by table (a one-time upgrade of the data folder)")
            conn.execute(
                "CREATE TABLE documents_by_table ("
                "table_number INTEGER NOT NULL, id TEXT NOT NULL, ts INTEGER NOT NULL, "
                "value BLOB NOT NULL, PRIMARY KEY (table_number, id)) WITHOUT ROWID"
            )
            conn.execute(
                "INSERT INTO documents_by_table (table_number, id, ts, value) "
                "SELECT table_number, id, ts, value FROM documents ORDER BY table_number, id"
            )
            conn.execute("DROP TABLE documents")
            conn.execute("ALTER TABLE documents_by_table RENAME TO documents")
            conn.execute(
                "DELETE FROM index_entries WHERE index_id IN "
                "(SELECT id FROM indexes WHERE name = ?)",
                (BY_ID_INDEX,),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _SqliteReader(ReadConnection):
    supports_search = True

    def __init__(self, conn: sqlite3.Connection, kinds: IndexKinds) -> None:
        self.conn = conn
        self.ts = 0
        self.catalog_version = 0
        self._kinds = kinds

    def _index_name(self, index_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM indexes WHERE id = ?", (index_id,)).fetchone()
        return None if row is None else str(row[0])

    def _begin(self) -> None:
        self.conn.execute("BEGIN")
        # The first read starts the WAL snapshot; reading the head here pins it.
        self._read_head()

    def _read_head(self) -> None:
        ts, version = self.conn.execute(_HEAD).fetchone()
        self.ts = int(ts) if ts is not None else 0
        self.catalog_version = int(version) if version is not None else 0

    def _end(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def get_document(self, doc_id: str) -> tuple[int, bytes] | None:
        number = table_number_of(doc_id)
        if number is None:
            return None
        row = self.conn.execute(_GET, (number, doc_id)).fetchone()
        return (number, row[0]) if row else None

    def scan(
        self, index_id: int, start: bytes, end: bytes, *, reverse: bool, limit: int
    ) -> list[tuple[bytes, str, bytes]]:
        if start >= end:
            return []
        if self._kinds.is_by_id(index_id, self._index_name):
            lo, hi = id_bound(start), id_bound(end)
            if lo >= hi:
                return []
            sql = _SCAN_IDS_DESC if reverse else _SCAN_IDS_ASC
            rows = self.conn.execute(sql, (index_id, lo, hi, limit)).fetchall()
            return [(key_of_id(doc_id), doc_id, value) for doc_id, value in rows]
        sql = _SCAN_DESC if reverse else _SCAN_ASC
        return self.conn.execute(sql, (index_id, start, end, limit)).fetchall()

    def count(self, index_id: int) -> int:
        if self._kinds.is_by_id(index_id, self._index_name):
            row = self.conn.execute(_COUNT_IDS, (index_id,)).fetchone()
        else:
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

    def commits_since(self, ts: int, *, limit: int) -> list[CommitRow]:
        rows = self.conn.execute(_COMMITS_SINCE, (ts, limit)).fetchall()
        return [CommitRow(*row) for row in rows]

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

    def search_indexes(self) -> list[SearchIndexRow]:
        return sqlite_search.stored_indexes(self.conn)

    def search(self, table_number: int, index: str, request: SearchRequest) -> list[str]:
        return sqlite_search.search(self.conn, table_number, index, request)


class _SqliteWriter(_SqliteReader, WriteConnection):
    #: the page cache is enlarged for the current transaction's bulk inserts
    bulk_cache = False

    def savepoint(self) -> None:
        self.conn.execute(_SAVEPOINT)

    def release(self) -> None:
        self.conn.execute(_RELEASE)

    def rollback_to(self) -> None:
        self.conn.execute(_ROLLBACK_TO)
        self.conn.execute(_RELEASE)

    def restart(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.execute("BEGIN IMMEDIATE")
        self._read_head()

    def put_document(self, doc_id: str, table_number: int, ts: int, value: bytes) -> None:
        self.conn.execute(_PUT, (table_number, doc_id, ts, value))

    def put_documents(self, rows: Sequence[tuple[str, int, int, bytes]]) -> None:
        _PUT_DOCUMENTS.run(self.conn, rows)

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
        number = table_number_of(doc_id)
        if number is not None:
            self.conn.execute(
                "DELETE FROM documents WHERE table_number = ? AND id = ?", (number, doc_id)
            )

    def insert_index_entries(self, entries: Iterable[tuple[int, bytes, str]]) -> None:
        rows = entries if isinstance(entries, list) else list(entries)
        if len(rows) <= _MULTI_ROW_MAX:
            # One statement for all of a document's entries (usually two or three).
            if rows:
                self.conn.execute(_INSERT_ENTRIES[len(rows)], [v for row in rows for v in row])
            return
        _PUT_ENTRIES.run(self.conn, rows)

    def delete_index_entries(self, entries: Iterable[tuple[int, bytes]]) -> None:
        self.conn.executemany("DELETE FROM index_entries WHERE index_id = ? AND key = ?", entries)

    def append_log(self, entries: Iterable[LogEntry]) -> None:
        _PUT_LOG.run(self.conn, [(e.ts, e.doc_id, e.table_number, e.value) for e in entries])

    def append_commits(self, rows: Iterable[CommitRow]) -> None:
        _PUT_COMMITS.run(self.conn, [(row.ts, row.flags, row.writes) for row in rows])

    def set_global(self, key: str, value: bytes) -> None:
        self.set_globals({key: value})

    def set_globals(self, values: Mapping[str, bytes]) -> None:
        rows = list(values.items())
        if len(rows) > _MULTI_ROW_MAX:
            self.conn.executemany(_SET_GLOBALS[1], rows)
        elif rows:
            self.conn.execute(_SET_GLOBALS[len(rows)], [v for row in rows for v in row])

    def create_table(self, name: str, number: int) -> None:
        self.conn.execute("INSERT INTO tables (number, name) VALUES (?, ?)", (number, name))

    def create_index(self, table_number: int, name: str, fields: tuple[str, ...]) -> int:
        cur = self.conn.execute(
            "INSERT INTO indexes (table_number, name, fields) VALUES (?, ?, ?)",
            (table_number, name, ",".join(fields)),
        )
        assert cur.lastrowid is not None
        self._kinds.note(cur.lastrowid, name)
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
        sqlite_search.drop_table_entries(self.conn, table_number)

    def renumber_table(self, old_number: int, new_number: int) -> None:
        if self.conn.execute(
            "SELECT 1 FROM documents WHERE table_number = ? LIMIT 1", (old_number,)
        ).fetchone():
            raise InternalError(f"Table number {old_number} has documents: it cannot be renumbered")
        self.conn.execute("UPDATE tables SET number = ? WHERE number = ?", (new_number, old_number))
        self.conn.execute(
            "UPDATE indexes SET table_number = ? WHERE table_number = ?", (new_number, old_number)
        )
        sqlite_search.rename_table_indexes(self.conn, old_number, new_number)

    def prune_log(self, before_ts: int) -> int:
        cur = self.conn.execute("DELETE FROM log WHERE ts < ?", (before_ts,))
        (newest,) = self.conn.execute(
            "SELECT max(ts) FROM commits WHERE ts < ?", (before_ts,)
        ).fetchone()
        if newest is None:
            return cur.rowcount
        commits = self.conn.execute("DELETE FROM commits WHERE ts < ?", (before_ts,))
        self.set_global(LOG_PRUNED_GLOBAL, str(newest).encode())
        return cur.rowcount + commits.rowcount

    def put_mutation_requests(self, records: Sequence[MutationRecord]) -> None:
        _PUT_REQUESTS.run(self.conn, records)

    def put_used_upload_token(self, nonce: bytes, ts: int, storage_id: str) -> None:
        self.conn.execute(
            "INSERT INTO used_upload_tokens (nonce, ts, storage_id) VALUES (?, ?, ?)",
            (nonce, ts, storage_id),
        )

    def prune_request_records(self, before_ts: int) -> int:
        removed = self.conn.execute("DELETE FROM mutation_requests WHERE ts < ?", (before_ts,))
        tokens = self.conn.execute("DELETE FROM used_upload_tokens WHERE ts < ?", (before_ts,))
        return removed.rowcount + tokens.rowcount

    def create_search_index(self, row: SearchIndexRow) -> None:
        sqlite_search.create_index(self.conn, row)

    def drop_search_index(self, table_number: int, index: str) -> None:
        sqlite_search.drop_index(self.conn, table_number, index)

    def rename_search_index(self, table_number: int, old: str, new: str) -> None:
        sqlite_search.rename_index(self.conn, table_number, old, new)

    def put_search_entries(
        self, table_number: int, index: str, entries: Sequence[SearchEntry]
    ) -> None:
        sqlite_search.put_entries(self.conn, table_number, index, entries)

    def delete_search_entries(self, table_number: int, index: str, doc_ids: Sequence[str]) -> None:
        sqlite_search.delete_entries(self.conn, table_number, index, doc_ids)


class SqlitePersistence(Persistence):
    """SQLite in WAL mode at ``path``; up to ``max_readers`` pooled snapshot connections."""

    supports_search = True

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
        self._kinds = IndexKinds()
        conn = _connect(self.path, readonly=False, durability=durability)
        self._writer = _SqliteWriter(conn, self._kinds)
        #: checkpoints on their own thread, where commits do not fsync (sqlite_checkpoint.py)
        self._checkpointer: Checkpointer | None = None
        if durability != "full":
            conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            self._checkpointer = Checkpointer(
                lambda: _connect_checkpointer(self.path, durability), name="syncline-checkpoint"
            )
        conn.executescript(_SCHEMA + sqlite_search.REGISTRY_SCHEMA)
        sqlite_search.ensure_vocabularies(conn)
        _migrate_session_requests(conn)
        _migrate_documents_by_table(conn)
        for index_id, name in conn.execute("SELECT id, name FROM indexes"):
            self._kinds.note(index_id, name)
        self._writer_busy = threading.Lock()
        #: the writers' queue across processes (module docs), held with ``_writer_busy``
        self._writers_fd = os.open(private_file(f"{self.path}-writer"), os.O_RDWR | os.O_CLOEXEC)
        #: up to ``max_readers`` readers, each opened when none is idle
        self._readers = ReaderPool(self._open_reader, max_readers)
        #: one connection that reads only the head (``head_ts``), opened on first use
        self._head_conn: sqlite3.Connection | None = None
        self._head_lock = threading.Lock()
        self._closed = False

    def reader(self) -> ReadConnection:
        reader = self._readers.take()
        try:
            reader._begin()
        except BaseException:
            self._readers.give(reader)
            raise
        return reader

    def _open_reader(self) -> _SqliteReader:
        return _SqliteReader(_connect(self.path, readonly=True, durability="off"), self._kinds)

    def head_ts(self) -> int | None:
        # One statement in autocommit: its own read transaction, a few microseconds in
        # WAL mode, and it never waits for a writer.
        with self._head_lock:
            conn = self._head_conn
            if conn is None:
                conn = self._head_conn = _connect(self.path, readonly=True, durability="off")
            row = conn.execute(_HEAD_TS).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def release_reader(self, conn: ReadConnection) -> None:
        assert isinstance(conn, _SqliteReader)
        try:
            conn._end()
        finally:
            self._readers.give(conn)

    def begin_write(self) -> WriteConnection:
        self._writer_busy.acquire()
        try:
            fcntl.flock(self._writers_fd, fcntl.LOCK_EX)
        except BaseException:
            self._writer_busy.release()
            raise
        try:
            self._writer.conn.execute("BEGIN IMMEDIATE")
            # Under the write lock: the head includes every other process's commits.
            self._writer._read_head()
        except BaseException:
            if self._writer.conn.in_transaction:
                self._writer.conn.execute("ROLLBACK")
            self._release_writers()
            raise
        return self._writer

    def commit_write(self, conn: WriteConnection) -> None:
        try:
            self._writer.conn.execute("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.note_commit()
        except BaseException:
            # The write is over either way (the contract of commit_write): a COMMIT
            # that failed leaves the transaction open, so roll it back here.
            with contextlib.suppress(sqlite3.Error):
                if self._writer.conn.in_transaction:
                    self._writer.conn.execute("ROLLBACK")
            raise
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
                self._writer.conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
        finally:
            self._release_writers()

    def _release_writers(self) -> None:
        try:
            fcntl.flock(self._writers_fd, fcntl.LOCK_UN)
        finally:
            self._writer_busy.release()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
        for reader in self._readers.opened():
            reader.conn.close()
        with self._head_lock:
            if self._head_conn is not None:
                self._head_conn.close()
        self._writer.conn.close()
        os.close(self._writers_fd)
