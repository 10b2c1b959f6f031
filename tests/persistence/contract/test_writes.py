"""The writer's transaction: own reads, savepoints, restart, abort, globals and the catalog."""

from __future__ import annotations

import pytest

from syncline.persistence.base import (
    BY_ID_INDEX,
    TS_GLOBAL,
    CommitRow,
    IndexRow,
    LogEntry,
    Persistence,
    ReadConnection,
    TableRow,
    WriteConnection,
)

from .support import Table, make_table, put, set_ts, snapshot, write


def _table(store: Persistence) -> Table:
    return write(store, lambda conn: make_table(conn, "t", 10001))


def _everything(conn: WriteConnection, table: Table, doc_id: str, ts: int) -> None:
    """One write of every kind the engine makes in a mutation's commit."""
    put(conn, table, doc_id, b"v%d" % ts, key=b"k%d" % ts, ts=ts)
    conn.append_log([LogEntry(ts, doc_id, table.number, b"v")])
    conn.set_global("g", b"%d" % ts)
    conn.put_mutation_requests([("s", ts, ts, b"f", b"r")])
    conn.put_used_upload_token(b"n%d" % ts, ts, "sid")
    conn.create_table(f"t{ts}", 20000 + ts)
    set_ts(conn, ts)


def _sees_everything(conn: ReadConnection, table: Table, doc_id: str, ts: int) -> bool:
    """Whether ``_everything(..., doc_id, ts)`` is visible: wholly or not at all."""
    key = b"k%d" % ts
    found = [
        conn.get_document(doc_id) is not None,
        bool(conn.scan(table.by_value, key, key + b"\x00", reverse=False, limit=1)),
        any(e.ts == ts for e in conn.log_since(ts - 1, limit=10)),
        conn.get_global("g") == b"%d" % ts,
        conn.get_mutation_request("s", ts) is not None,
        conn.get_used_upload_token(b"n%d" % ts) is not None,
        any(t.name == f"t{ts}" for t in conn.tables()),
    ]
    assert len(set(found)) == 1, f"partly visible: {found}"
    return found[0]


def test_the_writer_reads_its_own_uncommitted_writes(store: Persistence) -> None:
    table = _table(store)
    doc_id = table.new_id()
    conn = store.begin_write()
    try:
        _everything(conn, table, doc_id, 2)
        assert _sees_everything(conn, table, doc_id, 2)
        assert conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=5) == [
            (b"k2", doc_id, b"v2")
        ]
        assert conn.count(table.by_id) == 1
    finally:
        store.abort_write(conn)


def test_a_commit_makes_every_write_visible(store: Persistence) -> None:
    table = _table(store)
    doc_id = table.new_id()
    write(store, lambda conn: _everything(conn, table, doc_id, 2))
    with snapshot(store) as conn:
        assert _sees_everything(conn, table, doc_id, 2)


def test_abort_write_leaves_nothing(store: Persistence) -> None:
    table = _table(store)
    doc_id = table.new_id()

    def fail(conn: WriteConnection) -> None:
        _everything(conn, table, doc_id, 2)
        raise RuntimeError("the transaction fails")

    with pytest.raises(RuntimeError):
        write(store, fail)
    with snapshot(store) as conn:
        assert not _sees_everything(conn, table, doc_id, 2)
        assert conn.ts == 0
    # The writer is free again, and its next transaction starts clean.
    conn = store.begin_write()
    try:
        assert not _sees_everything(conn, table, doc_id, 2)
    finally:
        store.abort_write(conn)


def test_rollback_to_undoes_only_what_followed_the_savepoint(store: Persistence) -> None:
    table = _table(store)
    kept, undone = table.new_id(), table.new_id()

    def body(conn: WriteConnection) -> None:
        _everything(conn, table, kept, 2)
        conn.savepoint()
        _everything(conn, table, undone, 3)
        conn.delete_document(kept)
        assert _sees_everything(conn, table, undone, 3)
        conn.rollback_to()
        assert not _sees_everything(conn, table, undone, 3)
        assert conn.get_document(kept) is not None
        assert conn.get_global(TS_GLOBAL) == b"2"

    write(store, body)
    with snapshot(store) as conn:
        assert conn.ts == 2
        assert _sees_everything(conn, table, kept, 2)
        assert not _sees_everything(conn, table, undone, 3)


def test_release_keeps_what_followed_the_savepoint(store: Persistence) -> None:
    table = _table(store)
    ids = [table.new_id() for _ in range(3)]

    def body(conn: WriteConnection) -> None:
        # A savepoint per function of a group commit, one after another.
        for ts, doc_id in enumerate(ids, start=2):
            conn.savepoint()
            _everything(conn, table, doc_id, ts)
            conn.release()
        conn.savepoint()
        conn.delete_document(ids[0])
        conn.rollback_to()  # and after a rollback, the savepoint can be opened again
        conn.savepoint()
        conn.put_document(ids[1], table.number, 9, b"changed")
        conn.release()

    write(store, body)
    with snapshot(store) as conn:
        assert conn.ts == 4
        assert [t.name for t in conn.tables()][-3:] == ["t2", "t3", "t4"]
        assert conn.get_document(ids[0]) == (table.number, b"v2")
        assert conn.get_document(ids[1]) == (table.number, b"changed")
        assert conn.get_document(ids[2]) == (table.number, b"v4")


def test_restart_undoes_everything_and_the_transaction_stays_open(store: Persistence) -> None:
    table = _table(store)
    undone, kept = table.new_id(), table.new_id()

    def body(conn: WriteConnection) -> None:
        _everything(conn, table, undone, 2)
        conn.restart()
        assert not _sees_everything(conn, table, undone, 2)
        _everything(conn, table, kept, 3)

    write(store, body)
    with snapshot(store) as conn:
        assert conn.ts == 3
        assert not _sees_everything(conn, table, undone, 2)
        assert _sees_everything(conn, table, kept, 3)


def test_globals_round_trip_bytes(store: Persistence) -> None:
    values = {"empty": b"", "binary": bytes(range(256)), "text": b"12345", "schema": b"{}"}

    def body(conn: WriteConnection) -> None:
        conn.set_globals(values)
        conn.set_global("one", b"1")
        conn.set_global("one", b"2")  # a later value replaces

    write(store, body)
    write(store, lambda conn: conn.set_globals({"text": b"6", "new": b"n"}))
    with snapshot(store) as conn:
        # An empty value is stored (the engine stores b"" for "no schema"), not absent.
        assert conn.get_global("empty") == b""
        assert conn.get_global("binary") == bytes(range(256))
        assert conn.get_global("text") == b"6"
        assert conn.get_global("schema") == b"{}"
        assert conn.get_global("one") == b"2"
        assert conn.get_global("new") == b"n"
        assert conn.get_global("missing") is None


def test_many_globals_at_once(store: Persistence) -> None:
    values = {f"k{i}": b"%d" % i for i in range(100)}
    write(store, lambda conn: conn.set_globals(values))
    with snapshot(store) as conn:
        assert {key: conn.get_global(key) for key in values} == values


def test_tables_and_indexes(store: Persistence) -> None:
    def body(conn: WriteConnection) -> list[int]:
        conn.create_table("b", 10002)
        conn.create_table("a", 10001)
        conn.create_table("_system", 3)
        return [
            conn.create_index(10001, BY_ID_INDEX, ()),
            conn.create_index(10001, "by_x", ("x",)),
            conn.create_index(10002, "by_x", ("x", "y.z", "_creationTime")),
        ]

    ids = write(store, body)
    assert len(set(ids)) == 3
    with snapshot(store) as conn:
        assert sorted(conn.tables(), key=lambda t: t.number) == [
            TableRow(3, "_system"),
            TableRow(10001, "a"),
            TableRow(10002, "b"),
        ]
        assert sorted(conn.indexes(), key=lambda i: i.id) == sorted(
            [
                IndexRow(ids[0], 10001, BY_ID_INDEX, ()),
                IndexRow(ids[1], 10001, "by_x", ("x",)),
                IndexRow(ids[2], 10002, "by_x", ("x", "y.z", "_creationTime")),
            ],
            key=lambda i: i.id,
        )


def test_drop_index_removes_it_and_its_entries_and_its_id_is_never_reused(
    store: Persistence,
) -> None:
    table = _table(store)
    doc_id = table.new_id()
    write(store, lambda conn: put(conn, table, doc_id, b"v", key=b"k"))
    write(store, lambda conn: conn.drop_index(table.by_value))
    again = write(store, lambda conn: conn.create_index(table.number, "by_value", ("value",)))
    # Catalogs held by older snapshots name index ids: a new index never takes an old id.
    assert again not in (table.by_id, table.by_value)
    with snapshot(store) as conn:
        assert {i.id for i in conn.indexes()} == {table.by_id, again}
        assert conn.count(again) == 0
        assert conn.scan(again, b"", b"\xff", reverse=False, limit=5) == []
        assert conn.get_document(doc_id) == (table.number, b"v")
        assert conn.count(table.by_id) == 1


def test_delete_table_documents_empties_one_table(store: Persistence) -> None:
    def body(conn: WriteConnection) -> tuple[Table, Table, list[str], list[str]]:
        table, other = make_table(conn, "t", 10001), make_table(conn, "u", 10002)
        mine = [table.new_id() for _ in range(5)]
        theirs = [other.new_id() for _ in range(3)]
        for i, doc_id in enumerate(mine):
            put(conn, table, doc_id, b"v", key=b"%d" % i)
        for i, doc_id in enumerate(theirs):
            put(conn, other, doc_id, b"v", key=b"%d" % i)
        return table, other, mine, theirs

    table, other, mine, theirs = write(store, body)
    write(store, lambda conn: conn.delete_table_documents(table.number))
    with snapshot(store) as conn:
        assert conn.count(table.by_id) == 0
        assert conn.count(table.by_value) == 0
        assert conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=9) == []
        assert all(conn.get_document(doc_id) is None for doc_id in mine)
        assert conn.count(other.by_id) == conn.count(other.by_value) == 3
        assert all(conn.get_document(doc_id) is not None for doc_id in theirs)
        # The table and its indexes stay.
        assert {t.number for t in conn.tables()} == {10001, 10002}
        assert len(conn.indexes()) == 4


def test_renumber_an_empty_table_moves_it_and_its_indexes(store: Persistence) -> None:
    table = _table(store)
    write(store, lambda conn: conn.renumber_table(10001, 10005))
    moved = Table(10005, table.by_id, table.by_value)
    doc_id = moved.new_id()
    write(store, lambda conn: put(conn, moved, doc_id, b"v", key=b"k"))
    with snapshot(store) as conn:
        assert conn.tables() == [TableRow(10005, "t")]
        assert {(i.id, i.table_number) for i in conn.indexes()} == {
            (table.by_id, 10005),
            (table.by_value, 10005),
        }
        assert conn.get_document(doc_id) == (10005, b"v")
        assert [d for _, d, _ in conn.scan(moved.by_id, b"", b"\xff", reverse=False, limit=5)] == [
            doc_id
        ]


def test_a_table_with_documents_cannot_be_renumbered(store: Persistence) -> None:
    table = _table(store)
    write(store, lambda conn: put(conn, table, table.new_id(), b"v", key=b"k"))
    conn = store.begin_write()
    try:
        with pytest.raises(Exception, match="10001"):
            conn.renumber_table(10001, 10005)
    finally:
        store.abort_write(conn)
    with snapshot(store) as reader:
        assert reader.tables() == [TableRow(10001, "t")]


@pytest.mark.parametrize("n", [1, 2, 11, 45])
def test_a_group_commit_s_rows_are_all_stored_in_order(store: Persistence, n: int) -> None:
    """Each batch method stores every row, the last of a repeated key winning, whatever
    the count (a backend may cut the rows into statements of several sizes)."""
    table = _table(store)
    ids = [table.new_id() for _ in range(n)]
    docs = [(doc_id, table.number, 3, b"first") for doc_id in ids]
    docs += [(ids[0], table.number, 3, b"again")]  # a later put of the same id replaces it
    entries = [(table.by_value, b"%03d" % i, doc_id) for i, doc_id in enumerate(ids)]

    def batch(conn: WriteConnection) -> None:
        conn.put_documents(docs)
        conn.insert_index_entries(entries)
        conn.append_log(
            [LogEntry(3 + i, doc_id, table.number, b"v") for i, doc_id in enumerate(ids)]
        )
        conn.put_mutation_requests([("s", i, 3, b"f", b"r%d" % i) for i in range(n)])
        conn.append_commits([CommitRow(100 + i, 0, b"w%d" % i) for i in range(n)])

    write(store, batch, ts=3)
    with snapshot(store) as conn:
        assert [conn.get_document(doc_id) for doc_id in ids] == [
            (table.number, b"again" if i == 0 else b"first") for i in range(n)
        ]
        rows = conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=n + 1)
        assert [(k, d) for k, d, _ in rows] == [(k, d) for _, k, d in entries]
        assert [(e.ts, e.doc_id) for e in conn.log_since(2, limit=n + 1)] == [
            (3 + i, doc_id) for i, doc_id in enumerate(ids)
        ]
        assert [conn.get_mutation_request("s", i) for i in range(n)] == [
            (3, b"f", b"r%d" % i) for i in range(n)
        ]
        assert [(c.ts, c.writes) for c in conn.commits_since(99, limit=n + 1)] == [
            (100 + i, b"w%d" % i) for i in range(n)
        ]


def test_insert_bulk_stores_documents_entries_and_log(store: Persistence) -> None:
    table = _table(store)
    docs = [(table.new_id(), table.number, 7, b"doc%d" % i) for i in range(50)]
    entries = [(table.by_value, b"%03d" % i, doc[0]) for i, doc in enumerate(docs)]
    write(store, lambda conn: conn.insert_bulk(docs, entries), ts=7)
    with snapshot(store) as conn:
        assert conn.count(table.by_id) == conn.count(table.by_value) == 50
        for doc_id, number, _ts, value in docs:
            assert conn.get_document(doc_id) == (number, value)
        rows = conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=100)
        assert [(k, d) for k, d, _ in rows] == [(k, d) for _, k, d in entries]
        log = conn.log_since(0, limit=100)
        assert sorted(log, key=lambda e: e.doc_id) == sorted(
            (LogEntry(ts, doc_id, number, value) for doc_id, number, ts, value in docs),
            key=lambda e: e.doc_id,
        )


def test_insert_bulk_after_clearing_a_table_in_the_same_transaction(store: Persistence) -> None:
    """Import replaces a table: its deletions and re-inserts share one ts and one id each."""
    table = _table(store)
    ids = [table.new_id() for _ in range(4)]

    def first(conn: WriteConnection) -> None:
        for i, doc_id in enumerate(ids):
            put(conn, table, doc_id, b"old", key=b"%d" % i)

    def replace(conn: WriteConnection) -> None:
        conn.append_log([LogEntry(5, doc_id, table.number, None) for doc_id in ids])
        conn.delete_table_documents(table.number)
        conn.insert_bulk(
            [(doc_id, table.number, 5, b"new") for doc_id in ids],
            [(table.by_value, b"n%d" % i, doc_id) for i, doc_id in enumerate(ids)],
        )

    write(store, first)
    write(store, replace)
    with snapshot(store) as conn:
        assert all(conn.get_document(doc_id) == (table.number, b"new") for doc_id in ids)
        keys = [k for k, _, _ in conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=9)]
        assert keys == [b"n0", b"n1", b"n2", b"n3"]
        # One log entry per (ts, document): the insert replaced the deletion.
        log = conn.log_since(0, limit=100)
        assert sorted((e.doc_id, e.value) for e in log) == sorted((d, b"new") for d in ids)
