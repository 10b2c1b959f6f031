from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections import OrderedDict
from enum import Enum, IntEnum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import NEG_NAN, POS_NAN, floats, int64s, values

from harness import require_module
from syncline.errors import InvalidValue
from syncline.values.json import (
    document_from_json_bytes,
    from_json,
    from_json_bytes,
    from_python,
    object_from_python,
    to_clean_json,
    to_json,
    to_json_bytes,
    to_json_string,
)
from syncline.values.keys import values_equal
from syncline.values.types import INT64_MAX, INT64_MIN, UNDEFINED, Int64

PROPS = settings(max_examples=300, deadline=None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def f64(x: float) -> str:
    return b64(struct.pack("<d", x))


def same(a: Any, b: Any) -> bool:
    return values_equal(a, b)


# --------------------------------------------------------------------------- to_json


def test_to_json_documented_examples() -> None:
    assert to_json(Int64(2)) == {"$integer": "AgAAAAAAAAA="}
    assert to_json(Int64(-2)) == {"$integer": "/v////////8="}
    assert to_json(Int64(42)) == {"$integer": "KgAAAAAAAAA="}
    assert to_json(math.nan) == {"$float": "AAAAAAAA+H8="}
    assert to_json(-0.0) == {"$float": "AAAAAAAAAIA="}
    assert to_json(math.inf) == {"$float": f64(math.inf)}
    assert to_json(-math.inf) == {"$float": f64(-math.inf)}
    assert to_json(b"hi") == {"$bytes": "aGk="}
    assert to_json(b"") == {"$bytes": ""}


def test_to_json_plain_values_pass_through() -> None:
    v = {"a": 1.5, "b": [None, True, False, "x", 0.0], "c": {"d": "é\U0001f600"}}
    assert to_json(v) == v
    # Nothing to convert: no copy is made.
    assert to_json(v) is v


def test_to_json_does_not_mutate_input() -> None:
    v = {"a": [Int64(1), 2.0], "b": b"x"}
    out = to_json(v)
    assert out == {"a": [{"$integer": b64(struct.pack("<q", 1))}, 2.0], "b": {"$bytes": "eA=="}}
    assert v == {"a": [Int64(1), 2.0], "b": b"x"}
    assert type(v["a"][0]) is Int64


def test_to_json_int64_extremes() -> None:
    assert to_json(Int64(INT64_MIN)) == {"$integer": b64(struct.pack("<q", INT64_MIN))}
    assert to_json(Int64(INT64_MAX)) == {"$integer": b64(struct.pack("<q", INT64_MAX))}


def test_to_json_keeps_nan_sign() -> None:
    assert to_json(NEG_NAN) == {"$float": f64(NEG_NAN)}
    assert from_json(to_json(NEG_NAN)) != from_json(to_json(POS_NAN))  # NaN != NaN anyway
    assert math.copysign(1.0, from_json(to_json(NEG_NAN))) == -1.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        (5, "", "Python int 5"),
        ({"a": {"b": [1.0, 7]}}, ".a.b[1]", "Python int 7"),
        (True.__class__, "", "type is not a supported"),
        ((1.0, 2.0), "", "use a list"),
        ({"a": (1.0,)}, ".a", "use a list"),
        ({"s": {1.0}}, ".s", "set is not a supported"),
        ({"o": object()}, ".o", "object is not a supported"),
        ([UNDEFINED], "[0]", "undefined"),
        ({1: 1.0}, "", "keys must be strings"),
        ({"a": {"$x": 1.0}}, ".a", "starts with '$'"),
        ({"$integer": "AAAAAAAAAAA="}, "", "starts with '$'"),
        ({"a\x01": 1.0}, "", "printable ASCII"),
        ({"a\x7f": 1.0}, "", "printable ASCII"),
        ({"é": 1.0}, "", "printable ASCII"),
        ({"k" * 1025: 1.0}, "", "1025 characters"),
        ({"a": ["\ud800"]}, ".a[0]", "lone surrogate"),
        (bytearray(b"x"), "", "bytearray is not a supported"),
    ],
)
def test_to_json_rejects(value: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        to_json(value)
    msg = str(exc.value)
    assert fragment in msg
    if path:
        assert f" at {path}:" in msg
    else:
        assert msg.startswith("Invalid value: ")


def test_to_json_accepts_edge_keys() -> None:
    v = {"": 1.0, " ": 2.0, "~": 3.0, "k" * 1024: 4.0, "a$": 5.0, "_id": 6.0}
    assert to_json(v) == v


def test_to_json_bool_is_not_int() -> None:
    assert to_json(True) is True
    assert to_json([False]) == [False]


# --------------------------------------------------------------------------- bytes / string


def test_to_json_bytes_floats_always_have_point_or_exponent() -> None:
    out = to_json_bytes([2.0, 0.0, -1.0, 1e16, 1e22, 123456789.0, 2.0**53, 1e-7, 5e-324])
    assert out == (b"[2.0,0.0,-1.0,1e+16,1e+22,123456789.0,9007199254740992.0,1e-7,5e-324]")


@PROPS
@given(floats)
def test_float_text_form(x: float) -> None:
    text = to_json_string(x)
    if x != x or math.isinf(x) or (x == 0.0 and math.copysign(1.0, x) < 0):
        assert text.startswith('{"$float":')
    else:
        # Never a bare integer literal: clients must see a float.
        assert re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", text)
        assert "." in text or "e" in text
        assert float(text) == x
        assert json.loads(text) == x


def test_to_json_string() -> None:
    assert to_json_string({"a": [Int64(1), "é"]}) == '{"a":[{"$integer":"AQAAAAAAAAA="},"é"]}'


def test_to_json_bytes_too_deep_for_orjson() -> None:
    v: Any = []
    for _ in range(300):
        v = [v]
    with pytest.raises(InvalidValue):
        to_json_bytes(v)


def test_from_json_bytes_accepts_str_and_bytes() -> None:
    assert from_json_bytes('{"a": 1}') == {"a": 1.0}
    assert from_json_bytes(b'{"a": 1}') == {"a": 1.0}


# --------------------------------------------------------------------------- from_json


def test_from_json_numbers_are_floats() -> None:
    out = from_json_bytes(b'{"a": 1, "b": [2, -3, 0], "c": 1.5, "d": 1e2}')
    assert out == {"a": 1.0, "b": [2.0, -3.0, 0.0], "c": 1.5, "d": 100.0}
    assert type(out["a"]) is float  # type: ignore[index]
    assert all(type(x) is float for x in out["b"])  # type: ignore[index]


def test_from_json_large_integers_become_nearest_float() -> None:
    assert from_json_bytes(b"123456789012345678901234567890") == 1.2345678901234568e29
    assert from_json_bytes(b"9007199254740993") == 9007199254740992.0
    assert from_json_bytes(b"18446744073709551616") == 2.0**64
    assert from_json_bytes(b"-9223372036854775809") == -(2.0**63)
    assert from_json(10**300) == 1e300
    assert from_json_bytes(b"1e-400") == 0.0


def test_from_json_number_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(InvalidValue, match="infinity"):
        from_json_bytes(b"1e400")
    with pytest.raises(InvalidValue, match="out of float64 range"):
        from_json({"a": [10**400]})


def test_from_json_specials() -> None:
    assert from_json({"$integer": "AgAAAAAAAAA="}) == Int64(2)
    assert type(from_json({"$integer": "AgAAAAAAAAA="})) is Int64
    assert from_json({"$integer": "/v////////8="}) == Int64(-2)
    assert math.isnan(from_json({"$float": "AAAAAAAA+H8="}))  # type: ignore[arg-type]
    assert same(from_json({"$float": "AAAAAAAAAIA="}), -0.0)
    assert from_json({"$float": f64(math.inf)}) == math.inf
    assert from_json({"$float": f64(-math.inf)}) == -math.inf
    assert from_json({"$bytes": "aGk="}) == b"hi"
    assert from_json({"$bytes": ""}) == b""


def test_from_json_accepts_positive_zero_float_leniently() -> None:
    assert same(from_json({"$float": f64(0.0)}), 0.0)


def test_from_json_accepts_urlsafe_base64() -> None:
    assert from_json({"$bytes": "_-8="}) == b"\xff\xef"
    assert from_json({"$integer": "_v________8="}) == Int64(-2)


def test_from_json_nested_specials_and_paths() -> None:
    wire = {"a": [{"$integer": "KgAAAAAAAAA="}, {"b": {"$bytes": "AA=="}}], "c": 3}
    assert from_json(wire) == {"a": [Int64(42), {"b": b"\x00"}], "c": 3.0}
    # The caller's object is not modified.
    assert wire["c"] == 3


@pytest.mark.parametrize(
    ("wire", "path", "fragment"),
    [
        ({"$integer": "AAAAAAAAAA=="}, "", "8 bytes, got 7"),
        ({"$integer": "AAAAAAAAAAAAAA=="}, "", "8 bytes, got 10"),
        ({"a": {"$float": "AAAAAAAA"}}, ".a", "8 bytes, got 6"),
        ({"$float": f64(1.5)}, "", "holds 1.5"),
        ({"$float": f64(5e-324)}, "", "holds 5e-324"),
        ({"$float": f64(-2.0)}, "", "holds -2.0"),
        ({"$integer": "AAAAAAAAAAA"}, "", "invalid base64"),  # no padding
        ({"$bytes": "a!=="}, "", "invalid base64"),
        ({"$bytes": "aGk= "}, "", "invalid base64"),
        ({"$bytes": "=aGk"}, "", "invalid base64"),
        ({"$bytes": "aGké"}, "", "invalid base64"),
        ({"$bytes": 5}, "", "base64 string"),
        ({"$integer": None}, "", "base64 string"),
        ([{"$set": []}], "[0]", "$set is no longer supported"),
        ({"a": {"$map": []}}, ".a", "$map is no longer supported"),
        ({"$undefined": None}, "", "starts with '$'"),
        ({"$commitTs": None}, "", "starts with '$'"),
        ({"$integer": "AgAAAAAAAAA=", "a": 1}, "", "'$integer' starts with '$'"),
        ({"a": 1, "$bytes": ""}, "", "'$bytes' starts with '$'"),
        ({"a": {"x\ny": 1}}, ".a", "printable ASCII"),
        ({"a": {"x" * 1025: 1}}, ".a", "1025 characters"),
        ({"a": ["ok", "\udc00"]}, ".a[1]", "lone surrogate"),
        ({"a": (1, 2)}, ".a", "tuple is not a JSON value"),
        ({"a": Int64(1)}, ".a", "Int64 is not a JSON value"),
        ({1: 1}, "", "keys must be strings"),
    ],
)
def test_from_json_rejects(wire: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        from_json(wire)
    msg = str(exc.value)
    assert fragment in msg
    if path:
        assert f" at {path}:" in msg
    else:
        assert msg.startswith("Invalid value: ")


@pytest.mark.parametrize(
    "text",
    [b"", b"{", b"NaN", b"[Infinity]", b'"\\ud800"', b"{'a': 1}", b"[1,]", b"\xff"],
)
def test_from_json_bytes_rejects_bad_json(text: bytes) -> None:
    with pytest.raises(InvalidValue, match="Invalid JSON"):
        from_json_bytes(text)


def test_from_json_bytes_paths() -> None:
    with pytest.raises(InvalidValue, match=r"at \.args\[2\]\.x: field name '\$y'"):
        from_json_bytes(b'{"args": [1, 2, {"x": {"$y": 1, "z": 2}}]}')


def test_from_json_too_deep_is_an_error_not_a_crash() -> None:
    with pytest.raises(InvalidValue):
        from_json_bytes(b"[" * 1000 + b"]" * 1000)
    with pytest.raises(InvalidValue):
        from_json_bytes(b"[" * 2000 + b"]" * 2000)


# --------------------------------------------------------------------------- round trips


@PROPS
@given(values)
def test_wire_round_trip(v: Any) -> None:
    assert same(from_json(to_json(v)), v)


@PROPS
@given(values)
def test_bytes_round_trip(v: Any) -> None:
    data = to_json_bytes(v)
    assert same(from_json_bytes(data), v)
    assert same(from_json_bytes(data.decode()), v)
    # The text is plain JSON any parser reads, and decodes the same way from its output.
    assert same(from_json(json.loads(data)), v)


@PROPS
@given(values)
def test_from_python_is_identity_on_values(v: Any) -> None:
    out = from_python(v)
    assert same(out, v)


def _to_client(v: Any) -> Any:
    from convex.values import ConvexInt64

    if type(v) is Int64:
        return ConvexInt64(int(v))
    if type(v) is list:
        return [_to_client(x) for x in v]
    if type(v) is dict:
        return {k: _to_client(x) for k, x in v.items()}
    return v


def _from_client(v: Any) -> Any:
    from convex.values import ConvexInt64

    if type(v) is ConvexInt64:
        return Int64(v.value)
    if type(v) is list:
        return [_from_client(x) for x in v]
    if type(v) is dict:
        return {k: _from_client(x) for k, x in v.items()}
    return v


@settings(max_examples=300, deadline=None)
@given(values)
def test_interop_with_official_python_client(v: Any) -> None:
    values_mod = require_module("convex.values", "pip install -e '.[dev]' (.ci/run does)")
    # What the official client sends, we decode...
    assert same(from_json(values_mod.convex_to_json(_to_client(v))), v)
    # ...and what we send, it decodes (it rejects a wrapped +0.0 or normal float).
    assert same(_from_client(values_mod.json_to_convex(json.loads(to_json_bytes(v)))), v)


# --------------------------------------------------------------------------- clean json


def test_to_clean_json() -> None:
    v = {
        "i": Int64(-5),
        "big": Int64(INT64_MAX),
        "b": b"\x00\xff",
        "n": math.nan,
        "p": math.inf,
        "m": -math.inf,
        "z": -0.0,
        "l": [1.5, None, True, "s"],
    }
    out = to_clean_json(v)
    assert out == {
        "i": "-5",
        "big": str(INT64_MAX),
        "b": "AP8=",
        "n": "NaN",
        "p": "Infinity",
        "m": "-Infinity",
        "z": -0.0,
        "l": [1.5, None, True, "s"],
    }
    assert math.copysign(1.0, out["z"]) == -1.0
    assert orjson.dumps(out)  # plain JSON


def test_to_clean_json_copies_and_rejects() -> None:
    v = {"a": [1.0]}
    out = to_clean_json(v)
    assert out == v and out is not v and out["a"] is not v["a"]
    with pytest.raises(InvalidValue, match=r"at \.a\[1\]: Python int"):
        to_clean_json({"a": [1.0, 2]})


# --------------------------------------------------------------------------- from_python


def test_from_python_ints_become_floats() -> None:
    out = from_python({"a": 1, "b": [2, -(2**53), 2**53], "c": Int64(3), "d": True})
    assert out == {"a": 1.0, "b": [2.0, -(2.0**53), 2.0**53], "c": Int64(3), "d": True}
    assert type(out["a"]) is float  # type: ignore[index]
    assert type(out["c"]) is Int64  # type: ignore[index]
    assert out["d"] is True  # type: ignore[index]


def test_from_python_rejects_inexact_ints() -> None:
    with pytest.raises(InvalidValue) as exc:
        from_python({"a": [2**53 + 1]})
    msg = str(exc.value)
    assert "at .a[0]" in msg
    assert "9007199254740993 is outside float64's exact range" in msg
    assert "use syncline.Int64 or a v.int64() validator" in msg
    with pytest.raises(InvalidValue, match="outside float64's exact range"):
        from_python(-(2**53) - 1)


def test_from_python_path_prefix() -> None:
    with pytest.raises(InvalidValue, match=r"^Invalid value at args\.x: tuple"):
        from_python({"x": (1,)}, path="args")
    with pytest.raises(InvalidValue, match=r"^Invalid value at args: tuple"):
        from_python((1,), path="args")


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ((1, 2), "use a list"),
        ({"a": frozenset()}, "frozenset is not a supported Convex type; use a list"),
        ({"a": "x\ud800y"}, "lone surrogate U+D800"),
        (["\udfff"], "lone surrogate U+DFFF"),
        ({1: 1}, "keys must be strings"),
        ({None: 1}, "keys must be strings"),
        ({"$a": 1}, "starts with '$'"),
        ({"a\tb": 1}, "printable ASCII"),
        ({"a": {"b" * 1025: 1}}, "1025 characters"),
        (UNDEFINED, "undefined is not a valid Convex value"),
        ([1, UNDEFINED], "undefined is not allowed in an array"),
        (object(), "object is not a supported Convex type"),
        (1j, "complex is not a supported Convex type"),
        (range(3), "range is not a supported Convex type"),
    ],
)
def test_from_python_rejects(obj: Any, fragment: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(fragment)):
        from_python(obj)


def test_from_python_drops_undefined_fields() -> None:
    assert from_python({"a": UNDEFINED, "b": 1.0, "c": {"d": UNDEFINED}}) == {"b": 1.0, "c": {}}


def test_from_python_conversions() -> None:
    class Color(IntEnum):
        RED = 1

    # Deliberately not StrEnum: str() of this member is "Name.ANN", not its value.
    class Name(str, Enum):  # noqa: UP042
        ANN = "ann"

    class MyFloat(float):
        pass

    class MyInt64(Int64):
        pass

    out = from_python(
        OrderedDict(
            [
                ("ba", bytearray(b"ab")),
                ("mv", memoryview(b"cd")),
                ("e", Color.RED),
                ("s", Name.ANN),
                (Name.ANN, 1.0),
                ("f", MyFloat(2.5)),
                ("i", MyInt64(7)),
                ("bs", b"raw"),
            ]
        )
    )
    assert out == {
        "ba": b"ab",
        "mv": b"cd",
        "e": 1.0,
        "s": "ann",
        "ann": 1.0,
        "f": 2.5,
        "i": Int64(7),
        "bs": b"raw",
    }
    assert [type(x) for x in out.values()] == [  # type: ignore[union-attr]
        bytes,
        bytes,
        float,
        str,
        float,
        float,
        Int64,
        bytes,
    ]
    assert type(out) is dict
    assert all(type(k) is str for k in out)  # type: ignore[union-attr]


def test_from_python_copies_containers() -> None:
    inner = [1.0, "x"]
    src = {"a": inner, "b": {"c": inner}}
    out = from_python(src)
    assert out == src
    inner.append(3.0)
    src["d"] = 1.0
    assert out == {"a": [1.0, "x"], "b": {"c": [1.0, "x"]}}


def test_object_from_python_converts_like_from_python() -> None:
    class Ordered(OrderedDict[str, Any]):
        pass

    out = object_from_python(Ordered(n=1, nested={"k": [2]}))
    assert type(out) is dict
    assert out == {"n": 1.0, "nested": {"k": [2.0]}}
    with pytest.raises(InvalidValue, match=r"^Invalid value at args\.x: tuple"):
        object_from_python({"x": (1,)}, path="args")


def test_document_from_json_bytes() -> None:
    assert document_from_json_bytes(b'{"a": {"$integer": "AQAAAAAAAAA="}}') == {"a": Int64(1)}
    for not_an_object in (b"[1]", b"null", b'"a"', b"1"):
        with pytest.raises(InvalidValue, match="Expected a document"):
            document_from_json_bytes(not_an_object)


def test_from_python_too_deep_is_an_error() -> None:
    v: Any = 1.0
    for _ in range(5000):
        v = [v]
    with pytest.raises(InvalidValue, match="nested too deeply"):
        from_python(v)


@PROPS
@given(st.integers(-(2**53), 2**53))
def test_from_python_safe_ints(x: int) -> None:
    out = from_python(x)
    assert type(out) is float and out == x


@PROPS
@given(st.one_of(st.integers(2**53 + 1, 2**70), st.integers(-(2**70), -(2**53) - 1)))
def test_from_python_unsafe_ints(x: int) -> None:
    with pytest.raises(InvalidValue):
        from_python(x)


@PROPS
@given(int64s)
def test_int64_wire_form(x: Int64) -> None:
    wire = to_json(x)
    assert base64.b64decode(wire["$integer"]) == struct.pack("<q", x)
    assert from_json(wire) == x


def test_known_key_cache_still_converts_str_subclass_keys() -> None:
    class Name(str, Enum):  # noqa: UP042
        ANN = "ann"

    from_python({"ann": 1.0})  # "ann" is now a known key
    out = from_python({Name.ANN: 1.0})
    assert out == {"ann": 1.0}
    assert [type(k) for k in out] == [str]  # type: ignore[union-attr]


def test_known_key_cache_never_admits_invalid_keys() -> None:
    for _ in range(2):
        with pytest.raises(InvalidValue):
            to_json({"$bad": 1.0})
        with pytest.raises(InvalidValue):
            from_json({"a": 1, "bad\x00": 2})
