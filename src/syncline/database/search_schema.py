"""Creating, backfilling and dropping text search indexes when a schema is applied.

The storage's own list of search indexes (``WriteConnection.search_indexes``)
is compared with the schema's declarations, so a data folder whose schema
declared search indexes before the storage held any gets them at the next
apply. A declaration that changed (another search field or filter fields) is
dropped and built again. A new index is backfilled from the table's documents
in batches, inside the schema's transaction (so it is complete when the
schema becomes active), with its progress logged for large tables.

On a storage backend without text search (``supports_search`` false) the
declarations stay declarations: nothing is built, writes keep no entries,
and a search raises InternalError (code ``SearchNotSupported``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from syncline.database.catalog import BY_ID
from syncline.database.search_index import SearchIndexSpec
from syncline.persistence.base import SearchEntry, SearchIndexRow, WriteConnection
from syncline.values.json import document_from_json_bytes

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.schema import Schema

__all__ = ["BACKFILL_BATCH", "sync_search_indexes"]

log = logging.getLogger("syncline.database")

#: documents read (and entries written) per round trip of a backfill
BACKFILL_BATCH = 1000
#: a backfill logs its progress every this many documents
PROGRESS_EVERY = 50_000


def sync_search_indexes(tx: Transaction, schema: Schema | None) -> tuple[list[str], list[str]]:
    """Make the stored search indexes match ``schema``'s; (added, removed) full names."""
    conn = tx._require_writable()
    wanted: dict[tuple[int, str], SearchIndexRow] = {}
    for table_name, definition in (schema.tables if schema is not None else {}).items():
        info = tx.table(table_name)
        if info is None:
            continue
        for declared in definition.search_indexes:
            row = SearchIndexRow(
                info.number, declared.name, declared.search_field, tuple(declared.filter_fields)
            )
            wanted[info.number, declared.name] = row
    if not conn.supports_search:
        if wanted:
            log.warning(
                "the schema declares %d search index(es), but this storage backend does not "
                "support text search: they are not built, and searching them fails",
                len(wanted),
            )
        return [], []
    stored = {(row.table_number, row.name): row for row in conn.search_indexes()}
    added: list[str] = []
    removed: list[str] = []
    for key, row in stored.items():
        if wanted.get(key) != row:
            conn.drop_search_index(row.table_number, row.name)
            table = tx.catalog.table_by_number(row.table_number)
            removed.append(f"{table.name if table else row.table_number}.{row.name}")
    for key, row in wanted.items():
        if stored.get(key) != row:
            conn.create_search_index(row)
            info = tx.catalog.table_by_number(row.table_number)
            assert info is not None
            spec = SearchIndexSpec(info.name, row.name, row.search_field, row.filter_fields)
            _backfill(conn, info.indexes[BY_ID].id, row.table_number, spec)
            added.append(spec.full_name)
    return added, removed


def _backfill(conn: WriteConnection, by_id: int, table_number: int, spec: SearchIndexSpec) -> None:
    total = conn.count(by_id)
    if total >= PROGRESS_EVERY:
        log.info("search index %s: indexing %d documents", spec.full_name, total)
    done = 0
    start, end = b"", b"\xff"
    while True:
        rows = conn.scan(by_id, start, end, reverse=False, limit=BACKFILL_BATCH)
        entries: list[SearchEntry] = []
        for _key, _doc_id, raw in rows:
            made = spec.entry(document_from_json_bytes(raw))
            if made is not None:
                entries.append(made[0])
        if entries:
            conn.put_search_entries(table_number, spec.name, entries)
        done += len(rows)
        if (
            total >= PROGRESS_EVERY
            and done // PROGRESS_EVERY != (done - len(rows)) // PROGRESS_EVERY
        ):
            log.info("search index %s: %d of %d documents indexed", spec.full_name, done, total)
        if len(rows) < BACKFILL_BATCH:
            break
        start = rows[-1][0] + b"\x00"
    if total >= PROGRESS_EVERY:
        log.info("search index %s: built (%d documents)", spec.full_name, done)
