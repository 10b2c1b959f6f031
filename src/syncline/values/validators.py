"""Validators: the ``v`` namespace (``v.string()``, ``v.object({...})``, ...).

A validator describes a set of Convex values. ``validator.validate(value, ctx)``
checks *and* coerces in one pass and returns the coerced value:

- a plain Python ``int`` (not ``bool``, not :class:`Int64`) becomes an
  :class:`Int64` under ``v.int64()`` (range-checked) and a ``float`` under
  ``v.number()`` (rejected when ``|x| > 2**53``, which would lose precision);
- ``v.number()`` rejects :class:`Int64` and ``v.int64()`` rejects floats, even
  integral ones: in Convex ``1`` and ``1n`` are different values;
- object keys whose value is :data:`UNDEFINED` are dropped (``{a: undefined}``
  is ``{}``); ``v.optional(x)`` lets a field be absent but accepts ``None`` only
  if ``x`` does;
- unions try their members in order and the first member that accepts wins,
  so ``v.union(v.int64(), v.number())`` turns a plain ``int`` into ``Int64``;
- ``v.any()`` normalizes with :func:`syncline.values.json.from_python`.

Validators check types and shapes. Value limits (document size, nesting,
array length, fields per object) are enforced where values cross the storage
and wire boundaries, not here.

On failure ``validate`` raises :class:`ValidatorError` whose message follows
Convex's wording (``Value does not match validator.`` + ``Path:`` /
``Value:`` / ``Validator:`` lines). Callers re-wrap it with a prefix
(argument, return-value or schema validation) using :attr:`ValidatorError.detail`.

Design note (performance): validation runs on every write and every function
call. The hot path (``_coerce``) returns a sentinel on mismatch and never
builds paths or messages. Only when the top-level check fails does
``_explain`` walk the value again to find the first failing position and
build the error, so a successful validation allocates nothing but the
coerced output.

Validators are immutable; ``repr()`` prints ``v.*(...)`` source syntax and
``to_json()`` gives Convex's JSON form, parsed back by :func:`validator_from_json`.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, Protocol

from syncline.errors import SchemaDefinitionError, SynclineError
from syncline.values.ids import table_number_of
from syncline.values.json import from_json as value_from_json
from syncline.values.json import from_python
from syncline.values.json import to_json as value_to_json
from syncline.values.keys import values_equal
from syncline.values.types import MAX_SAFE_INTEGER, UNDEFINED, Int64, Value

__all__ = [
    "VAny",
    "VArray",
    "VBoolean",
    "VBytes",
    "VDoc",
    "VFloat64",
    "VId",
    "VInt64",
    "VLiteral",
    "VNull",
    "VObject",
    "VOptional",
    "VRecord",
    "VString",
    "VUnion",
    "ValidationContext",
    "Validator",
    "ValidatorError",
    "as_validator",
    "format_value",
    "is_identifier",
    "substitute",
    "v",
    "validate_object",
    "validator_from_json",
    "walk",
]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_MAX_IDENTIFIER_LEN: Final = 64
_MAX_RECORD_KEY_LEN: Final = 1024
_ACTUAL_LIMIT: Final = 200

_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Docs: record keys are non-empty printable ASCII and may not start with `$` or `_`.
_RECORD_KEY_RE: Final = re.compile(r"[\x20-\x23\x25-\x5e\x60-\x7e][\x20-\x7e]*\Z")


class _Invalid:
    """The mismatch sentinel of the fast path; never a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()


class ValidationContext(Protocol):
    """What validation needs from the database: the table an id belongs to."""

    def table_name_of_id(self, id_str: str) -> str | None:
        """The name of the table ``id_str`` belongs to, or ``None`` if it is
        not a well-formed id of an existing table."""
        ...


class ValidatorError(SynclineError):
    """A value does not match a validator.

    ``path`` is where in the value the mismatch is (``".tasks[2].title"``,
    ``""`` for the root), ``expected`` the ``repr`` of the validator that
    rejected it, ``actual`` a short rendering of the offending value (at most
    ~200 characters) and ``reason`` the first line of the message.
    :attr:`detail` is the full message without any caller prefix.
    """

    code = "ValidationError"
    http_status = 400

    def __init__(
        self,
        reason: str,
        *,
        path: str,
        expected: str,
        actual: str,
        label: str = "Value",
        separator: str = "\n",
    ) -> None:
        lines = [f"Path: {path}"] if path else []
        lines.append(f"{label}: {actual}")
        lines.append(f"Validator: {expected}")
        super().__init__(reason + separator + "\n".join(lines))
        self.reason = reason
        self.path = path
        self.expected = expected
        self.actual = actual

    @property
    def detail(self) -> str:
        """The message without prefix, for callers that re-wrap this error."""
        return self.message


def is_identifier(name: object) -> bool:
    """True for ``[A-Za-z_][A-Za-z0-9_]*``, at most 64 chars, not all underscores."""
    return (
        isinstance(name, str)
        and len(name) <= _MAX_IDENTIFIER_LEN
        and _IDENTIFIER_RE.match(name) is not None
        and name.strip("_") != ""
    )


def _definition_error(message: str) -> SchemaDefinitionError:
    return SchemaDefinitionError(message)


# --------------------------------------------------------------------------
# Rendering of values and paths (only on the error path)


def _quote(s: str) -> str:
    # JSON string syntax is also valid Python literal syntax, and reads like Convex's output.
    return json.dumps(s, ensure_ascii=False)


def _float_repr(x: float) -> str:
    if math.isnan(x):
        return 'float("nan")' if math.copysign(1.0, x) > 0 else '-float("nan")'
    if math.isinf(x):
        return 'float("inf")' if x > 0 else 'float("-inf")'
    return repr(x)


def _value_tokens(value: Any, limit: int) -> Iterator[str]:
    if value is None:
        yield "None"
    elif value is True or value is False or isinstance(value, Int64):
        yield repr(value)
    elif isinstance(value, float):
        yield _float_repr(value)
    elif isinstance(value, int):
        yield repr(value)
    elif isinstance(value, str):
        yield _quote(value[: limit + 1])
    elif isinstance(value, bytes | bytearray | memoryview):
        yield repr(bytes(value[: limit + 1]))
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _value_tokens(item, limit)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            if i:
                yield ", "
            yield _quote(key) if isinstance(key, str) else repr(key)
            yield ": "
            yield from _value_tokens(item, limit)
        yield "}"
    else:
        yield repr(value)[: limit + 1]


def format_value(value: Any, limit: int = _ACTUAL_LIMIT) -> str:
    """Python-syntax rendering of ``value`` cut to ``limit`` characters (+ ``...``).

    Stops walking as soon as the limit is passed, so huge values cost little.
    """
    parts: list[str] = []
    size = 0
    for token in _value_tokens(value, limit):
        parts.append(token)
        size += len(token)
        if size > limit:
            return "".join(parts)[:limit] + "..."
    return "".join(parts)


def _field_segment(name: object) -> str:
    if isinstance(name, str) and _IDENTIFIER_RE.match(name):
        return "." + name
    return f"[{_quote(name) if isinstance(name, str) else repr(name)}]"


def _mismatch(validator: Validator, value: Any, path: list[str]) -> ValidatorError:
    return ValidatorError(
        "Value does not match validator.",
        path="".join(path),
        expected=repr(validator),
        actual=format_value(value),
    )


# --------------------------------------------------------------------------
# Validators


class Validator(ABC):
    """Base class of all validators. Instances are immutable."""

    __slots__ = ("_key_cache",)

    kind: ClassVar[str] = ""
    _key_cache: str
    is_optional: ClassVar[bool] = False

    def validate(self, value: Any, ctx: ValidationContext | None = None, path: str = "") -> Value:
        """Check ``value`` and return it coerced; raise :class:`ValidatorError`.

        ``path`` prefixes the path reported in errors (for callers validating
        a part of a larger value).
        """
        result = self._coerce(value, ctx)
        if result is _INVALID:
            raise self._explain(value, ctx, [path] if path else [])
        coerced: Value = result
        return coerced

    def to_json(self) -> dict[str, Any]:
        """Convex's JSON form of this validator."""
        return {"type": self.kind}

    @abstractmethod
    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        """The fast path: the coerced value, or ``_INVALID``. Never raises."""

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        """The error for a value ``_coerce`` rejected (called only on failure)."""
        return _mismatch(self, value, path)

    def _children(self) -> tuple[Validator, ...]:
        return ()

    def _key(self) -> str:
        try:
            return self._key_cache
        except AttributeError:
            key = json.dumps(self.to_json(), sort_keys=True)
            object.__setattr__(self, "_key_cache", key)
            return key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Validator):
            return NotImplemented
        return self.is_optional == other.is_optional and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.is_optional, self._key()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


def _init(obj: Validator, **attrs: Any) -> None:
    for name, value in attrs.items():
        object.__setattr__(obj, name, value)


class VNull(Validator):
    __slots__ = ()
    kind = "null"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        return None if value is None else _INVALID

    def __repr__(self) -> str:
        return "v.null()"


class VFloat64(Validator):
    """``v.number()`` / ``v.float64()``: any float64; plain ints within ±2**53."""

    __slots__ = ()
    kind = "number"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        t = type(value)
        if t is float:
            return value
        if t is int:
            return float(value) if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _INVALID
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int) and not isinstance(value, bool | Int64):
            return float(value) if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _INVALID
        return _INVALID

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if isinstance(value, int) and not isinstance(value, bool | Int64):
            return ValidatorError(
                f"Integer {int(value)} cannot be stored exactly as a float64 (|x| > 2**53); "
                "use Int64(...) and v.int64() for large integers.",
                path="".join(path),
                expected=repr(self),
                actual=format_value(value),
            )
        return _mismatch(self, value, path)

    def __repr__(self) -> str:
        return "v.number()"


class VInt64(Validator):
    """``v.int64()``: an :class:`Int64`, or a plain int in int64 range."""

    __slots__ = ()
    kind = "bigint"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        t = type(value)
        if t is Int64:
            return value
        if t is int or (isinstance(value, int) and not isinstance(value, bool)):
            return Int64(value) if _INT64_MIN <= value <= _INT64_MAX else _INVALID
        return _INVALID

    def __repr__(self) -> str:
        return "v.int64()"


class VBoolean(Validator):
    __slots__ = ()
    kind = "boolean"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        return value if value is True or value is False else _INVALID

    def __repr__(self) -> str:
        return "v.boolean()"


def _coerce_str(value: Any) -> Any:
    if type(value) is not str:
        if not isinstance(value, str):
            return _INVALID
        value = str.__str__(value)  # exact str, whatever the subclass's __str__ says
    # isascii() is O(1) in CPython; only non-ASCII strings pay for the surrogate check.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _INVALID  # lone surrogates are not valid Unicode strings
    return value


class VString(Validator):
    __slots__ = ()
    kind = "string"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        return _coerce_str(value)

    def __repr__(self) -> str:
        return "v.string()"


class VBytes(Validator):
    __slots__ = ()
    kind = "bytes"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        if type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return _INVALID

    def __repr__(self) -> str:
        return "v.bytes()"


class VAny(Validator):
    """Any Convex value, normalized with :func:`~syncline.values.json.from_python`."""

    __slots__ = ()
    kind = "any"

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        try:
            return from_python(value)
        except (SynclineError, TypeError, ValueError, OverflowError):
            return _INVALID

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        try:
            from_python(value, path="".join(path))
        except (SynclineError, TypeError, ValueError, OverflowError) as exc:
            return ValidatorError(
                str(exc),
                path="".join(path),
                expected=repr(self),
                actual=format_value(value),
            )
        return _mismatch(self, value, path)

    def __repr__(self) -> str:
        return "v.any()"


class VId(Validator):
    """``v.id(table)``: a string that is an id of a document in ``table``."""

    __slots__ = ("table_name",)
    kind = "id"
    table_name: str

    def __init__(self, table_name: str) -> None:
        # System tables (`_storage`, `_scheduled_functions`) are valid targets.
        if not (
            isinstance(table_name, str)
            and len(table_name) <= _MAX_IDENTIFIER_LEN
            and _IDENTIFIER_RE.match(table_name)
        ):
            raise _definition_error(
                f"v.id() expects a table name (an identifier of at most 64 characters), "
                f"got {table_name!r}"
            )
        _init(self, table_name=table_name)

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        value = _coerce_str(value)
        if value is _INVALID:
            return _INVALID
        if ctx is None:
            return value if table_number_of(value) is not None else _INVALID
        return value if ctx.table_name_of_id(value) == self.table_name else _INVALID

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if ctx is not None and isinstance(value, str):
            found = ctx.table_name_of_id(value)
            if found is not None and found != self.table_name:
                kind = "system table" if found.startswith("_") else "table"
                return ValidatorError(
                    f"Found ID {_quote(value)} from {kind} `{found}`, which does not match "
                    f"the table name in validator `{self!r}`.",
                    path="".join(path),
                    expected=repr(self),
                    actual=format_value(value),
                )
        return _mismatch(self, value, path)

    def to_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table_name}

    def __repr__(self) -> str:
        return f"v.id({_quote(self.table_name)})"


#: For a validator type, the one value type whose exact instances it returns unchanged
#: (strings only when ASCII: others are checked for lone surrogates): object validators
#: take such field values as they are, without calling the field's validator.
_ACCEPTED_AS_IS: Final[dict[type, type]] = {
    VString: str,
    VFloat64: float,
    VInt64: Int64,
    VBoolean: bool,
    VBytes: bytes,
    VNull: type(None),
}
_isascii: Final[Callable[[Any], bool]] = str.isascii


def _literal_from_json(obj: Any) -> str | bool | float | Int64:
    try:
        value = value_from_json(obj)
    except SynclineError:
        value = None
    if isinstance(value, str | bool | float | Int64):
        return value
    raise _definition_error(f"Invalid literal value in validator JSON: {format_value(obj)}")


def _literal_value(value: Any) -> str | bool | float | Int64:
    if isinstance(value, bool):
        return value
    if isinstance(value, Int64):
        return Int64(int(value))  # exact type: the fast path compares with `type(...) is`
    if isinstance(value, str):
        if _coerce_str(value) is _INVALID:
            raise _definition_error("v.literal() string contains a lone surrogate")
        return str.__str__(value)
    if isinstance(value, float):
        if math.isnan(value):
            # The total order tells NaNs apart by sign only: drop the payload so that equal
            # literals have equal JSON and repr.
            return math.copysign(math.nan, value)
        return float(value)
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _definition_error(
                f"v.literal({value}) cannot be a float64 exactly; use v.literal(Int64({value}))"
            )
        return float(value)
    raise _definition_error(
        f"v.literal() expects a str, float, int, Int64 or bool, got {format_value(value)}"
    )


class VLiteral(Validator):
    """``v.literal(x)``: exactly ``x`` (floats compared by the total order)."""

    __slots__ = ("value",)
    kind = "literal"
    value: str | bool | float | Int64

    def __init__(self, value: str | bool | float | int) -> None:
        _init(self, value=_literal_value(value))

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        lit = self.value
        if type(lit) is str:
            if type(value) is str:
                return value if value == lit else _INVALID
            return lit if isinstance(value, str) and value == lit else _INVALID
        if type(lit) is bool:
            return value if value is lit else _INVALID
        if type(lit) is Int64:
            if isinstance(value, int) and not isinstance(value, bool) and value == lit:
                return lit
            return _INVALID
        # A float literal: accept a float, or a plain int that coerces to the same float.
        if isinstance(value, float):
            return lit if values_equal(float(value), lit) else _INVALID
        if (
            isinstance(value, int)
            and not isinstance(value, bool | Int64)
            and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
            and values_equal(float(value), lit)
        ):
            return lit
        return _INVALID

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        actual = format_value(value)
        return ValidatorError(
            f"`{actual}` does not match literal validator `{self!r}`.",
            path="".join(path),
            expected=repr(self),
            actual=actual,
        )

    def to_json(self) -> dict[str, Any]:
        return {"type": "literal", "value": value_to_json(self.value)}

    def __repr__(self) -> str:
        lit = self.value
        if isinstance(lit, str):
            return f"v.literal({_quote(lit)})"
        if isinstance(lit, float):
            return f"v.literal({_float_repr(lit)})"
        return f"v.literal({lit!r})"


def _not_optional(validator: Validator, where: str) -> Validator:
    if validator.is_optional:
        raise _definition_error(
            f"{validator!r} is not allowed as {where}: v.optional(...) only makes sense "
            "for an object field (use v.nullable(...) or v.union(..., v.null()) to allow None)"
        )
    return validator


class VArray(Validator):
    __slots__ = ("element",)
    kind = "array"
    element: Validator

    def __init__(self, element: Validator | Mapping[str, Any]) -> None:
        _init(self, element=_not_optional(as_validator(element), "an array element"))

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        # Tuples are rejected, as from_python rejects them: a value has one array type.
        if not isinstance(value, list):
            return _INVALID
        coerce = self.element._coerce
        out: list[Any] = []
        append = out.append
        for item in value:
            result = coerce(item, ctx)
            if result is _INVALID:
                return _INVALID
            append(result)
        return out

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if isinstance(value, list):
            for i, item in enumerate(value):
                if self.element._coerce(item, ctx) is _INVALID:
                    return self.element._explain(item, ctx, [*path, f"[{i}]"])
        return _mismatch(self, value, path)

    def _children(self) -> tuple[Validator, ...]:
        return (self.element,)

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.element.to_json()}

    def __repr__(self) -> str:
        return f"v.array({self.element!r})"


class VOptional(Validator):
    """``v.optional(x)``: marks an object field as possibly absent.

    Outside an object it validates like ``x``, except that :data:`UNDEFINED`
    passes through unchanged.
    """

    __slots__ = ("inner",)
    is_optional = True
    inner: Validator

    def __init__(self, inner: Validator | Mapping[str, Any]) -> None:
        validator = as_validator(inner)
        if isinstance(validator, VOptional):
            validator = validator.inner
        _init(self, inner=validator)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        if value is UNDEFINED:
            return UNDEFINED
        return self.inner._coerce(value, ctx)

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        return self.inner._explain(value, ctx, path)

    def _children(self) -> tuple[Validator, ...]:
        return (self.inner,)

    def to_json(self) -> dict[str, Any]:
        # Optionality has no JSON form of its own: objects record it per field.
        return self.inner.to_json()

    def __repr__(self) -> str:
        return f"v.optional({self.inner!r})"


class VObject(Validator):
    """``v.object({...})``: exactly these fields; optional ones may be absent."""

    __slots__ = ("_field_list", "_fields")
    kind = "object"
    _fields: Mapping[str, Validator]
    _field_list: tuple[tuple[str, Validator, bool, type | None], ...]

    def __init__(self, fields: Mapping[str, Validator | Mapping[str, Any]]) -> None:
        if not isinstance(fields, Mapping):
            raise _definition_error(
                f"v.object() expects a dict of field validators, got {format_value(fields)}"
            )
        checked: dict[str, Validator] = {}
        for name, field in fields.items():
            if not is_identifier(name):
                raise _definition_error(
                    f"Invalid field name {name!r} in v.object(): field names must be identifiers "
                    "([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not only underscores)"
                )
            try:
                checked[name] = as_validator(field)
            except SchemaDefinitionError as exc:
                raise _definition_error(f"Field `{name}` of v.object(): {exc}") from exc
        _init(
            self,
            _fields=MappingProxyType(checked),
            # Unwrapped once here so the hot loop needs no isinstance checks.
            _field_list=tuple(
                (name, inner, f.is_optional, _ACCEPTED_AS_IS.get(type(inner)))
                for name, f in checked.items()
                for inner in (f.inner if isinstance(f, VOptional) else f,)
            ),
        )

    @property
    def fields(self) -> Mapping[str, Validator]:
        """Field name -> validator (optional fields as :class:`VOptional`)."""
        return self._fields

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        if not isinstance(value, dict):
            return _INVALID
        out = {}
        present = 0
        get = value.get
        for name, validator, optional, as_is in self._field_list:
            item: Any = get(name, UNDEFINED)
            if item is UNDEFINED:
                if optional:
                    continue
                return _INVALID
            present += 1
            if type(item) is as_is and (as_is is not str or _isascii(item)):
                out[name] = item  # what the field's validator returns for it, without the call
                continue
            result = validator._coerce(item, ctx)
            if result is _INVALID:
                return _INVALID
            out[name] = result
        if present != len(value):
            # Extra keys, or keys explicitly set to UNDEFINED (which count as absent).
            fields = self._fields
            for key, item in value.items():
                if item is not UNDEFINED and key not in fields:
                    return _INVALID
        return out

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if not isinstance(value, dict):
            return _mismatch(self, value, path)
        for key, item in value.items():
            if item is not UNDEFINED and key not in self._fields:
                return ValidatorError(
                    f"Object contains extra field `{key}` that is not in the validator.",
                    path="".join(path),
                    expected=repr(self),
                    actual=format_value(value),
                    label="Object",
                    separator="\n\n",
                )
        for name, validator, optional, _ in self._field_list:
            item = value.get(name, UNDEFINED)
            if item is UNDEFINED:
                if optional:
                    continue
                return ValidatorError(
                    f"Object is missing the required field `{name}`. Consider wrapping the field "
                    "validator in `v.optional(...)` if this is expected.",
                    path="".join(path),
                    expected=repr(self),
                    actual=format_value(value),
                    label="Object",
                    separator="\n\n",
                )
            if validator._coerce(item, ctx) is _INVALID:
                return validator._explain(item, ctx, [*path, _field_segment(name)])
        return _mismatch(self, value, path)

    def _children(self) -> tuple[Validator, ...]:
        return tuple(self._fields.values())

    def to_json(self) -> dict[str, Any]:
        # Sorted so that equal validators have byte-identical JSON (schemas are diffed by JSON).
        return {
            "type": "object",
            "value": {
                name: {
                    "fieldType": self._fields[name].to_json(),
                    "optional": self._fields[name].is_optional,
                }
                for name in sorted(self._fields)
            },
        }

    def __repr__(self) -> str:
        inner = ", ".join(f"{_quote(name)}: {f!r}" for name, f in self._fields.items())
        return f"v.object({{{inner}}})"

    def pick(self, *keys: str) -> VObject:
        """A new object validator with only ``keys``."""
        self._check_known(keys, "pick")
        return VObject({k: self._fields[k] for k in keys})

    def omit(self, *keys: str) -> VObject:
        """A new object validator without ``keys``."""
        self._check_known(keys, "omit")
        return VObject({k: f for k, f in self._fields.items() if k not in keys})

    def partial(self) -> VObject:
        """A new object validator where every field is optional."""
        return VObject({k: VOptional(f) for k, f in self._fields.items()})

    def extend(self, fields: Mapping[str, Validator | Mapping[str, Any]]) -> VObject:
        """A new object validator with ``fields`` added (replacing same-named ones)."""
        return VObject({**self._fields, **fields})

    def _check_known(self, keys: tuple[str, ...], method: str) -> None:
        for key in keys:
            if key not in self._fields:
                raise _definition_error(f"{method}(): {key!r} is not a field of {self!r}")


def _valid_record_key_validator(validator: Validator) -> bool:
    if isinstance(validator, VString | VId):
        return True
    if isinstance(validator, VLiteral):
        return isinstance(validator.value, str)
    if isinstance(validator, VUnion):
        return all(_valid_record_key_validator(m) for m in validator.members)
    return False


class VRecord(Validator):
    """``v.record(keys, values)``: an object with any valid keys and valid values."""

    __slots__ = ("keys", "values")
    kind = "record"
    keys: Validator
    values: Validator

    def __init__(self, keys: Validator, values: Validator | Mapping[str, Any]) -> None:
        if not isinstance(keys, Validator) or not _valid_record_key_validator(keys):
            raise _definition_error(
                f"v.record() keys must be v.string(), v.id(...), string literals or unions of "
                f"those, got {keys!r}"
            )
        _init(self, keys=keys, values=_not_optional(as_validator(values), "a record value"))

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        if not isinstance(value, dict):
            return _INVALID
        key_coerce = self.keys._coerce
        value_coerce = self.values._coerce
        match_key = _RECORD_KEY_RE.match
        out = {}
        for key, item in value.items():
            if item is UNDEFINED:
                continue
            if (
                type(key) is not str
                or len(key) > _MAX_RECORD_KEY_LEN
                or match_key(key) is None
                or key_coerce(key, ctx) is _INVALID
            ):
                return _INVALID
            result = value_coerce(item, ctx)
            if result is _INVALID:
                return _INVALID
            out[key] = result
        return out

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if not isinstance(value, dict):
            return _mismatch(self, value, path)
        for key, item in value.items():
            if item is UNDEFINED:
                continue
            here = [*path, _field_segment(key)]
            if (
                type(key) is not str
                or len(key) > _MAX_RECORD_KEY_LEN
                or not _RECORD_KEY_RE.match(key)
            ):
                return ValidatorError(
                    f"Record key {format_value(key)} is not a valid record key: keys are non-empty "
                    "ASCII strings of at most 1024 characters that do not start with `$` or `_`.",
                    path="".join(here),
                    expected=repr(self.keys),
                    actual=format_value(key),
                )
            if self.keys._coerce(key, ctx) is _INVALID:
                return self.keys._explain(key, ctx, here)
            if self.values._coerce(item, ctx) is _INVALID:
                return self.values._explain(item, ctx, here)
        return _mismatch(self, value, path)

    def _children(self) -> tuple[Validator, ...]:
        return (self.keys, self.values)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            "keys": self.keys.to_json(),
            "values": {"fieldType": self.values.to_json(), "optional": False},
        }

    def __repr__(self) -> str:
        return f"v.record({self.keys!r}, {self.values!r})"


class VUnion(Validator):
    """``v.union(*members)``: the first member that accepts the value wins."""

    __slots__ = ("members",)
    kind = "union"
    members: tuple[Validator, ...]

    def __init__(self, *members: Validator | Mapping[str, Any]) -> None:
        _init(
            self,
            members=tuple(_not_optional(as_validator(m), "a union member") for m in members),
        )

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        for member in self.members:
            result = member._coerce(value, ctx)
            if result is not _INVALID:
                return result
        return _INVALID

    def _children(self) -> tuple[Validator, ...]:
        return self.members

    def to_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [m.to_json() for m in self.members]}

    def __repr__(self) -> str:
        return f"v.union({', '.join(repr(m) for m in self.members)})"


class VDoc(Validator):
    """``v.doc(table)``: a document of ``table`` as the schema defines it, system fields included.

    For function ``args`` and ``returns`` (``returns=v.array(v.doc("tasks"))``).
    When the code is pushed the loader binds every ``v.doc`` to the schema
    (:meth:`syncline.schema.Schema.bind_documents`), which fails for a table
    the schema lacks; bound, it checks exactly what ``Schema.doc(table)``
    checks and its JSON is that validator's. Unbound (no schema to bind to
    yet) it accepts any object whose ``_id`` is an id of ``table`` and whose
    ``_creationTime`` is a number.
    """

    __slots__ = ("document", "table_name")
    kind = "doc"
    table_name: str
    document: Validator | None

    def __init__(self, table_name: str, document: Validator | None = None) -> None:
        _init(self, table_name=VId(table_name).table_name, document=document)

    def bound(self, document: Validator) -> VDoc:
        """This validator checking ``document`` (the table's full-document validator)."""
        return VDoc(self.table_name, document)

    def _system(self) -> VObject:
        return VObject({"_id": VId(self.table_name), "_creationTime": _FLOAT64})

    def _coerce(self, value: Any, ctx: ValidationContext | None) -> Any:
        if self.document is not None:
            return self.document._coerce(value, ctx)
        if not isinstance(value, dict):
            return _INVALID
        system = {k: value.get(k, UNDEFINED) for k in ("_id", "_creationTime")}
        if self._system()._coerce(system, ctx) is _INVALID:
            return _INVALID
        return _ANY._coerce(value, ctx)

    def _explain(
        self, value: Any, ctx: ValidationContext | None, path: list[str]
    ) -> ValidatorError:
        if self.document is not None:
            return self.document._explain(value, ctx, path)
        if isinstance(value, dict):
            system = {k: value.get(k, UNDEFINED) for k in ("_id", "_creationTime")}
            if self._system()._coerce(system, ctx) is _INVALID:
                return self._system()._explain(system, ctx, path)
            return _ANY._explain(value, ctx, path)
        return _mismatch(self, value, path)

    def _children(self) -> tuple[Validator, ...]:
        return () if self.document is None else (self.document,)

    def _key(self) -> str:
        inner = "" if self.document is None else self.document._key()
        return f"doc:{self.table_name}:{inner}"

    def to_json(self) -> dict[str, Any]:
        # Convex's validator JSON has no document type: the bound form is the full object.
        if self.document is not None:
            return self.document.to_json()
        return {"type": "any"}

    def __repr__(self) -> str:
        return f"v.doc({_quote(self.table_name)})"


_NULL: Final = VNull()
_FLOAT64: Final = VFloat64()
_INT64: Final = VInt64()
_BOOLEAN: Final = VBoolean()
_STRING: Final = VString()
_BYTES: Final = VBytes()
_ANY: Final = VAny()


def validate_object(
    validator: Validator, value: dict[str, Any], ctx: ValidationContext | None = None
) -> dict[str, Value]:
    """``validator.validate(value, ctx)`` for an object (a document's fields): a dict again."""
    result = validator.validate(value, ctx)
    # No validator turns an object into another type (v.any() keeps it as it is).
    assert type(result) is dict, f"{validator.kind} validator returned {type(result).__name__}"
    return result


def as_validator(obj: Validator | Mapping[str, Any]) -> Validator:
    """``obj`` itself if it is a validator; ``v.object(obj)`` for a plain dict."""
    if isinstance(obj, Validator):
        return obj
    if isinstance(obj, Mapping):
        return VObject(obj)
    raise _definition_error(
        f"Expected a validator (v.*) or a dict of validators, got {format_value(obj)}"
    )


def walk(validator: Validator) -> Iterator[Validator]:
    """``validator`` and every validator nested in it, depth first."""
    stack = [validator]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current._children()))


def substitute(validator: Validator, replace: Callable[[Validator], Validator | None]) -> Validator:
    """``validator`` with each nested validator ``replace`` maps to a new one swapped in.

    ``replace`` sees the outermost validators first; what it returns is used
    as is, and ``None`` keeps the validator and descends into its children.
    Unchanged subtrees are shared, not copied.
    """
    new = replace(validator)
    if new is not None:
        return new
    if isinstance(validator, VOptional):
        inner = substitute(validator.inner, replace)
        return validator if inner is validator.inner else VOptional(inner)
    if isinstance(validator, VArray):
        element = substitute(validator.element, replace)
        return validator if element is validator.element else VArray(element)
    if isinstance(validator, VRecord):
        values = substitute(validator.values, replace)
        return validator if values is validator.values else VRecord(validator.keys, values)
    if isinstance(validator, VUnion):
        members = tuple(substitute(m, replace) for m in validator.members)
        same = all(a is b for a, b in zip(members, validator.members, strict=True))
        return validator if same else VUnion(*members)
    if isinstance(validator, VObject):
        fields = {name: substitute(f, replace) for name, f in validator.fields.items()}
        same = all(fields[name] is f for name, f in validator.fields.items())
        return validator if same else VObject(fields)
    return validator


class _ValidatorBuilders:
    """The ``v`` namespace. Builders return immutable :class:`Validator` objects."""

    __slots__ = ()

    @staticmethod
    def id(table_name: str) -> VId:
        return VId(table_name)

    @staticmethod
    def doc(table_name: str) -> VDoc:
        """A document of ``table_name``, system fields included (function args and returns)."""
        return VDoc(table_name)

    @staticmethod
    def null() -> VNull:
        return _NULL

    @staticmethod
    def number() -> VFloat64:
        return _FLOAT64

    @staticmethod
    def float64() -> VFloat64:
        return _FLOAT64

    @staticmethod
    def int64() -> VInt64:
        return _INT64

    @staticmethod
    def bigint() -> VInt64:
        """Deprecated alias of :meth:`int64`, kept because Convex has it."""
        return _INT64

    @staticmethod
    def boolean() -> VBoolean:
        return _BOOLEAN

    @staticmethod
    def string() -> VString:
        return _STRING

    @staticmethod
    def bytes() -> VBytes:
        return _BYTES

    @staticmethod
    def any() -> VAny:
        return _ANY

    @staticmethod
    def literal(value: str | bool | float | int) -> VLiteral:
        return VLiteral(value)

    @staticmethod
    def array(element: Validator | Mapping[str, Any]) -> VArray:
        return VArray(element)

    @staticmethod
    def object(fields: Mapping[str, Validator | Mapping[str, Any]]) -> VObject:
        return VObject(fields)

    @staticmethod
    def record(keys: Validator, values: Validator | Mapping[str, Any]) -> VRecord:
        return VRecord(keys, values)

    @staticmethod
    def union(*members: Validator | Mapping[str, Any]) -> VUnion:
        return VUnion(*members)

    @staticmethod
    def optional(inner: Validator | Mapping[str, Any]) -> VOptional:
        return VOptional(inner)

    @staticmethod
    def nullable(inner: Validator | Mapping[str, Any]) -> VUnion:
        return VUnion(inner, _NULL)

    def __repr__(self) -> str:
        return "v"


v: Final = _ValidatorBuilders()

_SIMPLE_FROM_JSON: Final[dict[str, Validator]] = {
    "null": _NULL,
    "number": _FLOAT64,
    "bigint": _INT64,
    "boolean": _BOOLEAN,
    "string": _STRING,
    "bytes": _BYTES,
    "any": _ANY,
}


def _field_from_json(obj: Any, where: str) -> Validator:
    if not isinstance(obj, dict) or "fieldType" not in obj:
        raise _definition_error(f"Invalid validator JSON for {where}: {format_value(obj)}")
    validator = validator_from_json(obj["fieldType"])
    optional = obj.get("optional", False)
    if not isinstance(optional, bool):
        raise _definition_error(f"Invalid `optional` flag for {where}: {optional!r}")
    return VOptional(validator) if optional else validator


def validator_from_json(obj: Any) -> Validator:
    """Parse Convex's validator JSON (the inverse of :meth:`Validator.to_json`).

    Raises :class:`~syncline.errors.SchemaDefinitionError` on malformed input.
    """
    kind = obj.get("type") if isinstance(obj, dict) else None
    simple = _SIMPLE_FROM_JSON.get(kind) if isinstance(kind, str) else None
    if simple is not None:
        return simple
    try:
        if kind == "id":
            return VId(obj["tableName"])
        if kind == "literal":
            return VLiteral(_literal_from_json(obj["value"]))
        if kind == "array":
            return VArray(validator_from_json(obj["value"]))
        if kind == "union":
            members = obj["value"]
            if not isinstance(members, list):
                raise _definition_error("union members must be a list")
            return VUnion(*(validator_from_json(m) for m in members))
        if kind == "object":
            fields = obj["value"]
            if not isinstance(fields, dict):
                raise _definition_error("object fields must be an object")
            return VObject(
                {name: _field_from_json(f, f"field `{name}`") for name, f in fields.items()}
            )
        if kind == "record":
            return VRecord(
                validator_from_json(obj["keys"]), _field_from_json(obj["values"], "record values")
            )
    except KeyError as exc:
        raise _definition_error(
            f"Invalid validator JSON (missing {exc.args[0]!r}): {format_value(obj)}"
        ) from None
    raise _definition_error(f"Invalid validator JSON: {format_value(obj)}")


#: The options ``.paginate()`` takes, as ``usePaginatedQuery`` sends them
#: (Convex's ``paginationOptsValidator``): use it as the type of a paginated
#: query's options argument.
pagination_opts_validator = v.object(
    {
        "numItems": v.number(),
        "cursor": v.union(v.string(), v.null()),
        "endCursor": v.optional(v.union(v.string(), v.null())),
        "id": v.optional(v.number()),
        "maximumRowsRead": v.optional(v.number()),
        "maximumBytesRead": v.optional(v.number()),
    }
)
