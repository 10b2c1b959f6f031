"""The snapshot formats' shared parts: Convex's lossless export JSON for values, and
the names of a snapshot ZIP's entries (see :mod:`syncline.snapshot`).
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

import orjson

from syncline.errors import InvalidValue
from syncline.values.json import from_json
from syncline.values.types import INT64_MAX, INT64_MIN, Int64, Value

__all__ = [
    "STORAGE_TABLE",
    "TABLES_TABLE",
    "UNIFORM",
    "b64",
    "decode_export_line",
    "from_export_json",
    "to_export_json",
]

#: the ZIP entry listing the user tables and their numbers
TABLES_TABLE = "_tables"
STORAGE_TABLE = "_storage"
#: ``generated_schema.jsonl``'s marker of the lossless export JSON
UNIFORM = "uniform"
_LE_DOUBLE = struct.Struct("<d")


def to_export_json(value: Any) -> Any:
    """Encode a value in Convex's lossless export JSON (see :mod:`syncline.snapshot`).

    Returns a new JSON-able structure for :func:`orjson.dumps`, which writes
    every float with a fraction or exponent (``1.0``), so int64 and float64
    stay distinguishable. Takes Any: it dispatches on the exact ``type()``
    (fast), which mypy does not narrow through; a non-value raises InvalidValue.
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float:
        if value - value == 0.0:
            return value
        return {"$float": b64(_LE_DOUBLE.pack(value))}
    if t is Int64:
        return int(value)
    if t is dict:
        return {k: to_export_json(x) for k, x in value.items()}
    if t is list:
        return [to_export_json(x) for x in value]
    if t is bytes:
        return {"$bytes": b64(value)}
    raise InvalidValue(f"{t.__qualname__} is not a Convex value")


def from_export_json(obj: Any) -> Value:
    """Decode Convex's lossless export JSON parsed by orjson (see :mod:`syncline.snapshot`).

    JSON integers become :class:`Int64` (an integer outside int64's range is
    an error), other JSON numbers floats, and a one-key object whose key
    starts with ``$`` the special value it wraps. Converts ``obj`` in place.
    Raises InvalidValue naming the path of the offending part.
    """
    try:
        return _from_export(obj)
    except _ExportPathError as exc:
        where = "".join(reversed(exc.segments))
        raise InvalidValue(f"Invalid value{' at ' + where if where else ''}: {exc}") from None


class _ExportPathError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.segments: list[str] = []


def _from_export(x: Any) -> Any:
    t = type(x)
    if t is str or t is float or t is bool or x is None:
        return x
    if t is int:
        if INT64_MIN <= x <= INT64_MAX:
            return Int64(x)
        raise _ExportPathError(f"integer {x} is outside the int64 range")
    if t is dict:
        if len(x) == 1:
            (key,) = x
            if type(key) is str and key.startswith("$"):
                try:
                    return from_json(x)
                except InvalidValue as exc:
                    raise _ExportPathError(exc.message.removeprefix("Invalid value: ")) from None
        for key, item in x.items():
            t2 = type(item)
            if t2 is str or t2 is float or t2 is bool or item is None:
                continue
            try:
                x[key] = _from_export(item)
            except _ExportPathError as exc:
                exc.segments.append(f".{key}")
                raise
        return x
    if t is list:
        for i, item in enumerate(x):
            try:
                x[i] = _from_export(item)
            except _ExportPathError as exc:
                exc.segments.append(f"[{i}]")
                raise
        return x
    raise _ExportPathError(f"{t.__qualname__} is not a JSON value")


def decode_export_line(line: bytes) -> Any:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"Invalid JSON: {exc}") from None
    return from_export_json(parsed)


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")
