"""``_system/dashboard/data:*``: the tables, the schema, and a table's documents.

Reads are queries (live: the Data page updates as documents change); writes
are mutations that go through the same checks as a user's (the schema, the
value rules), so a refused document writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncline.dashboard.errors import dashboard_error, user_errors
from syncline.database.catalog import BY_CREATION_TIME, BY_ID, SYSTEM_TABLES_BY_NAME
from syncline.database.query import IndexRangeBuilder, Query
from syncline.database.transaction import Transaction
from syncline.functions.context import transaction_of
from syncline.functions.registration import RegisteredFunction, internal_mutation, internal_query
from syncline.values.validators import pagination_opts_validator, v

__all__ = ["MAX_CLEAR_BATCH", "MAX_PAGE_ITEMS", "MAX_REMOVE_IDS", "functions"]

#: documents one ``data:page`` call may return (``paginationOpts.numItems``)
MAX_PAGE_ITEMS = 1000
#: ids one ``data:remove`` call may delete
MAX_REMOVE_IDS = 1000
#: documents one ``data:clear`` call deletes; the dashboard calls it until ``done``
MAX_CLEAR_BATCH = 1000

_RANGE_BOUND = v.optional(v.object({"value": v.any(), "inclusive": v.boolean()}))
_PAIRS = v.optional(v.array(v.array(v.any())))


def _readable(tx: Transaction, table: str) -> str:
    """``table``, if it exists or the schema declares it (user or user-visible system tables)."""
    if table.startswith("_"):
        spec = SYSTEM_TABLES_BY_NAME.get(table)
        if spec is not None and spec.user_visible:
            return table
    elif tx.table(table) is not None or (tx.schema is not None and table in tx.schema.tables):
        return table
    raise dashboard_error("TableNotFound", f"There is no table {table!r}")


def _user_table(tx: Transaction, doc_id: str) -> str:
    table = tx.table_name_of_id(doc_id) if isinstance(doc_id, str) else None
    if table is None:
        raise dashboard_error("NotFound", f"{doc_id!r} is not the id of a document of any table")
    if table.startswith("_"):
        raise dashboard_error(
            "BadArgument",
            f"{doc_id} is in the system table {table}, which the dashboard only reads",
        )
    return table


def _pairs(raw: Sequence[Any], what: str) -> list[tuple[str, Any]]:
    pairs = []
    for pair in raw:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise dashboard_error(
                "BadQuery", f"`{what}` takes [field, value] pairs, got {len(pair)} item(s)"
            )
        pairs.append((pair[0], pair[1]))
    return pairs


def _index_range(
    fields: tuple[str, ...],
    index: str,
    eq: list[tuple[str, Any]],
    lower: Mapping[str, Any] | None,
    upper: Mapping[str, Any] | None,
) -> Callable[[IndexRangeBuilder], IndexRangeBuilder] | None:
    """The ``with_index`` range: equality on the leading fields, then a range on the next."""
    if len(eq) > len(fields):
        raise dashboard_error(
            "BadQuery", f"Index {index} has {len(fields)} field(s); `eq` names {len(eq)}"
        )
    for position, (field, _value) in enumerate(eq):
        if field != fields[position]:
            raise dashboard_error(
                "BadQuery",
                f"`eq` must follow the fields of index {index} in order ({', '.join(fields)}): "
                f"expected {fields[position]!r} at position {position + 1}, got {field!r}",
            )
    range_field: str | None = None
    if lower is not None or upper is not None:
        if len(eq) == len(fields):
            raise dashboard_error(
                "BadQuery", f"Index {index} has no field left for a range after `eq`"
            )
        range_field = fields[len(eq)]
    if not eq and range_field is None:
        return None

    def build(q: IndexRangeBuilder) -> IndexRangeBuilder:
        for field, value in eq:
            q = q.eq(field, value)
        if lower is not None:
            assert range_field is not None
            bound = q.gte if lower["inclusive"] else q.gt
            q = bound(range_field, lower["value"])
        if upper is not None:
            assert range_field is not None
            bound = q.lte if upper["inclusive"] else q.lt
            q = bound(range_field, upper["value"])
        return q

    return build


@internal_query
@user_errors
def tables(ctx: Any) -> list[dict[str, Any]]:
    tx = transaction_of(ctx)
    declared = set(tx.schema.tables) if tx.schema is not None else set()
    names = {t.name for t in tx.tables() if not t.is_system} | declared
    return [
        {"name": name, "count": tx.count(name), "hasSchema": name in declared}
        for name in sorted(names)
    ]


@internal_query
@user_errors
def schema(ctx: Any) -> dict[str, Any] | None:
    current = transaction_of(ctx).schema
    if current is None:
        return None
    exported = current.to_json()
    return {
        "schemaValidation": exported["schemaValidation"],
        "tables": [
            {
                "name": table["tableName"],
                "document": table["documentType"],
                "indexes": [
                    {"name": i["indexDescriptor"], "fields": i["fields"]} for i in table["indexes"]
                ],
                "searchIndexes": [
                    {
                        "name": s["indexDescriptor"],
                        "searchField": s["searchField"],
                        "filterFields": s["filterFields"],
                    }
                    for s in table["searchIndexes"]
                ],
                "vectorIndexes": [
                    {
                        "name": x["indexDescriptor"],
                        "vectorField": x["vectorField"],
                        "dimensions": x["dimensions"],
                        "filterFields": x["filterFields"],
                    }
                    for x in table["vectorIndexes"]
                ],
            }
            for table in exported["tables"]
        ],
    }


@internal_query(
    args={
        "table": v.string(),
        "index": v.optional(v.string()),
        "order": v.optional(v.union(v.literal("asc"), v.literal("desc"))),
        "eq": _PAIRS,
        "lower": _RANGE_BOUND,
        "upper": _RANGE_BOUND,
        "filters": _PAIRS,
        "paginationOpts": pagination_opts_validator,
    }
)
@user_errors
def page(
    ctx: Any,
    table: str,
    paginationOpts: dict[str, Any],
    index: str = BY_CREATION_TIME,
    order: str = "desc",
    eq: Sequence[Any] = (),
    lower: Mapping[str, Any] | None = None,
    upper: Mapping[str, Any] | None = None,
    filters: Sequence[Any] = (),
) -> dict[str, Any]:
    tx = transaction_of(ctx)
    _readable(tx, table)
    num_items = paginationOpts["numItems"]
    if not 1 <= num_items <= MAX_PAGE_ITEMS or num_items != int(num_items):
        raise dashboard_error(
            "BadQuery",
            f"paginationOpts.numItems must be a whole number from 1 to {MAX_PAGE_ITEMS}, "
            f"got {num_items!r}",
        )
    fields = tx.index_fields(table, index)
    if index not in (BY_ID, BY_CREATION_TIME):
        fields = fields[:-2]  # _creationTime and _id, appended to every index
    query = Query(tx, table).with_index(
        index, _index_range(fields, index, _pairs(eq, "eq"), lower, upper)
    )
    query = query.order(order)
    wanted = _pairs(filters, "filters")
    if wanted:
        query = query.filter(lambda q: q.and_(*(q.eq(q.field(f), value) for f, value in wanted)))
    return query.paginate(paginationOpts)


@internal_query(args={"id": v.string()})
@user_errors
def get(ctx: Any, id: str) -> dict[str, Any] | None:
    tx = transaction_of(ctx)
    table = tx.table_name_of_id(id)
    if table is None:
        return None
    document = tx.get(id)
    return None if document is None else {"table": table, "document": document}


@internal_mutation(args={"table": v.string(), "document": v.any()})
@user_errors
def insert(ctx: Any, table: str, document: Any) -> str:
    if table.startswith("_"):
        raise dashboard_error("BadArgument", f"{table} is a system table: insert into your own")
    return transaction_of(ctx).insert(table, document)


@internal_mutation(args={"id": v.string(), "document": v.any()})
@user_errors
def replace(ctx: Any, id: str, document: Any) -> None:
    tx = transaction_of(ctx)
    _user_table(tx, id)
    if isinstance(document, Mapping):
        document = {k: value for k, value in document.items() if k not in ("_id", "_creationTime")}
    tx.replace(id, document)


@internal_mutation(args={"ids": v.array(v.string())})
@user_errors
def remove(ctx: Any, ids: list[str]) -> float:
    if len(ids) > MAX_REMOVE_IDS:
        raise dashboard_error(
            "BadArgument",
            f"data:remove deletes at most {MAX_REMOVE_IDS} ids per call, got {len(ids)}",
        )
    tx = transaction_of(ctx)
    deleted = 0
    for doc_id in dict.fromkeys(ids):
        _user_table(tx, doc_id)
        if tx.get(doc_id) is not None:
            tx.delete(doc_id)
            deleted += 1
    return float(deleted)


@internal_mutation(args={"table": v.string()})
@user_errors
def clear(ctx: Any, table: str) -> dict[str, Any]:
    tx = transaction_of(ctx)
    if table.startswith("_"):
        raise dashboard_error("BadArgument", f"{table} is a system table: clear your own tables")
    _readable(tx, table)
    batch = Query(tx, table).take(MAX_CLEAR_BATCH + 1)
    for document in batch[:MAX_CLEAR_BATCH]:
        tx.delete(document["_id"])
    done = len(batch) <= MAX_CLEAR_BATCH
    return {"deleted": float(min(len(batch), MAX_CLEAR_BATCH)), "done": done}


def functions() -> dict[str, RegisteredFunction]:
    """The data functions by path below ``_system/dashboard/``."""
    return {
        f"data:{fn.__name__}": fn
        for fn in (tables, schema, page, get, insert, replace, remove, clear)
    }
