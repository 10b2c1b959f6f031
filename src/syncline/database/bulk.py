"""Bulk writes for import and restore: many complete documents in one transaction.

A :class:`BulkWriter` wraps the writer's :class:`~syncline.database.transaction.Transaction`
of a job submitted with ``Database.submit_write(job, exclusive=True)``. It
differs from ``Transaction.insert``/``write_raw`` in three ways:

* no per-transaction limits: an import is one atomic transaction whatever its
  size (a mutation's 16,000-document limit would split it);
* documents are written in batches (``WriteConnection.insert_bulk``: one
  ``executemany`` each for documents, index entries and commit-log entries)
  instead of row by row, and a table that was empty at the start needs no
  lookup per id to refuse duplicates;
* commit-log entries go to storage at every batch instead of being held by the
  transaction, so document bodies never accumulate in memory.

It keeps the engine's invariants: every document is schema-checked against the
transaction's schema and size-checked; every index of the table gets its entry;
every revision gets a commit-log entry; and the old and new key of every
written document in every index is recorded in ``tx.writes``, so the commit
publishes its write set like any other. What does accumulate is that write set
(a few short keys per document, not the documents).

Call :meth:`BulkWriter.flush` before the job returns (queued documents are
not written otherwise). Do not write the same documents through both a
BulkWriter and the transaction's own methods in one job: the transaction
appends its log entries after the job, and they would replace the bulk
writer's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from syncline.database.catalog import BY_ID, FIRST_USER_TABLE_NUMBER, IndexInfo, TableInfo
from syncline.database.database import SCAN_BATCH, Database
from syncline.database.search_index import SearchIndexSpec, search_specs
from syncline.database.search_reads import SearchWrite
from syncline.database.transaction import Transaction
from syncline.errors import InvalidId, InvalidValue
from syncline.persistence.base import LogEntry, SearchEntry, WriteConnection
from syncline.values.ids import MAX_TABLE_NUMBER, new_id, table_number_of, table_number_of_once
from syncline.values.json import document_from_json_bytes, object_from_python, to_json_bytes
from syncline.values.keys import encode_key, encode_value, get_field_path
from syncline.values.size import check_document
from syncline.values.types import UNDEFINED, Int64
from syncline.values.validators import Validator, ValidatorError, validate_object

__all__ = ["BulkWriter", "TableNumberConflict"]

_MAX_EXACT_INT = 2**53
_INF = math.inf
_ABSENT: Any = object()


class TableNumberConflict(InvalidValue):
    """Tables cannot get the numbers their documents' ids need."""

    code = "TableNumberConflict"


class BulkWriter:
    """Batched, unlimited document writes inside one writer transaction (see module docs)."""

    def __init__(self, tx: Transaction, *, batch_size: int = 2_000) -> None:
        self.tx = tx
        self.conn: WriteConnection = tx._require_writable()
        self.batch_size = batch_size
        self._docs: list[tuple[str, int, int, bytes]] = []
        self._entries: list[tuple[int, bytes, str]] = []
        #: (table number, search index) -> queued entries and their revisions
        self._search: dict[tuple[int, SearchIndexSpec], list[tuple[SearchEntry, SearchWrite]]] = {}
        #: ids imported by this writer (to refuse duplicates without a lookup)
        self._seen: set[str] = set()
        self._plans: dict[str, _TablePlan] = {}
        #: documents written (flushed) so far, per table name
        self.written: dict[str, int] = {}

    # ------------------------------------------------------------------ tables

    def _search_specs(self, info: TableInfo) -> list[SearchIndexSpec]:
        """The table's text search indexes (none on a backend without text search)."""
        if not self.conn.supports_search:
            return []
        return search_specs(self.tx.schema, info.name)

    def count(self, info: TableInfo) -> int:
        """Documents currently stored in the table (pending ones excluded)."""
        return self.conn.count(info.indexes[BY_ID].id)

    def clear(self, info: TableInfo) -> int:
        """Delete every document of the table; returns how many.

        Each deletion is recorded in the write set and the commit log, like
        ``Transaction.delete``; reads go straight to storage in batches.
        """
        self.flush()
        self._plans.pop(info.name, None)
        indexes = list(info.indexes.values())
        searches = self._search_specs(info)
        writes = self.tx.writes
        ts = self.tx.ts
        deleted = 0
        log: list[LogEntry] = []
        for doc_id, raw in Database.scan_table(self.conn, info):
            doc = document_from_json_bytes(raw)
            for index in indexes:
                writes.add_key(index.full_name, index.key_of(doc))
            for spec in searches:
                made = spec.entry(doc)
                if made is not None:
                    writes.add_search(spec.full_name, made[1])
            writes.doc_ids.add(doc_id)
            log.append(LogEntry(ts, doc_id, info.number, None))
            if len(log) >= SCAN_BATCH:
                self.conn.append_log(log)
                deleted += len(log)
                log = []
        if log:
            self.conn.append_log(log)
            deleted += len(log)
        if deleted:
            self.conn.delete_table_documents(info.number)
            writes.tables.add(info.name)
        return deleted

    def assign_tables(self, wanted: Mapping[str, int | None]) -> dict[str, TableInfo]:
        """Create or renumber user tables so that each ``name`` gets ``wanted[name]``.

        ``None`` means any number: an existing table keeps its own, a new one
        gets a fresh number (after the explicit ones are placed). A table can
        only be renumbered while it is empty; an empty table that is not
        imported but holds a wanted number moves to a fresh number (so empty
        the tables being replaced before calling this).

        Raises :class:`TableNumberConflict` (and changes nothing) if a table
        with documents would need another number, or if two names want one
        number. Returns the final :class:`TableInfo` of every wanted table.
        """
        tx = self.tx
        explicit = {name: n for name, n in wanted.items() if n is not None}
        owners: dict[int, str] = {}
        for name, number in explicit.items():
            if not FIRST_USER_TABLE_NUMBER <= number <= MAX_TABLE_NUMBER:
                raise TableNumberConflict(
                    f"Table `{name}` would need table number {number}, which is not a user "
                    f"table number ({FIRST_USER_TABLE_NUMBER} or more)"
                )
            if number in owners:
                raise TableNumberConflict(
                    f"Tables `{owners[number]}` and `{name}` both have ids of table number {number}"
                )
            owners[number] = name

        moves: list[str] = []  # existing tables that must change number
        for name, number in explicit.items():
            info = tx.table(name)
            if info is not None and info.number != number:
                moves.append(name)
            holder = tx.catalog.table_by_number(number)
            if holder is not None and holder.name != name:
                if holder.is_system:
                    raise TableNumberConflict(
                        f"Table number {number} of `{name}` belongs to system table `{holder.name}`"
                    )
                if explicit.get(holder.name) != number and holder.name not in moves:
                    moves.append(holder.name)
        for name in moves:
            info = tx.table(name)
            assert info is not None
            count = self.count(info)
            if count:
                if name in wanted:
                    raise TableNumberConflict(
                        f"Table `{name}` has {count} document(s) with ids of table number "
                        f"{info.number}, but the imported `{name}` documents have ids of "
                        f"table number {explicit.get(name, info.number)}: replace the table "
                        "(--replace) to restore the imported ids"
                    )
                wanted_by = next(n for n, num in explicit.items() if num == info.number)
                raise TableNumberConflict(
                    f"The imported `{wanted_by}` documents have ids of table number "
                    f"{info.number}, which table `{name}` uses and it has {count} "
                    f"document(s): empty `{name}` first (syncline import --table {name} "
                    "--replace <empty file>) or import without _id fields"
                )

        # Move every mover out of the way first (so swaps work), then to its place.
        taken = {t.number for t in tx.catalog.tables()} | set(explicit.values())
        spare = max(taken | {FIRST_USER_TABLE_NUMBER - 1}) + 1
        for name in moves:
            tx.renumber_table(name, spare)
            spare += 1
        for name, number in explicit.items():
            info = tx.table(name)
            if info is None:
                self._create_table(name, number)
            elif info.number != number:
                tx.renumber_table(name, number)
        # Movers that no wanted name claims keep their spare (fresh) number.
        result: dict[str, TableInfo] = {}
        for name in wanted:
            info = tx.table(name)
            if info is None:
                info = tx.ensure_table(name)
            result[name] = info
        return result

    def _create_table(self, name: str, number: int) -> TableInfo:
        """Create user table ``name`` with exactly the table number ``number``."""
        tx = self.tx
        info = tx.ensure_table(name)
        if info.number != number:
            info = tx.renumber_table(name, number)
        return info

    # ------------------------------------------------------------------ documents

    def _plan(self, info: TableInfo) -> _TablePlan:
        plan = self._plans.get(info.name)
        if plan is None or plan.info is not info:
            schema = self.tx.schema
            plan = _TablePlan(
                info,
                may_have_documents=self.count(info) > 0,
                validator=schema.validator_for(info.name) if schema is not None else None,
                search=self._search_specs(info),
            )
            self._plans[info.name] = plan
        return plan

    def insert(self, info: TableInfo, doc: dict[str, Any]) -> str:
        """Check one new document for ``info``'s table and queue it; returns its ``_id``.

        Takes ownership of ``doc`` (it is modified). ``_id``, if present,
        must be an id of this table that is neither stored nor already
        imported; ``_creationTime``, if present, a finite positive number;
        both are generated when absent. The other fields are checked against
        the schema (normalized, for a table without a validator) and the
        document against the size and name limits. Raises InvalidId,
        InvalidValue, SchemaValidationError or LimitExceeded naming the
        problem, and then queues nothing. Flushes when a batch is full.
        """
        plan = self._plans.get(info.name)
        if plan is None or plan.info is not info:
            plan = self._plan(info)
        tx = self.tx
        number = info.number
        given_id = doc.pop("_id", _ABSENT)
        if given_id is _ABSENT:
            doc_id = new_id(number)
        else:
            if type(given_id) is not str or table_number_of_once(given_id) != number:
                raise _foreign_id(given_id, info)
            doc_id = given_id
            if doc_id in self._seen or (
                plan.may_have_documents and self.conn.get_document(doc_id) is not None
            ):
                raise InvalidId(
                    f"A document with `_id` {doc_id} already exists", code="DuplicateId"
                )
        creation_time = doc.pop("_creationTime", _ABSENT)
        if creation_time is _ABSENT:
            creation_time = tx.next_creation_time()
        elif type(creation_time) is not float or not 0.0 < creation_time < _INF:
            creation_time = _creation_time(creation_time)
        validator = plan.validator
        if validator is None:
            normalized = object_from_python(doc)
        else:
            try:
                normalized = validate_object(validator, doc, tx)
            except ValidatorError:
                # The schema words the error (as for any write) and raises it.
                if tx.schema is not None:
                    tx.schema.validate_document(info.name, doc, tx)
                raise
        new = {"_id": doc_id, "_creationTime": creation_time, **normalized}
        check_document(new)
        raw = to_json_bytes(new)

        # Index keys are concatenated encodings (see values/keys.py): encode the
        # system fields that end every key once. An id is ASCII without NUL, so its
        # encoding is the string tag, its bytes and the terminator.
        id_key = b"\x07" + doc_id.encode() + b"\x00"
        tail = encode_value(creation_time) + id_key
        entries = self._entries
        for index_id, kind, fields, keys in plan.indexes:
            if kind == _BY_ID:
                keys.append(id_key)  # the write set's key; storage keeps no by_id entries
                continue
            if kind == _BY_CREATION_TIME:
                key = tail
            elif kind == _ONE_FIELD:
                key = encode_value(new.get(fields[0], UNDEFINED)) + tail
            elif kind == _TOP_LEVEL:
                key = encode_key([new.get(f, UNDEFINED) for f in fields]) + tail
            else:
                key = encode_key([get_field_path(new, f) for f in fields]) + tail
            keys.append(key)
            entries.append((index_id, key, doc_id))
        for spec in plan.search:
            made = spec.entry(new)
            if made is not None:
                self._search.setdefault((number, spec), []).append(made)
        self._docs.append((doc_id, number, tx.ts, raw))
        self._seen.add(doc_id)
        plan.written += 1
        if len(self._docs) >= self.batch_size:
            self.flush()
        return doc_id

    def flush(self) -> None:
        """Write everything queued to storage (inside the still-open transaction).

        Also moves the queued keys into the transaction's write set.
        """
        if not self._docs:
            return
        self.conn.insert_bulk(self._docs, self._entries)
        writes = self.tx.writes
        for (number, spec), made in self._search.items():
            self.conn.put_search_entries(number, spec.name, [entry for entry, _ in made])
            for _, revision in made:
                writes.add_search(spec.full_name, revision)
        self._search = {}
        for plan in self._plans.values():
            if plan.written:
                for full_name, (_id, _kind, _fields, keys) in zip(
                    plan.full_names, plan.indexes, strict=True
                ):
                    writes.keys.setdefault(full_name, []).extend(keys)
                    keys.clear()
                writes.tables.add(plan.info.name)
                self.written[plan.info.name] = self.written.get(plan.info.name, 0) + plan.written
                plan.written = 0
        writes.doc_ids.update(doc_id for doc_id, _n, _ts, _raw in self._docs)
        self._docs = []
        self._entries = []


class _TablePlan:
    """Per-table state of a bulk import: its indexes, pre-digested for the hot loop."""

    __slots__ = (
        "full_names",
        "indexes",
        "info",
        "may_have_documents",
        "search",
        "validator",
        "written",
    )

    def __init__(
        self,
        info: TableInfo,
        *,
        may_have_documents: bool,
        validator: Validator | None,
        search: list[SearchIndexSpec],
    ) -> None:
        self.info = info
        #: a table empty when the import began needs no storage lookup per id
        self.may_have_documents = may_have_documents
        #: the schema's validator of the table's documents (None: not validated)
        self.validator = validator
        #: (index id, kind of key, user fields, queued keys)
        self.indexes: list[tuple[int, int, tuple[str, ...], list[bytes]]] = [
            (index.id, _index_kind(index), index.fields, []) for index in info.indexes.values()
        ]
        self.full_names = [index.full_name for index in info.indexes.values()]
        #: the table's text search indexes
        self.search = search
        self.written = 0


_BY_ID, _BY_CREATION_TIME, _ONE_FIELD, _TOP_LEVEL, _NESTED = range(5)


def _index_kind(index: IndexInfo) -> int:
    """How the hot loop builds this index's keys (the same keys as ``IndexInfo.key_of``)."""
    if index.name == BY_ID:
        return _BY_ID
    if not index.fields:
        return _BY_CREATION_TIME
    if any("." in f for f in index.fields):
        return _NESTED
    return _ONE_FIELD if len(index.fields) == 1 else _TOP_LEVEL


def _foreign_id(doc_id: Any, info: TableInfo) -> InvalidId:
    number = table_number_of(doc_id)
    if number is None:
        shown = repr(doc_id)[:80] if isinstance(doc_id, str) else type(doc_id).__name__
        return InvalidId(f"`_id` {shown} is not a valid document id")
    return InvalidId(
        f"`_id` {doc_id} is an id of table number {number}, not of table `{info.name}` "
        f"(number {info.number})"
    )


def _creation_time(value: Any) -> float:
    if type(value) is float:
        number = value
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_EXACT_INT:
        number = float(value)
    else:
        kind = "Int64" if isinstance(value, Int64) else type(value).__name__
        raise InvalidValue(f"`_creationTime` must be a number of milliseconds, got {kind}")
    if not (math.isfinite(number) and number > 0):
        raise InvalidValue(f"`_creationTime` must be a finite positive number, got {number!r}")
    return number
