"""Per-transaction and per-document limits (semantics §1.5, §13). Each error changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import write_functions
from stores import open_store
from syncline.application import Application
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Limits, Transaction
from syncline.errors import LimitExceeded

MakeDb = Callable[..., Database]


@pytest.fixture
def make_db(tmp_path: Path, clock: ManualClock) -> Iterator[MakeDb]:
    made: list[Database] = []

    def make(**limits: int) -> Database:
        database = Database(
            open_store(str(tmp_path / f"limits{len(made)}.sqlite3"), durability="off"),
            clock=clock,
            limits=Limits(**limits),
        )
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()


def insert_each(db: Database, docs: list[dict[str, Any]], table: str = "t") -> list[str]:
    """One mutation per document (so that writing stays under small write limits)."""
    return [db.write_sync(lambda tx, d=d: tx.insert(table, d)).value for d in docs]


def snapshot(db: Database, table: str = "t") -> list[dict[str, Any]]:
    return db.run_read(lambda tx: Query(tx, table).collect()).value


def expect_limit(code: str, fn: Callable[[], Any]) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        fn()
    assert info.value.code == code
    return info.value


# ---------------------------------------------------------------------- reads


def test_too_many_documents_read(make_db: MakeDb) -> None:
    db = make_db(max_docs_read=5)
    ids = insert_each(db, [{"i": float(i)} for i in range(6)])
    # Exactly at the limit is fine.
    assert len(db.run_read(lambda tx: Query(tx, "t").take(5)).value) == 5
    error = expect_limit(
        "TooManyDocumentsRead", lambda: db.run_read(lambda tx: Query(tx, "t").collect())
    )
    assert "5" in error.message
    expect_limit("TooManyDocumentsRead", lambda: db.run_read(lambda tx: [tx.get(i) for i in ids]))


def test_rows_rejected_by_filters_count_as_read(make_db: MakeDb) -> None:
    db = make_db(max_docs_read=5)
    insert_each(db, [{"i": float(i)} for i in range(6)])
    expect_limit(
        "TooManyDocumentsRead",
        lambda: db.run_read(
            lambda tx: Query(tx, "t").filter(lambda f: f.eq(f.field("i"), 5)).first()
        ),
    )


def test_too_many_bytes_read(make_db: MakeDb) -> None:
    db = make_db(max_bytes_read=1000)
    insert_each(db, [{"blob": "x" * 300} for _ in range(4)])
    assert len(db.run_read(lambda tx: Query(tx, "t").take(2)).value) == 2
    expect_limit("TooManyBytesRead", lambda: db.run_read(lambda tx: Query(tx, "t").collect()))


def test_too_many_index_ranges(make_db: MakeDb) -> None:
    db = make_db(max_read_intervals=3)
    ids = insert_each(db, [{} for _ in range(4)])
    assert db.run_read(lambda tx: [tx.get(i) for i in ids[:3]]).value[2] is not None
    expect_limit("TooManyReads", lambda: db.run_read(lambda tx: [tx.get(i) for i in ids]))

    def queries(tx: Transaction) -> None:
        for _ in range(4):
            Query(tx, "t").first()

    expect_limit("TooManyReads", lambda: db.run_read(queries))

    def mixed(tx: Transaction) -> None:
        tx.get(ids[0])
        Query(tx, "t").first()
        Query(tx, "missing_table").collect()
        tx.get(ids[1])

    expect_limit("TooManyReads", lambda: db.run_read(mixed))


def test_read_limit_in_a_mutation_writes_nothing(make_db: MakeDb) -> None:
    db = make_db(max_docs_read=3)
    insert_each(db, [{"i": float(i)} for i in range(3)])

    def body(tx: Transaction) -> None:
        tx.insert("t", {"i": 99.0})
        Query(tx, "t").collect()

    commits: list[Any] = []
    db.add_commit_listener(commits.extend)
    expect_limit("TooManyDocumentsRead", lambda: db.write_sync(body))
    assert len(db.run_read(lambda tx: Query(tx, "t").take(3)).value) == 3
    assert db.run_read(lambda tx: Query(tx, "t").order("desc").first()).value["i"] == 2.0
    assert commits == []


# ---------------------------------------------------------------------- writes


def test_too_many_writes(make_db: MakeDb) -> None:
    db = make_db(max_docs_written=3)
    db.write_sync(lambda tx: [tx.insert("t", {}) for _ in range(3)])
    error = expect_limit(
        "TooManyWrites", lambda: db.write_sync(lambda tx: [tx.insert("t", {}) for _ in range(4)])
    )
    assert "3" in error.message
    assert len(snapshot(db)) == 3


def test_rewriting_one_document_counts_once(make_db: MakeDb) -> None:
    db = make_db(max_docs_written=2)
    doc_id = db.write_sync(lambda tx: tx.insert("t", {"n": 0.0})).value

    def body(tx: Transaction) -> None:
        for n in range(10):
            tx.patch(doc_id, {"n": float(n + 1)})
        tx.insert("t", {})

    db.write_sync(body)
    assert db.run_read(lambda tx: tx.get(doc_id)).value["n"] == 10.0


def test_deletes_count_as_writes(make_db: MakeDb) -> None:
    db = make_db(max_docs_written=2)
    ids = insert_each(db, [{} for _ in range(3)])
    expect_limit("TooManyWrites", lambda: db.write_sync(lambda tx: [tx.delete(i) for i in ids]))
    assert len(snapshot(db)) == 3


def test_too_many_bytes_written(make_db: MakeDb) -> None:
    db = make_db(max_bytes_written=1000)
    db.write_sync(lambda tx: tx.insert("t", {"blob": "x" * 500}))
    expect_limit(
        "TooManyBytesWritten",
        lambda: db.write_sync(lambda tx: [tx.insert("t", {"blob": "x" * 400}) for _ in range(3)]),
    )
    assert len(snapshot(db)) == 1


# ---------------------------------------------------------------------- documents


def test_document_over_one_mebibyte(db: Database) -> None:
    # Size counts the system fields too: 2 + (3+1+34 for _id) + (13+1+9 for _creationTime)
    # + (1+1 + 2+n for "s") = 67 + n bytes with a 32-character id.
    doc_id = db.write_sync(lambda tx: tx.insert("big", {"s": "x" * ((1 << 20) - 67)})).value
    assert len(doc_id) == 32
    assert len(db.run_read(lambda tx: tx.get(doc_id)).value["s"]) == (1 << 20) - 67
    error = expect_limit(
        "DocumentTooLarge",
        lambda: db.write_sync(lambda tx: tx.insert("big", {"s": "x" * ((1 << 20) - 66)})),
    )
    assert "1 MiB" in error.message
    assert len(snapshot(db, "big")) == 1


def test_patch_past_one_mebibyte_changes_nothing(db: Database) -> None:
    doc_id = db.write_sync(lambda tx: tx.insert("big", {"a": "x" * 600_000})).value
    expect_limit(
        "DocumentTooLarge",
        lambda: db.write_sync(lambda tx: tx.patch(doc_id, {"b": "y" * 600_000})),
    )
    assert "b" not in db.run_read(lambda tx: tx.get(doc_id)).value


def test_oversized_insert_into_a_new_table_leaves_no_table(db: Database) -> None:
    expect_limit(
        "DocumentTooLarge",
        lambda: db.write_sync(lambda tx: tx.insert("brand_new", {"s": b"\x00" * (1 << 20)})),
    )
    assert db.catalog.table("brand_new") is None


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = {"x": value}
    return value


def test_nesting_limit(db: Database) -> None:
    # The document itself is one level: a field nested 15 deep makes 16.
    ok = db.write_sync(lambda tx: tx.insert("deep", {"v": nested(15)})).value
    assert db.run_read(lambda tx: tx.get(ok)).value["v"] == nested(15)
    expect_limit(
        "NestingTooDeep", lambda: db.write_sync(lambda tx: tx.insert("deep", {"v": nested(16)}))
    )
    expect_limit(
        "NestingTooDeep",
        lambda: db.write_sync(
            lambda tx: tx.insert("deep", {"v": [[[[[[[[[[[[[[[[1.0]]]]]]]]]]]]]]]]})
        ),
    )
    expect_limit(
        "NestingTooDeep", lambda: db.write_sync(lambda tx: tx.patch(ok, {"v": nested(16)}))
    )
    assert len(snapshot(db, "deep")) == 1
    assert db.run_read(lambda tx: tx.get(ok)).value["v"] == nested(15)


def test_limit_error_rolls_back_earlier_writes_of_the_mutation(db: Database) -> None:
    keep = db.write_sync(lambda tx: tx.insert("t", {"n": 1.0})).value

    def body(tx: Transaction) -> None:
        tx.patch(keep, {"n": 2.0})
        tx.insert("t", {"n": 3.0})
        tx.insert("t", {"big": "x" * (1 << 20)})

    expect_limit("DocumentTooLarge", lambda: db.write_sync(body))
    docs = snapshot(db)
    assert [d["n"] for d in docs] == [1.0]


# ---------------------------------------------------------------------- through functions


def test_limit_errors_reach_the_caller_of_a_function(tmp_path: Path, clock: ManualClock) -> None:
    functions = write_functions(
        tmp_path / "functions",
        {
            "bulk.py": """
                from syncline import mutation, query, v

                @mutation(args={"n": v.number()})
                def add(ctx, n):
                    for i in range(int(n)):
                        ctx.db.insert("t", {"i": i})

                @query
                def everything(ctx):
                    return len(ctx.db.query("t").collect())
            """
        },
    )
    database = Database(
        open_store(str(tmp_path / "app.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_docs_written=4, max_docs_read=6),
    )
    with Application(database, functions, clock=clock) as app:
        app.load()
        assert app.executor.mutation_sync("bulk:add", {"n": 4}).ok
        failed = app.executor.mutation_sync("bulk:add", {"n": 5})
        assert isinstance(failed.error, LimitExceeded)
        assert failed.error.code == "TooManyWrites"
        assert app.executor.query_sync("bulk:everything", {}).value == 4
        app.executor.mutation_sync("bulk:add", {"n": 3})
        too_many = app.executor.query_sync("bulk:everything", {})
        assert isinstance(too_many.error, LimitExceeded)
        assert too_many.error.code == "TooManyDocumentsRead"
