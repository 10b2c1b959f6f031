"""Server-side pagination (semantics §3.6): cursors, end cursors, limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeBackend
from stores import open_store
from syncline import define_schema, define_table, v
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Limits, Transaction
from syncline.errors import InvalidCursor, InvalidQuery, InvalidValue, LimitExceeded

SCHEMA = define_schema(
    {
        "items": define_table({"v": v.number(), "g": v.optional(v.string())})
        .index("by_v", ["v"])
        .index("by_g", ["g", "v"]),
    }
)

Build = Callable[[Transaction], Query]


@pytest.fixture
def pdb(db: Database) -> Database:
    db.apply_schema(SCHEMA)
    return db


def insert(db: Database, docs: list[dict[str, Any]]) -> list[str]:
    return db.write_sync(lambda tx: [tx.insert("items", d) for d in docs]).value


def delete(db: Database, ids: list[str]) -> None:
    db.write_sync(lambda tx: [tx.delete(i) for i in ids])


def page(db: Database, build: Build, **options: Any) -> dict[str, Any]:
    opts = {"cursor": None, **options}
    return db.run_read(lambda tx: build(tx).paginate(opts)).value


def by_creation(tx: Transaction) -> Query:
    return Query(tx, "items")


def by_v(tx: Transaction) -> Query:
    return Query(tx, "items").with_index("by_v")


def values(result: dict[str, Any]) -> list[float]:
    return [d["v"] for d in result["page"]]


def all_pages(db: Database, build: Build, n: int, **options: Any) -> list[dict[str, Any]]:
    pages = []
    cursor = None
    for _ in range(1000):
        result = page(db, build, numItems=n, cursor=cursor, **options)
        pages.append(result)
        if result["isDone"]:
            return pages
        cursor = result["continueCursor"]
    raise AssertionError("pagination never finished")


def test_first_page(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(10)])
    result = page(pdb, by_creation, numItems=3)
    assert values(result) == [0.0, 1.0, 2.0]
    assert result["isDone"] is False
    assert isinstance(result["continueCursor"], str)
    assert "pageStatus" not in result


def test_pages_until_done(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(10)])
    pages = all_pages(pdb, by_creation, 3)
    assert [values(p) for p in pages] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [p["isDone"] for p in pages] == [False, False, False, True]


def test_exact_multiple_ends_with_an_empty_page(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(6)])
    pages = all_pages(pdb, by_creation, 3)
    assert [values(p) for p in pages][-1] == []
    assert sum(len(p["page"]) for p in pages) == 6
    done = pages[-1]
    # The end cursor keeps answering "done, nothing more".
    again = page(pdb, by_creation, numItems=3, cursor=done["continueCursor"])
    assert again == {"page": [], "isDone": True, "continueCursor": done["continueCursor"]}


def test_empty_table(pdb: Database) -> None:
    result = page(pdb, by_creation, numItems=5)
    assert result["page"] == [] and result["isDone"] is True


def test_continue_cursor_resumes_exactly(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(10)])
    first = page(pdb, by_v, numItems=4)
    second = page(pdb, by_v, numItems=4, cursor=first["continueCursor"])
    assert values(second) == [4.0, 5.0, 6.0, 7.0]
    # The same cursor gives the same page again.
    assert page(pdb, by_v, numItems=4, cursor=first["continueCursor"]) == second


def test_desc_pagination(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(7)])
    pages = all_pages(pdb, lambda tx: Query(tx, "items").with_index("by_v").order("desc"), 3)
    assert [values(p) for p in pages] == [[6, 5, 4], [3, 2, 1], [0]]
    pages = all_pages(pdb, lambda tx: Query(tx, "items").order("desc"), 5)
    assert [values(p) for p in pages] == [[6, 5, 4, 3, 2], [1, 0]]


def test_with_index_range_and_paginate(pdb: Database) -> None:
    insert(pdb, [{"v": float(i), "g": "ab"[i % 2]} for i in range(12)])

    def only_b(tx: Transaction) -> Query:
        return Query(tx, "items").with_index("by_g", lambda r: r.eq("g", "b").gt("v", 2))

    pages = all_pages(pdb, only_b, 2)
    assert [values(p) for p in pages] == [[3, 5], [7, 9], [11]]


def test_filter_and_paginate(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(20)])

    def evens(tx: Transaction) -> Query:
        return Query(tx, "items").filter(lambda f: f.eq(f.mod(f.field("v"), 2), 0))

    pages = all_pages(pdb, evens, 4)
    assert [x for p in pages for x in values(p)] == [float(i) for i in range(0, 20, 2)]
    assert all(len(p["page"]) == 4 for p in pages[:-1])


def test_pages_survive_inserts_and_deletes_between_calls(pdb: Database) -> None:
    ids = insert(pdb, [{"v": float(i * 10)} for i in range(10)])  # 0, 10, ..., 90
    first = page(pdb, by_v, numItems=3)
    assert values(first) == [0.0, 10.0, 20.0]
    # Between calls: delete a row already returned and one not yet returned,
    # insert rows before the cursor (never returned), at the cursor and after it.
    delete(pdb, [ids[1], ids[5]])
    insert(pdb, [{"v": 5.0}, {"v": 20.0}, {"v": 25.0}, {"v": 95.0}])
    seen = values(first)
    seen_ids = [d["_id"] for d in first["page"]]
    cursor = first["continueCursor"]
    while True:
        result = page(pdb, by_v, numItems=3, cursor=cursor)
        seen += values(result)
        seen_ids += [d["_id"] for d in result["page"]]
        if result["isDone"]:
            break
        cursor = result["continueCursor"]
    assert len(seen_ids) == len(set(seen_ids))  # no duplicates
    # Every row that existed throughout appears exactly once...
    for v_ in (0.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 90.0):
        assert v_ in seen
    assert seen.count(0.0) == 1 and seen.count(30.0) == 1
    # ...deleted rows after the cursor never appear, rows inserted before it neither.
    assert 50.0 not in seen
    assert 5.0 not in seen
    # The new row equal to the cursor's value sorts after it (later creation time).
    assert seen.count(20.0) == 2
    assert 25.0 in seen and 95.0 in seen
    assert seen == sorted(seen)


def test_cursor_still_works_after_its_row_is_deleted(pdb: Database) -> None:
    ids = insert(pdb, [{"v": float(i)} for i in range(6)])
    first = page(pdb, by_v, numItems=3)
    delete(pdb, [ids[2]])
    rest = page(pdb, by_v, numItems=10, cursor=first["continueCursor"])
    assert values(rest) == [3.0, 4.0, 5.0]


def test_end_cursor_returns_exactly_up_to_it(pdb: Database) -> None:
    insert(pdb, [{"v": float(i * 10)} for i in range(10)])
    first = page(pdb, by_v, numItems=3)
    second = page(pdb, by_v, numItems=3, cursor=first["continueCursor"])
    c1, c2 = first["continueCursor"], second["continueCursor"]

    # numItems is ignored with an end cursor; the page is (cursor, endCursor].
    replay = page(pdb, by_v, numItems=1, endCursor=c1)
    assert values(replay) == [0.0, 10.0, 20.0]
    assert replay["continueCursor"] == c1
    assert replay["isDone"] is False

    # Inserts inside the page make it grow; inserts past its end do not.
    new_ids = insert(pdb, [{"v": 15.0}, {"v": 45.0}, {"v": 200.0}])
    grown = page(pdb, by_v, numItems=3, endCursor=c1)
    assert values(grown) == [0.0, 10.0, 15.0, 20.0]
    assert values(page(pdb, by_v, numItems=3, cursor=c1, endCursor=c2)) == [30.0, 40.0, 45.0, 50.0]

    # Deletes make it shrink.
    delete(pdb, [new_ids[0]])
    doomed = [d["_id"] for d in grown["page"] if d["v"] == 10.0]
    delete(pdb, doomed)
    shrunk = page(pdb, by_v, numItems=3, endCursor=c1)
    assert values(shrunk) == [0.0, 20.0]
    assert shrunk["continueCursor"] == c1


def test_end_cursor_at_the_end(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(4)])
    pages = all_pages(pdb, by_v, 3)
    end = pages[-1]["continueCursor"]
    insert(pdb, [{"v": 100.0}])
    result = page(pdb, by_v, numItems=1, cursor=pages[0]["continueCursor"], endCursor=end)
    assert values(result) == [3.0, 100.0]
    assert result["isDone"] is True
    assert result["continueCursor"] == end


def test_end_cursor_in_desc_order(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(6)])

    def desc(tx: Transaction) -> Query:
        return Query(tx, "items").with_index("by_v").order("desc")

    first = page(pdb, desc, numItems=2)
    assert values(first) == [5.0, 4.0]
    insert(pdb, [{"v": 4.5}, {"v": 3.5}])
    assert values(page(pdb, desc, numItems=2, endCursor=first["continueCursor"])) == [5.0, 4.5, 4.0]
    assert values(page(pdb, desc, numItems=2, cursor=first["continueCursor"])) == [3.5, 3.0]


@pytest.mark.parametrize(
    "other",
    [
        lambda tx: Query(tx, "items"),  # another index
        lambda tx: Query(tx, "items").with_index("by_v").order("desc"),
        lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.gt("v", 1)),
        lambda tx: Query(tx, "items").with_index("by_v").filter(lambda f: f.eq(f.field("v"), 1)),
        lambda tx: Query(tx, "other"),
    ],
)
def test_cursor_from_another_query(pdb: Database, other: Build) -> None:
    insert(pdb, [{"v": float(i)} for i in range(5)])
    pdb.write_sync(lambda tx: tx.insert("other", {}))
    cursor = page(pdb, by_v, numItems=2)["continueCursor"]
    with pytest.raises(InvalidCursor):
        page(pdb, other, numItems=2, cursor=cursor)
    with pytest.raises(InvalidCursor):
        page(pdb, other, numItems=2, endCursor=cursor)
    done = all_pages(pdb, by_v, 10)[-1]["continueCursor"]
    with pytest.raises(InvalidCursor):
        page(pdb, other, numItems=2, cursor=done)


def test_cursor_is_invalid_after_the_index_changes(pdb: Database) -> None:
    insert(pdb, [{"v": float(i), "g": "x"} for i in range(5)])
    cursor = page(pdb, lambda tx: Query(tx, "items").with_index("by_g"), numItems=2)[
        "continueCursor"
    ]
    pdb.apply_schema(
        define_schema(
            {
                "items": define_table({"v": v.number(), "g": v.optional(v.string())}).index(
                    "by_g", ["g"]
                )
            }
        )
    )
    with pytest.raises(InvalidCursor):
        page(pdb, lambda tx: Query(tx, "items").with_index("by_g"), numItems=2, cursor=cursor)


@pytest.mark.parametrize("garbage", ["", "garbage", "!!!", "é", "AAAA", 42, ["x"]])
def test_garbage_cursor(pdb: Database, garbage: Any) -> None:
    insert(pdb, [{"v": 1.0}])
    with pytest.raises(InvalidCursor):
        page(pdb, by_v, numItems=2, cursor=garbage)


def test_num_items_zero(pdb: Database) -> None:
    with pytest.raises(InvalidValue) as info:
        page(pdb, by_v, numItems=0)
    assert info.value.code == "NoDocumentsForPagination"


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True, 32_001])
def test_num_items_must_be_a_page_size(pdb: Database, bad: Any) -> None:
    with pytest.raises(InvalidValue):
        page(pdb, by_v, numItems=bad)


def test_num_items_as_float(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(5)])
    assert values(page(pdb, by_v, numItems=2.0)) == [0.0, 1.0]


def test_options_must_be_a_dict(pdb: Database) -> None:
    with pytest.raises(InvalidValue):
        pdb.run_read(lambda tx: by_v(tx).paginate(None))  # type: ignore[arg-type]


def test_only_one_paginate_per_transaction(pdb: Database) -> None:
    insert(pdb, [{"v": 1.0}])

    def twice(tx: Transaction) -> None:
        by_v(tx).paginate({"numItems": 1, "cursor": None})
        Query(tx, "other").paginate({"numItems": 1, "cursor": None})

    with pytest.raises(InvalidQuery) as info:
        pdb.run_read(twice)
    assert info.value.code == "MultiplePaginatedDatabaseQueries"
    # Each transaction gets its own allowance.
    assert values(page(pdb, by_v, numItems=1)) == [1.0]


def test_maximum_rows_read_stops_early(pdb: Database) -> None:
    insert(pdb, [{"v": float(i)} for i in range(20)])

    def rare(tx: Transaction) -> Query:
        return (
            Query(tx, "items").with_index("by_v").filter(lambda f: f.eq(f.mod(f.field("v"), 5), 0))
        )

    def rows_read(cursor: Any) -> tuple[dict[str, Any], int]:
        def body(tx: Transaction) -> tuple[dict[str, Any], int]:
            result = rare(tx).paginate({"numItems": 10, "cursor": cursor, "maximumRowsRead": 4})
            return result, tx.docs_read

        return pdb.run_read(body).value

    first, scanned = rows_read(None)
    assert scanned == 4
    assert values(first) == [0.0]
    assert first["isDone"] is False
    collected = values(first)
    cursor = first["continueCursor"]
    for _ in range(10):
        result, scanned = rows_read(cursor)
        assert scanned <= 4
        collected += values(result)
        if result["isDone"]:
            break
        cursor = result["continueCursor"]
    assert collected == [0.0, 5.0, 10.0, 15.0]


def test_read_limit_inside_paginate_splits_instead_of_failing(
    tmp_path: Path, clock: ManualClock
) -> None:
    with Database(
        open_store(str(tmp_path / "small.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_docs_read=10),
    ) as small:
        small.apply_schema(SCHEMA)
        for chunk in range(4):
            insert(small, [{"v": float(chunk * 5 + i)} for i in range(5)])
        first = page(small, by_v, numItems=100)
        assert first["pageStatus"] == "SplitRequired"
        assert first["isDone"] is False
        assert 0 < len(first["page"]) <= 10
        # The page is resumable: all rows arrive, in order, exactly once.
        collected = values(first)
        cursor = first["continueCursor"]
        while True:
            result = page(small, by_v, numItems=100, cursor=cursor)
            collected += values(result)
            if result["isDone"]:
                break
            cursor = result["continueCursor"]
        assert collected == [float(i) for i in range(20)]


def test_split_recommended_gives_a_split_cursor(tmp_path: Path, clock: ManualClock) -> None:
    with Database(
        open_store(str(tmp_path / "split.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_docs_read=100),
    ) as small:
        small.apply_schema(SCHEMA)
        insert(small, [{"v": float(i)} for i in range(90)])
        result = page(small, by_v, numItems=80)
        assert len(result["page"]) == 80
        assert result["pageStatus"] == "SplitRecommended"
        split = result["splitCursor"]
        left = page(small, by_v, numItems=1, endCursor=split)
        right = page(small, by_v, numItems=1, cursor=split, endCursor=result["continueCursor"])
        assert values(left) + values(right) == values(result)
        assert left["page"] and right["page"]


def test_bytes_read_limit_inside_paginate_splits_instead_of_failing(
    tmp_path: Path, clock: ManualClock
) -> None:
    with Database(
        open_store(str(tmp_path / "bytes.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_bytes_read=2_000),
    ) as small:
        small.apply_schema(define_schema({"items": define_table(v.any()).index("by_v", ["v"])}))
        for i in range(12):
            insert(small, [{"v": float(i), "pad": "x" * 300}])
        first = page(small, by_v, numItems=100)
        assert first["pageStatus"] == "SplitRequired"
        assert first["isDone"] is False
        assert 0 < len(first["page"]) < 12
        collected = values(first)
        cursor = first["continueCursor"]
        for _ in range(20):
            result = page(small, by_v, numItems=100, cursor=cursor)
            collected += values(result)
            if result["isDone"]:
                break
            cursor = result["continueCursor"]
        assert collected == [float(i) for i in range(12)]
        # Outside of paginate, the same read is an error.
        with pytest.raises(LimitExceeded) as info:
            small.run_read(lambda tx: by_v(tx).collect())
        assert info.value.code == "TooManyBytesRead"


def test_a_single_row_over_the_read_limit_is_still_an_error(
    tmp_path: Path, clock: ManualClock
) -> None:
    with Database(
        open_store(str(tmp_path / "one.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_bytes_read=100),
    ) as small:
        small.write_sync(lambda tx: tx.insert("items", {"pad": "x" * 500}))
        with pytest.raises(LimitExceeded) as info:
            page(small, by_creation, numItems=10)
        assert info.value.code == "TooManyBytesRead"


PAGES = """
from syncline import query, v

OPTS = v.object({"numItems": v.number(), "cursor": v.union(v.string(), v.null())})


@query(args={"opts": OPTS})
def one(ctx, opts):
    return ctx.db.query("items").order("desc").paginate(opts)


@query(args={"opts": OPTS})
def two(ctx, opts):
    ctx.db.query("items").paginate(opts)
    return ctx.db.query("other").paginate(opts)
"""


def test_paginate_in_a_query_function(make_backend: MakeBackend) -> None:
    t = make_backend({"pages.py": PAGES})
    t.run(lambda ctx: [ctx.db.insert("items", {"v": float(i)}) for i in range(5)])
    first = t.query("pages:one", {"opts": {"numItems": 2, "cursor": None}})
    assert values(first) == [4.0, 3.0]
    rest = t.query("pages:one", {"opts": {"numItems": 10, "cursor": first["continueCursor"]}})
    assert values(rest) == [2.0, 1.0, 0.0]
    assert rest["isDone"] is True
    with pytest.raises(InvalidQuery) as info:
        t.query("pages:two", {"opts": {"numItems": 2, "cursor": None}})
    assert info.value.code == "MultiplePaginatedDatabaseQueries"
    with pytest.raises(InvalidCursor):
        t.query("pages:one", {"opts": {"numItems": 2, "cursor": "bogus"}})
