"""Value sizes and the per-value / per-document limits (semantics.md §1.5, §13).

Size formula (Convex's, so limits trip at the same points)::

    null 1, bool 1, Int64 9, float 9, str 2 + UTF-8 length, bytes 2 + length,
    list 2 + sum(element sizes), dict 2 + sum(utf8_len(key) + 1 + size(value))

Nesting counts containers: a primitive is 0, a list/dict is 1 + its deepest child, so a flat
document has nesting 1.

:func:`check_value_limits` (function arguments, return values) and :func:`check_document`
(stored documents) walk a value once, checking counts, nesting and field names as they go,
and report the path of the first offending part. Count and size violations raise
:class:`~syncline.errors.LimitExceeded`; malformed field names and non-values raise
:class:`~syncline.errors.InvalidValue`.
"""

from __future__ import annotations

import re
from typing import Any

from syncline.errors import InvalidValue, LimitExceeded
from syncline.values.json import _KNOWN_KEYS, _check_key, _not_a_value, _PathError
from syncline.values.types import Int64, Value

__all__ = [
    "MAX_ARRAY_LENGTH",
    "MAX_DOCUMENT_NESTING",
    "MAX_DOCUMENT_SIZE",
    "MAX_OBJECT_FIELDS",
    "MAX_TOP_LEVEL_FIELD_NAME_LENGTH",
    "MAX_VALUE_NESTING",
    "MAX_VALUE_SIZE",
    "check_document",
    "check_value_limits",
    "nesting_depth",
    "value_size",
]

MAX_ARRAY_LENGTH = 8192
MAX_OBJECT_FIELDS = 1024
MAX_DOCUMENT_SIZE = 1 << 20
MAX_DOCUMENT_NESTING = 16
MAX_VALUE_NESTING = 64
MAX_VALUE_SIZE = 16 * (1 << 20)
MAX_TOP_LEVEL_FIELD_NAME_LENGTH = 64
SYSTEM_FIELDS = frozenset({"_id", "_creationTime"})

_IDENTIFIER = re.compile("[A-Za-z_][A-Za-z0-9_]*")
_LIMIT_CODES = frozenset({"ArrayTooLong", "TooManyFields", "NestingTooDeep", "ValueTooLarge"})


def _utf8_len(s: str) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise _PathError("string contains a lone surrogate, which is not valid Unicode") from None


def value_size(value: Value) -> int:
    """Size of ``value`` in bytes by Convex's formula (no limits checked)."""
    try:
        return _size(value)
    except _PathError as e:
        raise InvalidValue(f"Invalid value: {e.detail}") from None
    except RecursionError:
        raise InvalidValue("Invalid value: nested too deeply to process") from None


def _size(v: Any) -> int:
    t = type(v)
    if t is str:
        return 2 + _utf8_len(v)
    if t is float or t is Int64:
        return 9
    if t is bool or v is None:
        return 1
    if t is bytes:
        return 2 + len(v)
    if t is list:
        return 2 + sum(map(_size, v))
    if t is dict:
        return 2 + sum(_utf8_len(k) + 1 + _size(x) for k, x in v.items())
    raise _PathError(_not_a_value(v))


def nesting_depth(value: Value) -> int:
    """Container nesting of ``value``: 0 for a primitive, 1 for a flat list or dict.

    Iterative, so arbitrarily deep values cannot exhaust the Python stack.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is list:
            children: Any = v
        elif t is dict:
            children = v.values()
        else:
            continue
        if depth > deepest:
            deepest = depth
        stack.extend((c, depth + 1) for c in children if type(c) is list or type(c) is dict)
    return deepest


class _Walker:
    """One pass over a value: size, counts, nesting and (nested) field names."""

    __slots__ = ("max_nesting",)

    def __init__(self, max_nesting: int) -> None:
        self.max_nesting = max_nesting

    def size(self, v: Any, depth: int) -> int:
        # ``depth`` is the nesting level ``v`` has if it is a container.
        t = type(v)
        if t is str:
            return 2 + _utf8_len(v)
        if t is float or t is Int64:
            return 9
        if t is bool or v is None:
            return 1
        if t is bytes:
            return 2 + len(v)
        if t is list:
            return self.list_size(v, depth)
        if t is dict:
            return self.dict_size(v, depth)
        raise _PathError(_not_a_value(v))

    def list_size(self, items: list[Any], depth: int) -> int:
        if depth > self.max_nesting:
            raise _PathError("", code="NestingTooDeep")
        n = len(items)
        if n > MAX_ARRAY_LENGTH:
            raise _PathError(
                f"array has {n} elements, more than the limit of {MAX_ARRAY_LENGTH}",
                code="ArrayTooLong",
            )
        total = 2
        for i, x in enumerate(items):
            t = type(x)
            if t is float or t is Int64:
                total += 9
            elif t is str and x.isascii():
                total += 2 + len(x)
            elif t is bool or x is None:
                total += 1
            else:
                try:
                    total += self.size(x, depth + 1)
                except _PathError as e:
                    e.segments.append(f"[{i}]")
                    raise
        return total

    def dict_size(self, d: dict[Any, Any], depth: int) -> int:
        if depth > self.max_nesting:
            raise _PathError("", code="NestingTooDeep")
        n = len(d)
        if n > MAX_OBJECT_FIELDS:
            raise _PathError(
                f"object has {n} fields, more than the limit of {MAX_OBJECT_FIELDS}",
                code="TooManyFields",
            )
        total = 2
        known = _KNOWN_KEYS
        for k, x in d.items():
            if k not in known:
                _check_key(k)
            total += len(k) + 1  # valid keys are ASCII
            t = type(x)
            if t is float or t is Int64:
                total += 9
            elif t is str and x.isascii():
                total += 2 + len(x)
            elif t is bool or x is None:
                total += 1
            else:
                try:
                    total += self.size(x, depth + 1)
                except _PathError as e:
                    e.segments.append("." + k)
                    raise
        return total


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _error(
    err: _PathError, value: Any, max_nesting: int, what: str
) -> InvalidValue | LimitExceeded:
    path = err.path()
    where = f" at {path}" if path else ""
    if err.code == "NestingTooDeep":
        return LimitExceeded(
            f"Nesting depth of {what} is {nesting_depth(value)}, more than the limit of "
            f"{max_nesting} (first container over the limit{where or ' at the top level'})",
            code="NestingTooDeep",
        )
    if err.code in _LIMIT_CODES:
        return LimitExceeded(f"{_upper_first(what)}{where}: {err.detail}", code=err.code)
    return InvalidValue(f"Invalid {what}{where}: {err.detail}", code=err.code)


def check_value_limits(
    value: Value,
    *,
    max_nesting: int = MAX_VALUE_NESTING,
    max_size: int = MAX_VALUE_SIZE,
    what: str = "value",
) -> int:
    """Check a value against the generic limits and return its size.

    :class:`LimitExceeded` codes: ``ArrayTooLong`` (> 8192 elements), ``TooManyFields``
    (> 1024 fields in one object), ``NestingTooDeep`` (> ``max_nesting``), ``ValueTooLarge``
    (> ``max_size`` bytes). ``what`` names the value in messages ("function arguments").
    """
    walker = _Walker(max_nesting)
    try:
        size = walker.size(value, 1)
    except _PathError as e:
        raise _error(e, value, max_nesting, what) from None
    if size > max_size:
        raise LimitExceeded(
            f"Size of {what} is {size} bytes, more than the limit of {max_size} bytes",
            code="ValueTooLarge",
        )
    return size


# Valid top-level field names seen so far (same reasoning and bounds as json._KNOWN_KEYS).
_KNOWN_FIELDS: set[str] = set(SYSTEM_FIELDS)
_KNOWN_FIELDS_MAX = 20_000


def _top_level_name_problem(name: object) -> str | None:
    if type(name) is not str:
        return f"field names must be strings, not {type(name).__name__} {name!r}"
    if name in SYSTEM_FIELDS:
        return None
    if len(name) > MAX_TOP_LEVEL_FIELD_NAME_LENGTH:
        return (
            f"field name {name[:40]!r}... is {len(name)} characters long, more than the limit "
            f"of {MAX_TOP_LEVEL_FIELD_NAME_LENGTH}"
        )
    if not _IDENTIFIER.fullmatch(name):
        return (
            f"field name {name!r} is not a valid identifier (letters, digits and underscores, "
            "not starting with a digit)"
        )
    if name.startswith("_"):
        return f"field name {name!r} starts with '_', which is reserved for system fields"
    return None


def check_document(doc: dict[str, Any]) -> int:
    """Check a document about to be stored (with ``_id`` and ``_creationTime``); return its size.

    Size <= 1 MiB (``DocumentTooLarge``), nesting <= 16, <= 1024 fields per object (system
    fields included), arrays <= 8192 elements. Top-level field names must be identifiers of at
    most 64 chars not starting with ``_`` (except the system fields); nested keys follow the
    generic rules (printable ASCII, no leading ``$``, <= 1024 chars). Bad names raise
    :class:`InvalidValue`; broken limits raise :class:`LimitExceeded`.
    """
    if type(doc) is not dict:
        raise InvalidValue(f"A document must be an object, not {type(doc).__name__}")
    walker = _Walker(MAX_DOCUMENT_NESTING)
    n = len(doc)
    if n > MAX_OBJECT_FIELDS:
        raise LimitExceeded(
            f"Document has {n} fields, more than the limit of {MAX_OBJECT_FIELDS}",
            code="TooManyFields",
        )
    size = 2
    known = _KNOWN_FIELDS
    for k, x in doc.items():
        if k not in known:
            problem = _top_level_name_problem(k)
            if problem is not None:
                raise InvalidValue(f"Invalid document: {problem}")
            if len(known) < _KNOWN_FIELDS_MAX:
                known.add(k)
        size += len(k) + 1
        try:
            size += walker.size(x, 2)
        except _PathError as e:
            e.segments.append("." + k)
            raise _error(e, doc, MAX_DOCUMENT_NESTING, "document") from None
    if size > MAX_DOCUMENT_SIZE:
        raise LimitExceeded(
            f"Document is too large: {size} bytes, more than the limit of "
            f"{MAX_DOCUMENT_SIZE} bytes (1 MiB)",
            code="DocumentTooLarge",
        )
    return size


class _NotFast(Exception):
    """The value needs :func:`~syncline.values.json.from_python`'s conversions, or breaks a limit."""


#: What :func:`copy_within_limits` returns when it cannot decide on its own.
NOT_FAST: Any = object()


def copy_within_limits(
    value: Any, *, max_nesting: int = MAX_VALUE_NESTING, max_size: int = MAX_VALUE_SIZE
) -> Any:
    """``from_python(value)`` and :func:`check_value_limits` on it, fused into one walk.

    Handles values that are already normalized (exact ``str``/``float``/``bool``/
    ``None``/``Int64``/``bytes``/``dict``/``list``, ASCII strings, valid field names)
    and within the limits; for anything else (a conversion, an error) it returns
    :data:`NOT_FAST` and the caller runs the two steps, which give the same value or
    the exact error. Containers are copied, as ``from_python`` copies them.
    """
    try:
        copy, size = _fast(value, 1, max_nesting)
    except (_NotFast, RecursionError):
        return NOT_FAST
    return copy if size <= max_size else NOT_FAST


def _fast(v: Any, depth: int, max_nesting: int) -> tuple[Any, int]:
    t = type(v)
    if t is str:
        if not v.isascii():
            raise _NotFast
        return v, 2 + len(v)
    if t is float or t is Int64:
        return v, 9
    if t is bool or v is None:
        return v, 1
    if t is dict:
        if depth > max_nesting or len(v) > MAX_OBJECT_FIELDS:
            raise _NotFast
        known = _KNOWN_KEYS
        out: dict[str, Any] = {}
        total = 2
        for k, x in v.items():
            if type(k) is not str:
                raise _NotFast  # str subclasses too: from_python makes them plain str
            if k not in known:
                try:
                    _check_key(k)  # remembers a valid key, as from_python does
                except _PathError:
                    raise _NotFast from None
            tx = type(x)
            if tx is str and x.isascii():
                out[k] = x
                total += len(k) + 3 + len(x)
            elif tx is float:
                out[k] = x
                total += len(k) + 10
            else:
                y, size = _fast(x, depth + 1, max_nesting)
                out[k] = y
                total += len(k) + 1 + size
        return out, total
    if t is list:
        if depth > max_nesting or len(v) > MAX_ARRAY_LENGTH:
            raise _NotFast
        items: list[Any] = []
        append = items.append
        total = 2
        for x in v:
            y, size = _fast(x, depth + 1, max_nesting)
            append(y)
            total += size
        return items, total
    if t is bytes:
        return v, 2 + len(v)
    raise _NotFast
