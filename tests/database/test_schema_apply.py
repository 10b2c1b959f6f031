"""Applying schemas to a live database (semantics §4, design §3.1): indexes, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import MakeBackend, write_functions
from stores import open_store
from syncline import define_schema, define_table, v
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Limits
from syncline.errors import InvalidQuery, SchemaDefinitionError, SchemaValidationError
from syncline.schema import Schema


def insert(db: Database, table: str, docs: list[dict[str, Any]]) -> list[str]:
    return db.write_sync(lambda tx: [tx.insert(table, d) for d in docs]).value


def by_index(db: Database, table: str, index: str, field: str = "n") -> list[Any]:
    docs = db.run_read(lambda tx: Query(tx, table).with_index(index).collect()).value
    return [d.get(field) for d in docs]


def count(db: Database, table: str) -> int:
    return len(db.run_read(lambda tx: Query(tx, table).collect()).value)


def items_schema(*indexes: tuple[str, list[str]], validator: Any = None) -> Schema:
    table = define_table(
        validator if validator is not None else {"n": v.number(), "m": v.optional(v.number())}
    )
    for name, fields in indexes:
        table = table.index(name, fields)
    return define_schema({"items": table})


# ---------------------------------------------------------------------- indexes


def test_new_index_is_backfilled_and_queryable(db: Database) -> None:
    insert(db, "items", [{"n": float(n), "m": float(-n)} for n in (3, 1, 2)])
    change = db.apply_schema(items_schema(("by_n", ["n"]), ("by_m", ["m"])))
    assert sorted(change.added_indexes) == ["items.by_m", "items.by_n"]
    assert change.removed_indexes == []
    assert by_index(db, "items", "by_n") == [1.0, 2.0, 3.0]
    assert by_index(db, "items", "by_m") == [3.0, 2.0, 1.0]
    # New writes maintain it.
    insert(db, "items", [{"n": 1.5}])
    assert by_index(db, "items", "by_n") == [1.0, 1.5, 2.0, 3.0]


def test_backfill_of_many_documents(db: Database) -> None:
    for chunk in range(3):
        insert(db, "items", [{"n": float(chunk * 1000 + i)} for i in range(1000)])
    db.apply_schema(items_schema(("by_n", ["n"])))
    ordered = by_index(db, "items", "by_n")
    assert len(ordered) == 3000
    assert ordered == sorted(ordered)


def test_index_dropped(db: Database) -> None:
    db.apply_schema(items_schema(("by_n", ["n"])))
    insert(db, "items", [{"n": 1.0}])
    change = db.apply_schema(items_schema())
    assert change.removed_indexes == ["items.by_n"]
    assert "by_n" not in db.catalog.table("items").indexes
    with pytest.raises(InvalidQuery) as info:
        by_index(db, "items", "by_n")
    assert info.value.code == "IndexNotFoundError"
    assert count(db, "items") == 1


def test_index_fields_changed_rebuilds_it(db: Database) -> None:
    db.apply_schema(items_schema(("by_x", ["n"])))
    insert(db, "items", [{"n": float(i), "m": float(-i)} for i in range(4)])
    assert by_index(db, "items", "by_x") == [0.0, 1.0, 2.0, 3.0]
    change = db.apply_schema(items_schema(("by_x", ["m"])))
    assert change.removed_indexes == ["items.by_x"]
    assert change.added_indexes == ["items.by_x"]
    assert by_index(db, "items", "by_x") == [3.0, 2.0, 1.0, 0.0]
    assert db.catalog.table("items").indexes["by_x"].fields == ("m",)
    # The range is now over m.
    docs = db.run_read(
        lambda tx: Query(tx, "items").with_index("by_x", lambda r: r.eq("m", -2)).collect()
    ).value
    assert [d["n"] for d in docs] == [2.0]


def test_applying_the_same_schema_again_changes_nothing(db: Database) -> None:
    schema = items_schema(("by_n", ["n"]))
    db.apply_schema(schema)
    insert(db, "items", [{"n": 1.0}])
    before = db.catalog.table("items").indexes["by_n"].id
    change = db.apply_schema(items_schema(("by_n", ["n"])))
    assert change.added_indexes == change.removed_indexes == change.created_tables == []
    assert db.catalog.table("items").indexes["by_n"].id == before


def test_schema_tables_are_created(db: Database) -> None:
    schema = define_schema(
        {
            "a": define_table({"x": v.string()}).index("by_x", ["x"]),
            "b": define_table({}),
        }
    )
    change = db.apply_schema(schema)
    assert sorted(change.created_tables) == ["a", "b"]
    assert set(db.catalog.table("a").indexes) == {"by_id", "by_creation_time", "by_x"}
    assert db.run_read(lambda tx: Query(tx, "a").with_index("by_x").collect()).value == []


def test_removing_the_schema(db: Database) -> None:
    db.apply_schema(items_schema(("by_n", ["n"])))
    insert(db, "items", [{"n": 1.0}])
    change = db.apply_schema(None)
    assert change.removed_indexes == ["items.by_n"]
    assert db.schema is None
    insert(db, "items", [{"anything": "goes"}])  # no validation any more
    assert count(db, "items") == 2


def test_tables_removed_from_the_schema_keep_their_data(db: Database) -> None:
    db.apply_schema(define_schema({"keep": define_table({"x": v.number()})}))
    insert(db, "keep", [{"x": 1.0}])
    db.apply_schema(define_schema({}))
    assert count(db, "keep") == 1


# ---------------------------------------------------------------------- existing data


def test_existing_data_violating_the_new_schema(db: Database) -> None:
    old = items_schema(("by_n", ["n"]))
    db.apply_schema(old)
    good = insert(db, "items", [{"n": 1.0}])
    bad = insert(db, "items", [{"n": 2.0, "m": 5.0}])[0]
    new = define_schema(
        {
            "items": define_table({"n": v.number()}).index("by_other", ["n"]),
            "created": define_table({}),
        }
    )
    with pytest.raises(SchemaDefinitionError) as info:
        db.apply_schema(new)
    message = info.value.message
    assert '"items"' in message
    assert bad in message
    assert good[0] not in message
    assert "`m`" in message
    # Nothing changed: the old schema is still active, its index still used, nothing created.
    assert db.schema == old
    assert set(db.catalog.table("items").indexes) == {"by_id", "by_creation_time", "by_n"}
    assert db.catalog.table("created") is None
    assert by_index(db, "items", "by_n") == [1.0, 2.0]
    # A write valid under the old schema but not under the new one still succeeds.
    insert(db, "items", [{"n": 3.0, "m": 1.0}])
    assert count(db, "items") == 3


def test_missing_required_field_names_the_field(db: Database) -> None:
    doc_id = insert(db, "people", [{"name": "ada"}])[0]
    with pytest.raises(SchemaDefinitionError) as info:
        db.apply_schema(
            define_schema({"people": define_table({"name": v.string(), "age": v.number()})})
        )
    assert doc_id in info.value.message
    assert "people" in info.value.message
    assert "`age`" in info.value.message
    assert db.schema is None


def test_wrong_type_names_the_path(db: Database) -> None:
    insert(db, "people", [{"name": 5.0}])
    with pytest.raises(SchemaDefinitionError, match=r"\.name"):
        db.apply_schema(define_schema({"people": define_table({"name": v.string()})}))


def test_validating_existing_data_is_not_bound_by_read_limits(
    tmp_path: Path, clock: ManualClock
) -> None:
    with Database(
        open_store(str(tmp_path / "limits.sqlite3"), durability="off"),
        clock=clock,
        limits=Limits(max_docs_read=5, max_bytes_read=2000),
    ) as small:
        for i in range(4):
            insert(small, "items", [{"n": float(i * 4 + j)} for j in range(4)])
        small.apply_schema(items_schema(("by_n", ["n"])))
        assert small.schema is not None
        # ...and a violation far past the read limit is still found.
        small.apply_schema(None)
        insert(small, "items", [{"n": 100.0, "extra": True}])
        with pytest.raises(SchemaDefinitionError, match="extra"):
            small.apply_schema(items_schema())


# ---------------------------------------------------------------------- writes


@pytest.fixture
def schema_db(db: Database) -> Database:
    db.apply_schema(
        define_schema(
            {
                "users": define_table({"name": v.string()}),
                "tasks": define_table(
                    {"title": v.string(), "owner": v.id("users"), "done": v.optional(v.boolean())}
                ).index("by_owner", ["owner"]),
            }
        )
    )
    return db


def test_insert_is_validated(schema_db: Database) -> None:
    user = insert(schema_db, "users", [{"name": "ada"}])[0]
    insert(schema_db, "tasks", [{"title": "t", "owner": user}])
    for bad in (
        {"title": 1.0, "owner": user},
        {"title": "t"},
        {"title": "t", "owner": user, "extra": 1.0},
        {"title": "t", "owner": user, "done": None},
    ):
        with pytest.raises(SchemaValidationError) as info:
            insert(schema_db, "tasks", [bad])
        assert info.value.message.startswith(
            'Failed to insert or update a document in table "tasks" because it does not match '
            "the schema: "
        )
        assert info.value.code == "SchemaEnforcementError"
    assert count(schema_db, "tasks") == 1


def test_patch_and_replace_are_validated(schema_db: Database) -> None:
    user = insert(schema_db, "users", [{"name": "ada"}])[0]
    task = insert(schema_db, "tasks", [{"title": "t", "owner": user}])[0]
    with pytest.raises(SchemaValidationError):
        schema_db.write_sync(lambda tx: tx.patch(task, {"done": "yes"}))
    with pytest.raises(SchemaValidationError):
        schema_db.write_sync(lambda tx: tx.replace(task, {"title": "only"}))
    schema_db.write_sync(lambda tx: tx.patch(task, {"done": True}))
    doc = schema_db.run_read(lambda tx: tx.get(task)).value
    assert doc["done"] is True and doc["title"] == "t"


def test_v_id_rejects_ids_of_other_tables(schema_db: Database) -> None:
    user = insert(schema_db, "users", [{"name": "ada"}])[0]
    task = insert(schema_db, "tasks", [{"title": "t", "owner": user}])[0]
    with pytest.raises(SchemaValidationError) as info:
        insert(schema_db, "tasks", [{"title": "t", "owner": task}])
    assert "`tasks`" in info.value.message
    assert 'v.id("users")' in info.value.message
    with pytest.raises(SchemaValidationError):
        insert(schema_db, "tasks", [{"title": "t", "owner": "not an id"}])
    assert count(schema_db, "tasks") == 1


def test_tables_outside_the_schema_are_not_validated(schema_db: Database) -> None:
    insert(schema_db, "free", [{"anything": [1, "two"]}])
    assert count(schema_db, "free") == 1


def test_schema_validation_off(db: Database) -> None:
    db.apply_schema(
        define_schema({"items": define_table({"n": v.number()})}, schema_validation=False)
    )
    insert(db, "items", [{"n": "not a number", "x": 1}])
    assert count(db, "items") == 1


def test_schema_persists_across_reopen(tmp_path: Path, clock: ManualClock) -> None:
    path = str(tmp_path / "persist.sqlite3")
    schema = items_schema(("by_n", ["n"]))
    with Database(open_store(path, durability="off"), clock=clock) as first:
        first.apply_schema(schema)
        insert(first, "items", [{"n": 2.0}, {"n": 1.0}])
    with Database(open_store(path, durability="off"), clock=clock) as again:
        assert again.schema == schema
        assert by_index(again, "items", "by_n") == [1.0, 2.0]
        with pytest.raises(SchemaValidationError):
            insert(again, "items", [{"n": "x"}])
        change = again.apply_schema(items_schema(("by_n", ["n"])))
        assert change.added_indexes == change.removed_indexes == []


# ---------------------------------------------------------------------- through Application.load


SCHEMA_V1 = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "notes": define_table({"text": v.string(), "rank": v.optional(v.number())})
        .index("by_rank", ["rank"]),
})
"""

SCHEMA_V2 = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "notes": define_table({"text": v.string()}).index("by_text", ["text"]),
})
"""

NOTES = """
from syncline import mutation, query, v

@mutation(args={"text": v.string(), "rank": v.optional(v.number())})
def add(ctx, text, rank=None):
    doc = {"text": text}
    if rank is not None:
        doc["rank"] = rank
    return ctx.db.insert("notes", doc)

@query(args={"index": v.string()})
def ordered(ctx, index):
    return [d["text"] for d in ctx.db.query("notes").with_index(index).collect()]
"""


def test_application_load_applies_the_schema(make_backend: MakeBackend) -> None:
    t = make_backend({"schema.py": SCHEMA_V1, "notes.py": NOTES})
    assert t.database.schema is not None
    t.mutation("notes:add", {"text": "b", "rank": 2})
    t.mutation("notes:add", {"text": "a", "rank": 1})
    assert t.query("notes:ordered", {"index": "by_rank"}) == ["a", "b"]
    with pytest.raises(SchemaValidationError):
        t.run(lambda ctx: ctx.db.insert("notes", {"text": 1.0}))


def test_reload_with_a_schema_the_data_violates_keeps_everything(
    make_backend: MakeBackend,
) -> None:
    t = make_backend({"schema.py": SCHEMA_V1, "notes.py": NOTES})
    t.mutation("notes:add", {"text": "ranked", "rank": 1})
    old_registry = t.app.registry
    functions = t.app.functions_dir
    assert functions is not None
    write_functions(functions, {"schema.py": SCHEMA_V2})
    with pytest.raises(SchemaDefinitionError, match="rank"):
        t.app.load()
    assert t.app.registry is old_registry
    assert t.query("notes:ordered", {"index": "by_rank"}) == ["ranked"]
    t.mutation("notes:add", {"text": "still ranked", "rank": 2})
    # Once the data fits, the reload goes through.
    t.run(
        lambda ctx: [
            ctx.db.replace(d["_id"], {"text": d["text"]}) for d in ctx.db.query("notes").collect()
        ]
    )
    change = t.app.load()
    assert change is not None
    assert change.added_indexes == ["notes.by_text"]
    assert change.removed_indexes == ["notes.by_rank"]
    assert t.query("notes:ordered", {"index": "by_text"}) == ["ranked", "still ranked"]
