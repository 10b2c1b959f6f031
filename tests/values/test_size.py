from __future__ import annotations

import re
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import field_names, leaves, values

from syncline.errors import InvalidValue, LimitExceeded
from syncline.values.json import from_python
from syncline.values.size import (
    MAX_DOCUMENT_SIZE,
    NOT_FAST,
    check_document,
    check_value_limits,
    copy_within_limits,
    nesting_depth,
    value_size,
)
from syncline.values.types import UNDEFINED, Int64

PROPS = settings(max_examples=300, deadline=None)
ID = "j5700000000000000000000000001qv0"


def doc(**fields: Any) -> dict[str, Any]:
    return {"_id": ID, "_creationTime": 1700000000000.5, **fields}


def nested(depth: int, leaf: Any = 1.0, kind: str = "list") -> Any:
    v = leaf
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


def ref_size(v: Any) -> int:
    if v is None or type(v) is bool:
        return 1
    if type(v) in (float, Int64):
        return 9
    if type(v) is str:
        return 2 + len(v.encode())
    if type(v) is bytes:
        return 2 + len(v)
    if type(v) is list:
        return 2 + sum(ref_size(x) for x in v)
    return 2 + sum(len(k.encode()) + 1 + ref_size(x) for k, x in v.items())


def ref_depth(v: Any) -> int:
    if type(v) is list:
        return 1 + max((ref_depth(x) for x in v), default=0)
    if type(v) is dict:
        return 1 + max((ref_depth(x) for x in v.values()), default=0)
    return 0


# --------------------------------------------------------------------------- value_size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (None, 1),
        (True, 1),
        (False, 1),
        (Int64(5), 9),
        (1.5, 9),
        (float("nan"), 9),
        ("", 2),
        ("abc", 5),
        ("é", 4),
        ("\U0001f600", 6),
        (b"", 2),
        (b"\x00\x01", 4),
        ([], 2),
        ([None, 1.0], 2 + 1 + 9),
        ({}, 2),
        ({"a": None}, 2 + 1 + 1 + 1),
        ({"ab": [1.0]}, 2 + 2 + 1 + 11),
    ],
)
def test_value_size(value: Any, size: int) -> None:
    assert value_size(value) == size


def test_value_size_rejects_non_values() -> None:
    with pytest.raises(InvalidValue):
        value_size(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        value_size([(1.0,)])  # type: ignore[list-item]


@PROPS
@given(values)
def test_sizes_and_depths_match_reference(v: Any) -> None:
    assert value_size(v) == ref_size(v)
    assert nesting_depth(v) == ref_depth(v)
    assert check_value_limits(v) == ref_size(v)


# --------------------------------------------------------------------------- nesting_depth


def test_nesting_depth() -> None:
    assert nesting_depth(1.0) == 0
    assert nesting_depth("x") == 0
    assert nesting_depth([]) == 1
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": 1.0, "b": "x"}) == 1
    assert nesting_depth({"a": [1.0], "b": {"c": {}}}) == 3
    assert nesting_depth(nested(10)) == 10
    # Deeper than the Python stack allows for a recursive walk.
    assert nesting_depth(nested(5000)) == 5000


# --------------------------------------------------------------------------- check_value_limits


def test_array_too_long() -> None:
    assert check_value_limits([None] * 8192) == 2 + 8192
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits({"a": {"b": [None] * 8193}})
    assert exc.value.code == "ArrayTooLong"
    msg = str(exc.value)
    assert ".a.b" in msg and "8193" in msg and "8192" in msg


def test_too_many_fields() -> None:
    ok = {f"f{i}": None for i in range(1024)}
    check_value_limits(ok)
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits([1.0, {f"f{i}": None for i in range(1025)}])
    assert exc.value.code == "TooManyFields"
    msg = str(exc.value)
    assert "[1]" in msg and "1025" in msg and "1024" in msg


def test_nesting_too_deep() -> None:
    check_value_limits(nested(64))
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits(nested(65))
    assert exc.value.code == "NestingTooDeep"
    assert "65" in str(exc.value) and "64" in str(exc.value)
    check_value_limits(nested(5, kind="dict"), max_nesting=5)
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits(nested(6, kind="dict"), max_nesting=5, what="function arguments")
    msg = str(exc.value)
    assert msg.startswith("Nesting depth of function arguments is 6, more than the limit of 5")
    assert ".a.a.a.a.a" in msg


def test_nesting_far_too_deep_is_not_a_crash() -> None:
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits(nested(5000))
    assert exc.value.code == "NestingTooDeep"
    assert "5000" in str(exc.value)


def test_value_too_large() -> None:
    assert check_value_limits("x" * 98, max_size=100) == 100
    with pytest.raises(LimitExceeded) as exc:
        check_value_limits(["x" * 99], max_size=100, what="return value")
    assert exc.value.code == "ValueTooLarge"
    msg = str(exc.value)
    assert msg == "Size of return value is 103 bytes, more than the limit of 100 bytes"


def test_default_max_size_is_16_mib() -> None:
    big = b"x" * (16 * 2**20 - 2)
    assert check_value_limits(big) == 16 * 2**20
    with pytest.raises(LimitExceeded):
        check_value_limits(big + b"x")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"a": {"$b": 1.0}}, "at .a: field name '$b'"),
        ({"a\n": 1.0}, "printable ASCII"),
        ([{"k" * 1025: 1.0}], "at [0]: field name"),
        ({"a": [1.0, 2]}, "at .a[1]: Python int 2"),
        ({"a": ("x",)}, "use a list"),
        ({"a": "\ud800"}, "lone surrogate"),
    ],
)
def test_check_value_limits_rejects_non_values(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        check_value_limits(value)
    assert fragment in str(exc.value)


# --------------------------------------------------------------------------- check_document


def test_check_document_returns_size() -> None:
    d = doc(name="x", n=1.0)
    assert check_document(d) == value_size(d)


def test_document_size_limit() -> None:
    base = value_size(doc(blob=b""))
    fits = doc(blob=b"x" * (MAX_DOCUMENT_SIZE - base))
    assert check_document(fits) == MAX_DOCUMENT_SIZE
    too_big = doc(blob=b"x" * (MAX_DOCUMENT_SIZE - base + 1))
    with pytest.raises(LimitExceeded) as exc:
        check_document(too_big)
    assert exc.value.code == "DocumentTooLarge"
    msg = str(exc.value)
    assert str(MAX_DOCUMENT_SIZE + 1) in msg and str(MAX_DOCUMENT_SIZE) in msg


def test_document_nesting_limit() -> None:
    # The document itself is level 1, so a field may hold 15 more levels.
    check_document(doc(a=nested(15)))
    with pytest.raises(LimitExceeded) as exc:
        check_document(doc(a=nested(16)))
    assert exc.value.code == "NestingTooDeep"
    assert "17" in str(exc.value) and "16" in str(exc.value)
    assert ".a" in str(exc.value)


def test_document_field_count_includes_system_fields() -> None:
    check_document(doc(**{f"f{i}": None for i in range(1022)}))
    with pytest.raises(LimitExceeded) as exc:
        check_document(doc(**{f"f{i}": None for i in range(1023)}))
    assert exc.value.code == "TooManyFields"
    assert "1025" in str(exc.value)
    with pytest.raises(LimitExceeded) as exc:
        check_document(doc(inner={f"f{i}": None for i in range(1025)}))
    assert exc.value.code == "TooManyFields"
    assert ".inner" in str(exc.value)


def test_document_array_limit() -> None:
    check_document(doc(a=[None] * 8192))
    with pytest.raises(LimitExceeded) as exc:
        check_document(doc(a=[[None] * 8193]))
    assert exc.value.code == "ArrayTooLong"
    assert ".a[0]" in str(exc.value)


@pytest.mark.parametrize(
    "name",
    ["_private", "__x", "1abc", "a-b", "a b", "", "é", "$a", "a" * 65, "_ID", "_creation_time"],
)
def test_document_top_level_names(name: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        check_document(doc(**{name: 1.0}))
    assert repr(name[:40]) in str(exc.value)


@pytest.mark.parametrize("name", ["a", "A_1", "camelCase", "snake_case_2", "a" * 64, "Z"])
def test_document_top_level_names_ok(name: str) -> None:
    check_document(doc(**{name: 1.0}))


def test_document_top_level_name_must_be_str() -> None:
    with pytest.raises(InvalidValue, match="must be strings"):
        check_document({**doc(), 1: 1.0})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"$x": 1.0}, "'$x' starts with '$'"),
        ({"x\x00": 1.0}, "printable ASCII"),
        ({"k" * 1025: 1.0}, "1025 characters"),
        ([{"\x7f": 1.0}], "printable ASCII"),
    ],
)
def test_document_nested_keys(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        check_document(doc(field=value))
    assert fragment in str(exc.value)
    assert ".field" in str(exc.value)


def test_document_nested_keys_ok() -> None:
    check_document(doc(field={"_x": 1.0, "a-b c": 2.0, "": 3.0, "k" * 1024: 4.0, "1": 5.0}))


def test_check_document_needs_a_dict() -> None:
    with pytest.raises(InvalidValue):
        check_document([1.0])  # type: ignore[arg-type]


def test_error_messages_are_readable() -> None:
    with pytest.raises(LimitExceeded) as exc:
        check_document(doc(a={"b": [None] * 9000}))
    assert re.fullmatch(
        r"Document at \.a\.b: array has 9000 elements, more than the limit of 8192",
        str(exc.value),
    )


def test_value_size_errors() -> None:
    with pytest.raises(InvalidValue, match="lone surrogate"):
        value_size({"a": "\ud800"})
    with pytest.raises(InvalidValue, match="nested too deeply"):
        value_size(nested(5000))


# ---------------------------------------------------------------------- copy_within_limits


def _strict(v: Any) -> Any:
    """A form that tells apart what == does not: 1.0 vs True, -0.0, NaNs, list vs dict."""
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    if isinstance(v, dict):
        return ("dict", type(v), [(type(k), k, _strict(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", type(v), [_strict(x) for x in v])
    return (type(v), v)


class _Str(str):
    pass


python_objects: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        leaves,
        st.integers(-(2**60), 2**60),
        st.sampled_from([UNDEFINED, (1.0,), _Str("s"), bytearray(b"x"), "\ud800", 2**70]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(field_names, st.sampled_from(["$x", _Str("k"), "é", "k" * 70])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None)
@given(
    obj=st.one_of(values, python_objects),
    max_nesting=st.integers(1, 4),
    max_size=st.integers(0, 120),
)
def test_copy_within_limits_is_from_python_then_check_value_limits(
    obj: Any, max_nesting: int, max_size: int
) -> None:
    try:
        expected: Any = from_python(obj)
        check_value_limits(expected, max_nesting=max_nesting, max_size=max_size)
    except (InvalidValue, LimitExceeded):
        expected = NOT_FAST
    got = copy_within_limits(obj, max_nesting=max_nesting, max_size=max_size)
    if got is NOT_FAST:
        return  # the caller runs the two steps themselves
    assert expected is not NOT_FAST
    assert _strict(got) == _strict(expected)
    if isinstance(obj, dict | list):
        assert got is not obj  # a copy, as from_python makes


def test_copy_within_limits_takes_the_fast_path_for_normalized_values() -> None:
    doc = {"_id": "abc", "_creationTime": 1.5, "body": "hi", "tags": ["a", None, True]}
    assert copy_within_limits(doc) == doc
    assert copy_within_limits([doc, Int64(3), b"\x00"]) == [doc, Int64(3), b"\x00"]
    assert copy_within_limits({"n": 1}) is NOT_FAST  # a plain int needs converting
    assert copy_within_limits("x" * 10, max_size=5) is NOT_FAST
