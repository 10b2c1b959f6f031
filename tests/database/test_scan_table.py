"""``Database.scan_table``: whole tables read straight from storage, in batches."""

from __future__ import annotations

from syncline.database.catalog import BY_CREATION_TIME
from syncline.database.database import Database
from syncline.values.json import from_json_bytes


def _insert(db: Database, n: int) -> list[str]:
    return db.write_sync(lambda tx: [tx.insert("items", {"n": float(i)}) for i in range(n)]).value


def test_every_document_once_across_batch_boundaries(db: Database) -> None:
    ids = _insert(db, 10)
    with db.storage_snapshot() as (conn, catalog):
        info = catalog.table("items")
        assert info is not None
        for batch in (1, 3, 5, 10, 11):
            rows = list(Database.scan_table(conn, info, batch=batch))
            assert sorted(doc_id for doc_id, _ in rows) == sorted(ids), batch
            assert [doc_id for doc_id, _ in rows] == sorted(ids), "by_id order"


def test_creation_time_order_and_documents(db: Database) -> None:
    ids = _insert(db, 7)
    with db.storage_snapshot() as (conn, catalog):
        info = catalog.table("items")
        assert info is not None
        rows = list(Database.scan_table(conn, info, BY_CREATION_TIME, batch=2))
    assert [doc_id for doc_id, _ in rows] == ids
    assert [from_json_bytes(raw)["n"] for _, raw in rows] == [float(i) for i in range(7)]


def test_the_snapshot_does_not_see_later_commits(db: Database) -> None:
    _insert(db, 3)
    with db.storage_snapshot() as (conn, catalog):
        _insert(db, 2)
        info = catalog.table("items")
        assert info is not None
        assert len(list(Database.scan_table(conn, info))) == 3
