"""Values <-> JSON: Convex's wire encoding ("convex_encoded_json") and the lossy export format.

Wire encoding (``to_json`` / ``from_json``)::

    None, bool, str        as is
    float                  JSON number; NaN, +-inf and -0.0 as {"$float": b64(8-byte LE IEEE754)}
    Int64                  {"$integer": b64(8-byte LE two's complement)}
    bytes                  {"$bytes": b64(data)}
    list, dict             JSON array / object

Base64 is emitted in the standard alphabet with padding; ``-``/``_`` are accepted when decoding.
Every JSON number decodes to a float: int64s only ever arrive as ``$integer``. A ``$``-object is
special only when it has exactly one key; any other ``$`` key is rejected, as are object keys that
are longer than 1024 chars or not printable ASCII.

``from_python`` is the boundary for values produced by user code: it turns a plain ``int`` into a
float (when exact), copies containers and rejects what is not a value.

All errors are :class:`~syncline.errors.InvalidValue` and name the path of the offending part
(``.a.b[0]``). Paths are built only when an error propagates, so the happy path pays nothing.
"""

from __future__ import annotations

import binascii
import math
import re
import struct
from typing import Any, NoReturn, TypeGuard

import orjson

from syncline.errors import InvalidValue
from syncline.values.types import MAX_SAFE_INTEGER, UNDEFINED, Document, Int64, Value

__all__ = [
    "MAX_FIELD_NAME_LENGTH",
    "document_from_json_bytes",
    "field_name_problem",
    "from_json",
    "from_json_bytes",
    "from_python",
    "object_from_python",
    "to_clean_json",
    "to_json",
    "to_json_bytes",
    "to_json_string",
]

MAX_FIELD_NAME_LENGTH = 1024
"""Longest object key (chars) accepted anywhere in a value."""

_LE_DOUBLE = struct.Struct("<d")
_SURROGATE = re.compile("[\ud800-\udfff]")
_URLSAFE_TO_STD = str.maketrans("-_", "+/")
_copysign = math.copysign
_b2a = binascii.b2a_base64


class _PathError(Exception):
    """A problem found deep inside a walk over a value.

    Each enclosing container appends its segment while the error propagates (innermost first),
    so no path strings are built unless something is wrong. Shared with ``size.py``.
    """

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.segments: list[str] = []

    def path(self, prefix: str = "") -> str:
        return prefix + "".join(reversed(self.segments))


def _invalid(err: _PathError, prefix: str = "") -> InvalidValue:
    path = err.path(prefix)
    where = f" at {path}" if path else ""
    return InvalidValue(f"Invalid value{where}: {err.detail}", code=err.code)


def _too_deep() -> InvalidValue:
    return InvalidValue("Invalid value: nested too deeply to process", code="NestingTooDeep")


def field_name_problem(key: object) -> str | None:
    """Why ``key`` cannot be an object key in a value, or None when it can."""
    if type(key) is not str:
        return f"object keys must be strings, not {type(key).__name__} {key!r}"
    if len(key) > MAX_FIELD_NAME_LENGTH:
        return (
            f"field name {key[:40]!r}... is {len(key)} characters long, "
            f"longer than the limit of {MAX_FIELD_NAME_LENGTH}"
        )
    if key.startswith("$"):
        return f"field name {key!r} starts with '$', which is reserved"
    if not (key.isascii() and key.isprintable()):
        return f"field name {key!r} must contain only printable ASCII characters (0x20-0x7E)"
    return None


def _is_valid_key(key: object) -> TypeGuard[str]:
    # isascii() + isprintable() together mean "every char in 0x20..0x7E"; both are C loops.
    return (
        type(key) is str
        and len(key) <= MAX_FIELD_NAME_LENGTH
        and key.isascii()
        and key.isprintable()
        and not key.startswith("$")
    )


def _bad_key(key: object) -> NoReturn:
    raise _PathError(field_name_problem(key) or f"invalid field name {key!r}")


# Field names repeat from value to value (one schema, many documents), so valid ones are
# remembered: a set lookup instead of five checks per key. Bounded in count and key length,
# so hostile input can fill it once but never grow it.
_KNOWN_KEYS: set[str] = set()
_KNOWN_KEYS_MAX = 20_000
_KNOWN_KEY_MAX_LEN = 64


def _check_key(key: object) -> None:
    """Slow path for a key not in ``_KNOWN_KEYS``: raise if invalid, else remember it."""
    if not _is_valid_key(key):
        _bad_key(key)
    if len(key) <= _KNOWN_KEY_MAX_LEN and len(_KNOWN_KEYS) < _KNOWN_KEYS_MAX:
        _KNOWN_KEYS.add(key)


def _lone_surrogate(s: str) -> str:
    m = _SURROGATE.search(s)
    assert m is not None
    return f"string contains a lone surrogate U+{ord(m.group()):04X}, which is not valid Unicode"


def _not_a_value(v: object) -> str:
    if v is UNDEFINED:
        return "undefined is not a valid Convex value"
    t = type(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return (
            f"Python int {v} is not a Convex value; convert it with from_python() "
            "or use syncline.Int64"
        )
    if t is tuple:
        return "tuple is not a supported Convex type; use a list"
    if isinstance(v, (set, frozenset)):
        return f"{t.__name__} is not a supported Convex type; use a list"
    return f"{t.__qualname__} is not a supported Convex type"


def _b64(data: bytes) -> str:
    return _b2a(data, newline=False).decode("ascii")


# --------------------------------------------------------------------------- to_json


def to_json(value: Value) -> Any:
    """Encode a value as a JSON-able object in Convex's wire format.

    ``value`` must already be a normalized value (see :func:`from_python`): a plain ``int`` is
    rejected. Containers that need no conversion are shared with ``value``, not copied.
    """
    try:
        return _enc(value)
    except _PathError as e:
        raise _invalid(e) from None
    except RecursionError:
        raise _too_deep() from None


def _enc_float(v: float) -> Any:
    # Finite non-zero, or +0.0: a plain JSON number. NaN, +-inf and -0.0 need "$float".
    if (v != 0.0 and v - v == 0.0) or (v == 0.0 and _copysign(1.0, v) > 0.0):
        return v
    return {"$float": _b64(_LE_DOUBLE.pack(v))}


def _enc(v: Any) -> Any:
    t = type(v)
    if t is str:
        if not v.isascii() and _SURROGATE.search(v):
            raise _PathError(_lone_surrogate(v))
        return v
    if t is float:
        return _enc_float(v)
    if t is bool or v is None:
        return v
    if t is dict:
        return _enc_dict(v)
    if t is list:
        return _enc_list(v)
    if t is Int64:
        return {"$integer": _b64(v.to_bytes(8, "little", signed=True))}
    if t is bytes:
        return {"$bytes": _b64(v)}
    raise _PathError(_not_a_value(v))


def _enc_dict(d: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    known = _KNOWN_KEYS
    for k, x in d.items():
        if k not in known:
            _check_key(k)
        t = type(x)
        # Common leaves that encode to themselves.
        if (
            (t is str and x.isascii())
            or t is bool
            or x is None
            or (t is float and x != 0.0 and x - x == 0.0)
        ):
            continue
        try:
            y = _enc(x)
        except _PathError as e:
            e.segments.append("." + k)
            raise
        if y is not x:
            if out is None:
                out = dict(d)
            out[k] = y
    return d if out is None else out


def _enc_list(items: list[Any]) -> list[Any]:
    out: list[Any] | None = None
    for i, x in enumerate(items):
        t = type(x)
        if (
            (t is str and x.isascii())
            or t is bool
            or x is None
            or (t is float and x != 0.0 and x - x == 0.0)
        ):
            continue
        try:
            y = _enc(x)
        except _PathError as e:
            e.segments.append(f"[{i}]")
            raise
        if y is not x:
            if out is None:
                out = list(items)
            out[i] = y
    return items if out is None else out


def to_json_bytes(value: Value) -> bytes:
    """Encode a value as UTF-8 JSON bytes in Convex's wire format."""
    try:
        return orjson.dumps(to_json(value))
    except orjson.JSONEncodeError as e:
        # orjson refuses nesting deeper than 254 levels; everything else was validated above.
        raise InvalidValue(f"Invalid value: cannot serialize to JSON: {e}") from None


def to_json_string(value: Value) -> str:
    """Encode a value as a JSON string in Convex's wire format."""
    return to_json_bytes(value).decode("utf-8")


# --------------------------------------------------------------------------- from_json


def from_json(obj: Any) -> Value:
    """Decode a parsed JSON object (Convex wire format) into a value.

    JSON numbers (``int`` or ``float`` from the parser) become floats. Containers that need no
    conversion are shared with ``obj``, so do not mutate ``obj`` afterwards.
    """
    try:
        value: Value = _dec(obj, False)
    except _PathError as e:
        raise _invalid(e) from None
    except RecursionError:
        raise _too_deep() from None
    return value


def from_json_bytes(data: bytes | str) -> Value:
    """Parse JSON text in Convex's wire format into a value."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        # orjson rejects numbers that overflow a double (1e400) and nesting beyond 1024 here.
        raise InvalidValue(f"Invalid JSON: {e}") from None
    try:
        # We own the parse result: convert in place, and orjson already rejected lone surrogates.
        value: Value = _dec(obj, True)
    except _PathError as e:
        raise _invalid(e) from None
    except RecursionError:
        raise _too_deep() from None
    return value


def document_from_json_bytes(data: bytes | str) -> Document:
    """Parse JSON text in Convex's wire format that holds a document (an object)."""
    value = from_json_bytes(data)
    if type(value) is not dict:
        raise InvalidValue(f"Expected a document (a JSON object), got {type(value).__name__}")
    return value


def _json_int(x: int) -> float:
    try:
        return float(x)
    except OverflowError:
        raise _PathError(f"JSON number {str(x)[:30]}... is out of float64 range") from None


# The converters below dispatch on the exact type() for speed, which mypy does not narrow
# through, so they are typed Any; the public functions above state that the result is a Value.


def _dec(x: Any, owned: bool) -> Any:
    t = type(x)
    if t is str:
        if not owned and not x.isascii() and _SURROGATE.search(x):
            raise _PathError(_lone_surrogate(x))
        return x
    if t is float or t is bool or x is None:
        return x
    if t is int:
        return _json_int(x)
    if t is dict:
        return _dec_dict(x, owned)
    if t is list:
        return _dec_list(x, owned)
    raise _PathError(f"{t.__qualname__} is not a JSON value")


def _dec_dict(d: dict[Any, Any], owned: bool) -> Any:
    if len(d) == 1:
        ((k, x),) = d.items()
        if type(k) is str and k.startswith("$"):
            return _dec_special(k, x)
    out: dict[str, Any] | None = d if owned else None
    known = _KNOWN_KEYS
    for k, x in d.items():
        if k not in known:
            _check_key(k)
        t = type(x)
        if (t is str and (owned or x.isascii())) or t is float or t is bool or x is None:
            continue
        try:
            y = _dec(x, owned)
        except _PathError as e:
            e.segments.append("." + k)
            raise
        if y is not x:
            if out is None:
                out = dict(d)
            # Replacing the value of an existing key is safe while iterating.
            out[k] = y
    return d if out is None else out


def _dec_list(items: list[Any], owned: bool) -> list[Any]:
    out: list[Any] | None = items if owned else None
    for i, x in enumerate(items):
        t = type(x)
        if (t is str and (owned or x.isascii())) or t is float or t is bool or x is None:
            continue
        try:
            y = _dec(x, owned)
        except _PathError as e:
            e.segments.append(f"[{i}]")
            raise
        if y is not x:
            if out is None:
                out = list(items)
            out[i] = y
    return items if out is None else out


def _b64decode(key: str, s: Any) -> bytes:
    if type(s) is not str:
        raise _PathError(f"{key} must hold a base64 string, not {type(s).__name__}")
    if "-" in s or "_" in s:
        s = s.translate(_URLSAFE_TO_STD)
    try:
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _PathError(f"{key} holds invalid base64 {s[:40]!r}") from None


def _dec_special(key: str, payload: Any) -> Any:
    if key == "$integer":
        raw = _b64decode(key, payload)
        if len(raw) != 8:
            raise _PathError(f"$integer must decode to 8 bytes, got {len(raw)}")
        return Int64(int.from_bytes(raw, "little", signed=True))
    if key == "$float":
        raw = _b64decode(key, payload)
        if len(raw) != 8:
            raise _PathError(f"$float must decode to 8 bytes, got {len(raw)}")
        (f,) = _LE_DOUBLE.unpack(raw)
        # Only NaN, +-inf and +-0.0 may be wrapped (clients reject the rest too); +0.0 is
        # accepted although clients never send it wrapped.
        if f != 0.0 and f - f == 0.0:
            raise _PathError(f"$float holds {f!r}, which must be sent as a plain JSON number")
        return f
    if key == "$bytes":
        return _b64decode(key, payload)
    if key in ("$set", "$map"):
        raise _PathError(f"{key} is no longer supported")
    raise _PathError(f"field name {key!r} starts with '$', which is reserved")


# --------------------------------------------------------------------------- export format


def to_clean_json(value: Value) -> Any:
    """The lossy "json" export format: plain JSON with no ``$`` wrappers.

    Int64 -> decimal string, bytes -> base64 string, NaN/+-inf -> "NaN"/"Infinity"/"-Infinity";
    -0.0 stays a number. Always builds a new structure.
    """
    try:
        return _clean(value)
    except _PathError as e:
        raise _invalid(e) from None
    except RecursionError:
        raise _too_deep() from None


def _clean(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0:
            return v
        if v != v:
            return "NaN"
        return "Infinity" if v > 0 else "-Infinity"
    if t is dict:
        out: dict[str, Any] = {}
        for k, x in v.items():
            try:
                out[k] = _clean(x)
            except _PathError as e:
                e.segments.append(f".{k}")
                raise
        return out
    if t is list:
        res: list[Any] = []
        for i, x in enumerate(v):
            try:
                res.append(_clean(x))
            except _PathError as e:
                e.segments.append(f"[{i}]")
                raise
        return res
    if t is Int64:
        return str(int(v))
    if t is bytes:
        return _b64(v)
    raise _PathError(_not_a_value(v))


# --------------------------------------------------------------------------- from_python


def from_python(obj: Any, *, path: str = "") -> Value:
    """Normalize a native Python object produced by user code into a value.

    * ``int`` (not bool/Int64) becomes a float when ``|x| <= 2**53``, else it is rejected;
    * ``bytearray``/``memoryview`` become ``bytes``; subclasses of the value types become the
      base type (``IntEnum`` counts as an int, ``OrderedDict`` as a dict);
    * a dict field whose value is ``UNDEFINED`` is dropped (``{"a": undefined}`` is ``{}``);
      ``UNDEFINED`` anywhere else is an error, so ``db.patch`` must handle its top-level
      ``UNDEFINED`` fields before calling this;
    * tuples, sets, other objects, non-str keys, invalid keys and lone surrogates are rejected.

    Containers are always copied, so later mutation by the caller cannot reach the result.
    ``path`` prefixes the path in error messages (e.g. ``"args"``).
    """
    try:
        value: Value = _py(obj)
    except _PathError as e:
        raise _invalid(e, path) from None
    except RecursionError:
        raise _too_deep() from None
    return value


def object_from_python(obj: dict[str, Any], *, path: str = "") -> dict[str, Value]:
    """:func:`from_python` for a dict (document fields, function arguments): the result is one."""
    try:
        value: dict[str, Value] = _py(obj)
    except _PathError as e:
        raise _invalid(e, path) from None
    except RecursionError:
        raise _too_deep() from None
    return value


def _py_int(x: int) -> float:
    if -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
        return float(x)
    raise _PathError(
        f"{x} is outside float64's exact range; use syncline.Int64 or a v.int64() validator"
    )


def _py(x: Any) -> Any:
    t = type(x)
    if t is str:
        if not x.isascii() and _SURROGATE.search(x):
            raise _PathError(_lone_surrogate(x))
        return x
    if t is float or t is bool or x is None:
        return x
    if t is dict:
        return _py_dict(x)
    if t is list:
        return _py_list(x)
    if t is int:
        return _py_int(x)
    if t is Int64 or t is bytes:
        return x
    return _py_other(x)


def _py_dict(d: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = _KNOWN_KEYS
    for k, x in d.items():
        # The type check keeps str subclasses (equal to known keys) on the converting path.
        if type(k) is not str or k not in known:
            k = _py_key(k)
        t = type(x)
        if t is float or t is bool or x is None or (t is str and x.isascii()):
            out[k] = x
            continue
        if x is UNDEFINED:
            continue
        try:
            out[k] = _py(x)
        except _PathError as e:
            e.segments.append("." + k)
            raise
    return out


def _py_key(k: Any) -> str:
    # str subclasses (StrEnum, ...) become plain str; str.__str__ ignores an overridden __str__.
    if type(k) is not str and isinstance(k, str):
        k = str.__str__(k)
    _check_key(k)
    return str(k)


def _py_list(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for i, x in enumerate(items):
        t = type(x)
        if t is float or t is bool or x is None or (t is str and x.isascii()):
            append(x)
            continue
        try:
            if x is UNDEFINED:
                raise _PathError("undefined is not allowed in an array; use None (null)")
            append(_py(x))
        except _PathError as e:
            e.segments.append(f"[{i}]")
            raise
    return out


def _py_other(x: Any) -> Any:
    # Subclasses and convertible types; bool cannot be subclassed.
    if isinstance(x, Int64):
        return Int64(int(x))
    if isinstance(x, int) and not isinstance(x, bool):
        return _py_int(int(x))
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return _py(str.__str__(x))
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if isinstance(x, memoryview):
        return x.tobytes()
    if isinstance(x, dict):
        return _py_dict(x)
    if isinstance(x, list):
        return _py_list(x)
    raise _PathError(_not_a_value(x))
