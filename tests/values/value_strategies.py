"""Hypothesis strategies for Syncline values, shared by the tests in this folder."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st

from syncline.values.types import INT64_MAX, INT64_MIN, Int64


def _nan_with(sign: int, payload: int) -> float:
    (x,) = struct.unpack("<d", struct.pack("<Q", (sign << 63) | 0x7FF0_0000_0000_0000 | payload))
    return x


NEG_NAN = _nan_with(1, 1 << 51)
POS_NAN = _nan_with(0, 1 << 51)

SPECIAL_FLOATS = [
    POS_NAN,
    NEG_NAN,
    _nan_with(0, 1),  # signalling-NaN bit pattern
    _nan_with(1, 0x1234_5678),
    float("inf"),
    float("-inf"),
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1.0,
    -1.0,
    2.0**53,
    2.0**53 + 2,
    0.1,
]

INT64_EXTREMES = [Int64(x) for x in (INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX)]

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    st.builds(_nan_with, st.integers(0, 1), st.integers(1, (1 << 52) - 1)),
)
int64s = st.one_of(st.integers(INT64_MIN, INT64_MAX).map(Int64), st.sampled_from(INT64_EXTREMES))
strings = st.one_of(
    # Default text() never produces lone surrogates; include NUL, astral chars and U+FFFF.
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["", "\x00", "a", "a\x00", "a\x00b", "\U0001f600", "\uffff", "\x7f", "é"]),
)
binaries = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"", b"\x00", b"\xff", b"\x00\xff", b"\xff\x00", b"a\x00"]),
)
field_names = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).filter(
        lambda k: not k.startswith("$")
    ),
    st.sampled_from(["a", "b", "_id", "x y", "~", ""]),
)

leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), floats, int64s, strings, binaries
)

values: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(field_names, children, max_size=4),
    ),
    max_leaves=12,
)
"""Arbitrary values (no UNDEFINED)."""

# A small pool so that random pairs are often equal or differ only slightly.
small_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, POS_NAN, NEG_NAN, float("inf")]),
        st.sampled_from([Int64(-1), Int64(0), Int64(1)]),
        st.sampled_from(["", "a", "a\x00", "b"]),
        st.sampled_from([b"", b"\x00", b"\xff"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=2),
        st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2),
    ),
    max_leaves=4,
)
