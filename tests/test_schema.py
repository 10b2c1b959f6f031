"""Tests for syncline.schema: definitions, definition-time checks, document validation, JSON."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from syncline.errors import InvalidValue, SchemaDefinitionError, SchemaValidationError
from syncline.schema import (
    IndexDefinition,
    Schema,
    SearchIndexDefinition,
    TableDefinition,
    VectorIndexDefinition,
    define_schema,
    define_table,
)
from syncline.values.ids import new_id
from syncline.values.types import UNDEFINED, Int64
from syncline.values.validators import ValidatorError, v

_RNG = random.Random(99)
USER_ID = new_id(1, _RNG)
TASK_ID = new_id(2, _RNG)


class FakeCtx:
    def table_name_of_id(self, id_str: str) -> str | None:
        return {USER_ID: "users", TASK_ID: "tasks"}.get(id_str)


def design_schema() -> Schema:
    """The schema of design.md §1."""
    return define_schema(
        {
            "users": define_table(
                {"name": v.string(), "email": v.string(), "tokenIdentifier": v.string()}
            ).index("by_token", ["tokenIdentifier"]),
            "tasks": define_table(
                {
                    "title": v.string(),
                    "status": v.union(v.literal("todo"), v.literal("done")),
                    "userId": v.id("users"),
                    "createdAt": v.number(),
                }
            )
            .index("by_user", ["userId"])
            .search_index("search_title", search_field="title", filter_fields=["userId"]),
        }
    )


# ----------------------------------------------------------------------------- building


def test_design_example_builds() -> None:
    schema = design_schema()
    assert schema.schema_validation is True
    assert set(schema.tables) == {"users", "tasks"}
    tasks = schema.tables["tasks"]
    assert tasks.indexes == (IndexDefinition("by_user", ("userId",)),)
    assert tasks.search_indexes == (SearchIndexDefinition("search_title", "title", ("userId",)),)
    assert tasks.vector_indexes == ()
    assert tasks.validator.fields["userId"] == v.id("users")  # type: ignore[attr-defined]


def test_define_table_accepts_object_forms() -> None:
    as_dict = define_table({"a": v.string()})
    as_object = define_table(v.object({"a": v.string()}))
    assert as_dict.validator == as_object.validator == v.object({"a": v.string()})
    union = define_table(v.union(v.object({"a": v.string()}), v.object({"b": v.number()})))
    assert isinstance(union, TableDefinition)
    nested = define_table(v.union(v.object({"a": v.string()}), v.union(v.object({}))))
    assert isinstance(nested, TableDefinition)
    assert define_table(v.any()).validator == v.any()


@pytest.mark.parametrize(
    "bad",
    [v.string(), v.array(v.object({})), v.union(v.object({}), v.null()), v.optional(v.object({}))],
)
def test_define_table_rejects_non_object_validators(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match="define_table"):
        define_table(bad)


def test_vector_index_definition() -> None:
    table = define_table({"embedding": v.array(v.float64()), "kind": v.string()}).vector_index(
        "by_embedding", vector_field="embedding", dimensions=1536, filter_fields=["kind"]
    )
    define_schema({"docs": table})
    assert table.vector_indexes == (
        VectorIndexDefinition("by_embedding", "embedding", 1536, ("kind",)),
    )


def test_table_definition_frozen_once_in_a_schema() -> None:
    table = define_table({"a": v.string()})
    define_schema({"t": table})
    with pytest.raises(SchemaDefinitionError, match="already part of a schema"):
        table.index("by_a", ["a"])


def test_index_fields_must_be_a_list() -> None:
    with pytest.raises(SchemaDefinitionError, match="list of field paths"):
        define_table({"a": v.string()}).index("by_a", "a")  # type: ignore[arg-type]


def test_define_schema_requires_table_definitions() -> None:
    with pytest.raises(SchemaDefinitionError, match="define_table"):
        define_schema({"t": {"a": v.string()}})  # type: ignore[dict-item]


# ----------------------------------------------------------------------------- definition rules


def fields(**extra: Any) -> dict[str, Any]:
    return {"a": v.string(), "b": v.number(), "c": v.object({"d": v.string()}), **extra}


def many(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


RULES: list[tuple[str, Callable[[], Any], str]] = [
    ("table name with dash", lambda: define_schema({"my-table": define_table({})}), "my-table"),
    ("table name with underscore", lambda: define_schema({"_t": define_table({})}), "_t"),
    ("table name too long", lambda: define_schema({"t" * 65: define_table({})}), "t" * 65),
    ("table name digit", lambda: define_schema({"1t": define_table({})}), "1t"),
    (
        "system field declared",
        lambda: define_schema({"t": define_table({"_x": v.string()})}),
        "`_x`",
    ),
    (
        "index name underscore",
        lambda: define_schema({"t": define_table(fields()).index("_by_a", ["a"])}),
        "Index `_by_a` on table `t`",
    ),
    (
        "index name too long",
        lambda: define_schema({"t": define_table(fields()).index("i" * 65, ["a"])}),
        "invalid index name",
    ),
    (
        "index name by_id",
        lambda: define_schema({"t": define_table(fields()).index("by_id", ["a"])}),
        "reserved",
    ),
    (
        "index name by_creation_time",
        lambda: define_schema({"t": define_table(fields()).index("by_creation_time", ["a"])}),
        "reserved",
    ),
    (
        "duplicate index name",
        lambda: define_schema(
            {"t": define_table(fields()).index("by_x", ["a"]).index("by_x", ["b"])}
        ),
        "already has an index named `by_x`",
    ),
    (
        "duplicate name across kinds",
        lambda: define_schema(
            {
                "t": define_table(fields())
                .index("by_x", ["a"])
                .search_index("by_x", search_field="a")
            }
        ),
        "already has an index named `by_x`",
    ),
    (
        "no index fields",
        lambda: define_schema({"t": define_table(fields()).index("by_x", [])}),
        "between 1 and 15",
    ),
    (
        "too many index fields",
        lambda: define_schema(
            {"t": define_table({f: v.string() for f in many(16)}).index("by_x", many(16))}
        ),
        "has 16 fields",
    ),
    (
        "duplicate index field",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["a", "a"])}),
        "twice",
    ),
    (
        "_id in index",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["_id"])}),
        "`_id`",
    ),
    (
        "_creationTime in index",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["a", "_creationTime"])}),
        "`_creationTime`",
    ),
    (
        "underscore path component",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["c._d"])}),
        "`c._d`",
    ),
    (
        "empty path component",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["c..d"])}),
        "invalid field path",
    ),
    (
        "identical index fields",
        lambda: define_schema(
            {"t": define_table(fields()).index("by_a", ["a", "b"]).index("by_a2", ["a", "b"])}
        ),
        "same fields",
    ),
    (
        "too many indexes",
        lambda: define_schema(
            {
                "t": _with_indexes(
                    define_table({f: v.string() for f in many(33)}),
                    [(f"by_{f}", [f]) for f in many(33)],
                )
            }
        ),
        "33 indexes",
    ),
    (
        "too many indexes of all kinds",
        lambda: define_schema(
            {
                "t": _with_indexes(
                    define_table({f: v.string() for f in many(30)}),
                    [(f"by_{f}", [f]) for f in many(30)],
                )
                .search_index("s1", search_field="f0")
                .search_index("s2", search_field="f1")
                .search_index("s3", search_field="f2")
            }
        ),
        "33 indexes",
    ),
    (
        "too many search indexes",
        lambda: define_schema(
            {"t": _with_search(define_table({"a": v.string()}), [f"s{i}" for i in range(5)])}
        ),
        "5 search indexes",
    ),
    (
        "too many search filter fields",
        lambda: define_schema(
            {
                "t": define_table({f: v.string() for f in many(18)}).search_index(
                    "s", search_field="f0", filter_fields=many(18)[1:]
                )
            }
        ),
        "17 filter fields",
    ),
    (
        "too many vector indexes",
        lambda: define_schema(
            {
                "t": _with_vectors(
                    define_table({"e": v.array(v.float64())}), [f"x{i}" for i in range(5)]
                )
            }
        ),
        "5 vector indexes",
    ),
    (
        "vector dimensions too small",
        lambda: define_schema(
            {
                "t": define_table({"e": v.array(v.float64())}).vector_index(
                    "x", vector_field="e", dimensions=1
                )
            }
        ),
        "dimensions 1",
    ),
    (
        "vector dimensions too large",
        lambda: define_schema(
            {
                "t": define_table({"e": v.array(v.float64())}).vector_index(
                    "x", vector_field="e", dimensions=4097
                )
            }
        ),
        "dimensions 4097",
    ),
    (
        "vector dimensions not an int",
        lambda: define_schema(
            {
                "t": define_table({"e": v.array(v.float64())}).vector_index(
                    "x", vector_field="e", dimensions=3.0
                )
            }
        ),
        "dimensions 3.0",
    ),
    (
        "too many vector filter fields",
        lambda: define_schema(
            {
                "t": define_table(
                    {"e": v.array(v.float64()), **{f: v.string() for f in many(17)}}
                ).vector_index("x", vector_field="e", dimensions=2, filter_fields=many(17))
            }
        ),
        "17 filter fields",
    ),
    (
        "vector field of the wrong type",
        lambda: define_schema(
            {
                "t": define_table({"e": v.array(v.int64())}).vector_index(
                    "x", vector_field="e", dimensions=2
                )
            }
        ),
        "v.array(v.float64())",
    ),
    (
        "index on a missing field",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["x"])}),
        "Index `by_x` on table `t` references the field `x` that does not exist",
    ),
    (
        "nested index path with a missing top-level field",
        lambda: define_schema({"t": define_table(fields()).index("by_x", ["x.y"])}),
        "references the field `x.y`",
    ),
    (
        "search field missing",
        lambda: define_schema({"t": define_table(fields()).search_index("s", search_field="x")}),
        "Search index `s` on table `t` references the field `x`",
    ),
    (
        "search filter field missing",
        lambda: define_schema(
            {"t": define_table(fields()).search_index("s", search_field="a", filter_fields=["x"])}
        ),
        "references the field `x`",
    ),
    (
        "vector field missing",
        lambda: define_schema(
            {"t": define_table(fields()).vector_index("x", vector_field="e", dimensions=2)}
        ),
        "Vector index `x` on table `t` references the field `e`",
    ),
    (
        "union table field in no member",
        lambda: define_schema(
            {
                "t": define_table(
                    v.union(v.object({"a": v.string()}), v.object({"b": v.string()}))
                ).index("by_x", ["x"])
            }
        ),
        "references the field `x`",
    ),
]


def _with_indexes(table: TableDefinition, indexes: list[tuple[str, list[str]]]) -> TableDefinition:
    for name, index_fields in indexes:
        table.index(name, index_fields)
    return table


def _with_search(table: TableDefinition, names: list[str]) -> TableDefinition:
    for name in names:
        table.search_index(name, search_field="a")
    return table


def _with_vectors(table: TableDefinition, names: list[str]) -> TableDefinition:
    for name in names:
        table.vector_index(name, vector_field="e", dimensions=2)
    return table


@pytest.mark.parametrize(("rule", "build", "message"), RULES, ids=[r[0] for r in RULES])
def test_definition_rule(rule: str, build: Callable[[], Any], message: str) -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        build()
    assert message in str(info.value)


def test_limits_at_the_boundary_are_accepted() -> None:
    names = many(32)
    table = define_table({f: v.string() for f in names})
    for i in range(28):
        table.index(f"by_{i}", names[i : i + 1])
    for i in range(4):
        table.search_index(f"s{i}", search_field=names[i], filter_fields=names[16:32])
    define_schema({"t": table})
    vectors = define_table({"e": v.optional(v.array(v.float64())), "k": v.string()})
    for i, dims in enumerate([2, 3, 4095, 4096]):
        vectors.vector_index(f"v{i}", vector_field="e", dimensions=dims, filter_fields=["k"])
    vectors.index("by_k", ["k"])
    define_schema({"v": vectors})
    wide = define_table({f: v.string() for f in many(15)}).index("by_all", many(15))
    define_schema({"w": wide})
    define_schema({"t" * 64: define_table({}).index("i" * 64, ["x"])}, schema_validation=False)


def test_field_existence_checks_are_skipped_without_schema_validation() -> None:
    table = define_table({"a": v.string()}).index("by_x", ["x"])
    schema = define_schema({"t": table}, schema_validation=False)
    assert schema.schema_validation is False


def test_field_existence_in_one_union_member_is_enough() -> None:
    table = define_table(v.union(v.object({"a": v.string()}), v.object({"b": v.string()}))).index(
        "by_b", ["b"]
    )
    define_schema({"t": table})


def test_nested_and_any_fields_may_be_indexed() -> None:
    define_schema(
        {
            "t": define_table({"c": v.object({"d": v.string()}), "x": v.any()})
            .index("by_d", ["c.d"])
            .index("by_xy", ["x.y"])
            .index("by_c_missing_nested", ["c.nope"])
        }
    )
    define_schema({"u": define_table(v.any()).index("by_anything", ["anything"])})


# ----------------------------------------------------------------------------- documents


def test_validate_document_coerces() -> None:
    schema = define_schema({"t": define_table({"n": v.number(), "i": v.int64()})})
    doc = schema.validate_document("t", {"n": 1, "i": 2})
    assert doc == {"n": 1.0, "i": 2}
    assert type(doc["n"]) is float and type(doc["i"]) is Int64


def test_validate_document_failure_message() -> None:
    schema = design_schema()
    doc = {"title": "x", "status": "doing", "userId": USER_ID, "createdAt": 1.0}
    with pytest.raises(SchemaValidationError) as info:
        schema.validate_document("tasks", doc, FakeCtx())
    message = str(info.value)
    assert message.startswith(
        'Failed to insert or update a document in table "tasks" because it does not match the '
        "schema: Value does not match validator.\nPath: .status\n"
    )
    assert info.value.code == "SchemaEnforcementError"
    assert isinstance(info.value.__cause__, ValidatorError)


def test_validate_document_checks_id_tables_with_ctx() -> None:
    schema = design_schema()
    doc = {"title": "x", "status": "todo", "userId": USER_ID, "createdAt": 1}
    assert schema.validate_document("tasks", doc, FakeCtx())["createdAt"] == 1.0
    with pytest.raises(SchemaValidationError, match="from table `tasks`"):
        schema.validate_document("tasks", {**doc, "userId": TASK_ID}, FakeCtx())


def test_validate_document_extra_and_missing_fields() -> None:
    schema = design_schema()
    with pytest.raises(SchemaValidationError, match="missing the required field `email`"):
        schema.validate_document("users", {"name": "a", "tokenIdentifier": "t"})
    with pytest.raises(SchemaValidationError, match="extra field `age`"):
        schema.validate_document(
            "users", {"name": "a", "email": "e", "tokenIdentifier": "t", "age": 3}
        )


def test_validate_document_union_table() -> None:
    schema = define_schema(
        {
            "events": define_table(
                v.union(
                    v.object({"kind": v.literal("click"), "x": v.number()}),
                    v.object({"kind": v.literal("key"), "code": v.string()}),
                )
            )
        }
    )
    assert schema.validate_document("events", {"kind": "click", "x": 3}) == {
        "kind": "click",
        "x": 3.0,
    }
    with pytest.raises(SchemaValidationError):
        schema.validate_document("events", {"kind": "key", "x": 3})


def test_tables_outside_the_schema_are_only_normalized() -> None:
    schema = design_schema()
    doc = schema.validate_document("other", {"anything": 1, "gone": UNDEFINED})
    assert doc == {"anything": 1.0} and type(doc["anything"]) is float
    with pytest.raises(InvalidValue):
        schema.validate_document("other", {"big": 2**60})


def test_schema_validation_off_only_normalizes() -> None:
    schema = define_schema({"t": define_table({"a": v.int64()})}, schema_validation=False)
    doc = schema.validate_document("t", {"a": 1, "b": "extra"})
    assert doc == {"a": 1.0, "b": "extra"} and type(doc["a"]) is float
    assert schema.validator_for("t") is None
    assert design_schema().validator_for("users") is not None
    assert design_schema().validator_for("nope") is None


def test_any_table_normalizes() -> None:
    schema = define_schema({"t": define_table(v.any())})
    assert schema.validate_document("t", {"a": [1]}) == {"a": [1.0]}


def test_doc_validator_adds_system_fields() -> None:
    schema = design_schema()
    doc = schema.doc("users")
    value = {
        "_id": USER_ID,
        "_creationTime": 1.5,
        "name": "n",
        "email": "e",
        "tokenIdentifier": "t",
    }
    assert doc.validate(value, FakeCtx()) == value
    with pytest.raises(SchemaDefinitionError):
        schema.doc("nope")


# ----------------------------------------------------------------------------- JSON


def test_to_json_shape() -> None:
    schema = define_schema(
        {
            "docs": define_table({"e": v.array(v.float64()), "k": v.string(), "t": v.string()})
            .index("by_k", ["k", "t"])
            .search_index("search_t", search_field="t", filter_fields=["k"])
            .vector_index("by_e", vector_field="e", dimensions=3, filter_fields=["k"]),
        },
        schema_validation=False,
    )
    assert schema.to_json() == {
        "tables": [
            {
                "tableName": "docs",
                "indexes": [{"indexDescriptor": "by_k", "fields": ["k", "t"]}],
                "searchIndexes": [
                    {"indexDescriptor": "search_t", "searchField": "t", "filterFields": ["k"]}
                ],
                "vectorIndexes": [
                    {
                        "indexDescriptor": "by_e",
                        "vectorField": "e",
                        "dimensions": 3,
                        "filterFields": ["k"],
                    }
                ],
                "documentType": {
                    "type": "object",
                    "value": {
                        "e": {
                            "fieldType": {"type": "array", "value": {"type": "number"}},
                            "optional": False,
                        },
                        "k": {"fieldType": {"type": "string"}, "optional": False},
                        "t": {"fieldType": {"type": "string"}, "optional": False},
                    },
                },
            }
        ],
        "schemaValidation": False,
    }


def test_to_json_is_canonical() -> None:
    one = define_schema(
        {
            "b": define_table({"x": v.string(), "y": v.string()})
            .index("by_y", ["y"])
            .index("by_x", ["x"]),
            "a": define_table({}),
        }
    )
    two = define_schema(
        {
            "a": define_table({}),
            "b": define_table({"y": v.string(), "x": v.string()})
            .index("by_x", ["x"])
            .index("by_y", ["y"]),
        }
    )
    assert json.dumps(one.to_json()) == json.dumps(two.to_json())
    assert one == two
    assert [t["tableName"] for t in one.to_json()["tables"]] == ["a", "b"]


def test_json_round_trip() -> None:
    schema = design_schema()
    encoded = json.dumps(schema.to_json(), allow_nan=False)
    parsed = Schema.from_json(json.loads(encoded))
    assert parsed == schema
    assert parsed.to_json() == schema.to_json()
    assert parsed.tables["tasks"].search_indexes == schema.tables["tasks"].search_indexes


def test_from_json_tolerates_convex_extras_and_missing_document_type() -> None:
    parsed = Schema.from_json(
        {
            "tables": [
                {
                    "tableName": "t",
                    "indexes": [],
                    "stagedDbIndexes": [],
                    "searchIndexes": [],
                    "vectorIndexes": [],
                }
            ],
            "schemaValidation": True,
        }
    )
    assert parsed.tables["t"].validator == v.any()


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {},
        {"tables": [{"indexes": []}]},
        {"tables": [{"tableName": "t", "documentType": {"type": "nope"}}]},
        {"tables": [{"tableName": "t", "documentType": {"type": "string"}}]},
        {"tables": [{"tableName": "t"}, {"tableName": "t"}]},
        {
            "tables": [
                {"tableName": "t", "indexes": [{"indexDescriptor": "by_id", "fields": ["a"]}]}
            ]
        },
        {"tables": [], "schemaValidation": "yes"},
    ],
)
def test_from_json_rejects_malformed(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        Schema.from_json(bad)


def test_table_names_referenced_by_ids() -> None:
    schema = define_schema(
        {
            "a": define_table({"u": v.id("users"), "f": v.optional(v.id("_storage"))}),
            "b": define_table({"xs": v.array(v.union(v.id("users"), v.null()))}),
            "users": define_table({}),
        }
    )
    assert schema.table_names_referenced_by_ids() == {"_storage": ("a",), "users": ("a", "b")}


def test_repr() -> None:
    table = define_table({"a": v.string()}).index("by_a", ["a"])
    assert repr(table) == "define_table(v.object({\"a\": v.string()})).index('by_a', ['a'])"
    assert repr(define_schema({"t": table})).startswith("define_schema({'t': define_table(")


def test_v_doc_binds_to_a_table_and_is_not_a_field_type() -> None:
    schema = define_schema({"tasks": define_table({"text": v.string()})})
    bound = schema.bind_documents(v.array(v.doc("tasks")))
    assert bound.to_json() == {"type": "array", "value": schema.doc("tasks").to_json()}
    with pytest.raises(SchemaDefinitionError, match=r'v.doc\("users"\) names a table'):
        schema.bind_documents(v.doc("users"))
    with pytest.raises(SchemaDefinitionError, match=r"Table `notes` uses v.doc"):
        define_schema({"tasks": define_table({}), "notes": define_table({"t": v.doc("tasks")})})
