"""Opening, durability modes, closing and reopening a store."""

from __future__ import annotations

import pytest

from syncline.persistence.base import Durability, LogEntry, Persistence, WriteConnection

from .backends import Opener
from .support import Table, make_table, put, set_ts, snapshot, write


def _commit_a_document(store: Persistence) -> tuple[Table, str]:
    def body(conn: WriteConnection) -> tuple[Table, str]:
        table = make_table(conn, "t", 10001)
        doc_id = table.new_id()
        put(conn, table, doc_id, b"v", key=b"k")
        conn.append_log([LogEntry(3, doc_id, table.number, b"v")])
        conn.put_mutation_requests([("s", 1, 3, b"f", b"r")])
        set_ts(conn, 3)
        return table, doc_id

    return write(store, body)


@pytest.mark.parametrize("durability", ["full", "normal", "off"])
def test_every_durability_mode_commits_and_reopens(
    open_store: Opener, durability: Durability
) -> None:
    store = open_store(durability=durability)
    table, doc_id = _commit_a_document(store)
    store.close()
    reopened = open_store(durability=durability)
    with snapshot(reopened) as conn:
        assert conn.ts == 3
        assert conn.get_document(doc_id) == (table.number, b"v")
        assert conn.scan(table.by_value, b"", b"\xff", reverse=False, limit=5) == [
            (b"k", doc_id, b"v")
        ]
        assert conn.count(table.by_id) == 1
        assert [e.doc_id for e in conn.log_since(0, limit=5)] == [doc_id]
        assert conn.get_mutation_request("s", 1) == (3, b"f", b"r")
        assert [t.name for t in conn.tables()] == ["t"]


def test_reopen_sees_no_aborted_write(open_store: Opener) -> None:
    store = open_store()
    table, _ = _commit_a_document(store)
    conn = store.begin_write()
    put(conn, table, table.new_id(), b"aborted", key=b"z")
    set_ts(conn, 4)
    store.abort_write(conn)
    store.close()
    with snapshot(open_store()) as reader:
        assert reader.ts == 3
        assert reader.count(table.by_id) == 1


def test_indexes_created_before_a_reopen_keep_their_kind(open_store: Opener) -> None:
    """A by_id index stays served from documents, and index ids stay unique, across reopens."""
    store = open_store()
    table, doc_id = _commit_a_document(store)
    store.close()
    store = open_store()
    new_index = write(store, lambda conn: conn.create_index(table.number, "by_other", ("o",)))
    assert new_index not in (table.by_id, table.by_value)
    with snapshot(store) as conn:
        assert [d for _, d, _ in conn.scan(table.by_id, b"", b"\xff", reverse=False, limit=5)] == [
            doc_id
        ]
        assert conn.count(new_index) == 0


def test_close_twice_is_harmless(open_store: Opener) -> None:
    store = open_store()
    _commit_a_document(store)
    store.close()
    store.close()


def test_the_writer_can_be_taken_again_after_each_transaction(store: Persistence) -> None:
    for ts in range(1, 30):
        conn = store.begin_write()
        set_ts(conn, ts)
        if ts % 3:
            store.commit_write(conn)
        else:
            store.abort_write(conn)
    with snapshot(store) as reader:
        assert reader.ts == 29
