"""Reads for looking at a deployment's data: the tables, and a page of one table's documents.

Shared by the admin HTTP endpoints (``/api/admin/tables``, ``/api/admin/data``)
and the CLI reading a data folder directly (``syncline data``), so both answer
alike. Documents come as Convex's encoded JSON, as on the wire.
"""

from __future__ import annotations

from typing import Any, Literal

from syncline.database.catalog import BY_CREATION_TIME
from syncline.database.transaction import Transaction
from syncline.errors import InvalidRequest
from syncline.values.json import to_json

__all__ = ["Order", "TableNotFound", "read_documents", "table_counts"]

Order = Literal["asc", "desc"]


class TableNotFound(InvalidRequest):
    code = "TableNotFound"
    http_status = 404


def table_counts(tx: Transaction) -> list[dict[str, Any]]:
    """``[{"name", "documents"}]`` for the user tables, sorted by name."""
    names = sorted(t.name for t in tx.catalog.tables() if not t.is_system)
    return [{"name": name, "documents": tx.count(name)} for name in names]


def read_documents(tx: Transaction, table: str, *, limit: int, order: Order) -> dict[str, Any]:
    """``{"table", "total", "documents"}``: up to ``limit`` documents by ``_creationTime``.

    ``order="desc"`` gives the newest first. System tables can be read too; a
    table that does not exist raises :class:`TableNotFound` naming the user tables.
    """
    known = [t.name for t in tx.catalog.tables()]
    if table not in known:
        user_tables = ", ".join(sorted(t for t in known if not t.startswith("_"))) or "none"
        raise TableNotFound(f"There is no table {table!r} (tables: {user_tables})")
    documents: list[Any] = []
    for _key, doc in tx.scan(table, BY_CREATION_TIME, b"", b"\xff", reverse=order == "desc"):
        if len(documents) >= limit:
            break
        documents.append(to_json(doc))
    return {"table": table, "total": tx.count(table), "documents": documents}
