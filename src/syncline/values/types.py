"""The Convex value model in Python.

A Syncline value is one of::

    None            Convex null
    bool            Convex boolean
    float           Convex float64 (every IEEE double, including NaN, +-inf, -0.0)
    Int64           Convex int64 (an ``int`` subclass, range -2**63 .. 2**63-1)
    str             Convex string (valid Unicode: no lone surrogates)
    bytes           Convex bytes
    list            Convex array
    dict[str, ...]  Convex object

A plain Python ``int`` is *not* a stored value: at every boundary (function
args, written documents, return values) it becomes a float64, as the official
Python client does, unless a ``v.int64()`` validator says otherwise. An int
outside +-2**53 cannot become a float exactly and is rejected.

:data:`UNDEFINED` is Convex's ``undefined``: "this field is absent". It is not
a value; it appears in ``db.patch`` (remove a field), in index ranges and
filters (match documents without the field), and as the key of a missing
field in index keys (it sorts before everything).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_SAFE_INTEGER: Final = 2**53


class Int64(int):
    """A Convex int64. ``Int64(5)`` is stored and sent as ``{"$integer": ...}``."""

    __slots__ = ()

    def __new__(cls, value: Any = 0) -> Int64:
        self = super().__new__(cls, value)
        if not INT64_MIN <= self <= INT64_MAX:
            raise OverflowError(f"Int64 out of range: {int(self)} is not within -2**63 .. 2**63-1")
        return self

    def __repr__(self) -> str:
        return f"Int64({int(self)})"


class _Undefined:
    """Singleton for Convex ``undefined`` (an absent field)."""

    _instance: _Undefined | None = None
    __slots__ = ()

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()

Value: TypeAlias = "bool | float | Int64 | str | bytes | list[Value] | dict[str, Value] | None"
Document: TypeAlias = dict[str, Any]
