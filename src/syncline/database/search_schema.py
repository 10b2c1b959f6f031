"""Creating, backfilling and dropping text search indexes when a schema is applied.

The storage's own list of search indexes (``WriteConnection.search_indexes``)
is compared with the schema's declarations, so a data folder whose schema
declared search indexes before the storage held any gets them at the next
apply. A declaration that changed (another search field or filter fields) is
dropped and built again.

A new index on a table of at least :data:`STAGED_BACKFILL_MIN` documents is
built *beside* the live ones before the schema transaction
(:func:`stage_search_indexes`), so that the store's write lock is never held
for long: under a storage name no declaration can have (``name~building``),
in transactions of :data:`BACKFILL_BATCH` documents each, other commits
running between them. It then catches up with the commits made meanwhile by
replaying the document log since it began. The schema transaction replays
the last few commits under the lock, drops the old index (a changed
declaration) and renames the new one into place, atomically with making the
schema active: searches see the old index, then the new one, never a partial
one. Progress is logged for large tables. A smaller table's index is filled
inside the schema transaction itself.

An index left half-built (a crash, a schema that failed to apply) is a
storage index no declaration wants: the next apply drops it.

On a storage backend without text search (``supports_search`` false) the
declarations stay declarations: nothing is built, writes keep no entries,
and a search raises InternalError (code ``SearchNotSupported``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.database.catalog import BY_ID
from syncline.database.search_index import SearchIndexSpec
from syncline.persistence.base import (
    LOG_PRUNED_GLOBAL,
    SearchEntry,
    SearchIndexRow,
    WriteConnection,
)
from syncline.values.json import document_from_json_bytes

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.schema import Schema

__all__ = [
    "BACKFILL_BATCH",
    "STAGED_BACKFILL_MIN",
    "StagedIndex",
    "drop_staged",
    "stage_search_indexes",
    "sync_search_indexes",
]

log = logging.getLogger("syncline.database")

#: documents read (and entries written) per batch of a backfill (one transaction each
#: when staged), and document-log entries replayed per catch-up transaction
BACKFILL_BATCH = 500
#: a table with at least this many documents has its new search indexes built beforehand
STAGED_BACKFILL_MIN = 2 * BACKFILL_BATCH
#: a backfill logs its progress every this many documents
PROGRESS_EVERY = 50_000
#: the storage name of an index being built (declared names are identifiers: no "~")
STAGING_SUFFIX = "~building"

#: runs a function as an exclusive write (its own transaction, under the write lock)
RunExclusive = Callable[[Callable[["Transaction"], Any]], Any]


@dataclass(slots=True)
class StagedIndex:
    """A search index being built beside the live ones, for a declaration."""

    row: SearchIndexRow
    spec: SearchIndexSpec
    by_id: int
    #: the document log is replayed from after this ts (the build's start)
    since: int
    #: the next document to index (by_id key), None once every document was
    cursor: bytes | None = b""
    done: int = 0
    total: int = 0

    @property
    def staging_name(self) -> str:
        return self.row.name + STAGING_SUFFIX


def _wanted(tx: Transaction, schema: Schema | None) -> dict[tuple[int, str], SearchIndexRow]:
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
    return wanted


def sync_search_indexes(
    tx: Transaction, schema: Schema | None, staged: list[StagedIndex] | None = None
) -> tuple[list[str], list[str]]:
    """Make the stored search indexes match ``schema``'s; (added, removed) full names.

    ``staged``: indexes :func:`stage_search_indexes` built for this schema,
    put in place here (after replaying the last commits) instead of built.
    """
    conn = tx._require_writable()
    wanted = _wanted(tx, schema)
    if not conn.supports_search:
        if wanted:
            log.warning(
                "the schema declares %d search index(es), but this storage backend does not "
                "support text search: they are not built, and searching them fails",
                len(wanted),
            )
        return [], []
    ready = {(s.row.table_number, s.row.name): s for s in staged or () if _caught_up(conn, s)}
    stored = {(row.table_number, row.name): row for row in conn.search_indexes()}
    added: list[str] = []
    removed: list[str] = []
    for key, row in stored.items():
        if row.name.endswith(STAGING_SUFFIX):
            if not any(s.staging_name == row.name for s in ready.values()):
                conn.drop_search_index(row.table_number, row.name)  # left half-built
        elif wanted.get(key) != row:
            conn.drop_search_index(row.table_number, row.name)
            table = tx.catalog.table_by_number(row.table_number)
            removed.append(f"{table.name if table else row.table_number}.{row.name}")
    for key, row in wanted.items():
        built = ready.pop(key, None)
        if stored.get(key) == row:
            continue
        info = tx.catalog.table_by_number(row.table_number)
        assert info is not None
        spec = SearchIndexSpec(info.name, row.name, row.search_field, row.filter_fields)
        if built is not None and built.row == row:
            conn.rename_search_index(row.table_number, built.staging_name, row.name)
        else:
            if built is not None:
                conn.drop_search_index(row.table_number, built.staging_name)
            conn.create_search_index(row)
            _backfill(conn, info.indexes[BY_ID].id, row.table_number, spec)
        added.append(spec.full_name)
    for unused in ready.values():  # built for a declaration that is no longer wanted
        conn.drop_search_index(unused.row.table_number, unused.staging_name)
    return added, removed


def _caught_up(conn: WriteConnection, staged: StagedIndex) -> bool:
    """Replay every commit since ``staged`` began (under the lock); False if it cannot be."""
    if staged.cursor is not None:
        return False
    pruned = conn.get_global(LOG_PRUNED_GLOBAL)
    if pruned is not None and int(pruned) > staged.since:
        # The log no longer holds every commit since the build began: build it again here.
        log.warning("search index %s: rebuilt (the document log was pruned)", staged.spec.full_name)
        return False
    while _replay(conn, staged, BACKFILL_BATCH):
        pass
    return True


def _replay(conn: WriteConnection, staged: StagedIndex, limit: int) -> bool:
    """Apply up to ``limit`` document-log entries after ``staged.since``; False once none is left.

    Entries of one commit share its ts: a batch that stops inside a commit
    ends before it, so that the next one starts with the whole commit.
    """
    entries = conn.log_since(staged.since, limit=limit)
    while len(entries) == limit and entries[0].ts == entries[-1].ts:
        limit *= 4  # one commit larger than the batch: read it whole
        entries = conn.log_since(staged.since, limit=limit)
    more = len(entries) == limit
    if more:
        last = entries[-1].ts
        entries = [e for e in entries if e.ts != last]
    puts: dict[str, SearchEntry] = {}
    deletes: dict[str, None] = {}
    for entry in entries:
        if entry.table_number != staged.row.table_number:
            continue
        made = None
        if entry.value is not None:
            made = staged.spec.entry(document_from_json_bytes(entry.value))
        if made is None:
            puts.pop(entry.doc_id, None)
            deletes[entry.doc_id] = None
        else:
            deletes.pop(entry.doc_id, None)
            puts[entry.doc_id] = made[0]
    if deletes:
        conn.delete_search_entries(staged.row.table_number, staged.staging_name, list(deletes))
    if puts:
        conn.put_search_entries(staged.row.table_number, staged.staging_name, list(puts.values()))
    if entries:
        staged.since = entries[-1].ts
    return more


def stage_search_indexes(run: RunExclusive, schema: Schema | None) -> list[StagedIndex]:
    """Build ``schema``'s new search indexes on large tables beside the live ones.

    Each step runs through ``run`` (an exclusive write: its own short
    transaction under the write lock). Returns what was built, for
    :func:`sync_search_indexes` to put in place; empty on a backend without
    text search or when every new index is on a small table.
    """
    staged: list[StagedIndex] = run(lambda tx: _plan(tx, schema))
    try:
        for index in staged:
            if index.total >= PROGRESS_EVERY:
                log.info(
                    "search index %s: indexing %d documents", index.spec.full_name, index.total
                )
            while index.cursor is not None:
                run(functools.partial(_fill_step, index=index))
            # Catch up with the commits made meanwhile, a batch at a time, until a batch
            # is not full: the schema transaction replays the rest under the lock.
            while run(functools.partial(_replay_step, index=index)):
                pass
            if index.total >= PROGRESS_EVERY:
                log.info("search index %s: built (%d documents)", index.spec.full_name, index.done)
    except BaseException:
        drop_staged(run, staged)
        raise
    return staged


def _fill_step(tx: Transaction, index: StagedIndex) -> None:
    _fill(tx._require_writable(), index)


def _replay_step(tx: Transaction, index: StagedIndex) -> bool:
    return _replay(tx._require_writable(), index, BACKFILL_BATCH)


def drop_staged(run: RunExclusive, staged: list[StagedIndex]) -> None:
    """Remove indexes staged for a schema that was not applied (best effort)."""
    if not staged:
        return

    def drop(tx: Transaction) -> None:
        conn = tx._require_writable()
        names = {(row.table_number, row.name) for row in conn.search_indexes()}
        for index in staged:
            if (index.row.table_number, index.staging_name) in names:
                conn.drop_search_index(index.row.table_number, index.staging_name)

    try:
        run(drop)
    except Exception:
        log.warning("could not remove search indexes left half-built", exc_info=True)


def _plan(tx: Transaction, schema: Schema | None) -> list[StagedIndex]:
    """Start a staged build of each new index on a large table (in one transaction)."""
    conn = tx._require_writable()
    if not conn.supports_search:
        return []
    stored = {(row.table_number, row.name): row for row in conn.search_indexes()}
    for number, name in list(stored):
        if name.endswith(STAGING_SUFFIX):
            conn.drop_search_index(number, name)  # left half-built by an earlier attempt
    staged: list[StagedIndex] = []
    for key, row in _wanted(tx, schema).items():
        if stored.get(key) == row:
            continue
        info = tx.catalog.table_by_number(row.table_number)
        assert info is not None
        by_id = info.indexes[BY_ID].id
        total = conn.count(by_id)
        if total < STAGED_BACKFILL_MIN:
            continue
        spec = SearchIndexSpec(info.name, row.name, row.search_field, row.filter_fields)
        index = StagedIndex(row, spec, by_id, since=conn.ts, total=total)
        conn.create_search_index(
            SearchIndexRow(
                row.table_number, index.staging_name, row.search_field, row.filter_fields
            )
        )
        staged.append(index)
    return staged


def _fill(conn: WriteConnection, index: StagedIndex) -> None:
    """Index the next :data:`BACKFILL_BATCH` documents of a staged build."""
    assert index.cursor is not None
    rows = conn.scan(index.by_id, index.cursor, b"\xff", reverse=False, limit=BACKFILL_BATCH)
    entries: list[SearchEntry] = []
    for _key, _doc_id, raw in rows:
        made = index.spec.entry(document_from_json_bytes(raw))
        if made is not None:
            entries.append(made[0])
    if entries:
        conn.put_search_entries(index.row.table_number, index.staging_name, entries)
    before = index.done
    index.done += len(rows)
    if index.total >= PROGRESS_EVERY and index.done // PROGRESS_EVERY != before // PROGRESS_EVERY:
        log.info(
            "search index %s: %d of %d documents indexed",
            index.spec.full_name,
            index.done,
            index.total,
        )
    index.cursor = rows[-1][0] + b"\x00" if len(rows) == BACKFILL_BATCH else None


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
