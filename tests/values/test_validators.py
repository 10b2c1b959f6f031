"""Tests for syncline.values.validators: checking, coercion, errors, repr and JSON."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncline.errors import SchemaDefinitionError, SynclineError
from syncline.values.ids import new_id
from syncline.values.types import UNDEFINED, Int64
from syncline.values.validators import (
    Validator,
    ValidatorError,
    VDoc,
    VObject,
    VOptional,
    VUnion,
    as_validator,
    format_value,
    is_identifier,
    substitute,
    v,
    validator_from_json,
    walk,
)

_RNG = random.Random(1234)
USER_ID = new_id(1, _RNG)
TASK_ID = new_id(2, _RNG)
STORAGE_ID = new_id(3, _RNG)
UNKNOWN_TABLE_ID = new_id(99, _RNG)


class FakeCtx:
    """A ValidationContext over a fixed id -> table mapping."""

    def __init__(self) -> None:
        self.tables = {USER_ID: "users", TASK_ID: "tasks", STORAGE_ID: "_storage"}

    def table_name_of_id(self, id_str: str) -> str | None:
        return self.tables.get(id_str)


CTX = FakeCtx()


def rejects(validator: Validator, value: Any, ctx: Any = None) -> ValidatorError:
    with pytest.raises(ValidatorError) as info:
        validator.validate(value, ctx)
    return info.value


def same(a: Any, b: Any) -> bool:
    """Equality that also checks exact types (1.0 vs Int64(1)) and -0.0/NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# ----------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(
    ("validator", "accepted", "rejected"),
    [
        (v.null(), [None], [False, 0.0, "", UNDEFINED]),
        (v.boolean(), [True, False], [1, 0.0, None, "true"]),
        (v.string(), ["", "abc", "héllo ✓"], [b"abc", 1.0, None, ["a"]]),
        (v.bytes(), [b"", b"\x00\xff"], ["abc", [1.0], None]),
        (v.number(), [1.5, -0.0, math.inf, -math.inf], [Int64(1), True, "1", None]),
        (v.int64(), [Int64(0), Int64(2**63 - 1), Int64(-(2**63))], [1.0, 0.0, True, "1", None]),
        (v.any(), [None, 1.5, "s", b"b", [1.0], {"a": None}, Int64(3)], [object(), {1, 2}]),
    ],
)
def test_primitive_accepts_and_rejects(
    validator: Validator, accepted: list[Any], rejected: list[Any]
) -> None:
    for value in accepted:
        assert same(validator.validate(value), value)
    for value in rejected:
        rejects(validator, value)


def test_number_coerces_plain_int_to_float() -> None:
    result = v.number().validate(3)
    assert type(result) is float and result == 3.0
    assert v.number().validate(2**53) == float(2**53)
    assert v.number().validate(-(2**53)) == -float(2**53)


def test_number_rejects_int_past_2_53_with_a_hint() -> None:
    err = rejects(v.number(), 2**53 + 1)
    assert "Int64" in err.reason and "2**53" in err.reason
    rejects(v.number(), -(2**53) - 1)


def test_number_accepts_nan_and_keeps_float_subclass_value() -> None:
    assert math.isnan(v.number().validate(math.nan))

    class MyFloat(float):
        pass

    result = v.number().validate(MyFloat(2.5))
    assert type(result) is float and result == 2.5


def test_int64_coerces_plain_int_and_checks_range() -> None:
    result = v.int64().validate(5)
    assert type(result) is Int64 and result == 5
    assert v.int64().validate(2**63 - 1) == 2**63 - 1
    rejects(v.int64(), 2**63)
    rejects(v.int64(), -(2**63) - 1)


def test_int64_rejects_integral_float() -> None:
    rejects(v.int64(), 1.0)


def test_bigint_and_float64_are_aliases() -> None:
    assert v.bigint() == v.int64()
    assert v.float64() == v.number()
    assert repr(v.float64()) == "v.number()"


def test_string_rejects_lone_surrogate_and_unwraps_subclasses() -> None:
    rejects(v.string(), "a\ud800b")

    class Name(str):
        def __str__(self) -> str:
            return "overridden"

    result = v.string().validate(Name("bob"))
    assert type(result) is str and result == "bob"


def test_bytes_accepts_bytearray_and_memoryview() -> None:
    assert v.bytes().validate(bytearray(b"ab")) == b"ab"
    assert type(v.bytes().validate(memoryview(b"ab"))) is bytes


# ----------------------------------------------------------------------------- literals


def test_literal_string_and_bool() -> None:
    assert v.literal("todo").validate("todo") == "todo"
    err = rejects(v.literal("todo"), "done")
    assert err.reason == '`"done"` does not match literal validator `v.literal("todo")`.'
    assert v.literal(True).validate(True) is True
    rejects(v.literal(True), 1.0)
    rejects(v.literal(False), 0)


def test_literal_int_becomes_float64() -> None:
    lit = v.literal(1)
    assert lit.value == 1.0 and type(lit.value) is float
    result = lit.validate(1)
    assert type(result) is float and result == 1.0
    assert lit.validate(1.0) == 1.0
    rejects(lit, Int64(1))
    rejects(lit, True)


def test_literal_int64() -> None:
    lit = v.literal(Int64(7))
    result = lit.validate(7)
    assert type(result) is Int64 and result == 7
    assert lit.validate(Int64(7)) == 7
    rejects(lit, 7.0)
    rejects(lit, Int64(8))


def test_literal_float_uses_total_order() -> None:
    assert v.literal(1.5).validate(1.5) == 1.5
    rejects(v.literal(0.0), -0.0)
    rejects(v.literal(-0.0), 0.0)
    assert math.copysign(1, v.literal(-0.0).validate(-0.0)) == -1
    assert math.isnan(v.literal(math.nan).validate(math.nan))
    negative_nan = -math.nan
    rejects(v.literal(math.nan), negative_nan)
    assert math.copysign(1, v.literal(negative_nan).validate(negative_nan)) == -1
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0001))[0]
    assert v.literal(payload_nan) == v.literal(math.nan)
    assert repr(v.literal(negative_nan)) == 'v.literal(-float("nan"))'
    rejects(v.literal(math.nan), 1.0)
    rejects(v.literal(1.5), math.nan)


@pytest.mark.parametrize("bad", [None, 2**60, [1], b"x", "a\udc00"])
def test_literal_rejects_invalid_definition(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        v.literal(bad)


# ----------------------------------------------------------------------------- ids


def test_id_with_ctx_checks_the_table() -> None:
    assert v.id("users").validate(USER_ID, CTX) == USER_ID
    err = rejects(v.id("users"), TASK_ID, CTX)
    assert err.reason == (
        f'Found ID "{TASK_ID}" from table `tasks`, which does not match the table name in '
        'validator `v.id("users")`.'
    )


def test_id_from_system_table_mentions_it() -> None:
    err = rejects(v.id("users"), STORAGE_ID, CTX)
    assert "from system table `_storage`" in err.reason
    assert v.id("_storage").validate(STORAGE_ID, CTX) == STORAGE_ID


def test_id_of_unknown_table_or_not_an_id_fails() -> None:
    err = rejects(v.id("users"), UNKNOWN_TABLE_ID, CTX)
    assert err.reason == "Value does not match validator."
    rejects(v.id("users"), "not-an-id", CTX)
    rejects(v.id("users"), 1.0, CTX)


def test_id_without_ctx_only_checks_the_encoding() -> None:
    assert v.id("users").validate(TASK_ID) == TASK_ID
    rejects(v.id("users"), "nope")
    rejects(v.id("users"), TASK_ID[:-1])


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", "a" * 65, 3])
def test_id_requires_a_table_name(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        v.id(bad)


# ----------------------------------------------------------------------------- arrays


def test_array_coerces_elements_and_rejects_tuples() -> None:
    result = v.array(v.number()).validate([1, 2.5])
    assert same(result, [1.0, 2.5])
    rejects(v.array(v.number()), (1.0,))
    rejects(v.array(v.number()), "abc")
    assert v.array(v.string()).validate([]) == []


def test_array_error_path() -> None:
    err = rejects(v.array(v.string()), ["a", "b", 3])
    assert err.path == "[2]"
    assert err.expected == "v.string()"
    assert err.actual == "3"


def test_array_of_plain_dict() -> None:
    assert v.array({"a": v.string()}) == v.array(v.object({"a": v.string()}))


# ----------------------------------------------------------------------------- objects


TASK = v.object(
    {
        "title": v.string(),
        "done": v.optional(v.boolean()),
        "note": v.nullable(v.string()),
    }
)


def test_object_accepts_and_builds_a_new_dict() -> None:
    value = {"title": "t", "note": None}
    result = TASK.validate(value)
    assert result == {"title": "t", "note": None}
    assert result is not value


def test_object_optional_field_may_be_absent_or_undefined() -> None:
    assert TASK.validate({"title": "t", "note": "n", "done": UNDEFINED}) == {
        "title": "t",
        "note": "n",
    }
    assert TASK.validate({"title": "t", "note": "n", "done": True})["done"] is True


def test_object_optional_is_not_nullable() -> None:
    err = rejects(TASK, {"title": "t", "note": None, "done": None})
    assert err.path == ".done"
    assert err.expected == "v.boolean()"


def test_object_nullable_is_required() -> None:
    err = rejects(TASK, {"title": "t"})
    assert err.reason.startswith("Object is missing the required field `note`.")


def test_object_missing_field_message_shape() -> None:
    err = rejects(v.object({"a": v.object({"f": v.string()})}), {"a": {}})
    assert err.detail == (
        "Object is missing the required field `f`. Consider wrapping the field validator in "
        "`v.optional(...)` if this is expected.\n"
        "\n"
        "Path: .a\n"
        "Object: {}\n"
        'Validator: v.object({"f": v.string()})'
    )
    assert err.code == "ValidationError"
    assert isinstance(err, SynclineError)


def test_object_required_field_set_to_undefined_is_missing() -> None:
    err = rejects(TASK, {"title": UNDEFINED, "note": None})
    assert "missing the required field `title`" in err.reason


def test_object_extra_field_message_shape() -> None:
    err = rejects(v.object({"a": v.string()}), {"a": "x", "b": 1})
    assert err.detail == (
        "Object contains extra field `b` that is not in the validator.\n"
        "\n"
        'Object: {"a": "x", "b": 1}\n'
        'Validator: v.object({"a": v.string()})'
    )
    assert err.path == ""


def test_object_extra_field_set_to_undefined_is_ignored() -> None:
    assert v.object({"a": v.string()}).validate({"a": "x", "zzz": UNDEFINED}) == {"a": "x"}


def test_object_rejects_non_dict() -> None:
    rejects(TASK, [("title", "t")])
    rejects(TASK, None)


def test_nested_error_path_and_value_mismatch_shape() -> None:
    validator = v.object({"tasks": v.array(v.object({"title": v.string()}))})
    value = {"tasks": [{"title": "a"}, {"title": "b"}, {"title": 7}]}
    err = rejects(validator, value)
    assert err.path == ".tasks[2].title"
    assert err.detail == (
        "Value does not match validator.\nPath: .tasks[2].title\nValue: 7\nValidator: v.string()"
    )


def test_validate_path_prefix() -> None:
    err = rejects_with_path(v.object({"a": v.string()}), {"a": 1}, ".args")
    assert err.path == ".args.a"


def rejects_with_path(validator: Validator, value: Any, path: str) -> ValidatorError:
    with pytest.raises(ValidatorError) as info:
        validator.validate(value, None, path)
    return info.value


def test_object_coerces_nested_ints() -> None:
    validator = v.object({"n": v.number(), "i": v.int64(), "xs": v.array(v.union(v.int64()))})
    result = validator.validate({"n": 1, "i": 2, "xs": [3]})
    assert same(result, {"n": 1.0, "i": Int64(2), "xs": [Int64(3)]})


@pytest.mark.parametrize("name", ["a-b", "_", "__", "1a", "", "a" * 65, "é", 3])
def test_object_field_names_must_be_identifiers(name: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match="field name"):
        v.object({name: v.string()})


def test_object_field_names_may_start_with_underscore() -> None:
    assert is_identifier("_id") and is_identifier("a" * 64) and not is_identifier("___")
    assert v.object({"_id": v.string()}).validate({"_id": "x"}) == {"_id": "x"}


def test_object_requires_validators() -> None:
    with pytest.raises(SchemaDefinitionError, match="Field `a`"):
        v.object({"a": "string"})
    with pytest.raises(SchemaDefinitionError):
        v.object([("a", v.string())])  # type: ignore[arg-type]


def test_object_nested_plain_dict() -> None:
    nested = v.object({"a": {"b": v.string()}})
    assert nested.validate({"a": {"b": "x"}}) == {"a": {"b": "x"}}
    assert nested == v.object({"a": v.object({"b": v.string()})})


def test_object_helpers() -> None:
    base = v.object({"a": v.string(), "b": v.optional(v.number()), "c": v.boolean()})
    assert base.pick("a", "c") == v.object({"a": v.string(), "c": v.boolean()})
    assert base.omit("a") == v.object({"b": v.optional(v.number()), "c": v.boolean()})
    assert base.partial() == v.object(
        {"a": v.optional(v.string()), "b": v.optional(v.number()), "c": v.optional(v.boolean())}
    )
    extended = base.extend({"c": v.string(), "d": v.null()})
    assert extended == v.object(
        {"a": v.string(), "b": v.optional(v.number()), "c": v.string(), "d": v.null()}
    )
    assert list(extended.fields) == ["a", "b", "c", "d"]
    assert isinstance(base.fields["b"], VOptional) and base.fields["b"].is_optional
    assert not base.fields["a"].is_optional
    with pytest.raises(SchemaDefinitionError):
        base.pick("zzz")
    with pytest.raises(TypeError):
        base.fields["x"] = v.string()  # type: ignore[index]


def test_validators_are_immutable() -> None:
    with pytest.raises(AttributeError):
        v.id("users").table_name = "tasks"  # type: ignore[misc]


# ----------------------------------------------------------------------------- optional


def test_optional_behaves_like_inner_outside_objects() -> None:
    opt = v.optional(v.string())
    assert opt.is_optional and opt.kind == "string"
    assert opt.validate(UNDEFINED) is UNDEFINED
    assert opt.validate("x") == "x"
    rejects(opt, None)
    assert v.optional(opt) == opt
    assert opt != v.string()


@pytest.mark.parametrize(
    "build",
    [
        lambda: v.array(v.optional(v.string())),
        lambda: v.union(v.string(), v.optional(v.number())),
        lambda: v.nullable(v.optional(v.number())),
        lambda: v.record(v.string(), v.optional(v.number())),
    ],
)
def test_optional_only_in_objects(build: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match=r"v\.optional"):
        build()


# ----------------------------------------------------------------------------- unions


def test_union_first_member_wins() -> None:
    assert type(v.union(v.int64(), v.number()).validate(3)) is Int64
    assert type(v.union(v.number(), v.int64()).validate(3)) is float
    # A plain int past int64 fails the first member and the second.
    rejects(v.union(v.int64(), v.number()), 2**63)


def test_union_mismatch_reports_the_union() -> None:
    status = v.union(v.literal("todo"), v.literal("done"))
    assert status.validate("done") == "done"
    err = rejects(v.object({"status": status}), {"status": "doing"})
    assert err.path == ".status"
    assert err.reason == "Value does not match validator."
    assert err.expected == 'v.union(v.literal("todo"), v.literal("done"))'


def test_union_of_objects() -> None:
    shape = v.union(
        v.object({"kind": v.literal("circle"), "r": v.number()}),
        v.object({"kind": v.literal("square"), "side": v.number()}),
    )
    assert shape.validate({"kind": "square", "side": 2}) == {"kind": "square", "side": 2.0}
    rejects(shape, {"kind": "square", "r": 2})


def test_empty_union_rejects_everything() -> None:
    rejects(v.union(), None)


def test_nullable() -> None:
    assert v.nullable(v.string()) == v.union(v.string(), v.null())
    assert v.nullable(v.string()).validate(None) is None


# ----------------------------------------------------------------------------- records


def test_record_with_string_keys() -> None:
    scores = v.record(v.string(), v.number())
    assert same(scores.validate({"alice": 1, "bob": 2.5}), {"alice": 1.0, "bob": 2.5})
    assert scores.validate({}) == {}
    assert scores.validate({"a": 1.0, "b": UNDEFINED}) == {"a": 1.0}


@pytest.mark.parametrize("key", ["", "$a", "_a", "é", "a\n", "x" * 1025])
def test_record_key_rules(key: str) -> None:
    err = rejects(v.record(v.string(), v.number()), {key: 1.0})
    assert "not a valid record key" in err.reason


def test_record_value_error_path() -> None:
    record = v.record(v.string(), v.number())
    assert rejects(record, {"a": 1.0, "b": "x"}).path == ".b"
    assert rejects(record, {"my key": "x"}).path == '["my key"]'


def test_record_with_id_keys() -> None:
    record = v.record(v.id("users"), v.boolean())
    assert record.validate({USER_ID: True}, CTX) == {USER_ID: True}
    err = rejects(record, {TASK_ID: True}, CTX)
    assert "from table `tasks`" in err.reason
    assert err.path == f'["{TASK_ID}"]'  # ids may start with a digit


def test_record_with_literal_keys() -> None:
    record = v.record(v.union(v.literal("a"), v.literal("b")), v.number())
    assert record.validate({"a": 1.0}) == {"a": 1.0}
    rejects(record, {"c": 1.0})


@pytest.mark.parametrize(
    "keys",
    [v.number(), v.any(), v.literal(1.0), v.union(v.string(), v.number()), v.object({})],
)
def test_record_key_validator_restrictions(keys: Validator) -> None:
    with pytest.raises(SchemaDefinitionError, match="keys"):
        v.record(keys, v.string())


def test_record_rejects_non_dict() -> None:
    rejects(v.record(v.string(), v.string()), ["a"])


# ----------------------------------------------------------------------------- any


def test_any_normalizes_with_from_python() -> None:
    result = v.any().validate({"a": [1, Int64(2)], "b": UNDEFINED})
    assert same(result, {"a": [1.0, Int64(2)]})


def test_any_rejects_non_values_with_path() -> None:
    err = rejects(v.object({"a": v.any()}), {"a": [2**60]})
    assert err.path == ".a"
    assert "2**53" in err.reason or "float64" in err.reason
    rejects(v.any(), {"a": object()})
    rejects(v.any(), UNDEFINED)


# ----------------------------------------------------------------------------- error details


def test_error_actual_is_truncated() -> None:
    err = rejects(v.string(), ["x" * 1000])
    assert len(err.actual) <= 210 and err.actual.endswith("...")
    err = rejects(v.string(), list(range(10_000)))
    assert len(err.actual) <= 210


def test_format_value() -> None:
    assert format_value({"a": [1.0, None, True, b"x", Int64(2)]}) == (
        "{\"a\": [1.0, None, True, b'x', Int64(2)]}"
    )
    assert format_value(math.nan) == 'float("nan")'
    assert format_value(-math.inf) == 'float("-inf")'
    assert format_value(UNDEFINED) == "UNDEFINED"


def test_error_attributes() -> None:
    err = rejects(v.object({"a": v.array(v.int64())}), {"a": [Int64(1), 2.0]})
    assert (err.path, err.expected, err.actual) == (".a[1]", "v.int64()", "2.0")
    assert str(err) == err.detail == err.message


# ----------------------------------------------------------------------------- repr / json


REPRS = [
    (v.id("users"), 'v.id("users")'),
    (v.null(), "v.null()"),
    (v.number(), "v.number()"),
    (v.int64(), "v.int64()"),
    (v.boolean(), "v.boolean()"),
    (v.string(), "v.string()"),
    (v.bytes(), "v.bytes()"),
    (v.any(), "v.any()"),
    (v.literal("todo"), 'v.literal("todo")'),
    (v.literal(1.5), "v.literal(1.5)"),
    (v.literal(-0.0), "v.literal(-0.0)"),
    (v.literal(math.inf), 'v.literal(float("inf"))'),
    (v.literal(Int64(5)), "v.literal(Int64(5))"),
    (v.literal(False), "v.literal(False)"),
    (v.array(v.string()), "v.array(v.string())"),
    (v.object({"a": v.optional(v.string())}), 'v.object({"a": v.optional(v.string())})'),
    (v.object({}), "v.object({})"),
    (v.record(v.string(), v.number()), "v.record(v.string(), v.number())"),
    (
        v.union(v.literal("todo"), v.literal("done")),
        'v.union(v.literal("todo"), v.literal("done"))',
    ),
    (v.optional(v.int64()), "v.optional(v.int64())"),
]


@pytest.mark.parametrize(("validator", "text"), REPRS)
def test_repr_is_source_syntax(validator: Validator, text: str) -> None:
    assert repr(validator) == text
    assert eval(text, {"v": v, "Int64": Int64}) == validator


JSONS = [
    (v.id("users"), {"type": "id", "tableName": "users"}),
    (v.null(), {"type": "null"}),
    (v.number(), {"type": "number"}),
    (v.int64(), {"type": "bigint"}),
    (v.boolean(), {"type": "boolean"}),
    (v.string(), {"type": "string"}),
    (v.bytes(), {"type": "bytes"}),
    (v.any(), {"type": "any"}),
    (v.literal("a"), {"type": "literal", "value": "a"}),
    (v.literal(2), {"type": "literal", "value": 2.0}),
    (v.literal(True), {"type": "literal", "value": True}),
    (v.literal(Int64(1)), {"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}),
    (v.literal(-0.0), {"type": "literal", "value": {"$float": "AAAAAAAAAIA="}}),
    (v.array(v.null()), {"type": "array", "value": {"type": "null"}}),
    (
        v.object({"b": v.string(), "a": v.optional(v.number())}),
        {
            "type": "object",
            "value": {
                "a": {"fieldType": {"type": "number"}, "optional": True},
                "b": {"fieldType": {"type": "string"}, "optional": False},
            },
        },
    ),
    (
        v.record(v.id("t"), v.string()),
        {
            "type": "record",
            "keys": {"type": "id", "tableName": "t"},
            "values": {"fieldType": {"type": "string"}, "optional": False},
        },
    ),
    (
        v.union(v.string(), v.null()),
        {"type": "union", "value": [{"type": "string"}, {"type": "null"}]},
    ),
]


@pytest.mark.parametrize(("validator", "expected"), JSONS)
def test_to_json(validator: Validator, expected: dict[str, Any]) -> None:
    assert validator.to_json() == expected
    assert validator_from_json(expected) == validator


def test_object_json_is_sorted() -> None:
    fields = v.object({"b": v.string(), "a": v.string()}).to_json()["value"]
    assert list(fields) == ["a", "b"]


def test_validator_from_json_literal_json_int_is_float() -> None:
    parsed = validator_from_json({"type": "literal", "value": 3})
    assert parsed == v.literal(3.0) and type(parsed.value) is float  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {},
        {"type": "nope"},
        {"type": "id"},
        {"type": "array"},
        {"type": "union", "value": {"type": "null"}},
        {"type": "object", "value": {"a": {"type": "string"}}},
        {"type": "object", "value": {"a-b": {"fieldType": {"type": "string"}}}},
        {"type": "literal", "value": None},
        {"type": "literal", "value": {"$integer": "!!"}},
        {"type": "record", "keys": {"type": "number"}, "values": {"fieldType": {"type": "null"}}},
        {
            "type": "record",
            "keys": {"type": "string"},
            "values": {"fieldType": {"type": "null"}, "optional": True},
        },
    ],
)
def test_validator_from_json_rejects_malformed(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        validator_from_json(bad)


def test_as_validator() -> None:
    obj = as_validator({"a": v.string()})
    assert isinstance(obj, VObject) and obj == v.object({"a": v.string()})
    assert as_validator(v.string()) is v.string()
    with pytest.raises(SchemaDefinitionError):
        as_validator("string")  # type: ignore[arg-type]


def test_equality_and_hash() -> None:
    a = v.object({"x": v.literal(math.nan), "y": v.array(v.id("t"))})
    b = v.object({"y": v.array(v.id("t")), "x": v.literal(math.nan)})
    assert a == b and hash(a) == hash(b)
    assert v.literal(0.0) != v.literal(-0.0)
    assert v.literal(1) != v.literal(Int64(1))
    assert v.string() != "v.string()"
    assert len({v.string(), v.string(), v.optional(v.string())}) == 2


def test_walk_visits_everything() -> None:
    tree = v.object({"a": v.union(v.id("x"), v.array(v.id("y"))), "b": v.optional(v.id("z"))})
    ids = sorted(node.table_name for node in walk(tree) if hasattr(node, "table_name"))
    assert ids == ["x", "y", "z"]


# ----------------------------------------------------------------------------- properties


_names = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,8}", fullmatch=True)
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_literals = st.one_of(
    _text,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.booleans(),
).map(v.literal)
_leaves = st.one_of(
    st.sampled_from([v.null(), v.number(), v.int64(), v.boolean(), v.string(), v.bytes(), v.any()]),
    st.sampled_from(["users", "tasks", "_storage"]).map(v.id),
    _literals,
)
_record_keys = st.one_of(
    st.just(v.string()),
    st.just(v.id("users")),
    st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), min_size=1, max_size=3).map(
        lambda keys: v.union(*(v.literal(k) for k in keys))
    ),
)


def _extend(children: st.SearchStrategy[Validator]) -> st.SearchStrategy[Validator]:
    fields = st.dictionaries(_names, st.tuples(children, st.booleans()), max_size=4).map(
        lambda d: v.object({k: v.optional(x) if opt else x for k, (x, opt) in d.items()})
    )
    return st.one_of(
        children.map(v.array),
        fields,
        st.tuples(_record_keys, children).map(lambda kv: v.record(*kv)),
        st.lists(children, max_size=3).map(lambda ms: v.union(*ms)),
    )


validators = st.recursive(_leaves, _extend, max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(validators)
def test_repr_and_json_round_trip(validator: Validator) -> None:
    assert eval(repr(validator), {"v": v, "Int64": Int64, "float": float}) == validator
    encoded = json.dumps(validator.to_json(), allow_nan=False)
    assert validator_from_json(json.loads(encoded)) == validator


def _values_for(validator: Validator) -> st.SearchStrategy[Any]:
    """Values (possibly with plain ints needing coercion) that ``validator`` accepts."""
    kind = validator.kind
    if isinstance(validator, VOptional):
        return _values_for(validator.inner)
    if kind == "null":
        return st.none()
    if kind == "number":
        return st.one_of(st.floats(), st.integers(-(2**53), 2**53))
    if kind == "bigint":
        return st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-10, 10).map(Int64))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return _text
    if kind == "bytes":
        return st.binary(max_size=5)
    if kind == "any":
        return st.one_of(st.none(), st.integers(-100, 100), st.text(max_size=3))
    if kind == "id":
        return st.just(
            {"users": USER_ID, "tasks": TASK_ID, "_storage": STORAGE_ID}[
                validator.table_name  # type: ignore[attr-defined]
            ]
        )
    if kind == "literal":
        return st.just(validator.value)  # type: ignore[attr-defined]
    if kind == "array":
        return st.lists(_values_for(validator.element), max_size=3)  # type: ignore[attr-defined]
    if kind == "object":
        assert isinstance(validator, VObject)
        required = {k: _values_for(f) for k, f in validator.fields.items() if not f.is_optional}
        optional = {k: _values_for(f) for k, f in validator.fields.items() if f.is_optional}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "record":
        keys = validator.keys  # type: ignore[attr-defined]
        key_values = _values_for(keys)
        if keys == v.string():
            key_values = st.from_regex(r"[a-z][a-z0-9 ]{0,5}", fullmatch=True)
        return st.dictionaries(key_values, _values_for(validator.values), max_size=3)  # type: ignore[attr-defined]
    assert kind == "union"
    members = validator.members  # type: ignore[attr-defined]
    return st.one_of(*(_values_for(m) for m in members)) if members else st.nothing()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_accepted_values_are_stable_under_revalidation(data: st.DataObject) -> None:
    validator = data.draw(
        validators.filter(
            lambda x: not any(isinstance(n, VUnion) and not n.members for n in walk(x))
        )
    )
    value = data.draw(_values_for(validator))
    first = validator.validate(value, CTX)
    second = validator.validate(first, CTX)
    assert same(first, second)
    # The coerced value is a proper value: no plain ints survive.
    assert "int" not in {type(x).__name__ for x in _leaves_of(first)}


def _leaves_of(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves_of(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves_of(item)]
    return [value]


# ----------------------------------------------------------------------------- object fast path


def _reference_object_coerce(validator: VObject, value: Any, ctx: Any) -> Any:
    """``VObject._coerce`` as it was before fields of primitive types skipped their validator:
    every field through its own validator."""
    invalid = v.null()._coerce(UNDEFINED, None)  # the mismatch sentinel
    if not isinstance(value, dict):
        return invalid
    out = {}
    present = 0
    for name, field in validator.fields.items():
        inner = field.inner if isinstance(field, VOptional) else field
        item = value.get(name, UNDEFINED)
        if item is UNDEFINED:
            if field.is_optional:
                continue
            return invalid
        present += 1
        result = inner._coerce(item, ctx)
        if result is invalid:
            return invalid
        out[name] = result
    if present != len(value):
        for key, item in value.items():
            if item is not UNDEFINED and key not in validator.fields:
                return invalid
    return out


class Text(str):
    pass


class Real(float):
    pass


PRIMITIVES: list[Validator] = [v.string(), v.number(), v.int64(), v.boolean(), v.bytes()]
OTHERS = [v.null(), v.any(), v.id("users"), v.literal("a"), v.array(v.string())]
FIELD_VALIDATORS = st.sampled_from([*PRIMITIVES, *OTHERS, v.union(v.string(), v.null())])
FIELD_VALUES = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["\ud800", "é", Text("a"), Real(1.5), True, 3, 2**60, b"x", bytearray(b"y")]),
    st.sampled_from([None, UNDEFINED, Int64(5), math.nan, -0.0, ["a"], {"a": 1.0}, USER_ID]),
    st.floats(),
)
NAMES = st.sampled_from(["a", "b", "c"])


@settings(max_examples=500, deadline=None)
@example({"a": (v.string(), False)}, {"a": "\ud800"}, False)  # a lone surrogate
@example({"a": (v.string(), True)}, {"a": Text("x")}, False)  # a subclass becomes a str
@example({"a": (v.number(), False)}, {"a": 3}, False)  # an int becomes a float
@example({"a": (v.boolean(), False), "b": (v.null(), True)}, {"a": True, "b": None}, True)
@given(
    st.dictionaries(NAMES, st.tuples(FIELD_VALIDATORS, st.booleans()), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), FIELD_VALUES, max_size=4),
    st.booleans(),
)
def test_object_fields_are_coerced_as_by_their_validators(
    fields: dict[str, tuple[Validator, bool]], value: dict[str, Any], with_ctx: bool
) -> None:
    validator = v.object({n: v.optional(f) if opt else f for n, (f, opt) in fields.items()})
    ctx = CTX if with_ctx else None
    expected = _reference_object_coerce(validator, value, ctx)
    result = validator._coerce(value, ctx)
    assert result is expected if not isinstance(expected, dict) else same(result, expected)
    if isinstance(expected, dict):
        assert same(validator.validate(value, ctx), expected)
    else:
        assert rejects(validator, value, ctx).message == validator._explain(value, ctx, []).message


# --------------------------------------------------------------------------- v.doc


def test_unbound_v_doc_checks_the_system_fields() -> None:
    doc = v.doc("tasks")
    task = {"_id": TASK_ID, "_creationTime": 1.5, "text": "x", "n": 1}
    assert doc.validate(task, CTX) == {**task, "n": 1.0}
    assert "Path: ._id" in str(rejects(doc, {**task, "_id": USER_ID}, CTX))
    assert "_creationTime" in str(rejects(doc, {"_id": TASK_ID, "text": "x"}, CTX))
    rejects(doc, [task], CTX)
    assert repr(doc) == 'v.doc("tasks")'
    assert doc == v.doc("tasks") and doc != v.doc("users")
    with pytest.raises(SchemaDefinitionError):
        v.doc("not a table")


def test_bound_v_doc_checks_the_whole_document() -> None:
    document = v.object({"_id": v.id("tasks"), "_creationTime": v.number(), "text": v.string()})
    doc = v.doc("tasks").bound(document)
    task = {"_id": TASK_ID, "_creationTime": 1.5, "text": "x"}
    assert doc.validate(task, CTX) == task
    assert "extra field `n`" in str(rejects(doc, {**task, "n": 1}, CTX))
    assert doc.to_json() == document.to_json()
    assert document in list(walk(doc))


def test_substitute_replaces_nested_validators_and_shares_the_rest() -> None:
    inner = v.object({"a": v.string()})
    tree = v.object({"x": v.optional(v.array(v.doc("t"))), "y": inner, "z": v.union(v.null())})
    swapped = substitute(tree, lambda node: v.number() if isinstance(node, VDoc) else None)
    assert swapped == v.object(
        {"x": v.optional(v.array(v.number())), "y": inner, "z": v.union(v.null())}
    )
    assert swapped.fields["y"] is inner  # type: ignore[attr-defined]
    assert substitute(inner, lambda node: None) is inner
