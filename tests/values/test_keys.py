from __future__ import annotations

import math
import struct
from functools import cmp_to_key
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from value_strategies import NEG_NAN, POS_NAN, floats, int64s, small_values, values

from syncline.errors import InvalidValue
from syncline.values.keys import (
    after,
    compare,
    decode_key,
    encode_key,
    encode_value,
    get_field_path,
    prefix_end,
    sort_key,
    values_equal,
)
from syncline.values.types import INT64_MAX, INT64_MIN, UNDEFINED, Int64

PROPS = settings(max_examples=300, deadline=None)
# For strategies that draw several recursive values per example.
HEAVY = settings(max_examples=200, deadline=None)

keyable = st.one_of(st.just(UNDEFINED), values)
mixed = st.one_of(keyable, small_values)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def bytes_cmp(a: bytes, b: bytes) -> int:
    return (a > b) - (a < b)


def tuple_cmp(a: tuple[Any, ...] | list[Any], b: tuple[Any, ...] | list[Any]) -> int:
    for x, y in zip(a, b):
        c = compare(x, y)
        if c:
            return c
    return sign(len(a) - len(b))


# A strictly ascending list, one representative per equivalence class.
ASCENDING: list[Any] = [
    UNDEFINED,
    None,
    Int64(INT64_MIN),
    Int64(-1),
    Int64(0),
    Int64(1),
    Int64(INT64_MAX),
    NEG_NAN,
    -math.inf,
    -1.7976931348623157e308,
    -1.0,
    -5e-324,
    -0.0,
    0.0,
    5e-324,
    1.0,
    1.7976931348623157e308,
    math.inf,
    POS_NAN,
    False,
    True,
    "",
    "\x00",
    "\x00\x00",
    "\x01",
    "A",
    "a",
    "a\x00",
    "a\x00b",
    "ab",
    "\x7f",
    "é",
    "\uffff",
    "\U0001f600",
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"\x01",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    [],
    [None],
    [None, None],
    [Int64(0)],
    [0.0],
    [0.0, None],
    [False],
    ["a"],
    ["a", None],
    ["a\x00"],
    [[]],
    [{}],
    {},
    {"a": None},
    {"a": None, "b": None},
    {"a": 0.0},
    {"b": None, "a": True},  # pairs in key order: ("a", True), ("b", None)
    {"a": "x"},
    {"a": {}},
    {"a\x00": None},
    {"b": None},
]


def test_ascending_list_is_strictly_ascending() -> None:
    for i, a in enumerate(ASCENDING):
        for j, b in enumerate(ASCENDING):
            want = sign(i - j)
            assert compare(a, b) == want, (a, b)
            assert bytes_cmp(encode_value(a), encode_value(b)) == want, (a, b)
            assert values_equal(a, b) == (want == 0), (a, b)


def test_dict_order_uses_sorted_keys() -> None:
    d = {"b": None, "a": True}
    assert compare(d, {"a": True}) == 1  # prefix first
    assert compare(d, {"a": {}}) == -1  # True < object
    assert compare(d, {"a": True, "c": None}) == -1  # then "b" < "c"
    assert encode_value(d) == encode_value({"a": True, "b": None})
    assert values_equal(d, {"a": True, "b": None})


def test_type_rank() -> None:
    ranks = [UNDEFINED, None, Int64(5), 1.0, False, "", b"", [], {}]
    for i in range(len(ranks) - 1):
        assert compare(ranks[i], ranks[i + 1]) == -1
        assert compare(ranks[i + 1], ranks[i]) == 1


def test_int64_and_float_are_different_types() -> None:
    assert not values_equal(Int64(1), 1.0)
    assert compare(Int64(1), 1.0) == -1
    assert compare(Int64(INT64_MAX), -math.inf) == -1
    assert compare(Int64(INT64_MAX), NEG_NAN) == -1
    assert not values_equal(True, 1.0)
    assert not values_equal(False, 0.0)
    assert compare(math.inf, False) == -1


def test_float_total_order_details() -> None:
    assert not values_equal(-0.0, 0.0)
    assert compare(-0.0, 0.0) == -1
    assert values_equal(math.nan, math.nan)
    assert values_equal(POS_NAN, float("nan"))
    assert not values_equal(NEG_NAN, POS_NAN)
    (payload_nan,) = struct.unpack("<d", struct.pack("<Q", 0x7FF0_0000_0000_0001))
    assert values_equal(payload_nan, POS_NAN)
    assert compare(payload_nan, POS_NAN) == 0
    assert encode_value(payload_nan) == encode_value(POS_NAN)
    assert compare(NEG_NAN, -math.inf) == -1
    assert compare(POS_NAN, math.inf) == 1


@PROPS
@given(floats, floats)
def test_floats_follow_numeric_order_when_ordinary(a: float, b: float) -> None:
    assume(a == a and b == b and not (a == 0.0 and b == 0.0))
    assert compare(a, b) == sign((a > b) - (a < b))


@PROPS
@given(int64s, int64s)
def test_int64_numeric_order(a: Int64, b: Int64) -> None:
    assert compare(a, b) == sign(a - b)
    assert bytes_cmp(encode_value(a), encode_value(b)) == sign(a - b)


@PROPS
@given(int64s, floats)
def test_every_int64_sorts_before_every_float(i: Int64, f: float) -> None:
    assert compare(i, f) == -1
    assert encode_value(i) < encode_value(f)


@PROPS
@given(st.text(), st.text())
def test_strings_by_code_point(a: str, b: str) -> None:
    want = sign((a > b) - (a < b))
    assert compare(a, b) == want
    assert bytes_cmp(encode_value(a), encode_value(b)) == want
    assert sign((a.encode() > b.encode()) - (a.encode() < b.encode())) == want


@PROPS
@given(st.binary(), st.binary())
def test_bytes_unsigned_lexicographic(a: bytes, b: bytes) -> None:
    want = sign((a > b) - (a < b))
    assert compare(a, b) == want
    assert bytes_cmp(encode_value(a), encode_value(b)) == want


# --------------------------------------------------------------------------- properties


@PROPS
@given(mixed, mixed)
def test_encoding_order_matches_compare(a: Any, b: Any) -> None:
    c = compare(a, b)
    assert bytes_cmp(encode_value(a), encode_value(b)) == c
    assert values_equal(a, b) == (c == 0)
    assert compare(b, a) == -c


@HEAVY
@given(
    st.integers(1, 4).flatmap(lambda n: st.tuples(*[st.lists(mixed, min_size=n, max_size=n)] * 2))
)
def test_tuple_encoding_order_matches_compare(pair: tuple[list[Any], list[Any]]) -> None:
    a, b = pair
    assert bytes_cmp(encode_key(a), encode_key(b)) == tuple_cmp(a, b)


@HEAVY
@given(st.lists(keyable, max_size=4))
def test_decode_inverts_encode(t: list[Any]) -> None:
    data = encode_key(t)
    out = decode_key(data)
    assert type(out) is tuple
    assert len(out) == len(t)
    assert all(values_equal(x, y) for x, y in zip(out, t))
    assert encode_key(out) == data


@PROPS
@given(mixed, mixed, mixed)
def test_compare_is_a_total_order(a: Any, b: Any, c: Any) -> None:
    assert compare(a, a) == 0
    assert compare(a, b) == -compare(b, a)
    ab, bc, ac = compare(a, b), compare(b, c), compare(a, c)
    if ab <= 0 and bc <= 0:
        assert ac <= 0
        if ab < 0 or bc < 0:
            assert ac < 0
    if ab == 0:
        assert ac == bc


@HEAVY
@given(st.lists(mixed, max_size=8))
def test_sort_key_sorts_like_compare(xs: list[Any]) -> None:
    by_key = sorted(xs, key=sort_key)
    for x, y in pairwise(by_key):
        assert compare(x, y) <= 0
    by_cmp = sorted(xs, key=cmp_to_key(compare))
    assert all(values_equal(x, y) for x, y in zip(by_key, by_cmp))


def test_encoding_layout() -> None:
    assert encode_value(UNDEFINED) == b"\x01"
    assert encode_value(None) == b"\x02"
    assert encode_value(Int64(0)) == b"\x03\x80" + bytes(7)
    assert encode_value(Int64(-1)) == b"\x03\x7f" + b"\xff" * 7
    assert encode_value(0.0) == b"\x04\x80" + bytes(7)
    assert encode_value(-0.0) == b"\x04\x7f" + b"\xff" * 7
    assert encode_value(False) == b"\x05"
    assert encode_value(True) == b"\x06"
    assert encode_value("a\x00b") == b"\x07a\x00\xffb\x00"
    assert encode_value(b"\x00\xff") == b"\x08\x00\xff\xff\x00"
    assert encode_value([None, "x"]) == b"\x09\x02\x07x\x00\x00"
    assert encode_value({"b": None, "a": True}) == b"\x0a\x07a\x00\x06\x07b\x00\x02\x00"
    assert encode_key([None, True]) == b"\x02\x06"
    assert encode_key([]) == b""


def test_tags_avoid_00_and_ff() -> None:
    for v in ASCENDING:
        tag = encode_value(v)[0]
        assert 0x01 <= tag <= 0xFE


@pytest.mark.parametrize("bad", [1, (1.0,), {1.0}, object(), [1], {"a": 2}])
def test_non_values_are_rejected(bad: Any) -> None:
    with pytest.raises(InvalidValue):
        encode_value(bad)
    with pytest.raises(InvalidValue):
        compare(bad, None) if not isinstance(bad, (list, dict)) else compare(bad, bad)
    if not isinstance(bad, (list, dict)):
        with pytest.raises(InvalidValue):
            values_equal(None, bad)


# --------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # not a tag
        b"\xff",
        b"\x0b",
        b"\x03\x00",  # truncated int
        b"\x04" + bytes(7),  # truncated float
        b"\x07abc",  # unterminated string
        b"\x07\xff\x00",  # invalid UTF-8
        b"\x08ab\x00\xff",  # escape at the end, unterminated
        b"\x09\x02",  # unterminated array
        b"\x09\x01\x00",  # undefined inside an array
        b"\x0a\x02\x00",  # object key is not a string
        b"\x0a\x07a\x00",  # object without value
        b"\x0a\x07b\x00\x02\x07a\x00\x02\x00",  # keys out of order
        b"\x0a\x07a\x00\x02\x07a\x00\x02\x00",  # duplicate key
        b"\x0a\x07a\x00\x01\x00",  # undefined value
        b"\x04\xff\xf0\x00\x00\x00\x00\x00\x01",  # NaN with a non-canonical payload
    ],
)
def test_decode_key_rejects(data: bytes) -> None:
    with pytest.raises(InvalidValue, match="Invalid encoded key"):
        decode_key(data)


def test_decode_key_examples() -> None:
    assert decode_key(b"") == ()
    t = (UNDEFINED, None, Int64(-3), -0.0, True, "a\x00", b"\xff", [1.0], {"k": {"z": b""}})
    out = decode_key(encode_key(t))
    assert all(values_equal(x, y) for x, y in zip(out, t))
    assert type(out[2]) is Int64


# --------------------------------------------------------------------------- ranges


def _starts_with(key: list[Any], prefix: list[Any]) -> bool:
    return len(key) >= len(prefix) and all(map(values_equal, key, prefix))


tricky_leaf = st.one_of(
    small_values,
    st.sampled_from(["a", "a\x00", "a\x00\x00", "a\x01", "", b"", b"\x00", b"\xff", b"\x00\xff"]),
)


@st.composite
def prefix_and_key(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    prefix = draw(st.lists(tricky_leaf, max_size=3))
    how = draw(st.sampled_from(["extend", "mutate", "random"]))
    if how == "extend":
        key = prefix + draw(st.lists(tricky_leaf, max_size=2))
    elif how == "mutate" and prefix:
        i = draw(st.integers(0, len(prefix) - 1))
        key = [*prefix[:i], draw(tricky_leaf), *draw(st.lists(tricky_leaf, max_size=2))]
    else:
        key = draw(st.lists(tricky_leaf, max_size=4))
    return prefix, key


@PROPS
@given(prefix_and_key())
def test_prefix_range_holds_exactly_the_extensions(pk: tuple[list[Any], list[Any]]) -> None:
    prefix, key = pk
    start = encode_key(prefix)
    k = encode_key(key)
    assert (start <= k < prefix_end(start)) == _starts_with(key, prefix)


@PROPS
@given(prefix_and_key())
def test_after_skips_the_key_and_its_extensions(pk: tuple[list[Any], list[Any]]) -> None:
    prefix, key = pk
    k = encode_key(key)
    beyond = tuple_cmp(key, prefix) > 0 and not _starts_with(key, prefix)
    assert (k >= after(encode_key(prefix))) == beyond


def test_range_helpers_examples() -> None:
    a = encode_key(["a"])
    assert prefix_end(a) == a + b"\xff"
    assert after(a) == a + b"\xff"
    assert a <= encode_key(["a", None]) < prefix_end(a)
    assert not a <= encode_key(["a\x00"]) < prefix_end(a)
    assert encode_key(["a\x00"]) >= after(a)
    assert encode_key(["b"]) >= after(a)
    assert prefix_end(b"") == b"\xff"  # every key


# --------------------------------------------------------------------------- field paths


def test_get_field_path() -> None:
    doc = {"a": {"b": {"c": 1.0}, "l": [{"x": 1.0}]}, "n": None, "s": "str", "a.b": 2.0}
    assert get_field_path(doc, "a.b.c") == 1.0
    assert get_field_path(doc, "a.b") == {"c": 1.0}
    assert get_field_path(doc, "n") is None
    assert get_field_path(doc, "missing") is UNDEFINED
    assert get_field_path(doc, "a.missing.c") is UNDEFINED
    assert get_field_path(doc, "a.l.x") is UNDEFINED  # no traversal into lists
    assert get_field_path(doc, "a.l.0") is UNDEFINED
    assert get_field_path(doc, "s.length") is UNDEFINED
    assert get_field_path(doc, "n.x") is UNDEFINED
    assert get_field_path(doc, "a.b.c.d") is UNDEFINED
    assert get_field_path({"x": {"y": None}}, "x.y") is None


def test_undefined_only_at_top_level_of_a_key() -> None:
    assert encode_key([UNDEFINED, None]) == b"\x01\x02"
    with pytest.raises(InvalidValue):
        encode_value([UNDEFINED])
    with pytest.raises(InvalidValue):
        encode_value({"a": UNDEFINED})


# The encoder as it was before its string and float paths were made faster, kept as the
# reference the encoding must match byte for byte.
def _reference_float(x: float) -> bytes:
    if x != x:
        u = 0xFFF8_0000_0000_0000 if math.copysign(1.0, x) < 0 else 0x7FF8_0000_0000_0000
    else:
        (u,) = struct.unpack(">Q", struct.pack(">d", x))
    return b"\x04" + struct.pack(">Q", u ^ (2**64 - 1) if u >> 63 else u | 1 << 63)


def _reference_escape(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x00\xff")


def _reference(v: Any) -> bytes:
    if v is UNDEFINED:
        return b"\x01"
    if v is None:
        return b"\x02"
    if type(v) is Int64:
        return b"\x03" + struct.pack(">Q", v + 2**63)
    if type(v) is float:
        return _reference_float(v)
    if type(v) is bool:
        return b"\x06" if v else b"\x05"
    if type(v) is str:
        return b"\x07" + _reference_escape(v.encode("utf-8")) + b"\x00"
    if type(v) is bytes:
        return b"\x08" + _reference_escape(v) + b"\x00"
    if type(v) is list:
        return b"\x09" + b"".join(_reference(x) for x in v) + b"\x00"
    assert type(v) is dict
    fields = (
        b"\x07" + _reference_escape(k.encode()) + b"\x00" + _reference(v[k]) for k in sorted(v)
    )
    return b"\x0a" + b"".join(fields) + b"\x00"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(values, floats, st.just(UNDEFINED)), max_size=4))
def test_encoding_matches_the_reference_byte_for_byte(key: list[Any]) -> None:
    assert encode_key(key) == b"".join(_reference(v) for v in key)
    for v in key:
        assert encode_value(v) == _reference(v)
