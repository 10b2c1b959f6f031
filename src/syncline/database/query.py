"""The query builder: index ranges, filters, ordering, pagination.

``Query`` is what ``ctx.db.query(table)`` returns::

    ctx.db.query("tasks")
        .with_index("by_user", lambda q: q.eq("userId", uid).gt("createdAt", t))
        .order("desc")
        .filter(lambda q: q.eq(q.field("status"), "todo"))
        .take(10)

Semantics follow Convex exactly (semantics §3.3 to §3.6): an index key is the
declared fields plus ``_creationTime`` and ``_id``; a range is equalities on a
prefix of the key fields followed by at most one lower and one upper bound on
the next field; comparisons use the total order of values; filters are
expressions evaluated per scanned row and never narrow what counts as read.

``with_search_index`` makes it a text search instead (``search_query.py``):
relevance order, the search recorded as read, ``.filter()`` applied to the
results as they are scanned.
"""

from __future__ import annotations

import base64
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from syncline.database.catalog import BY_CREATION_TIME
from syncline.database.search_query import MAX_SEARCH_RESULTS, SearchPlan
from syncline.errors import InvalidCursor, InvalidQuery, InvalidValue, LimitExceeded
from syncline.values.json import from_python, to_json
from syncline.values.keys import compare, encode_key, encode_value, get_field_path
from syncline.values.types import INT64_MAX, INT64_MIN, UNDEFINED, Int64

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction

MAX_PAGE_SIZE = 32_000
_READ_LIMIT_CODES = frozenset({"TooManyDocumentsRead", "TooManyBytesRead"})


def full_range() -> tuple[bytes, bytes]:
    """The interval holding every key of an index."""
    return b"", b"\xff"


def _literal(value: Any) -> Any:
    if value is UNDEFINED:
        return UNDEFINED
    return from_python(value)


# ---------------------------------------------------------------------- ranges


class IndexRangeBuilder:
    """Collects ``eq`` / ``gt`` / ``gte`` / ``lt`` / ``lte`` for ``with_index``."""

    __slots__ = ("_eqs", "_lower", "_upper")

    def __init__(self) -> None:
        self._eqs: dict[str, Any] = {}
        self._lower: tuple[str, str, Any] | None = None
        self._upper: tuple[str, str, Any] | None = None

    def _check_field(self, field: object) -> str:
        if not isinstance(field, str):
            raise InvalidQuery(f"Index range fields are strings, got {field!r}")
        return field

    def eq(self, field: str, value: Any) -> IndexRangeBuilder:
        field = self._check_field(field)
        if field in self._eqs or any(b and b[1] == field for b in (self._lower, self._upper)):
            raise InvalidQuery(
                f"Index range already constrains field `{field}`", code="AlreadyDefinedBound"
            )
        self._eqs[field] = _literal(value)
        return self

    def _bound(self, which: str, op: str, field: str, value: Any) -> IndexRangeBuilder:
        field = self._check_field(field)
        if field in self._eqs:
            raise InvalidQuery(
                f"Index range already has `eq` on field `{field}`", code="AlreadyDefinedBound"
            )
        current = self._lower if which == "lower" else self._upper
        if current is not None:
            raise InvalidQuery(
                f"Index range already has a {which} bound (`{current[0]}` on `{current[1]}`)",
                code="AlreadyDefinedBound",
            )
        other = self._upper if which == "lower" else self._lower
        if other is not None and other[1] != field:
            raise InvalidQuery(
                f"Index range bounds must be on one field, got `{other[1]}` and `{field}`",
                code="BoundsOnMultipleFields",
            )
        bound = (op, field, _literal(value))
        if which == "lower":
            self._lower = bound
        else:
            self._upper = bound
        return self

    def gt(self, field: str, value: Any) -> IndexRangeBuilder:
        return self._bound("lower", "gt", field, value)

    def gte(self, field: str, value: Any) -> IndexRangeBuilder:
        return self._bound("lower", "gte", field, value)

    def lt(self, field: str, value: Any) -> IndexRangeBuilder:
        return self._bound("upper", "lt", field, value)

    def lte(self, field: str, value: Any) -> IndexRangeBuilder:
        return self._bound("upper", "lte", field, value)

    def compile(self, index_name: str, key_fields: tuple[str, ...]) -> tuple[bytes, bytes]:
        """The ``[start, end)`` interval of encoded keys this range selects."""
        bound_field = (self._lower or self._upper or (None, None))[1]
        used = set(self._eqs) | ({bound_field} if bound_field else set())
        for name in used:
            if name not in key_fields:
                raise InvalidQuery(
                    f"The index range for `{index_name}` uses field `{name}`, which is not "
                    f"in the index (fields: {list(key_fields)})",
                    code="FieldNotInIndex",
                )
        n_eq = len(self._eqs)
        eq_prefix_fields = key_fields[:n_eq]
        if set(eq_prefix_fields) != set(self._eqs) or (
            bound_field is not None and key_fields[n_eq] != bound_field
        ):
            expected = list(key_fields[: len(used)])
            raise InvalidQuery(
                f"The index range for `{index_name}` didn't use the index fields in order: "
                f"index fields are {list(key_fields)}, the range uses {sorted(used)}; "
                f"equalities and the bound must cover a prefix of the fields ({expected}).",
                code="InvalidIndexRange",
            )
        prefix = encode_key(self._eqs[f] for f in eq_prefix_fields)
        start, end = prefix, prefix + b"\xff"
        if self._lower is not None:
            op, _, value = self._lower
            encoded = prefix + encode_value(value)
            start = encoded if op == "gte" else encoded + b"\xff"
        if self._upper is not None:
            op, _, value = self._upper
            encoded = prefix + encode_value(value)
            end = encoded + b"\xff" if op == "lte" else encoded
        return start, end

    def describe(self) -> list[Any]:
        parts: list[Any] = [["eq", f, to_json_lenient(v)] for f, v in self._eqs.items()]
        for bound in (self._lower, self._upper):
            if bound is not None:
                parts.append([bound[0], bound[1], to_json_lenient(bound[2])])
        return parts


def to_json_lenient(value: Any) -> Any:
    return {"$undefined": None} if value is UNDEFINED else to_json(value)


# ---------------------------------------------------------------------- filters


class Expression(ABC):
    """A filter expression; build with the ``q`` passed to ``.filter(lambda q: ...)``."""

    __slots__ = ()

    @abstractmethod
    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        """The expression's value for one document (UNDEFINED for a missing field)."""

    @abstractmethod
    def to_json(self) -> Any:
        """Convex's JSON form of the expression (part of a cursor's fingerprint)."""


class _Field(Expression):
    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str):
            raise InvalidQuery(f"q.field() takes a field path string, got {path!r}")
        self.path = path

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        return get_field_path(doc, self.path)

    def to_json(self) -> Any:
        return {"$field": self.path}


class _Literal(Expression):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = _literal(value)

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        return self.value

    def to_json(self) -> Any:
        return {"$literal": to_json_lenient(self.value)}


def _expr(value: Any) -> Expression:
    return value if isinstance(value, Expression) else _Literal(value)


def _as_bool(value: Any, op: str) -> bool:
    if type(value) is not bool:
        raise InvalidQuery(
            f"Cannot use value {value!r} as a Boolean in `{op}`: filter conditions must be booleans",
            code="EvalError",
        )
    return value


_COMPARISONS: dict[str, Callable[[int], bool]] = {
    "eq": lambda c: c == 0,
    "neq": lambda c: c != 0,
    "lt": lambda c: c < 0,
    "lte": lambda c: c <= 0,
    "gt": lambda c: c > 0,
    "gte": lambda c: c >= 0,
}


class _Compare(Expression):
    __slots__ = ("left", "op", "right", "test")

    def __init__(self, op: str, left: Any, right: Any) -> None:
        self.op = op
        self.test = _COMPARISONS[op]
        self.left = _expr(left)
        self.right = _expr(right)

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        return self.test(compare(self.left.evaluate(doc), self.right.evaluate(doc)))

    def to_json(self) -> Any:
        return {f"${self.op}": [self.left.to_json(), self.right.to_json()]}


def _int64_checked(value: int) -> Int64:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidQuery("Int64 overflow in filter arithmetic", code="EvalError")
    return Int64(value)


def _arith(op: str, a: Any, b: Any) -> Any:
    if type(a) is Int64 and type(b) is Int64:
        if op in ("div", "mod") and b == 0:
            raise InvalidQuery(f"Int64 {op} by zero in filter", code="EvalError")
        if op == "add":
            return _int64_checked(a + b)
        if op == "sub":
            return _int64_checked(a - b)
        if op == "mul":
            return _int64_checked(a * b)
        # Truncating division and remainder, as int64 arithmetic does.
        quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
        if op == "div":
            return _int64_checked(quotient)
        return _int64_checked(a - quotient * b)
    if type(a) is float and type(b) is float:
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "div":
            if b == 0:
                # IEEE division: x/0 is a signed infinity, 0/0 and NaN/0 are NaN.
                if a == 0 or math.isnan(a):
                    return math.nan
                return math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
        if b == 0:
            return math.nan
        return math.fmod(a, b)  # the remainder takes the dividend's sign, as in JS
    raise InvalidQuery(
        f"Arithmetic `{op}` needs two Int64s or two float64s, got {a!r} and {b!r}",
        code="EvalError",
    )


class _Arith(Expression):
    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Any, right: Any) -> None:
        self.op = op
        self.left = _expr(left)
        self.right = _expr(right)

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        return _arith(self.op, self.left.evaluate(doc), self.right.evaluate(doc))

    def to_json(self) -> Any:
        return {f"${self.op}": [self.left.to_json(), self.right.to_json()]}


class _Neg(Expression):
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = _expr(inner)

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        value = self.inner.evaluate(doc)
        if type(value) is Int64:
            return _int64_checked(-value)
        if type(value) is float:
            return -value
        raise InvalidQuery(f"Cannot negate {value!r}", code="EvalError")

    def to_json(self) -> Any:
        return {"$neg": self.inner.to_json()}


class _Logical(Expression):
    __slots__ = ("op", "operands")

    def __init__(self, op: str, operands: tuple[Any, ...]) -> None:
        self.op = op
        self.operands = [_expr(x) for x in operands]

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        # Short-circuits left to right, as Convex does: later operands may not be evaluated.
        if self.op == "and":
            return all(_as_bool(operand.evaluate(doc), "and") for operand in self.operands)
        return any(_as_bool(operand.evaluate(doc), "or") for operand in self.operands)

    def to_json(self) -> Any:
        return {f"${self.op}": [x.to_json() for x in self.operands]}


class _Not(Expression):
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = _expr(inner)

    def evaluate(self, doc: Mapping[str, Any]) -> Any:
        return not _as_bool(self.inner.evaluate(doc), "not")

    def to_json(self) -> Any:
        return {"$not": self.inner.to_json()}


class FilterBuilder:
    """The ``q`` handed to ``.filter(lambda q: ...)``. Builds expressions."""

    __slots__ = ()

    def field(self, path: str) -> Expression:
        return _Field(path)

    def eq(self, left: Any, right: Any) -> Expression:
        return _Compare("eq", left, right)

    def neq(self, left: Any, right: Any) -> Expression:
        return _Compare("neq", left, right)

    def lt(self, left: Any, right: Any) -> Expression:
        return _Compare("lt", left, right)

    def lte(self, left: Any, right: Any) -> Expression:
        return _Compare("lte", left, right)

    def gt(self, left: Any, right: Any) -> Expression:
        return _Compare("gt", left, right)

    def gte(self, left: Any, right: Any) -> Expression:
        return _Compare("gte", left, right)

    def add(self, left: Any, right: Any) -> Expression:
        return _Arith("add", left, right)

    def sub(self, left: Any, right: Any) -> Expression:
        return _Arith("sub", left, right)

    def mul(self, left: Any, right: Any) -> Expression:
        return _Arith("mul", left, right)

    def div(self, left: Any, right: Any) -> Expression:
        return _Arith("div", left, right)

    def mod(self, left: Any, right: Any) -> Expression:
        return _Arith("mod", left, right)

    def neg(self, value: Any) -> Expression:
        return _Neg(value)

    def and_(self, *operands: Any) -> Expression:
        return _Logical("and", operands)

    def or_(self, *operands: Any) -> Expression:
        return _Logical("or", operands)

    def not_(self, operand: Any) -> Expression:
        return _Not(operand)


_Q = FilterBuilder()


# ---------------------------------------------------------------------- cursors

_CURSOR_VERSION = b"\x01"
_END = b"E"
_AFTER = b"K"


def _encode_cursor(fingerprint: bytes, key: bytes | None) -> str:
    body = _CURSOR_VERSION + fingerprint + (_END if key is None else _AFTER + key)
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: bytes) -> bytes | None:
    """The key a cursor points after (None: the end). Raises InvalidCursor."""
    try:
        body = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        body = b""
    if body[:1] != _CURSOR_VERSION or len(body) < 18 or body[17:18] not in (_END, _AFTER):
        raise InvalidCursor(f"InvalidCursor: {cursor!r} is not a pagination cursor")
    if body[1:17] != fingerprint:
        raise InvalidCursor(
            "InvalidCursor: this cursor belongs to a different query (the query or its "
            "index changed since the cursor was made)"
        )
    return None if body[17:18] == _END else body[18:]


def _cursor_string(cursor: object) -> str:
    if not isinstance(cursor, str):
        raise InvalidCursor(f"InvalidCursor: cursor must be a string or None, got {cursor!r}")
    return cursor


def _page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidValue(f"paginate: numItems must be a whole number, got {value!r}")
    n = int(value)
    if n < 1:
        raise InvalidValue("paginate: numItems must be at least 1", code="NoDocumentsForPagination")
    if n > MAX_PAGE_SIZE:
        raise InvalidValue(f"paginate: numItems must be at most {MAX_PAGE_SIZE}, got {n}")
    return n


# ---------------------------------------------------------------------- query


class Query:
    """A lazy query over one table. Consume it once."""

    def __init__(self, tx: Transaction, table: str) -> None:
        self._tx = tx
        self._table = table
        self._index = BY_CREATION_TIME
        self._range: IndexRangeBuilder | None = None
        self._order: str | None = None
        self._filters: list[Expression] = []
        self._indexed = False
        self._consumed = False
        self._search: SearchPlan | None = None
        #: how many results the consumer takes (a search fetches no more)
        self._wanted: int | None = None

    # -- building

    def with_index(
        self, index_name: str, range_fn: Callable[[IndexRangeBuilder], Any] | None = None
    ) -> Query:
        if self._indexed:
            raise InvalidQuery("with_index can only be called once per query")
        if self._filters or self._order:
            raise InvalidQuery("with_index must come before order() and filter()")
        self._indexed = True
        self._index = index_name
        if range_fn is not None:
            builder = IndexRangeBuilder()
            result = range_fn(builder)
            if result is not builder and result is not None:
                raise InvalidQuery(
                    "The with_index range function must return the builder it was given "
                    "(e.g. `lambda q: q.eq('field', value)`)"
                )
            self._range = builder
        return self

    def with_search_index(self, index_name: str, search_fn: Callable[[Any], Any]) -> Query:
        """Search the index's text: ``lambda q: q.search(field, text).eq(filter_field, v)``."""
        if self._indexed:
            raise InvalidQuery("with_search_index cannot follow with_index or with_search_index")
        if self._filters or self._order:
            raise InvalidQuery("with_search_index must come before order() and filter()")
        self._indexed = True
        self._search = SearchPlan.build(self._tx, self._table, index_name, search_fn)
        return self

    def full_table_scan(self) -> Query:
        return self

    def order(self, direction: str) -> Query:
        if self._search is not None:
            raise InvalidQuery(
                "Search queries must always be in relevance order: order() cannot follow "
                "with_search_index"
            )
        if self._order is not None:
            raise InvalidQuery("order() can only be called once per query")
        if direction not in ("asc", "desc"):
            raise InvalidQuery(f"order() takes 'asc' or 'desc', got {direction!r}")
        self._order = direction
        return self

    def filter(self, predicate: Callable[[FilterBuilder], Any]) -> Query:
        expression = predicate(_Q)
        if type(expression) is bool:
            # As in Convex, a predicate may be a plain boolean (`lambda q: True`).
            expression = _Literal(expression)
        if not isinstance(expression, Expression):
            raise InvalidQuery(
                "filter() takes a function that builds an expression with its argument, e.g. "
                "`.filter(lambda q: q.eq(q.field('status'), 'done'))`; "
                f"it returned {expression!r}"
            )
        self._filters.append(expression)
        return self

    # -- running

    def _interval(self) -> tuple[bytes, bytes]:
        if self._range is None:
            return full_range()
        key_fields = self._tx.index_fields(self._table, self._index)
        return self._range.compile(self._index, key_fields)

    def _start(self) -> None:
        if self._consumed:
            raise InvalidQuery("A query can only be consumed once; build a new one")
        self._consumed = True

    def _matches(self, doc: Mapping[str, Any]) -> bool:
        return all(_as_bool(expression.evaluate(doc), "filter") for expression in self._filters)

    def _rows(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
        reverse = self._order == "desc"
        # With no filter, take(n) reads exactly n rows: fetch them in one round trip.
        expected = None if self._filters else self._wanted
        rows = self._tx.scan(
            self._table, self._index, start, end, reverse=reverse, expected=expected
        )
        if not self._filters:
            return rows
        return (row for row in rows if self._matches(row[1]))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._start()
        if self._search is not None:
            wanted = None if self._filters else self._wanted
            for doc in self._search.scan(self._tx, wanted):
                if self._matches(doc):
                    yield doc
            return
        start, end = self._interval()
        for _key, doc in self._rows(start, end):
            yield doc

    def collect(self) -> list[dict[str, Any]]:
        return list(self)

    def take(self, n: int) -> list[dict[str, Any]]:
        if isinstance(n, bool) or not isinstance(n, int | float) or n != int(n) or n < 0:
            raise InvalidQuery(f"take() needs a non-negative whole number, got {n!r}")
        n = int(n)
        out: list[dict[str, Any]] = []
        if n == 0:
            self._start()
            return out
        self._wanted = n
        for doc in self:
            out.append(doc)
            if len(out) >= n:
                break
        return out

    def first(self) -> dict[str, Any] | None:
        docs = self.take(1)
        return docs[0] if docs else None

    def unique(self) -> dict[str, Any] | None:
        docs = self.take(2)
        if len(docs) > 1:
            ids = [d["_id"] for d in docs]
            raise InvalidQuery(
                f"unique() query returned more than one result from table {self._table}:\n"
                f" [{ids[0]}, {ids[1]}, ...]",
                code="UniqueQueryReturnedMultiple",
            )
        return docs[0] if docs else None

    def fingerprint(self) -> bytes:
        """Identifies the query's shape; cursors are only valid for the same shape."""
        if self._search is not None:
            shape: list[Any] = ["search", self._table, self._search.describe()]
            shape.append([f.to_json() for f in self._filters])
            return hashlib.sha256(orjson.dumps(shape)).digest()[:16]
        key_fields = self._tx.index_fields(self._table, self._index)
        shape = [
            self._table,
            self._index,
            list(key_fields),
            self._range.describe() if self._range else None,
            self._order or "asc",
            [f.to_json() for f in self._filters],
        ]
        return hashlib.sha256(orjson.dumps(shape)).digest()[:16]

    def paginate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """One page: ``{"page", "isDone", "continueCursor", "splitCursor"?, "pageStatus"?}``.

        ``options``: ``numItems``, ``cursor`` (None for the first page),
        optional ``endCursor`` (return exactly the rows up to it: this keeps
        reactive pages contiguous), ``maximumRowsRead``.
        """
        if not isinstance(options, Mapping):
            raise InvalidValue(f"paginate() takes a dict of options, got {options!r}")
        if self._tx.paginated:
            raise InvalidQuery(
                "This function already called paginate(); only one paginated query is "
                "allowed per function execution",
                code="MultiplePaginatedDatabaseQueries",
            )
        self._tx.paginated = True
        num_items = _page_size(options.get("numItems"))
        cursor = options.get("cursor")
        end_cursor = options.get("endCursor")
        if end_cursor is None and self._tx.journal is not None:
            # A live query re-running: keep the page's extent so pages stay contiguous.
            end_cursor = self._tx.journal
        max_rows = options.get("maximumRowsRead")
        if max_rows is not None:
            max_rows = _page_size(max_rows)
        self._start()
        fingerprint = self.fingerprint()
        if self._search is not None:
            return self._paginate_search(fingerprint, num_items, cursor, end_cursor)
        start, end = self._interval()
        reverse = self._order == "desc"
        if cursor is not None:
            after = _decode_cursor(_cursor_string(cursor), fingerprint)
            if after is None:
                return {"page": [], "isDone": True, "continueCursor": cursor}
            if reverse:
                end = min(end, after)
            else:
                start = max(start, after + b"\x00")
        bounded = end_cursor is not None
        until: bytes | None = None
        if bounded:
            if not isinstance(end_cursor, str):
                raise InvalidCursor("InvalidCursor: endCursor must be a string")
            until = _decode_cursor(end_cursor, fingerprint)
            if until is not None:
                if reverse:
                    start = max(start, until)
                else:
                    end = min(end, until + b"\x00")
        page: list[dict[str, Any]] = []
        keys: list[bytes] = []
        last_key: bytes | None = None
        exhausted = True
        page_status: str | None = None
        read_budget = self._tx.limits.max_docs_read
        # With no filter, an open-ended page reads exactly num_items rows.
        expected = None if self._filters or bounded else num_items
        rows = self._tx.scan(
            self._table, self._index, start, end, reverse=reverse, expected=expected
        )
        try:
            for scanned, (key, doc) in enumerate(rows, start=1):
                last_key = key
                if self._matches(doc):
                    page.append(doc)
                    keys.append(key)
                if not bounded and len(page) >= num_items:
                    exhausted = False
                    break
                if max_rows is not None and scanned >= max_rows and not bounded:
                    exhausted = False
                    break
                if self._tx.docs_read >= read_budget - 1:
                    exhausted = False
                    page_status = "SplitRequired"
                    break
        except LimitExceeded as exc:
            # Inside paginate a read limit ends the page early instead of failing
            # (semantics §3.6): the rows so far are returned, the client splits.
            if exc.code not in _READ_LIMIT_CODES or last_key is None:
                raise
            exhausted = False
            page_status = "SplitRequired"
        if bounded:
            continue_cursor = end_cursor
            is_done = until is None
        elif exhausted:
            continue_cursor = _encode_cursor(fingerprint, None)
            is_done = True
        else:
            assert last_key is not None
            continue_cursor = _encode_cursor(fingerprint, last_key)
            is_done = False
        result: dict[str, Any] = {
            "page": page,
            "isDone": is_done,
            "continueCursor": continue_cursor,
        }
        if page_status is None and (
            len(page) > 6144
            or self._tx.docs_read > 0.75 * read_budget
            or self._tx.bytes_read > 0.75 * self._tx.limits.max_bytes_read
        ):
            page_status = "SplitRecommended"
        if page_status is not None:
            result["pageStatus"] = page_status
            if len(keys) >= 2:
                result["splitCursor"] = _encode_cursor(fingerprint, keys[len(keys) // 2 - 1])
        self._tx.journal_out = continue_cursor
        return result

    def _paginate_search(
        self, fingerprint: bytes, num_items: int, cursor: Any, end_cursor: Any
    ) -> dict[str, Any]:
        """A page of search results; a cursor is a position in the relevance order."""
        assert self._search is not None
        start = 0
        if cursor is not None:
            after = _decode_cursor(_cursor_string(cursor), fingerprint)
            if after is None:
                return {"page": [], "isDone": True, "continueCursor": cursor}
            start = _search_position(after)
        until: int | None = None
        bounded = end_cursor is not None
        if bounded:
            if not isinstance(end_cursor, str):
                raise InvalidCursor("InvalidCursor: endCursor must be a string")
            end_key = _decode_cursor(end_cursor, fingerprint)
            until = None if end_key is None else _search_position(end_key)
        ids = self._search.results(self._tx, MAX_SEARCH_RESULTS + 1)
        if until is not None:
            ids = ids[:until]
        page: list[dict[str, Any]] = []
        position = len(ids)  # just after the last result looked at
        for at, doc in self._search.documents(self._tx, ids, start):
            if self._matches(doc):
                page.append(doc)
            if not bounded and len(page) >= num_items:
                position = at + 1
                break
        if bounded:
            continue_cursor = end_cursor
            is_done = until is None
        elif position >= len(ids):
            continue_cursor = _encode_cursor(fingerprint, None)
            is_done = True
        else:
            continue_cursor = _encode_cursor(fingerprint, position.to_bytes(4, "big"))
            is_done = False
        self._tx.journal_out = continue_cursor
        return {"page": page, "isDone": is_done, "continueCursor": continue_cursor}


def _search_position(key: bytes) -> int:
    if len(key) != 4:
        raise InvalidCursor("InvalidCursor: this cursor is not a search query's cursor")
    return int.from_bytes(key, "big")
