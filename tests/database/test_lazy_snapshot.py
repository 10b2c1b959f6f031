"""An optimistic mutation begins its snapshot at its first read (``lazy_snapshot.py``).

One that only inserts opens none; one that reads is checked from the snapshot
it actually read, and one that ran with the catalog this process held is run
again when another process changed the catalog meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stores import open_store
from syncline import define_schema, define_table, v
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.persistence.base import ReadConnection


def _open(path: Path, **options: Any) -> Database:
    return Database(open_store(path, durability="off"), **options)


def _count_snapshots(db: Database, patch: pytest.MonkeyPatch) -> list[ReadConnection]:
    """Every snapshot ``db``'s store hands out from now on."""
    opened: list[ReadConnection] = []
    reader = db.persistence.reader

    def counted() -> ReadConnection:
        conn = reader()
        opened.append(conn)
        return conn

    patch.setattr(db.persistence, "reader", counted)
    return opened


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two databases over one store, as two processes would be."""
    a = _open(tmp_path / "lazy.sqlite3")
    b = _open(tmp_path / "lazy.sqlite3")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("threads", [1, 0], ids=["mutation-threads", "on-the-committer"])
def test_an_insert_only_mutation_begins_no_snapshot(tmp_path: Path, threads: int) -> None:
    with _open(tmp_path / "db.sqlite3", mutation_threads=threads) as db:
        db.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))  # creates the table
        with pytest.MonkeyPatch.context() as patch:
            opened = _count_snapshots(db, patch)
            for n in range(1, 6):
                db.write_sync(lambda tx, n=n: tx.insert("t", {"n": float(n)}))
            assert opened == []

            def read_then_insert(tx: Transaction) -> int:
                count = len(Query(tx, "t").collect())
                tx.insert("t", {"n": float(count)})
                return count

            assert db.write_sync(read_then_insert).value == 6
            assert len(opened) == 1
        docs = db.run_read(lambda tx: Query(tx, "t").collect()).value
        assert [d["n"] for d in docs] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_a_mutation_reading_its_own_insert_begins_no_snapshot(tmp_path: Path) -> None:
    with _open(tmp_path / "db.sqlite3") as db:
        db.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
        with pytest.MonkeyPatch.context() as patch:
            opened = _count_snapshots(db, patch)

            def insert_and_read_back(tx: Transaction) -> Any:
                doc = tx.get(tx.insert("t", {"n": 1.0}))
                assert doc is not None
                return doc["n"]

            assert db.write_sync(insert_and_read_back).value == 1.0
            assert opened == []


def test_reads_are_checked_from_the_snapshot_begun_not_the_one_assumed(
    pair: tuple[Database, Database],
) -> None:
    """Another process's commit before the first read is in the snapshot: no conflict.

    ``a`` has not caught up with ``b``'s commit when its mutation starts (the ts it
    assumes is older); the read begins a snapshot that holds ``b``'s write, so
    checking the read from the assumed ts would see a conflict that is not one.
    """
    a, b = pair
    doc_id = a.write_sync(lambda tx: tx.insert("counters", {"n": 0.0})).value
    b.catch_up()
    by_b = b.write_sync(lambda tx: tx.patch(doc_id, {"n": 10.0}))
    assert a.last_ts < by_b.ts

    def increment(tx: Transaction) -> float:
        doc = tx.get(doc_id)
        assert doc is not None
        tx.patch(doc_id, {"n": doc["n"] + 1})
        return float(doc["n"])

    assert a.write_sync(increment).value == 10.0
    assert a.conflicts == 0
    assert b.run_read(lambda tx: tx.get(doc_id)).value["n"] == 11.0


def test_a_write_after_the_snapshot_begun_is_a_conflict(pair: tuple[Database, Database]) -> None:
    """And one committed after the first read still makes the mutation run again."""
    a, b = pair
    doc_id = a.write_sync(lambda tx: tx.insert("counters", {"n": 0.0})).value
    b.catch_up()
    seen: list[float] = []

    def increment_racing_b(tx: Transaction) -> None:
        doc = tx.get(doc_id)
        assert doc is not None
        seen.append(doc["n"])
        if len(seen) == 1:  # read, then let b commit before this attempt does
            b.write_sync(lambda btx: btx.patch(doc_id, {"n": 10.0}))
        tx.patch(doc_id, {"n": doc["n"] + 1})

    a.write_sync(increment_racing_b)
    assert seen == [0.0, 10.0]
    assert a.conflicts == 1
    assert a.run_read(lambda tx: tx.get(doc_id)).value["n"] == 11.0


def test_an_insert_run_with_an_old_catalog_is_run_again_with_the_new_one(
    pair: tuple[Database, Database],
) -> None:
    """An index added elsewhere: an insert that read nothing still writes its entry."""
    a, b = pair
    a.write_sync(lambda tx: tx.insert("items", {"n": 1.0}))
    b.catch_up()
    b.apply_schema(define_schema({"items": define_table({"n": v.number()}).index("by_n", ["n"])}))
    assert a.catalog.table("items") is not None and not _has_index(a, "items", "by_n")

    a.write_sync(lambda tx: tx.insert("items", {"n": 5.0}))
    assert a.conflicts == 1
    assert _has_index(a, "items", "by_n")
    found = b.run_read(
        lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 5.0)).collect()
    ).value
    assert [d["n"] for d in found] == [5.0]


def _has_index(db: Database, table: str, index: str) -> bool:
    info = db.catalog.table(table)
    return info is not None and index in info.indexes
