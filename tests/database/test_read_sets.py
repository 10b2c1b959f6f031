"""Read sets and write sets (semantics §2.2, design §3.1-§3.2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from syncline import define_schema, define_table, v
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.reads import Interval, ReadSet, point
from syncline.database.transaction import Transaction
from syncline.database.writes import Commit, WriteSet
from syncline.values.ids import new_id
from syncline.values.keys import encode_key

SCHEMA = define_schema(
    {"items": define_table({"n": v.number(), "g": v.optional(v.string())}).index("by_n", ["n"])}
)


@pytest.fixture
def rdb(db: Database) -> Database:
    db.apply_schema(SCHEMA)
    return db


def insert(db: Database, docs: list[dict[str, Any]], table: str = "items") -> list[str]:
    return db.write_sync(lambda tx: [tx.insert(table, d) for d in docs]).value


def read_set(db: Database, fn: Callable[[Transaction], Any]) -> ReadSet:
    return db.run_read(fn).read_set


def writes(db: Database, fn: Callable[[Transaction], Any]) -> WriteSet:
    return db.write_sync(fn).writes


def insert_writes(db: Database, doc: dict[str, Any], table: str = "items") -> WriteSet:
    return writes(db, lambda tx: tx.insert(table, doc))


def intervals(rs: ReadSet) -> dict[str, list[Interval]]:
    return dict(rs.items())


@pytest.fixture
def tens(rdb: Database) -> list[str]:
    return insert(rdb, [{"n": float(n)} for n in (10, 20, 30, 40, 50)])


# ---------------------------------------------------------------------- get


def test_get_records_a_point_on_by_id(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: tx.get(tens[0]))
    assert intervals(rs) == {"items.by_id": [point(encode_key((tens[0],)))]}
    assert rs.interval_count() == 1


def test_get_of_a_missing_document_still_records_its_point(rdb: Database, tens: list[str]) -> None:
    ghost = new_id(rdb.catalog.table("items").number)
    rs = read_set(rdb, lambda tx: tx.get(ghost))
    assert intervals(rs) == {"items.by_id": [point(encode_key((ghost,)))]}


def test_a_get_conflicts_only_with_writes_to_that_document(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: tx.get(tens[2]))
    assert not rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[3], {"n": 31.0})).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 30.0}).keys)
    assert rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[2], {"g": "x"})).keys)
    assert rs.overlaps(writes(rdb, lambda tx: tx.delete(tens[2])).keys)


# ---------------------------------------------------------------------- index scans


def test_take_records_up_to_and_including_the_last_row(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").with_index("by_n").take(2))
    (interval,) = intervals(rs)["items.by_n"]
    doc20 = rdb.run_read(lambda tx: tx.get(tens[1])).value
    assert interval.start == b""
    assert interval.end == rdb.catalog.table("items").indexes["by_n"].key_of(doc20) + b"\x00"
    # Keys before the 2nd row (or before the range start) are inside; after it, outside.
    assert rs.overlaps(insert_writes(rdb, {"n": 15.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 5.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 20.0}).keys)  # later _creationTime
    assert not rs.overlaps(insert_writes(rdb, {"n": 25.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 60.0}).keys)


def test_take_conflicts_with_old_and_new_keys_of_updates(rdb: Database, tens: list[str]) -> None:
    def take2(tx: Transaction) -> Any:
        return Query(tx, "items").with_index("by_n").take(2)

    rs = read_set(rdb, take2)
    # A row after the read part moving after: no conflict.
    assert not rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[3], {"n": 45.0})).keys)
    # A row after moving into the read part: its new key conflicts.
    assert rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[4], {"n": 1.0})).keys)
    rs = read_set(rdb, take2)  # now 1 and 10
    # A row inside moving out: its old key conflicts.
    assert rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[0], {"n": 99.0})).keys)
    # Deleting a row that was read conflicts.
    rs = read_set(rdb, take2)
    first = rdb.run_read(take2).value[0]
    assert rs.overlaps(writes(rdb, lambda tx: tx.delete(first["_id"])).keys)


def test_desc_take_records_from_the_end_down_to_the_last_row(
    rdb: Database, tens: list[str]
) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").with_index("by_n").order("desc").take(2))
    (interval,) = intervals(rs)["items.by_n"]
    assert interval.end == b"\xff"
    assert rs.overlaps(insert_writes(rdb, {"n": 45.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 100.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 35.0}).keys)
    # Same value as the last row read but created later: sorts after it, so inside.
    assert rs.overlaps(insert_writes(rdb, {"n": 40.0}).keys)


def test_default_order_take_ignores_later_inserts(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").take(2))
    assert set(intervals(rs)) == {"items.by_creation_time"}
    assert not rs.overlaps(insert_writes(rdb, {"n": 0.0}).keys)
    assert not rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[4], {"n": 0.0})).keys)
    assert rs.overlaps(writes(rdb, lambda tx: tx.patch(tens[1], {"g": "changed"})).keys)


def test_take_zero_records_nothing(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").take(0))
    assert rs.interval_count() == 0


def test_full_scan_records_the_whole_range(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").with_index("by_n").collect())
    assert intervals(rs) == {"items.by_n": [Interval(b"", b"\xff")]}
    assert rs.overlaps(insert_writes(rdb, {"n": 1000.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": -1000.0}).keys)


def test_take_past_the_end_records_the_whole_range(rdb: Database, tens: list[str]) -> None:
    rs = read_set(rdb, lambda tx: Query(tx, "items").with_index("by_n").take(50))
    assert intervals(rs) == {"items.by_n": [Interval(b"", b"\xff")]}


def test_range_scan_records_only_its_range(rdb: Database, tens: list[str]) -> None:
    rs = read_set(
        rdb, lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 30)).collect()
    )
    assert rs.overlaps(insert_writes(rdb, {"n": 30.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 29.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 31.0}).keys)
    rs = read_set(
        rdb,
        lambda tx: (
            Query(tx, "items").with_index("by_n", lambda r: r.gt("n", 20).lte("n", 40)).collect()
        ),
    )
    assert not rs.overlaps(insert_writes(rdb, {"n": 20.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 40.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 40.5}).keys)


def test_empty_range_scan_still_conflicts_with_inserts_into_it(
    rdb: Database, tens: list[str]
) -> None:
    rs = read_set(
        rdb, lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 33)).first()
    )
    assert rs.interval_count() == 1
    assert not rs.overlaps(insert_writes(rdb, {"n": 34.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 33.0}).keys)


def test_filters_do_not_narrow_the_read_set(rdb: Database, tens: list[str]) -> None:
    def first_30(tx: Transaction) -> Any:
        return (
            Query(tx, "items").with_index("by_n").filter(lambda f: f.eq(f.field("n"), 30)).first()
        )

    rs = read_set(rdb, first_30)
    # Rows 10 and 20 were scanned and rejected: still read. A new 15 conflicts,
    # although the filter would reject it too.
    assert rs.overlaps(insert_writes(rdb, {"n": 15.0}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 35.0}).keys)
    rs = read_set(
        rdb,
        lambda tx: Query(tx, "items").filter(lambda f: f.eq(f.field("n"), -1)).collect(),
    )
    assert intervals(rs) == {"items.by_creation_time": [Interval(b"", b"\xff")]}
    assert rs.overlaps(insert_writes(rdb, {"n": 77.0}).keys)


def test_unique_reads_up_to_the_second_row(rdb: Database, tens: list[str]) -> None:
    insert(rdb, [{"n": 20.0}])
    with pytest.raises(Exception, match="more than one"):
        rdb.run_read(
            lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 20)).unique()
        )
    rs = read_set(
        rdb, lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 30)).unique()
    )
    # Only one row: the whole range was read, so a second 30 would conflict.
    assert rs.overlaps(insert_writes(rdb, {"n": 30.0}).keys)


def test_missing_table_read_conflicts_with_its_creation(rdb: Database) -> None:
    for consume in (
        lambda qq: qq.collect(),
        lambda qq: qq.first(),
        lambda qq: qq.order("desc").take(3),
    ):
        rs = read_set(rdb, lambda tx, consume=consume: consume(Query(tx, "ghost")))
        assert "ghost.by_creation_time" in intervals(rs)
    rs = read_set(rdb, lambda tx: Query(tx, "ghost").collect())
    by_id = read_set(rdb, lambda tx: Query(tx, "ghost").with_index("by_id").first())
    assert rdb.catalog.table("ghost") is None
    created = insert_writes(rdb, {"x": 1.0}, table="ghost")
    assert rs.overlaps(created.keys)
    assert by_id.overlaps(created.keys)
    assert not rs.overlaps(insert_writes(rdb, {"x": 1.0}, table="elsewhere").keys)


def test_pagination_reads_exactly_its_page(rdb: Database, tens: list[str]) -> None:
    def by_n(tx: Transaction) -> Query:
        return Query(tx, "items").with_index("by_n")

    first = rdb.run_read(lambda tx: by_n(tx).paginate({"numItems": 2, "cursor": None})).value
    result = rdb.run_read(
        lambda tx: by_n(tx).paginate({"numItems": 2, "cursor": first["continueCursor"]})
    )
    assert [d["n"] for d in result.value["page"]] == [30.0, 40.0]
    rs = result.read_set
    assert not rs.overlaps(insert_writes(rdb, {"n": 15.0}).keys)  # before the cursor
    # Same value as the cursor row, created later: it sorts after the cursor, in this page.
    assert rs.overlaps(insert_writes(rdb, {"n": 20.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 35.0}).keys)
    assert rs.overlaps(insert_writes(rdb, {"n": 40.0 - 1e-9}).keys)
    assert not rs.overlaps(insert_writes(rdb, {"n": 45.0}).keys)  # after continueCursor


def test_each_query_is_one_interval(rdb: Database, tens: list[str]) -> None:
    def body(tx: Transaction) -> None:
        Query(tx, "items").first()
        Query(tx, "items").with_index("by_n").first()
        tx.get(tens[0])
        tx.get(tens[1])

    rs = read_set(rdb, body)
    assert rs.interval_count() == 4
    assert {k: len(x) for k, x in intervals(rs).items()} == {
        "items.by_creation_time": 1,
        "items.by_n": 1,
        "items.by_id": 2,
    }


def test_mutations_report_their_read_sets(rdb: Database, tens: list[str]) -> None:
    result = rdb.write_sync(lambda tx: tx.patch(tens[0], {"n": 11.0}))
    assert "items.by_id" in intervals(result.read_set)


# ---------------------------------------------------------------------- write sets


def index_keys(db: Database, doc: dict[str, Any]) -> dict[str, bytes]:
    info = db.catalog.table("items")
    return {index.full_name: index.key_of(doc) for index in info.indexes.values()}


@pytest.fixture
def commits(rdb: Database) -> list[Commit]:
    seen: list[Commit] = []
    rdb.add_commit_listener(seen.extend)
    return seen


def test_insert_write_set_has_the_new_key_of_every_index(
    rdb: Database, commits: list[Commit]
) -> None:
    doc_id = insert(rdb, [{"n": 7.0}])[0]
    doc = rdb.run_read(lambda tx: tx.get(doc_id)).value
    (commit,) = commits
    expected = index_keys(rdb, doc)
    assert set(expected) == {"items.by_id", "items.by_creation_time", "items.by_n"}
    assert {k: set(x) for k, x in commit.writes.keys.items()} == {
        k: {key} for k, key in expected.items()
    }
    assert commit.writes.doc_ids == {doc_id}
    assert commit.writes.tables == {"items"}


def test_patch_write_set_has_old_and_new_keys(rdb: Database, commits: list[Commit]) -> None:
    doc_id = insert(rdb, [{"n": 7.0}])[0]
    old = rdb.run_read(lambda tx: tx.get(doc_id)).value
    rdb.write_sync(lambda tx: tx.patch(doc_id, {"n": 8.0}))
    new = rdb.run_read(lambda tx: tx.get(doc_id)).value
    keys = commits[-1].writes.keys
    old_keys, new_keys = index_keys(rdb, old), index_keys(rdb, new)
    for name in old_keys:
        assert set(keys[name]) == {old_keys[name], new_keys[name]}
    assert len(set(keys["items.by_n"])) == 2
    assert len(set(keys["items.by_id"])) == 1  # the id did not change


def test_delete_write_set_has_the_old_keys(rdb: Database, commits: list[Commit]) -> None:
    doc_id = insert(rdb, [{"n": 7.0}])[0]
    old = rdb.run_read(lambda tx: tx.get(doc_id)).value
    rdb.write_sync(lambda tx: tx.delete(doc_id))
    assert {k: set(x) for k, x in commits[-1].writes.keys.items()} == {
        k: {key} for k, key in index_keys(rdb, old).items()
    }
    assert commits[-1].writes.doc_ids == {doc_id}


def test_noop_and_failed_mutations_publish_nothing(rdb: Database, commits: list[Commit]) -> None:
    doc_id = insert(rdb, [{"n": 7.0}])[0]
    count = len(commits)
    result = rdb.write_sync(lambda tx: tx.patch(doc_id, {}))
    assert result.writes.is_empty()

    def failing(tx: Transaction) -> None:
        tx.insert("items", {"n": 1.0})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        rdb.write_sync(failing)
    published = [c for c in commits[count:] if not c.writes.is_empty()]
    assert published == []


def test_write_set_and_read_set_of_the_same_commit_agree(
    rdb: Database, commits: list[Commit]
) -> None:
    # What a reader saw before a commit is invalidated exactly by the commit's write set.
    ids = insert(rdb, [{"n": float(i)} for i in range(5)])
    rs = read_set(
        rdb, lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.lt("n", 2)).collect()
    )
    rdb.write_sync(lambda tx: tx.patch(ids[4], {"g": "x"}))
    assert not rs.overlaps(commits[-1].writes.keys)
    rdb.write_sync(lambda tx: tx.patch(ids[1], {"g": "x"}))
    assert rs.overlaps(commits[-1].writes.keys)
