"""Snapshot isolation: what a reader sees, its ts, and that readers and the writer never wait."""

from __future__ import annotations

import threading
from collections.abc import Callable

from syncline.persistence.base import TS_GLOBAL, LogEntry, Persistence, WriteConnection

from .support import Table, make_table, put, set_ts, snapshot, write


def _setup(store: Persistence) -> Table:
    def body(conn: WriteConnection) -> Table:
        table = make_table(conn, "t", 10001)
        set_ts(conn, 1)
        return table

    return write(store, body)


def _nothing(conn: WriteConnection) -> None:
    """A commit that writes no document (only its ts)."""


def _add(store: Persistence, table: Table, key: bytes, ts: int) -> None:
    """Commit one new document with ``key`` in ``by_value``, as ts ``ts``."""
    write(store, lambda conn: put(conn, table, table.new_id(), b"v", key=key), ts=ts)


def test_an_empty_store_reads_empty_at_ts_zero(store: Persistence) -> None:
    with snapshot(store) as conn:
        assert conn.ts == 0
        assert conn.catalog_version == 0
        assert conn.commits_since(0, limit=10) == []
        assert conn.tables() == []
        assert conn.indexes() == []
        assert conn.get_global(TS_GLOBAL) is None
        assert conn.log_since(0, limit=10) == []


def test_a_snapshot_ts_is_exactly_the_last_commit_it_sees(store: Persistence) -> None:
    _setup(store)
    for ts in (5, 6, 1_700_000_000_000_000_123):
        write(store, _nothing, ts=ts)
        with snapshot(store) as conn:
            assert conn.ts == ts


def test_a_reader_opened_before_a_commit_never_sees_it(store: Persistence) -> None:
    table = _setup(store)
    before = store.reader()
    try:
        assert before.ts == 1
        doc_id = table.new_id()

        def commit(conn: WriteConnection) -> None:
            put(conn, table, doc_id, b"v", key=b"k")
            conn.append_log([LogEntry(2, doc_id, table.number, b"v")])
            conn.set_global("other", b"x")
            conn.create_table("u", 10002)
            conn.create_index(10002, "by_id", ())
            conn.put_mutation_requests([("s", 1, 2, b"f", b"r")])
            conn.put_used_upload_token(b"n", 2, "sid")
            set_ts(conn, 2)

        write(store, commit)
        # Read after the commit, through the snapshot taken before it.
        assert before.ts == 1
        assert before.get_document(doc_id) is None
        assert before.scan(table.by_value, b"", b"\xff", reverse=False, limit=10) == []
        assert before.scan(table.by_id, b"", b"\xff", reverse=False, limit=10) == []
        assert before.count(table.by_value) == 0
        assert before.count(table.by_id) == 0
        assert before.log_since(0, limit=10) == []
        assert before.get_global("other") is None
        assert before.get_global(TS_GLOBAL) == b"1"
        assert [t.name for t in before.tables()] == ["t"]
        assert len(before.indexes()) == 2
        assert before.get_mutation_request("s", 1) is None
        assert before.get_used_upload_token(b"n") is None
        with snapshot(store) as after:
            assert after.ts == 2
            assert after.get_document(doc_id) == (table.number, b"v")
            assert after.count(table.by_id) == 1
            assert after.get_mutation_request("s", 1) == (2, b"f", b"r")
    finally:
        store.release_reader(before)


def test_a_released_reader_is_never_reused_at_its_old_snapshot(store: Persistence) -> None:
    table = _setup(store)
    for i in range(20):
        # Readers are pooled by some backends: each must start a new snapshot.
        with snapshot(store) as conn:
            assert conn.count(table.by_id) == i
        _add(store, table, bytes([i]), i + 2)


def test_uncommitted_writes_are_invisible_to_readers(store: Persistence) -> None:
    table = _setup(store)
    doc_id = table.new_id()
    conn = store.begin_write()
    try:
        put(conn, table, doc_id, b"v", key=b"k")
        set_ts(conn, 2)
        # A reader opened while the write transaction is open is not blocked by it.
        with snapshot(store) as reader:
            assert reader.ts == 1
            assert reader.get_document(doc_id) is None
            assert reader.count(table.by_value) == 0
    finally:
        store.abort_write(conn)


def test_a_reader_held_open_does_not_block_commits(store: Persistence) -> None:
    table = _setup(store)
    held = store.reader()
    committed: list[int] = []

    def writer() -> None:
        for ts in range(2, 12):
            _add(store, table, bytes([ts]), ts)
            committed.append(ts)

    try:
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the writer waited for a reader"
        assert committed == list(range(2, 12))
        assert held.ts == 1
        assert held.count(table.by_value) == 0
    finally:
        store.release_reader(held)
    with snapshot(store) as conn:
        assert conn.ts == 11
        assert conn.count(table.by_value) == 10


def test_readers_in_other_threads_see_only_whole_commits(store: Persistence) -> None:
    """Commit n adds the n-th document and names itself ts n + 1: any snapshot agrees."""
    table = _setup(store)
    commits = 60
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                with snapshot(store) as conn:
                    ts = conn.ts
                    assert conn.count(table.by_id) == ts - 1
                    assert conn.count(table.by_value) == ts - 1
                    rows = conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=1000)
                    assert len(rows) == ts - 1
                    assert conn.get_global(TS_GLOBAL) == str(ts).encode()
                    seen.append(ts)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, commits + 1):
            _add(store, table, n.to_bytes(2, "big"), n + 1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[0]
    assert seen, "no reader ran"
    with snapshot(store) as conn:
        assert conn.ts == commits + 1


def test_snapshots_at_different_commits_each_keep_their_own_view(store: Persistence) -> None:
    table = _setup(store)
    doc_id = table.new_id()

    def delete(conn: WriteConnection) -> None:
        conn.delete_index_entries([(table.by_value, b"k")])
        conn.delete_document(doc_id)

    steps: list[Callable[[WriteConnection], None]] = [
        lambda conn: put(conn, table, doc_id, b"first", key=b"k"),
        lambda conn: conn.put_document(doc_id, table.number, 3, b"second"),
        delete,
    ]
    readers = [store.reader()]
    try:
        for ts, step in enumerate(steps, start=2):
            write(store, step, ts=ts)
            readers.append(store.reader())
        expected = [None, (table.number, b"first"), (table.number, b"second"), None]
        for ts, (reader, document) in enumerate(zip(readers, expected, strict=True), start=1):
            assert reader.ts == ts
            assert reader.get_document(doc_id) == document
            assert reader.count(table.by_id) == (document is not None)
            rows = reader.scan(table.by_value, b"", b"\xff", reverse=False, limit=5)
            assert rows == ([(b"k", doc_id, document[1])] if document else [])
    finally:
        for reader in readers:
            store.release_reader(reader)


def test_an_index_created_after_a_snapshot_reads_empty_in_it(store: Persistence) -> None:
    """The engine may publish a catalog naming an index before a reader's snapshot has it."""
    _setup(store)
    before = store.reader()
    try:

        def create(conn: WriteConnection) -> Table:
            table = make_table(conn, "new", 10002)
            put(conn, table, table.new_id(), b"v", key=b"k")
            return table

        table = write(store, create)
        for index_id in (table.by_id, table.by_value):
            assert before.scan(index_id, b"", b"\xff", reverse=False, limit=5) == []
            assert before.scan(index_id, b"", b"\xff", reverse=True, limit=5) == []
            assert before.count(index_id) == 0
    finally:
        store.release_reader(before)
    # Asked again in a snapshot that has it, the by_id index is served from documents.
    with snapshot(store) as conn:
        assert conn.count(table.by_id) == 1
        assert len(conn.scan(table.by_id, b"", b"\xff", reverse=False, limit=5)) == 1


def test_a_snapshot_keeps_an_index_dropped_after_it(store: Persistence) -> None:
    table = _setup(store)
    write(store, lambda conn: put(conn, table, table.new_id(), b"v", key=b"k"))
    before = store.reader()
    try:
        write(store, lambda conn: conn.drop_index(table.by_value))
        assert before.count(table.by_value) == 1
        assert [
            k for k, _, _ in before.scan(table.by_value, b"", b"\xff", reverse=False, limit=5)
        ] == [b"k"]
        assert {i.id for i in before.indexes()} == {table.by_id, table.by_value}
    finally:
        store.release_reader(before)
    with snapshot(store) as conn:
        assert {i.id for i in conn.indexes()} == {table.by_id}
