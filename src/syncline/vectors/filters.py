"""The ``filter=`` of ``ctx.vector_search``: an OR of equalities on the index's filter fields.

::

    filter=lambda q: q.eq("genre", "comedy")
    filter=lambda q: q.eq("genre", "comedy") | q.eq("genre", "drama")
    filter=lambda q: q.or_(q.eq("genre", "comedy"), q.eq("year", 1999))

As in Convex, ``q.eq(field, value)`` names a filter field of the index and
matches documents whose field equals ``value`` (``UNDEFINED`` matches a
missing field); ``q.or_`` (or ``|``) matches documents that match any of its
terms. There is no AND and no NOT. At most :data:`MAX_FILTER_TERMS` ``eq``
terms per search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from syncline.errors import InvalidQuery
from syncline.values.json import from_python
from syncline.values.keys import encode_value
from syncline.values.types import UNDEFINED

__all__ = ["MAX_FILTER_TERMS", "FilterExpression", "VectorFilterBuilder", "compile_filter"]

#: ``eq`` terms one vector search may OR together (Convex's limit)
MAX_FILTER_TERMS: Final = 64


@dataclass(frozen=True, slots=True)
class FilterExpression:
    """An OR of ``(field, encoded value)`` equalities. Combine two with ``|``."""

    terms: tuple[tuple[str, bytes], ...]

    def __or__(self, other: object) -> FilterExpression:
        if not isinstance(other, FilterExpression):
            return NotImplemented
        return FilterExpression(self.terms + other.terms)


class VectorFilterBuilder:
    """The ``q`` handed to a vector search's ``filter``: ``eq`` and ``or_``."""

    __slots__ = ("_fields",)

    def __init__(self, filter_fields: Sequence[str]) -> None:
        self._fields = tuple(filter_fields)

    def eq(self, field: str, value: Any) -> FilterExpression:
        """Documents whose ``field`` (a filter field of the index) equals ``value``."""
        if field not in self._fields:
            declared = ", ".join(f"`{f}`" for f in self._fields) or "none"
            raise InvalidQuery(
                f"Vector search filter on `{field}`, which is not a filter field of the index "
                f"(filter fields: {declared})",
                code="InvalidVectorFilter",
            )
        normalized = UNDEFINED if value is UNDEFINED else from_python(value, path=field)
        return FilterExpression(((field, encode_value(normalized)),))

    def or_(self, *expressions: FilterExpression) -> FilterExpression:
        """Documents that match any of ``expressions``."""
        terms: list[tuple[str, bytes]] = []
        for expression in expressions:
            terms.extend(_expression(expression).terms)
        return FilterExpression(tuple(terms))


def _expression(value: object) -> FilterExpression:
    if not isinstance(value, FilterExpression):
        raise InvalidQuery(
            "A vector search filter must be built from q.eq(field, value) and q.or_(...) "
            f"(or `|`), got {value!r}",
            code="InvalidVectorFilter",
        )
    return value


def compile_filter(
    filter_fields: Sequence[str], build: Callable[[VectorFilterBuilder], Any] | None
) -> tuple[tuple[str, bytes], ...] | None:
    """The distinct ``(field, encoded value)`` terms of ``build``'s filter; None: no filter."""
    if build is None:
        return None
    if not callable(build):
        raise InvalidQuery(
            f"`filter` must be a function of q (e.g. lambda q: q.eq(...)), got {build!r}",
            code="InvalidVectorFilter",
        )
    expression = _expression(build(VectorFilterBuilder(filter_fields)))
    if len(expression.terms) > MAX_FILTER_TERMS:
        raise InvalidQuery(
            f"A vector search filter may OR together at most {MAX_FILTER_TERMS} q.eq terms, "
            f"got {len(expression.terms)}",
            code="TooManyVectorFilterTerms",
        )
    return _distinct(expression.terms)


def _distinct(terms: Iterable[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    return tuple(dict.fromkeys(terms))
