"""The query builder: index ranges, ordering, consumers and filters (semantics §3.2-§3.5)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from syncline import UNDEFINED, Int64, define_schema, define_table, v
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.errors import InvalidQuery, InvalidValue

SCHEMA = define_schema(
    {
        "items": define_table(v.any())
        .index("by_v", ["v"])
        .index("by_abc", ["a", "b", "c"])
        .index("by_nested", ["nested.x"]),
    }
)


@pytest.fixture
def sdb(db: Database) -> Database:
    db.apply_schema(SCHEMA)
    return db


def insert_all(db: Database, table: str, docs: list[dict[str, Any]]) -> list[str]:
    return db.write_sync(lambda tx: [tx.insert(table, d) for d in docs]).value


def run(db: Database, build: Callable[[Transaction], Any]) -> Any:
    return db.run_read(build).value


def q(table: str = "items") -> Callable[[Transaction], Query]:
    return lambda tx: Query(tx, table)


def field_of(docs: list[dict[str, Any]], name: str = "v") -> list[Any]:
    return [d.get(name, UNDEFINED) for d in docs]


# ---------------------------------------------------------------------- ordering


def test_default_order_is_creation_time_ascending(sdb: Database) -> None:
    ids = insert_all(sdb, "items", [{"v": float(i)} for i in (3, 1, 2)])
    docs = run(sdb, lambda tx: Query(tx, "items").collect())
    assert [d["_id"] for d in docs] == ids
    times = [d["_creationTime"] for d in docs]
    assert times == sorted(times)


def test_order_desc_reverses(sdb: Database) -> None:
    ids = insert_all(sdb, "items", [{"v": float(i)} for i in range(5)])
    docs = run(sdb, lambda tx: Query(tx, "items").order("desc").collect())
    assert [d["_id"] for d in docs] == ids[::-1]
    asc = run(sdb, lambda tx: Query(tx, "items").order("asc").collect())
    assert [d["_id"] for d in asc] == ids


def test_order_twice_is_an_error(sdb: Database) -> None:
    with pytest.raises(InvalidQuery, match="once"):
        run(sdb, lambda tx: Query(tx, "items").order("asc").order("desc"))


@pytest.mark.parametrize("direction", ["up", "ASC", None, 1])
def test_order_needs_asc_or_desc(sdb: Database, direction: Any) -> None:
    with pytest.raises(InvalidQuery):
        run(sdb, lambda tx: Query(tx, "items").order(direction))


def test_with_index_by_id(sdb: Database) -> None:
    ids = insert_all(sdb, "items", [{} for _ in range(10)])
    docs = run(sdb, lambda tx: Query(tx, "items").with_index("by_id").collect())
    assert [d["_id"] for d in docs] == sorted(ids)
    target = ids[4]
    one = run(
        sdb,
        lambda tx: Query(tx, "items").with_index("by_id", lambda r: r.eq("_id", target)).collect(),
    )
    assert [d["_id"] for d in one] == [target]
    after = run(
        sdb,
        lambda tx: (
            Query(tx, "items").with_index("by_id", lambda r: r.gt("_id", sorted(ids)[6])).collect()
        ),
    )
    assert [d["_id"] for d in after] == sorted(ids)[7:]


def test_with_index_by_creation_time(sdb: Database) -> None:
    insert_all(sdb, "items", [{"v": float(i)} for i in range(6)])
    docs = run(sdb, lambda tx: Query(tx, "items").collect())
    pivot = docs[2]["_creationTime"]
    later = run(
        sdb,
        lambda tx: (
            Query(tx, "items")
            .with_index("by_creation_time", lambda r: r.gt("_creationTime", pivot))
            .collect()
        ),
    )
    assert field_of(later) == [3.0, 4.0, 5.0]
    upto = run(
        sdb,
        lambda tx: (
            Query(tx, "items")
            .with_index("by_creation_time", lambda r: r.lte("_creationTime", pivot))
            .order("desc")
            .collect()
        ),
    )
    assert field_of(upto) == [2.0, 1.0, 0.0]


def test_with_index_on_user_index_orders_by_fields_then_creation_time(sdb: Database) -> None:
    insert_all(sdb, "items", [{"v": 2.0, "k": 0}, {"v": 1.0, "k": 1}, {"v": 2.0, "k": 2}])
    docs = run(sdb, lambda tx: Query(tx, "items").with_index("by_v").collect())
    assert [(d["v"], d["k"]) for d in docs] == [(1.0, 1.0), (2.0, 0.0), (2.0, 2.0)]
    desc = run(sdb, lambda tx: Query(tx, "items").with_index("by_v").order("desc").collect())
    assert [(d["v"], d["k"]) for d in desc] == [(2.0, 2.0), (2.0, 0.0), (1.0, 1.0)]


def test_with_index_on_nested_field(sdb: Database) -> None:
    insert_all(
        sdb,
        "items",
        [{"nested": {"x": 2.0}, "v": "b"}, {"nested": {"x": 1.0}, "v": "a"}, {"v": "missing"}],
    )
    docs = run(sdb, lambda tx: Query(tx, "items").with_index("by_nested").collect())
    assert field_of(docs) == ["missing", "a", "b"]
    eq = run(
        sdb,
        lambda tx: (
            Query(tx, "items").with_index("by_nested", lambda r: r.eq("nested.x", 2)).collect()
        ),
    )
    assert field_of(eq) == ["b"]


# ---------------------------------------------------------------------- index range rules


@pytest.fixture
def abc(sdb: Database) -> Database:
    docs = [
        {"a": float(a), "b": float(b), "c": float(c)}
        for a in range(3)
        for b in range(3)
        for c in range(3)
    ]
    random.Random(7).shuffle(docs)
    insert_all(sdb, "items", docs)
    return sdb


def abc_range(db: Database, range_fn: Callable[[Any], Any], order: str = "asc") -> list[tuple]:
    docs = run(
        db, lambda tx: Query(tx, "items").with_index("by_abc", range_fn).order(order).collect()
    )
    return [(d["a"], d["b"], d["c"]) for d in docs]


def test_eq_on_a_prefix_in_any_call_order(abc: Database) -> None:
    in_order = abc_range(abc, lambda r: r.eq("a", 1).eq("b", 2))
    reversed_calls = abc_range(abc, lambda r: r.eq("b", 2).eq("a", 1))
    assert in_order == reversed_calls == [(1.0, 2.0, 0.0), (1.0, 2.0, 1.0), (1.0, 2.0, 2.0)]
    assert abc_range(abc, lambda r: r.eq("c", 0).eq("a", 2).eq("b", 1)) == [(2.0, 1.0, 0.0)]


def test_eq_plus_bound_on_the_next_field(abc: Database) -> None:
    assert abc_range(abc, lambda r: r.eq("a", 0).gt("b", 0).lt("b", 2)) == [
        (0.0, 1.0, 0.0),
        (0.0, 1.0, 1.0),
        (0.0, 1.0, 2.0),
    ]
    assert abc_range(abc, lambda r: r.gte("a", 2)) == sorted(
        (2.0, float(b), float(c)) for b in range(3) for c in range(3)
    )


def test_full_index_key_is_a_point(abc: Database) -> None:
    doc = run(
        abc,
        lambda tx: (
            Query(tx, "items")
            .with_index("by_abc", lambda r: r.eq("a", 1).eq("b", 1).eq("c", 1))
            .unique()
        ),
    )
    point = abc_range(
        abc,
        lambda r: (
            r.eq("a", 1)
            .eq("b", 1)
            .eq("c", 1)
            .eq("_creationTime", doc["_creationTime"])
            .eq("_id", doc["_id"])
        ),
    )
    assert point == [(1.0, 1.0, 1.0)]
    time_bound = abc_range(
        abc,
        lambda r: r.eq("a", 1).eq("b", 1).eq("c", 1).gt("_creationTime", doc["_creationTime"]),
    )
    assert time_bound == []


@pytest.mark.parametrize(
    "range_fn",
    [
        lambda r: r.eq("b", 1),  # skips a
        lambda r: r.eq("a", 1).eq("c", 1),  # gap at b
        lambda r: r.gt("b", 1),  # bound not on the first field
        lambda r: r.eq("a", 1).gt("c", 1),  # bound skips b
        lambda r: r.eq("a", 1).eq("b", 1).eq("_creationTime", 1.0),  # skips c
        lambda r: r.eq("_id", "x"),
    ],
)
def test_gaps_are_invalid_index_ranges(abc: Database, range_fn: Callable[[Any], Any]) -> None:
    with pytest.raises(InvalidQuery) as info:
        abc_range(abc, range_fn)
    assert info.value.code == "InvalidIndexRange"
    assert "by_abc" in info.value.message


def test_unknown_field_is_field_not_in_index(abc: Database) -> None:
    with pytest.raises(InvalidQuery) as info:
        abc_range(abc, lambda r: r.eq("a", 1).eq("zzz", 1))
    assert info.value.code == "FieldNotInIndex"
    assert "zzz" in info.value.message


@pytest.mark.parametrize(
    "range_fn",
    [
        lambda r: r.gt("a", 1).gte("a", 2),
        lambda r: r.lt("a", 1).lte("a", 2),
        lambda r: r.eq("a", 1).eq("a", 1),
        lambda r: r.eq("a", 1).gt("a", 0),
        lambda r: r.lt("a", 3).eq("a", 1),
    ],
)
def test_repeated_bounds_are_already_defined(abc: Database, range_fn: Callable[[Any], Any]) -> None:
    with pytest.raises(InvalidQuery) as info:
        abc_range(abc, range_fn)
    assert info.value.code == "AlreadyDefinedBound"


def test_bounds_on_two_fields(abc: Database) -> None:
    with pytest.raises(InvalidQuery) as info:
        abc_range(abc, lambda r: r.gt("a", 0).lt("b", 2))
    assert info.value.code == "BoundsOnMultipleFields"


def test_unknown_index(abc: Database) -> None:
    with pytest.raises(InvalidQuery) as info:
        run(abc, lambda tx: Query(tx, "items").with_index("by_nothing").collect())
    assert info.value.code == "IndexNotFoundError"
    assert info.value.message == "Index items.by_nothing not found."


def test_range_function_must_return_the_builder(abc: Database) -> None:
    with pytest.raises(InvalidQuery):
        run(abc, lambda tx: Query(tx, "items").with_index("by_abc", lambda r: 5))


def test_with_index_twice_or_after_order_is_an_error(abc: Database) -> None:
    with pytest.raises(InvalidQuery):
        run(abc, lambda tx: Query(tx, "items").with_index("by_abc").with_index("by_v"))
    with pytest.raises(InvalidQuery):
        run(abc, lambda tx: Query(tx, "items").order("desc").with_index("by_abc"))
    with pytest.raises(InvalidQuery):
        run(
            abc,
            lambda tx: (
                Query(tx, "items").filter(lambda f: f.eq(f.field("a"), 1)).with_index("by_abc")
            ),
        )


# ---------------------------------------------------------------------- bounds, exactly


@pytest.fixture
def numbers(sdb: Database) -> Database:
    # Two documents at each of 1..5 so that every bound has ties on it.
    insert_all(
        sdb, "items", [{"v": float(n), "copy": float(c)} for c in range(2) for n in range(1, 6)]
    )
    return sdb


def v_range(db: Database, range_fn: Callable[[Any], Any], order: str = "asc") -> list[Any]:
    return field_of(
        run(db, lambda tx: Query(tx, "items").with_index("by_v", range_fn).order(order).collect())
    )


@pytest.mark.parametrize(
    ("range_fn", "expected"),
    [
        (lambda r: r.gt("v", 2), [3, 3, 4, 4, 5, 5]),
        (lambda r: r.gte("v", 2), [2, 2, 3, 3, 4, 4, 5, 5]),
        (lambda r: r.lt("v", 4), [1, 1, 2, 2, 3, 3]),
        (lambda r: r.lte("v", 4), [1, 1, 2, 2, 3, 3, 4, 4]),
        (lambda r: r.gt("v", 2).lt("v", 4), [3, 3]),
        (lambda r: r.lt("v", 4).gt("v", 2), [3, 3]),
        (lambda r: r.gte("v", 2).lte("v", 2), [2, 2]),
        (lambda r: r.gt("v", 2).lte("v", 2), []),
        (lambda r: r.gt("v", 4).lt("v", 2), []),
        (lambda r: r.gt("v", 1.5).lt("v", 2.5), [2, 2]),
        (lambda r: r.eq("v", 3), [3, 3]),
        (lambda r: r.eq("v", 3.5), []),
        (lambda r: r.gte("v", 0), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
        (lambda r: r.gt("v", 5), []),
    ],
)
def test_bounds(numbers: Database, range_fn: Callable[[Any], Any], expected: list[int]) -> None:
    assert v_range(numbers, range_fn) == [float(x) for x in expected]
    assert v_range(numbers, range_fn, "desc") == [float(x) for x in reversed(expected)]


def test_equal_keys_are_ordered_by_creation_time(numbers: Database) -> None:
    docs = run(
        numbers,
        lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", 2)).collect(),
    )
    assert [d["copy"] for d in docs] == [0.0, 1.0]


# ---------------------------------------------------------------------- undefined and types


def test_eq_undefined_matches_missing_but_not_null(sdb: Database) -> None:
    insert_all(sdb, "items", [{"k": "missing"}, {"k": "null", "v": None}, {"k": "one", "v": 1.0}])

    def keys(range_fn: Callable[[Any], Any]) -> list[str]:
        docs = run(sdb, lambda tx: Query(tx, "items").with_index("by_v", range_fn).collect())
        return [d["k"] for d in docs]

    assert keys(lambda r: r.eq("v", UNDEFINED)) == ["missing"]
    assert keys(lambda r: r.eq("v", None)) == ["null"]
    assert keys(lambda r: r.gt("v", UNDEFINED)) == ["null", "one"]
    assert keys(lambda r: r.gte("v", None)) == ["null", "one"]
    assert keys(lambda r: r.lte("v", None)) == ["missing", "null"]


ASCENDING_VALUES: list[Any] = [
    UNDEFINED,
    None,
    Int64(-(2**63)),
    Int64(-1),
    Int64(0),
    Int64(7),
    -math.inf,
    -1.5,
    -0.0,
    0.0,
    1.0,
    math.inf,
    math.nan,
    False,
    True,
    "",
    "B",
    "a",
    "ab",
    "é",
    "😀",
    b"",
    b"\x00",
    b"\x01",
    [],
    [None],
    [1.0],
    [1.0, 2.0],
    ["a"],
    {},
    {"a": 1.0},
    {"a": 2.0},
    {"b": 0.0},
]


def test_index_scans_follow_the_cross_type_total_order(sdb: Database) -> None:
    docs = [
        {"k": float(i)} if x is UNDEFINED else {"k": float(i), "v": x}
        for i, x in enumerate(ASCENDING_VALUES)
    ]
    random.Random(3).shuffle(docs)
    insert_all(sdb, "items", docs)
    asc = run(sdb, lambda tx: Query(tx, "items").with_index("by_v").collect())
    assert [d["k"] for d in asc] == [float(i) for i in range(len(ASCENDING_VALUES))]
    desc = run(sdb, lambda tx: Query(tx, "items").with_index("by_v").order("desc").collect())
    assert [d["k"] for d in desc] == [float(i) for i in reversed(range(len(ASCENDING_VALUES)))]


def keys_eq(db: Database, value: Any) -> list[str]:
    docs = run(
        db, lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", value)).collect()
    )
    return [d["k"] for d in docs]


def test_int64_and_float_are_distinct(sdb: Database) -> None:
    insert_all(
        sdb,
        "items",
        [{"k": "int", "v": Int64(1)}, {"k": "float", "v": 1.0}, {"k": "bool", "v": True}],
    )
    assert keys_eq(sdb, Int64(1)) == ["int"]
    assert keys_eq(sdb, 1.0) == ["float"]
    assert keys_eq(sdb, 1) == ["float"]  # a Python int is a float64
    assert keys_eq(sdb, True) == ["bool"]


def test_negative_zero_and_zero_are_distinct(sdb: Database) -> None:
    insert_all(sdb, "items", [{"k": "neg", "v": -0.0}, {"k": "pos", "v": 0.0}])
    assert keys_eq(sdb, -0.0) == ["neg"]
    assert keys_eq(sdb, 0.0) == ["pos"]
    stored = run(sdb, lambda tx: Query(tx, "items").with_index("by_v").first())
    assert math.copysign(1.0, stored["v"]) == -1.0


def test_nan_equals_nan(sdb: Database) -> None:
    insert_all(sdb, "items", [{"k": "nan", "v": math.nan}, {"k": "inf", "v": math.inf}])
    assert keys_eq(sdb, math.nan) == ["nan"]
    assert keys_eq(sdb, float("nan")) == ["nan"]
    assert keys_eq(sdb, math.inf) == ["inf"]


def test_arrays_and_objects_are_whole_value_keys(sdb: Database) -> None:
    insert_all(sdb, "items", [{"k": "arr", "v": [1.0, 2.0]}, {"k": "obj", "v": {"x": [1.0]}}])
    assert keys_eq(sdb, [1.0, 2.0]) == ["arr"]
    assert keys_eq(sdb, 1.0) == []
    assert keys_eq(sdb, {"x": [1]}) == ["obj"]


def test_range_values_must_be_values(sdb: Database) -> None:
    with pytest.raises(InvalidValue):
        run(sdb, lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", (1, 2))))


# ---------------------------------------------------------------------- missing tables


def test_query_on_a_table_that_does_not_exist(db: Database) -> None:
    assert run(db, lambda tx: Query(tx, "nothing").collect()) == []
    assert run(db, lambda tx: Query(tx, "nothing").first()) is None
    assert run(db, lambda tx: Query(tx, "nothing").unique()) is None
    assert run(db, lambda tx: Query(tx, "nothing").take(5)) == []
    assert run(db, lambda tx: Query(tx, "nothing").order("desc").collect()) == []
    assert run(db, lambda tx: Query(tx, "nothing").with_index("by_id").collect()) == []
    page = run(db, lambda tx: Query(tx, "nothing").paginate({"numItems": 3, "cursor": None}))
    assert page["page"] == [] and page["isDone"] is True


def test_schema_index_of_a_table_not_created_yet(db: Database) -> None:
    # Applying a schema creates its tables; a bare declared index still resolves.
    db.apply_schema(SCHEMA)
    assert (
        run(db, lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", 1)).collect())
        == []
    )


def test_unknown_index_on_a_missing_table(db: Database) -> None:
    with pytest.raises(InvalidQuery) as info:
        run(db, lambda tx: Query(tx, "nothing").with_index("by_x").collect())
    assert info.value.code == "IndexNotFoundError"


# ---------------------------------------------------------------------- consumers


@pytest.fixture
def five(sdb: Database) -> Database:
    insert_all(sdb, "items", [{"v": float(i)} for i in range(5)])
    return sdb


def test_take(five: Database) -> None:
    assert run(five, lambda tx: Query(tx, "items").take(0)) == []
    assert field_of(run(five, lambda tx: Query(tx, "items").take(2))) == [0.0, 1.0]
    assert field_of(run(five, lambda tx: Query(tx, "items").take(2.0))) == [0.0, 1.0]
    assert field_of(run(five, lambda tx: Query(tx, "items").order("desc").take(3))) == [
        4.0,
        3.0,
        2.0,
    ]
    assert len(run(five, lambda tx: Query(tx, "items").take(100))) == 5


@pytest.mark.parametrize("n", [-1, 1.5, "2", None, True])
def test_take_needs_a_non_negative_whole_number(five: Database, n: Any) -> None:
    with pytest.raises(InvalidQuery):
        run(five, lambda tx: Query(tx, "items").take(n))


def test_take_zero_reads_nothing(five: Database) -> None:
    def body(tx: Transaction) -> int:
        Query(tx, "items").take(0)
        return tx.docs_read

    assert run(five, body) == 0


def test_take_reads_only_what_it_returns(five: Database) -> None:
    def body(tx: Transaction) -> int:
        Query(tx, "items").take(2)
        return tx.docs_read

    assert run(five, body) == 2


def test_first(five: Database) -> None:
    assert run(five, lambda tx: Query(tx, "items").first())["v"] == 0.0
    assert run(five, lambda tx: Query(tx, "items").order("desc").first())["v"] == 4.0
    assert (
        run(five, lambda tx: Query(tx, "items").filter(lambda f: f.gt(f.field("v"), 10)).first())
        is None
    )


def test_unique(five: Database) -> None:
    def only(value: float) -> Callable[[Transaction], Any]:
        return lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", value)).unique()

    assert run(five, only(3))["v"] == 3.0
    assert run(five, only(9)) is None
    insert_all(five, "items", [{"v": 3.0}])
    docs = run(
        five, lambda tx: Query(tx, "items").with_index("by_v", lambda r: r.eq("v", 3)).collect()
    )
    with pytest.raises(InvalidQuery) as info:
        run(five, only(3))
    assert info.value.message == (
        "unique() query returned more than one result from table items:\n"
        f" [{docs[0]['_id']}, {docs[1]['_id']}, ...]"
    )


def test_iteration(five: Database) -> None:
    def body(tx: Transaction) -> list[float]:
        return [doc["v"] for doc in Query(tx, "items").order("desc")]

    assert run(five, body) == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_iteration_stops_early(five: Database) -> None:
    def body(tx: Transaction) -> tuple[list[float], int]:
        seen = []
        for doc in Query(tx, "items"):
            seen.append(doc["v"])
            if len(seen) == 2:
                break
        return seen, tx.docs_read

    seen, docs_read = run(five, body)
    assert seen == [0.0, 1.0]
    assert docs_read == 2


@pytest.mark.parametrize(
    "second",
    [
        lambda qq: qq.collect(),
        lambda qq: qq.take(1),
        lambda qq: qq.first(),
        lambda qq: qq.unique(),
        lambda qq: list(qq),
        lambda qq: qq.paginate({"numItems": 1, "cursor": None}),
    ],
)
def test_a_query_is_consumed_once(five: Database, second: Callable[[Query], Any]) -> None:
    def body(tx: Transaction) -> None:
        query = Query(tx, "items")
        query.collect()
        second(query)

    with pytest.raises(InvalidQuery, match="once"):
        run(five, body)


def test_a_query_taken_zero_is_consumed(five: Database) -> None:
    def body(tx: Transaction) -> None:
        query = Query(tx, "items")
        query.take(0)
        query.collect()

    with pytest.raises(InvalidQuery, match="once"):
        run(five, body)


def test_queries_see_the_mutations_own_writes(five: Database) -> None:
    def body(tx: Transaction) -> list[float]:
        tx.insert("items", {"v": 10.0})
        first = Query(tx, "items").first()
        tx.delete(first["_id"])
        return field_of(Query(tx, "items").with_index("by_v").collect())

    assert five.write_sync(body).value == [1.0, 2.0, 3.0, 4.0, 10.0]


# ---------------------------------------------------------------------- filters


@pytest.fixture
def fdb(sdb: Database) -> Database:
    insert_all(
        sdb,
        "items",
        [
            {"n": 1.0, "s": "a", "i": Int64(-7), "nested": {"x": 10.0}, "arr": [{"x": 1.0}]},
            {"n": 2.0, "s": "b", "i": Int64(0), "nested": {"x": 20.0}},
            {"n": 3.0, "s": "c", "i": Int64(7), "flag": True},
            {"n": 4.0, "s": "d", "flag": False, "nested": None},
            {"n": 5.0, "s": "e", "nested": {"x": None}},
        ],
    )
    return sdb


def filtered(db: Database, predicate: Callable[[Any], Any], key: str = "n") -> list[Any]:
    docs = run(db, lambda tx: Query(tx, "items").filter(predicate).collect())
    return [d.get(key, UNDEFINED) for d in docs]


def has_i(f: Any, expression: Any) -> Any:
    """``expression`` only where ``i`` exists: ``and_`` short-circuits."""
    return f.and_(f.neq(f.field("i"), UNDEFINED), expression)


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (lambda f: f.eq(f.field("n"), 2), [2]),
        (lambda f: f.eq(2, f.field("n")), [2]),
        (lambda f: f.neq(f.field("n"), 2), [1, 3, 4, 5]),
        (lambda f: f.lt(f.field("n"), 3), [1, 2]),
        (lambda f: f.lte(f.field("n"), 3), [1, 2, 3]),
        (lambda f: f.gt(f.field("n"), 3), [4, 5]),
        (lambda f: f.gte(f.field("n"), 3), [3, 4, 5]),
        (lambda f: f.and_(f.gt(f.field("n"), 1), f.lt(f.field("n"), 4)), [2, 3]),
        (lambda f: f.and_(), [1, 2, 3, 4, 5]),
        (lambda f: f.or_(f.eq(f.field("n"), 1), f.eq(f.field("s"), "e")), [1, 5]),
        (lambda f: f.or_(), []),
        (lambda f: f.not_(f.eq(f.field("n"), 1)), [2, 3, 4, 5]),
        (lambda f: f.eq(f.add(f.field("n"), 1), 3), [2]),
        (lambda f: f.eq(f.sub(f.field("n"), 1), 0), [1]),
        (lambda f: f.eq(f.mul(f.field("n"), 2), 8), [4]),
        (lambda f: f.eq(f.div(f.field("n"), 2), 1.5), [3]),
        (lambda f: f.eq(f.mod(f.field("n"), 2), 1), [1, 3, 5]),
        (lambda f: f.eq(f.neg(f.field("n")), -4), [4]),
        (lambda f: f.gt(f.field("s"), "c"), [4, 5]),
        (lambda f: f.eq(f.field("flag"), True), [3]),
        (lambda f: f.eq(f.field("nested.x"), 20), [2]),
        (lambda f: f.eq(f.field("nested.x"), None), [5]),
        (lambda f: f.eq(f.field("nested.x"), UNDEFINED), [3, 4]),
        (lambda f: f.eq(f.field("nested"), None), [4]),
        (lambda f: f.eq(f.field("flag"), UNDEFINED), [1, 2, 5]),
        (lambda f: f.eq(f.field("flag"), None), []),
        (lambda f: f.neq(f.field("flag"), UNDEFINED), [3, 4]),
        (lambda f: f.lt(f.field("flag"), False), [1, 2, 5]),  # missing sorts first
        (lambda f: f.eq(f.field("arr.x"), UNDEFINED), [1, 2, 3, 4, 5]),  # no array traversal
        (lambda f: f.eq(f.field("i"), Int64(0)), [2]),
        (lambda f: f.eq(f.field("i"), 0), []),  # float 0.0 is not Int64 0
        (lambda f: f.lt(f.field("i"), 0), [1, 2, 3, 4, 5]),  # Int64 and missing sort first
        (lambda f: has_i(f, f.eq(f.div(f.field("i"), Int64(2)), Int64(-3))), [1]),  # truncating
        (lambda f: has_i(f, f.eq(f.mod(f.field("i"), Int64(2)), Int64(-1))), [1]),
        (lambda f: has_i(f, f.eq(f.neg(f.field("i")), Int64(-7))), [3]),
        (lambda f: has_i(f, f.eq(f.add(f.field("i"), Int64(7)), Int64(14))), [3]),
        (lambda f: has_i(f, f.eq(f.sub(f.field("i"), Int64(1)), Int64(-1))), [2]),
        (lambda f: has_i(f, f.eq(f.mul(f.field("i"), Int64(3)), Int64(21))), [3]),
        (lambda f: f.eq(f.field("nested"), {"x": 10}), [1]),
        (lambda f: True, [1, 2, 3, 4, 5]),
        (lambda f: False, []),
    ],
)
def test_filter_operators(
    fdb: Database, predicate: Callable[[Any], Any], expected: list[int]
) -> None:
    assert filtered(fdb, predicate) == [float(x) for x in expected]


def test_float_division_by_zero_is_ieee(fdb: Database) -> None:
    assert filtered(fdb, lambda f: f.eq(f.div(f.field("n"), 0), math.inf)) == [1, 2, 3, 4, 5]
    assert filtered(fdb, lambda f: f.eq(f.div(f.neg(f.field("n")), 0), -math.inf)) == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert filtered(fdb, lambda f: f.eq(f.div(0.0, 0.0), math.nan)) == [1, 2, 3, 4, 5]


def test_filters_chain_as_and(fdb: Database) -> None:
    docs = run(
        fdb,
        lambda tx: (
            Query(tx, "items")
            .filter(lambda f: f.gt(f.field("n"), 1))
            .filter(lambda f: f.lt(f.field("n"), 5))
            .order("desc")
            .collect()
        ),
    )
    assert field_of(docs, "n") == [4.0, 3.0, 2.0]


def test_filter_after_with_index(sdb: Database) -> None:
    insert_all(sdb, "items", [{"v": float(i % 3), "n": float(i)} for i in range(9)])
    docs = run(
        sdb,
        lambda tx: (
            Query(tx, "items")
            .with_index("by_v", lambda r: r.eq("v", 1))
            .filter(lambda f: f.gt(f.field("n"), 3))
            .collect()
        ),
    )
    assert field_of(docs, "n") == [4.0, 7.0]


def test_filter_with_take_counts_matches(fdb: Database) -> None:
    docs = run(fdb, lambda tx: Query(tx, "items").filter(lambda f: f.gte(f.field("n"), 2)).take(2))
    assert field_of(docs, "n") == [2.0, 3.0]


@pytest.mark.parametrize(
    "predicate",
    [
        lambda f: f.eq(f.add(f.field("n"), Int64(1)), 2),  # float + Int64
        lambda f: f.eq(f.add(f.field("s"), 1), 2),  # string + float
        lambda f: f.eq(f.add(f.field("missing"), 1), 2),  # undefined + float
        lambda f: f.eq(f.div(f.field("i"), Int64(0)), 2),  # Int64 division by zero
        lambda f: f.eq(f.mod(f.field("i"), Int64(0)), 2),
        lambda f: f.eq(f.mul(Int64(2**62), Int64(4)), 2),  # Int64 overflow
        lambda f: f.eq(f.neg(Int64(-(2**63))), 2),
        lambda f: f.eq(f.neg("x"), 2),
        lambda f: f.field("n"),  # not a boolean
        lambda f: f.add(f.field("n"), 1),
        lambda f: f.and_(f.field("n"), True),
        lambda f: f.not_(f.field("s")),
        lambda f: f.or_(False, 1.0),
    ],
)
def test_eval_errors(fdb: Database, predicate: Callable[[Any], Any]) -> None:
    with pytest.raises(InvalidQuery) as info:
        filtered(fdb, predicate)
    assert info.value.code == "EvalError"


def test_logical_operators_short_circuit(fdb: Database) -> None:
    assert filtered(fdb, lambda f: f.or_(True, f.field("n"))) == [1, 2, 3, 4, 5]
    assert filtered(fdb, lambda f: f.and_(False, f.field("n"))) == []


def test_filter_errors_need_rows_to_happen(sdb: Database) -> None:
    assert filtered(sdb, lambda f: f.field("n")) == []


def test_filter_must_build_an_expression(fdb: Database) -> None:
    with pytest.raises(InvalidQuery, match="filter"):
        filtered(fdb, lambda f: None)
    with pytest.raises(InvalidQuery, match="filter"):
        filtered(fdb, lambda f: "yes")


def test_filter_literals_must_be_values(fdb: Database) -> None:
    with pytest.raises(InvalidValue):
        filtered(fdb, lambda f: f.eq(f.field("n"), object()))


# ---------------------------------------------------------------------- round trips


def _fetches(db: Database, read: Callable[[Query], Any]) -> tuple[Any, list[int]]:
    """``read`` on a fresh query, and the rows each storage round trip returned."""
    fetched: list[int] = []

    def body(tx: Transaction) -> Any:
        conn = tx._conn
        scan = conn.scan

        def counted(*args: Any, **kwargs: Any) -> Any:
            rows = scan(*args, **kwargs)
            fetched.append(len(rows))
            return rows

        conn.scan = counted  # type: ignore[method-assign]
        try:
            return read(Query(tx, "items").with_index("by_v").order("desc"))
        finally:
            del conn.scan

    return run(db, body), fetched


def test_a_take_without_a_filter_fetches_exactly_its_rows_in_one_round_trip(
    sdb: Database,
) -> None:
    insert_all(sdb, "items", [{"v": float(i)} for i in range(100)])
    docs, fetched = _fetches(sdb, lambda query: query.take(20))
    assert field_of(docs) == [float(i) for i in range(99, 79, -1)]
    assert fetched == [20]
    first, fetched = _fetches(sdb, lambda query: query.first())
    assert first is not None and first["v"] == 99.0 and fetched == [1]
    page, fetched = _fetches(sdb, lambda query: query.paginate({"numItems": 30, "cursor": None}))
    assert len(page["page"]) == 30 and not page["isDone"] and fetched == [30]
    # A filter may skip rows: batches grow from 8 as before.
    odd, fetched = _fetches(
        sdb, lambda query: query.filter(lambda f: f.gt(f.field("v"), 90.0)).take(20)
    )
    assert field_of(odd) == [float(i) for i in range(99, 90, -1)]
    assert fetched[:2] == [8, 32]
