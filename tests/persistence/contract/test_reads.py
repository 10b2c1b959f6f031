"""Index scans, counts and document reads, on stored indexes and on ``by_id``."""

from __future__ import annotations

import itertools

import pytest

from syncline.persistence.base import Persistence, ReadConnection, WriteConnection
from syncline.persistence.by_id import key_of_id
from syncline.values.ids import encode_id

from .support import Table, make_table, put, snapshot, write

#: keys in byte order, with keys that extend others, 00 and high bytes (compared unsigned)
KEYS = [
    b"\x00",
    b"\x00\x00",
    b"\x00\x01",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"a\x01",
    b"ab",
    b"b",
    b"\x7f",
    b"\x80",
    b"\x80\x00",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff\xff",
]
BOUNDS = [b"", *KEYS, b"a\x00\x00\x00", b"\xff\xff\xff\xff"]


def _fill(store: Persistence) -> tuple[Table, Table, dict[bytes, str]]:
    def body(conn: WriteConnection) -> tuple[Table, Table, dict[bytes, str]]:
        table = make_table(conn, "t", 10001)
        other = make_table(conn, "u", 10002)
        by_key: dict[bytes, str] = {}
        for i, key in enumerate(KEYS):
            doc_id = table.new_id()
            put(conn, table, doc_id, b"doc%d" % i, key=key)
            by_key[key] = doc_id
        # Entries of another index with the same keys never leak into this one's scans.
        for i, key in enumerate(KEYS[::2]):
            put(conn, other, other.new_id(), b"other%d" % i, key=key)
        return table, other, by_key

    return write(store, body)


def _expected(
    keys: list[bytes], start: bytes, end: bytes, reverse: bool, limit: int
) -> list[bytes]:
    inside = [k for k in sorted(keys) if start <= k < end]
    return (inside[::-1] if reverse else inside)[:limit]


def test_scans_are_half_open_ordered_and_limited(store: Persistence) -> None:
    table, _other, by_key = _fill(store)
    with snapshot(store) as conn:
        for start, end in itertools.product(BOUNDS, BOUNDS):
            for reverse, limit in itertools.product((False, True), (1, 3, 100)):
                rows = conn.scan(table.by_value, start, end, reverse=reverse, limit=limit)
                assert [key for key, _, _ in rows] == _expected(KEYS, start, end, reverse, limit), (
                    start,
                    end,
                    reverse,
                    limit,
                )
                for key, doc_id, value in rows:
                    assert doc_id == by_key[key]
                    assert value == b"doc%d" % KEYS.index(key)


def test_empty_and_inverted_ranges_return_nothing(store: Persistence) -> None:
    table, _other, _ = _fill(store)
    with snapshot(store) as conn:
        for reverse in (False, True):
            assert conn.scan(table.by_value, b"a", b"a", reverse=reverse, limit=10) == []
            assert conn.scan(table.by_value, b"b", b"a", reverse=reverse, limit=10) == []
            assert conn.scan(table.by_value, b"a\x02", b"ab", reverse=reverse, limit=10) == []
            assert conn.scan(table.by_id, b"\x07", b"\x07", reverse=reverse, limit=10) == []


def test_a_scan_returns_the_current_document_value(store: Persistence) -> None:
    table, _other, by_key = _fill(store)
    doc_id = by_key[b"ab"]

    def replace(conn: WriteConnection) -> None:
        conn.delete_index_entries([(table.by_value, b"ab")])
        conn.put_document(doc_id, table.number, 2, b"new value")
        conn.insert_index_entries([(table.by_value, b"zz", doc_id)])

    write(store, replace)
    with snapshot(store) as conn:
        assert conn.scan(table.by_value, b"ab", b"ab\x00", reverse=False, limit=5) == []
        assert conn.scan(table.by_value, b"z", b"zz\x00", reverse=False, limit=5) == [
            (b"zz", doc_id, b"new value")
        ]
        assert conn.get_document(doc_id) == (table.number, b"new value")
        assert conn.count(table.by_value) == len(KEYS)


def test_counts_are_per_index(store: Persistence) -> None:
    table, other, _ = _fill(store)
    with snapshot(store) as conn:
        assert conn.count(table.by_value) == len(KEYS)
        assert conn.count(table.by_id) == len(KEYS)
        assert conn.count(other.by_value) == len(KEYS[::2])
        assert conn.count(other.by_id) == len(KEYS[::2])


def test_get_document(store: Persistence) -> None:
    table, other, by_key = _fill(store)
    with snapshot(store) as conn:
        assert conn.get_document(by_key[b"a"]) == (table.number, b"doc%d" % KEYS.index(b"a"))
        assert conn.get_document(table.new_id()) is None
        assert conn.get_document(other.new_id()) is None
        # An id of a table that does not exist, and a string that is not an id.
        assert conn.get_document(encode_id(424242, bytes(16))) is None
        assert conn.get_document("not an id") is None


def _by_id_ids(conn: WriteConnection, table: Table) -> list[str]:
    # Ids sharing long prefixes (internal ids that differ only in their last bytes).
    ids = {table.new_id() for _ in range(20)}
    ids |= {encode_id(table.number, bytes(15) + bytes([b])) for b in (0, 1, 2, 128, 255)}
    for doc_id in ids:
        conn.put_document(doc_id, table.number, 1, doc_id.encode())
    return sorted(ids, key=key_of_id)


def test_by_id_is_served_from_the_documents_of_its_table(store: Persistence) -> None:
    def body(conn: WriteConnection) -> tuple[Table, list[str], list[str]]:
        table = make_table(conn, "t", 10001)
        # A neighbouring table's documents are not entries of this table's by_id.
        other = make_table(conn, "u", 10002)
        return table, _by_id_ids(conn, table), _by_id_ids(conn, other)

    table, ids, other_ids = write(store, body)
    keys = [key_of_id(i) for i in ids]
    bounds = [b"", b"\x06", b"\x07", b"\x07\x00", b"\x08", b"\xff"]
    for key in keys[::3]:
        bounds += [key, key + b"\x00", key[:-1], key[:-2], key[:6], key[:-1] + b"\x80"]
    with snapshot(store) as conn:
        assert conn.count(table.by_id) == len(ids)
        for start, end in itertools.product(bounds, bounds):
            for reverse in (False, True):
                rows = conn.scan(table.by_id, start, end, reverse=reverse, limit=7)
                assert [k for k, _, _ in rows] == _expected(keys, start, end, reverse, 7)
                for key, doc_id, value in rows:
                    assert key == key_of_id(doc_id)
                    assert value == doc_id.encode()
                    assert doc_id not in other_ids


def test_by_id_follows_document_writes_and_deletes(store: Persistence) -> None:
    table = write(store, lambda conn: make_table(conn, "t", 10001))
    ids = [table.new_id() for _ in range(5)]

    def insert(conn: WriteConnection) -> None:
        for doc_id in ids:
            conn.put_document(doc_id, table.number, 1, b"v")

    write(store, insert)
    write(store, lambda conn: conn.delete_document(ids[2]))
    remaining = sorted(set(ids) - {ids[2]}, key=key_of_id)
    with snapshot(store) as conn:
        rows = conn.scan(table.by_id, b"", b"\xff", reverse=True, limit=100)
        assert [doc_id for _, doc_id, _ in rows] == remaining[::-1]
        assert conn.count(table.by_id) == 4
        assert conn.get_document(ids[2]) is None


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_paginating_with_the_next_key_visits_every_entry_once(
    store: Persistence, limit: int
) -> None:
    """The engine pages through an index by restarting at ``last key + 00``."""
    table, _other, _ = _fill(store)

    def pages(conn: ReadConnection, index_id: int) -> list[bytes]:
        start, seen = b"", []
        while True:
            rows = conn.scan(index_id, start, b"\xff\xff\xff\xff", reverse=False, limit=limit)
            seen += [key for key, _, _ in rows]
            if len(rows) < limit:
                return seen
            start = rows[-1][0] + b"\x00"

    with snapshot(store) as conn:
        assert pages(conn, table.by_value) == sorted(KEYS)
        by_id = [key for key, _, _ in conn.scan(table.by_id, b"", b"\xff", reverse=False, limit=99)]
        assert pages(conn, table.by_id) == by_id
        assert len(by_id) == len(KEYS)
