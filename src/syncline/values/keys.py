"""The total order of values and an order-preserving byte encoding of index keys.

Order (ascending by type, then within the type)::

    UNDEFINED < None < Int64 < float < bool < str < bytes < list < dict

Int64 numerically; floats by IEEE-754 totalOrder (-NaN < -inf < ... < -0.0 < +0.0 < ... < +inf <
+NaN, NaN payloads ignored); False < True; str by code point (= UTF-8 byte order); bytes
unsigned-lexicographically; lists element-wise; dicts as the sequence key1, value1, key2, ... with
keys sorted. In every sequence a proper prefix sorts first. ``Int64(1)`` and ``1.0`` differ.

Encoding (``encode_value``): one tag byte per value, then a body::

    UNDEFINED 01 | None 02 | Int64 03 + 8 bytes big-endian, sign bit flipped
    float 04 + 8 bytes big-endian: negative -> all bits inverted, else sign bit set
    False 05 | True 06
    str 07 + UTF-8 + 00 | bytes 08 + data + 00     (each 00 in the body written as 00 FF)
    list 09 + elements + 00 | dict 0A + (07 key 00, value)* in key order + 00

``encode_key(values)`` concatenates the encodings, and comparing the bytes (memcmp) gives the
order above, tuple-wise. Why: tags are ordered as the types; numeric bodies are fixed-width
big-endian with the order-preserving transform; variable-length bodies end in a 00 that is
smaller than any byte that can continue a longer body (an escaped 00 continues as 00 FF, and any
other byte is >= 01), and smaller than every tag, so a prefix sorts first.

Range helpers: a tag is never 00 or FF, so after a complete encoded value the next byte is a tag
(01..FE), a container terminator (00) or the end. The only way bytes can continue past ``p`` with
an FF is an escape (00 FF) inside a *longer* string/bytes body, which is a different value.
Hence every key that begins with the encoded values ``p`` lies in ``[p, p + FF)``
(:func:`prefix_end`), and ``p + FF`` sorts after all of them (:func:`after`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from syncline.errors import InvalidValue
from syncline.values.types import UNDEFINED, Int64, Value, _Undefined

__all__ = [
    "after",
    "compare",
    "decode_key",
    "encode_key",
    "encode_value",
    "get_field_path",
    "prefix_end",
    "sort_key",
    "values_equal",
]

TAG_UNDEFINED = 0x01
TAG_NULL = 0x02
TAG_INT64 = 0x03
TAG_FLOAT = 0x04
TAG_FALSE = 0x05
TAG_TRUE = 0x06
TAG_STRING = 0x07
TAG_BYTES = 0x08
TAG_ARRAY = 0x09
TAG_OBJECT = 0x0A
_END = 0x00

_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_POS_NAN = 0x7FF8_0000_0000_0000
_NEG_NAN = 0xFFF8_0000_0000_0000
_BE_DOUBLE = struct.Struct(">d")
_BE_U64 = struct.Struct(">Q")
_copysign = math.copysign
_NoneType = type(None)

_RANK: dict[type, int] = {
    _Undefined: 0,
    _NoneType: 1,
    Int64: 2,
    float: 3,
    bool: 4,
    str: 5,
    bytes: 6,
    list: 7,
    dict: 8,
}


def _not_a_value(v: object) -> InvalidValue:
    return InvalidValue(f"{type(v).__qualname__} {v!r:.60} is not a Convex value")


def _float_bits(x: float) -> int:
    """The float's order key: an unsigned 64-bit int whose order is IEEE totalOrder."""
    if x != x:
        # One NaN per sign: payloads must not affect equality or order.
        u = _NEG_NAN if _copysign(1.0, x) < 0 else _POS_NAN
    else:
        (u,) = _BE_U64.unpack(_BE_DOUBLE.pack(x))
    return u ^ _ALL if u & _SIGN else u | _SIGN


def _float_from_bits(k: int) -> float:
    u = k ^ _SIGN if k & _SIGN else k ^ _ALL
    x: float
    (x,) = _BE_DOUBLE.unpack(_BE_U64.pack(u))
    return x


# --------------------------------------------------------------------------- comparison


# compare() and values_equal() take Any: they dispatch on the exact type() (fast, and it keeps
# bool apart from Int64), a test mypy does not narrow through; a non-value raises InvalidValue.


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in the total order."""
    ta = type(a)
    tb = type(b)
    if ta is not tb:
        ra = _RANK.get(ta)
        rb = _RANK.get(tb)
        if ra is None:
            raise _not_a_value(a)
        if rb is None:
            raise _not_a_value(b)
        return -1 if ra < rb else 1
    if ta is float:
        ka: Any = _float_bits(a)
        kb: Any = _float_bits(b)
    elif ta is str or ta is Int64 or ta is bool or ta is bytes:
        ka, kb = a, b
    elif ta is list:
        for x, y in zip(a, b):
            c = compare(x, y)
            if c:
                return c
        ka, kb = len(a), len(b)
    elif ta is dict:
        keys_a = sorted(a)
        keys_b = sorted(b)
        for x, y in zip(keys_a, keys_b):
            if x != y:
                return -1 if x < y else 1
            c = compare(a[x], b[y])
            if c:
                return c
        ka, kb = len(keys_a), len(keys_b)
    elif ta is _NoneType or ta is _Undefined:
        return 0
    else:
        raise _not_a_value(a)
    return -1 if ka < kb else 1 if ka > kb else 0


def values_equal(a: Any, b: Any) -> bool:
    """Equality in the total order: ``-0.0 != 0.0``, NaN equals NaN of the same sign,
    ``Int64(1) != 1.0``, ``True != 1.0``. Faster than ``compare(a, b) == 0``."""
    t = type(a)
    if t is not type(b):
        if t not in _RANK:
            raise _not_a_value(a)
        if type(b) not in _RANK:
            raise _not_a_value(b)
        return False
    if t is float:
        if a == b:
            return a != 0.0 or _copysign(1.0, a) == _copysign(1.0, b)
        return a != a and b != b and _copysign(1.0, a) == _copysign(1.0, b)
    if t is str or t is Int64 or t is bool or t is bytes:
        return bool(a == b)
    if t is list:
        return len(a) == len(b) and all(map(values_equal, a, b))
    if t is dict:
        if len(a) != len(b):
            return False
        for k, x in a.items():
            y = b.get(k, UNDEFINED)
            if y is UNDEFINED or not values_equal(x, y):
                return False
        return True
    if t is _NoneType or t is _Undefined:
        return True
    raise _not_a_value(a)


def sort_key(value: Value | Any) -> bytes:
    """A key for ``sorted(..., key=sort_key)`` that follows the total order (the encoding)."""
    return encode_value(value)


# --------------------------------------------------------------------------- encoding


def _escape(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x00\xff") if b"\x00" in data else data


# A float's order key as bytes (see _float_bits), from its IEEE big-endian bytes: a negative
# one has every bit inverted, a positive one only its sign bit set; the latter with the tag.
_INVERTED = bytes(255 - i for i in range(256))
_TAGGED_POSITIVE_FIRST = [bytes((TAG_FLOAT, b | 0x80)) for b in range(256)]
_pack_double = _BE_DOUBLE.pack


def _encode_into(v: Any, out: list[bytes]) -> None:
    # Parts are appended rather than concatenated: one join at the end copies them once.
    t = type(v)
    if t is str:
        data = v.encode("utf-8")
        out += (b"\x07", data.replace(b"\x00", b"\x00\xff") if b"\x00" in data else data, b"\x00")
    elif t is float:
        if v != v:
            out.append(b"\x04" + _BE_U64.pack(_float_bits(v)))  # one NaN per sign
            return
        data = _pack_double(v)
        if data[0] & 0x80:
            out.append(b"\x04" + data.translate(_INVERTED))
        else:
            out += (_TAGGED_POSITIVE_FIRST[data[0]], data[1:])
    elif t is Int64:
        out.append(b"\x03" + _BE_U64.pack(v + _SIGN))
    elif t is bool:
        out.append(b"\x06" if v else b"\x05")
    elif v is None:
        out.append(b"\x02")
    elif v is UNDEFINED:
        out.append(b"\x01")
    elif t is bytes:
        out.append(b"\x08" + _escape(v) + b"\x00")
    elif t is list:
        out.append(b"\x09")
        for x in v:
            if x is UNDEFINED:
                raise InvalidValue("undefined is not a value inside an array")
            _encode_into(x, out)
        out.append(b"\x00")
    elif t is dict:
        out.append(b"\x0a")
        for k in sorted(v):
            x = v[k]
            if type(k) is not str or x is UNDEFINED:
                raise InvalidValue(f"object field {k!r:.60} is not a valid key or has no value")
            out.append(b"\x07" + _escape(k.encode("utf-8")) + b"\x00")
            _encode_into(x, out)
        out.append(b"\x00")
    else:
        raise _not_a_value(v)


def encode_value(value: Value | Any) -> bytes:
    """The order-preserving encoding of one value.

    A top-level ``UNDEFINED`` (a missing field in an index key) is allowed and sorts first.
    """
    out: list[bytes] = []
    _encode_into(value, out)
    return out[0] if len(out) == 1 else b"".join(out)


def encode_key(values: Iterable[Value | Any]) -> bytes:
    """The order-preserving encoding of a tuple of values: their encodings concatenated."""
    out: list[bytes] = []
    for v in values:
        _encode_into(v, out)
    return b"".join(out)


def prefix_end(prefix: bytes) -> bytes:
    """Exclusive end of the range of keys that begin with the encoded values ``prefix``.

    ``[prefix, prefix_end(prefix))`` holds exactly those keys (see the module docstring).
    """
    return prefix + b"\xff"


def after(key: bytes) -> bytes:
    """The first position after ``key`` and after every key that begins with it.

    Use as an exclusive start (``> key``) that also skips longer keys extending ``key``.
    """
    return key + b"\xff"


# --------------------------------------------------------------------------- decoding


class _KeyError(Exception):
    pass


def _read_body(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read an escaped string/bytes body from ``pos``; return it and the position after 00."""
    j = pos
    n = len(data)
    while True:
        j = data.find(b"\x00", j)
        if j < 0:
            raise _KeyError("unterminated string or bytes")
        if j + 1 < n and data[j + 1] == 0xFF:
            j += 2
            continue
        raw = data[pos:j]
        return (raw.replace(b"\x00\xff", b"\x00") if b"\x00" in raw else raw), j + 1


def _decode_one(data: bytes, pos: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise _KeyError("truncated key")
    tag = data[pos]
    pos += 1
    if tag == TAG_STRING:
        raw, pos = _read_body(data, pos)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError:
            raise _KeyError("invalid UTF-8 in string") from None
    if tag in (TAG_FLOAT, TAG_INT64):
        if pos + 8 > len(data):
            raise _KeyError("truncated number")
        (u,) = _BE_U64.unpack_from(data, pos)
        if tag == TAG_INT64:
            return Int64(u - _SIGN), pos + 8
        return _float_from_bits(u), pos + 8
    if tag == TAG_NULL:
        return None, pos
    if tag == TAG_UNDEFINED:
        return UNDEFINED, pos
    if tag == TAG_FALSE:
        return False, pos
    if tag == TAG_TRUE:
        return True, pos
    if tag == TAG_BYTES:
        return _read_body(data, pos)
    if tag == TAG_ARRAY:
        items: list[Any] = []
        while True:
            if pos >= len(data):
                raise _KeyError("unterminated array")
            if data[pos] == _END:
                return items, pos + 1
            item, pos = _decode_one(data, pos)
            if item is UNDEFINED:
                raise _KeyError("undefined inside an array")
            items.append(item)
    if tag == TAG_OBJECT:
        obj: dict[str, Any] = {}
        while True:
            if pos >= len(data):
                raise _KeyError("unterminated object")
            if data[pos] == _END:
                return obj, pos + 1
            if data[pos] != TAG_STRING:
                raise _KeyError("object key is not a string")
            raw, pos = _read_body(data, pos + 1)
            try:
                key = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _KeyError("invalid UTF-8 in object key") from None
            value, pos = _decode_one(data, pos)
            if value is UNDEFINED:
                raise _KeyError("undefined as an object value")
            obj[key] = value
    raise _KeyError(f"unknown tag 0x{tag:02x} at offset {pos - 1}")


def decode_key(data: bytes) -> tuple[Value | Any, ...]:
    """Inverse of :func:`encode_key`. Strict: only canonical encodings are accepted."""
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(data):
            value, pos = _decode_one(data, pos)
            values.append(value)
    except _KeyError as e:
        raise InvalidValue(f"Invalid encoded key: {e}") from None
    # Rejects what the parser alone would let through: NaN payloads, unsorted object keys.
    if encode_key(values) != data:
        raise InvalidValue("Invalid encoded key: not in canonical form")
    return tuple(values)


# --------------------------------------------------------------------------- field paths


def get_field_path(doc: Mapping[str, Any], path: str) -> Value | Any:
    """The value at dotted ``path`` ("a.b.c") in ``doc``, or ``UNDEFINED``.

    Only objects are traversed: a missing key, or a step into a list or a non-object, gives
    ``UNDEFINED`` (Convex field paths never index into arrays).
    """
    if "." not in path:
        return doc.get(path, UNDEFINED)
    cur: Any = doc
    for part in path.split("."):
        if type(cur) is not dict:
            return UNDEFINED
        cur = cur.get(part, UNDEFINED)
        if cur is UNDEFINED:
            return UNDEFINED
    return cur
