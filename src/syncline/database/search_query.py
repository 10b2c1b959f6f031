"""Text search queries: ``ctx.db.query(t).with_search_index(name, lambda q: ...)``.

The search expression names the index's search field and the text, then up
to :data:`MAX_SEARCH_FILTERS` equalities on its filter fields::

    ctx.db.query("messages").with_search_index(
        "search_body", lambda q: q.search("body", "hello wor").eq("channel", channel)
    ).take(10)

Results come most relevant first (BM25 over the terms; ties: the newest
``_creationTime`` first). A document matches if its search field holds any
of the query's terms (the last one as a prefix) and every filter equals.
At most :data:`MAX_SEARCH_RESULTS` results are scanned: consuming more
(``collect()`` of a bigger result, or ``.filter()`` discarding too many)
raises LimitExceeded (``TooManySearchResults``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.database.search_index import SearchIndexSpec, search_specs
from syncline.database.search_reads import SearchRead, filter_token
from syncline.database.search_terms import QueryTerms, query_terms
from syncline.errors import InvalidQuery, LimitExceeded
from syncline.persistence.base import SearchRequest
from syncline.values.json import from_python, to_json
from syncline.values.keys import compare, get_field_path
from syncline.values.types import UNDEFINED

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction

__all__ = [
    "MAX_SEARCH_FILTERS",
    "MAX_SEARCH_RESULTS",
    "SearchFilter",
    "SearchFilterBuilder",
    "SearchPlan",
]

#: equality filters allowed in one search query
MAX_SEARCH_FILTERS = 8
#: results one search query may scan
MAX_SEARCH_RESULTS = 1024


class SearchFilter:
    """``q.search(field, text)`` and the ``.eq(field, value)`` calls chained after it."""

    __slots__ = ("eqs", "field", "text")

    def __init__(self, field: str, text: str) -> None:
        self.field = field
        self.text = text
        self.eqs: list[tuple[str, Any]] = []

    def eq(self, field: str, value: Any) -> SearchFilter:
        if not isinstance(field, str):
            raise InvalidQuery(f"Search filter fields are strings, got {field!r}")
        if any(f == field for f, _ in self.eqs):
            raise InvalidQuery(
                f"The search filter already constrains field `{field}`",
                code="AlreadyDefinedBound",
            )
        if len(self.eqs) >= MAX_SEARCH_FILTERS:
            raise InvalidQuery(
                f"A search query can have at most {MAX_SEARCH_FILTERS} equality filters",
                code="TooManySearchFilters",
            )
        self.eqs.append((field, UNDEFINED if value is UNDEFINED else from_python(value)))
        return self

    def search(self, field: str, text: str) -> SearchFilter:
        raise InvalidQuery("A search expression has exactly one q.search(field, text)")


class SearchFilterBuilder:
    """The ``q`` handed to ``with_search_index(name, lambda q: ...)``."""

    __slots__ = ()

    def search(self, field: str, text: str) -> SearchFilter:
        if not isinstance(field, str):
            raise InvalidQuery(f"q.search() takes a field name string, got {field!r}")
        if not isinstance(text, str):
            raise InvalidQuery(
                f"q.search() takes the text to search for as a string, got {type(text).__name__}"
            )
        return SearchFilter(field, text)

    def eq(self, field: str, value: Any) -> SearchFilter:
        raise InvalidQuery(
            "A search expression starts with q.search(field, text); .eq(field, value) "
            "filters follow it"
        )


_Q = SearchFilterBuilder()


def _find_spec(tx: Transaction, table: str, index_name: str) -> SearchIndexSpec:
    for spec in search_specs(tx.schema, table):
        if spec.name == index_name:
            return spec
    raise InvalidQuery(
        f"Search index {table}.{index_name} not found (search indexes are declared in the "
        "schema with .search_index(...))",
        code="IndexNotFoundError",
    )


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """A validated search: what to ask the storage, and what to record as read."""

    spec: SearchIndexSpec
    text: str
    terms: QueryTerms
    #: (filter field, literal value), in the order given
    filters: tuple[tuple[str, Any], ...]
    read: SearchRead

    @classmethod
    def build(cls, tx: Transaction, table: str, index_name: str, search_fn: Any) -> SearchPlan:
        if not isinstance(index_name, str):
            raise InvalidQuery(f"with_search_index takes an index name string, got {index_name!r}")
        expression = search_fn(_Q)
        if not isinstance(expression, SearchFilter):
            raise InvalidQuery(
                "The with_search_index function must return q.search(field, text), "
                "optionally followed by .eq(field, value) calls; "
                f"it returned {expression!r}"
            )
        spec = _find_spec(tx, table, index_name)
        if expression.field != spec.search_field:
            raise InvalidQuery(
                f"Search index {spec.full_name} searches the field `{spec.search_field}`, "
                f"not `{expression.field}`",
                code="InvalidSearchQuery",
            )
        for field, _ in expression.eqs:
            if field not in spec.filter_fields:
                raise InvalidQuery(
                    f"Search index {spec.full_name} has no filter field `{field}` "
                    f"(filter fields: {list(spec.filter_fields)})",
                    code="InvalidSearchQuery",
                )
        terms = query_terms(expression.text)
        filters = tuple(expression.eqs)
        tokens = tuple(sorted((field, filter_token(field, value)) for field, value in filters))
        return cls(spec, expression.text, terms, filters, SearchRead(spec.full_name, tokens, terms))

    def describe(self) -> list[Any]:
        """The plan's part of a cursor's fingerprint."""
        return [
            self.spec.name,
            self.spec.search_field,
            list(self.spec.filter_fields),
            list(self.terms.exact),
            self.terms.prefix,
            [[f, {"$undefined": None} if v is UNDEFINED else to_json(v)] for f, v in self.filters],
        ]

    def _matches_filters(self, doc: dict[str, Any]) -> bool:
        # The storage matched digests of the values: confirm the values themselves.
        return all(compare(get_field_path(doc, f), v) == 0 for f, v in self.filters)

    def results(self, tx: Transaction, limit: int) -> list[str]:
        """The ids of up to ``limit`` results, most relevant first (the search is recorded)."""
        request = SearchRequest(
            self.terms.exact,
            self.terms.prefix,
            tuple(token for _, token in self.read.filters),
            limit,
        )
        return tx.search(self.spec.table, self.spec.name, self.read, request)

    def documents(
        self, tx: Transaction, ids: list[str], start: int = 0
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(position, document) of ``ids[start:]``, each loaded when it is consumed.

        Past :data:`MAX_SEARCH_RESULTS` positions, LimitExceeded.
        """
        for position in range(start, len(ids)):
            if position >= MAX_SEARCH_RESULTS:
                raise too_many_results()
            doc = tx.search_result(ids[position])
            if doc is not None and self._matches_filters(doc):
                yield position, doc

    def scan(self, tx: Transaction, wanted: int | None) -> Iterator[dict[str, Any]]:
        """The results in order, loaded lazily; past :data:`MAX_SEARCH_RESULTS`, LimitExceeded.

        ``wanted``: how many the consumer will take if every result is kept
        (None: unknown), to fetch no more ids than needed.
        """
        fetch = MAX_SEARCH_RESULTS + 1
        if wanted is not None and wanted <= MAX_SEARCH_RESULTS:
            fetch = wanted
        for _position, doc in self.documents(tx, self.results(tx, fetch)):
            yield doc


def too_many_results() -> LimitExceeded:
    return LimitExceeded(
        f"The search query has more than {MAX_SEARCH_RESULTS} results, the most one search "
        "can scan: take fewer (take(n)), paginate, or narrow it with a filter field",
        code="TooManySearchResults",
    )
