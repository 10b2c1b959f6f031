"""Transactions: every document read and write goes through here.

A :class:`Transaction` wraps one persistence connection. A read transaction
sees one snapshot (``ts``); the writer's transaction sees its own writes as it
makes them (they go straight into the open storage transaction, inside a
savepoint that the engine rolls back if the function fails).

Invariants kept here and nowhere else:

* every read is recorded in :attr:`Transaction.read_set` (see ``reads.py``);
* every write records the old and new key of the document in every index of
  its table in :attr:`Transaction.writes`;
* every written document is schema-checked and size-checked first;
* the per-transaction limits of semantics §13 are enforced.

This layer is generic: it does not decide which tables *user code* may touch.
That is the job of the function context (``functions/context.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from syncline.database.catalog import (
    BY_CREATION_TIME,
    BY_ID,
    FIRST_USER_TABLE_NUMBER,
    SYSTEM_TABLES_BY_NAME,
    Catalog,
    IndexInfo,
    TableInfo,
)
from syncline.database.reads import Interval, ReadSet, point
from syncline.database.search_index import search_specs, write_search_entries
from syncline.database.search_reads import SearchRead
from syncline.database.writes import WriteSet
from syncline.errors import (
    InvalidId,
    InvalidQuery,
    InvalidRequest,
    InvalidValue,
    LimitExceeded,
    NonexistentDocument,
    SystemTableError,
)
from syncline.persistence.base import (
    LogEntry,
    MutationRecord,
    ReadConnection,
    SearchRequest,
    WriteConnection,
    search_unsupported,
)
from syncline.values.ids import new_id, table_number_of
from syncline.values.json import (
    document_from_json_bytes,
    from_json_bytes,
    object_from_python,
    to_json_bytes,
)
from syncline.values.keys import encode_key, values_equal
from syncline.values.size import MAX_VALUE_NESTING, check_document, check_value_limits
from syncline.values.types import UNDEFINED

if TYPE_CHECKING:
    from syncline.schema import Schema

_NO_GUARD: AbstractContextManager[Any] = nullcontext()
#: pseudo-indexes in read and write sets: a client mutation record (session id, request
#: id) and a used upload token, so that two transactions checking and recording the same
#: one conflict like any read and write of one document
REQUESTS_PSEUDO_INDEX = "_mutation_requests.by_key"
UPLOAD_TOKENS_PSEUDO_INDEX = "_upload_tokens.by_nonce"
#: a table's creation writes its name here: a read of the list of tables sees new ones
TABLES_PSEUDO_INDEX = "_tables.by_name"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: the most rows one round trip of a scan fetches
_SCAN_BATCH_MAX = 512
MiB = 1 << 20


class RequestKey(NamedTuple):
    """A client's mutation request: its (session id, request id) and what it asked for.

    ``fingerprint`` is an opaque digest of the call (function, arguments,
    caller), made by whoever knows those; a resend must carry the same one.
    """

    session_id: str
    request_id: int
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-transaction limits (semantics §13)."""

    max_docs_read: int = 32_000
    max_bytes_read: int = 16 * MiB
    max_read_intervals: int = 4_096
    max_docs_written: int = 16_000
    max_bytes_written: int = 16 * MiB


DEFAULT_LIMITS = Limits()


def check_table_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidValue(f"Table name must be a string, got {type(name).__name__}")
    if name in SYSTEM_TABLES_BY_NAME:
        return name
    if not _TABLE_NAME.match(name):
        raise InvalidValue(
            f"Invalid table name {name!r}: table names start with a letter, contain only "
            "letters, digits and underscores, and are at most 64 characters long"
        )
    return name


class _LocalCreationClock:
    """Creation times of one transaction: its ts in ms, strictly increasing."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, ts: int) -> float:
        candidate = ts / 1_000_000
        if candidate <= self._last:
            candidate = math.nextafter(self._last, math.inf)
        self._last = candidate
        return candidate


def _request_key(session_id: str, request_id: int) -> bytes:
    return session_id.encode() + b"\x00" + request_id.to_bytes(8, "big", signed=True)


class Transaction:
    """One transaction over a snapshot (read) or the writer's connection (write)."""

    def __init__(
        self,
        conn: ReadConnection,
        catalog: Catalog,
        *,
        ts: int,
        schema: Schema | None = None,
        limits: Limits = DEFAULT_LIMITS,
        creation_clock: Callable[[int], float] | None = None,
        id_source: Callable[[int], str] | None = None,
        batch_requests: Mapping[tuple[str, int], MutationRecord] | None = None,
    ) -> None:
        self._conn = conn
        #: entered around every storage call: the executor's watchdog makes these
        #: uninterruptible while user code runs (see ``functions/limits.py``)
        self.storage_guard: AbstractContextManager[Any] = _NO_GUARD
        self.catalog = catalog
        self.ts = ts
        self.schema = schema
        self.limits = limits
        self.read_set = ReadSet()
        self.writes = WriteSet()
        self.writable = isinstance(conn, WriteConnection)
        #: issues ``_creationTime`` values: given a ts in ns, a strictly increasing float
        #: (ms) not below it; shared by every transaction of a database
        self._creation_clock = creation_clock or _LocalCreationClock()
        #: the first and last ``_creationTime`` this transaction issued (None: none yet)
        self.first_creation_time: float | None = None
        self.last_creation_time: float | None = None
        self._new_id = id_source or new_id
        self._docs_read = 0
        self._bytes_read = 0
        self._docs_written: set[str] = set()
        self._bytes_written = 0
        self._log: dict[str, LogEntry] = {}
        #: this transaction's client mutation records; with ``batch_requests`` given, the
        #: caller stores them (with the rest of its group commit) instead of this transaction
        self.request_records: list[MutationRecord] = []
        #: records of the group commit's earlier mutations, not stored yet
        self._batch_requests = batch_requests
        self.paginated = False
        #: a live query's previous end cursor: re-runs return the same page extent
        self.journal: str | None = None
        #: the end cursor this transaction's paginate() returned (the next journal)
        self.journal_out: str | None = None

    # ------------------------------------------------------------------ catalog

    def table(self, name: str) -> TableInfo | None:
        return self.catalog.table(name)

    def index(self, table: str, name: str) -> IndexInfo | None:
        """The index ``name`` of ``table``; None if the table does not exist.

        Raises InvalidQuery if the table exists but has no such index.
        """
        info = self.catalog.table(table)
        if info is None:
            if name in (BY_ID, BY_CREATION_TIME) or self._schema_declares(table, name):
                return None
            raise InvalidQuery(f"Index {table}.{name} not found.", code="IndexNotFoundError")
        index = info.indexes.get(name)
        if index is None:
            raise InvalidQuery(f"Index {table}.{name} not found.", code="IndexNotFoundError")
        return index

    def index_fields(self, table: str, name: str) -> tuple[str, ...]:
        """The key fields of an index, whether or not its table exists yet."""
        index = self.index(table, name)
        if index is not None:
            return index.key_fields
        if name == BY_ID:
            return ("_id",)
        if name == BY_CREATION_TIME:
            return ("_creationTime", "_id")
        assert self.schema is not None
        for declared in self.schema.tables[table].indexes:
            if declared.name == name:
                return (*declared.fields, "_creationTime", "_id")
        raise InvalidQuery(f"Index {table}.{name} not found.", code="IndexNotFoundError")

    def _schema_declares(self, table: str, index_name: str) -> bool:
        if self.schema is None or table not in self.schema.tables:
            return False
        return any(i.name == index_name for i in self.schema.tables[table].indexes)

    def table_name_of_id(self, doc_id: str) -> str | None:
        """For ``v.id`` validation: the table an id belongs to, if any."""
        number = table_number_of(doc_id)
        if number is None:
            return None
        info = self.catalog.table_by_number(number)
        return info.name if info is not None else None

    # ------------------------------------------------------------------ reads

    def _check_read_count(self) -> None:
        read_set = self.read_set
        if read_set.interval_count() + len(read_set.searches) >= self.limits.max_read_intervals:
            raise LimitExceeded(
                f"Too many reads in a single function execution (limit: "
                f"{self.limits.max_read_intervals} index ranges, gets or searches).",
                code="TooManyReads",
            )

    def _record(self, index_name: str, interval: Interval) -> Interval:
        self._check_read_count()
        return self.read_set.add(index_name, interval)

    def _count_read(self, raw: bytes) -> None:
        # A row that would break a limit is refused and not counted, so a caller
        # that stops there (paginate) leaves the transaction within its limits.
        docs_read = self._docs_read + 1
        bytes_read = self._bytes_read + len(raw)
        if docs_read > self.limits.max_docs_read:
            raise LimitExceeded(
                f"Too many documents read in a single function execution (limit: "
                f"{self.limits.max_docs_read}).",
                code="TooManyDocumentsRead",
            )
        if bytes_read > self.limits.max_bytes_read:
            raise LimitExceeded(
                f"Too many bytes read in a single function execution (limit: "
                f"{self.limits.max_bytes_read} bytes).",
                code="TooManyBytesRead",
            )
        self._docs_read = docs_read
        self._bytes_read = bytes_read

    @property
    def docs_read(self) -> int:
        return self._docs_read

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The current document with this id, or None."""
        if not isinstance(doc_id, str):
            raise InvalidId(f"Expected a document id (a string), got {type(doc_id).__name__}")
        number = table_number_of(doc_id)
        if number is None:
            raise InvalidId(f"Invalid argument `id` for `db.get`: {doc_id!r} is not a valid id")
        info = self.catalog.table_by_number(number)
        if info is None:
            return None
        self._record(f"{info.name}.{BY_ID}", point(encode_key((doc_id,))))
        return self._load(doc_id)

    def _load(self, doc_id: str) -> dict[str, Any] | None:
        """The stored document, counted as read (the caller records the read)."""
        with self.storage_guard:
            row = self._conn.get_document(doc_id)
        if row is None:
            return None
        self._count_read(row[1])
        return document_from_json_bytes(row[1])

    def scan(
        self,
        table: str,
        index_name: str,
        start: bytes,
        end: bytes,
        *,
        reverse: bool = False,
        expected: int | None = None,
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Documents of ``table`` whose key in ``index_name`` lies in ``[start, end)``.

        Lazy: rows are fetched in growing batches, the first of ``expected``
        rows when the caller knows how many it will take (``take(20)`` with no
        filter: one round trip, no row fetched in vain), else of 8. The read
        set grows with each row handed out, and covers the whole range once
        exhausted.
        """
        index = self.index(table, index_name)
        full_name = f"{table}.{index_name}"
        interval = self._record(
            full_name, Interval(end, end) if reverse else Interval(start, start)
        )
        if index is None or start >= end:
            interval.start, interval.end = start, end
            return
        lo, hi = start, end
        batch = 8 if expected is None else max(1, min(expected, _SCAN_BATCH_MAX))
        while True:
            with self.storage_guard:
                rows = self._conn.scan(index.id, lo, hi, reverse=reverse, limit=batch)
            for key, _doc_id, raw in rows:
                self._count_read(raw)
                doc = document_from_json_bytes(raw)
                if reverse:
                    interval.start = key
                else:
                    interval.end = key + b"\x00"
                yield key, doc
            if len(rows) < batch:
                break
            if reverse:
                hi = rows[-1][0]
            else:
                lo = rows[-1][0] + b"\x00"
            batch = min(batch * 4, _SCAN_BATCH_MAX)
        interval.start, interval.end = start, end

    def search(
        self, table: str, index_name: str, read: SearchRead, request: SearchRequest
    ) -> list[str]:
        """The ids of the best matches of a text search, best first.

        Records ``read``: the search as asked, not its results (see
        ``search_reads.py``), which covers every document it can return.
        """
        if not self._conn.supports_search:
            raise search_unsupported(f"searching {table}.{index_name}")
        self._check_read_count()
        self.read_set.add_search(read)
        info = self.catalog.table(table)
        if info is None:
            return []
        with self.storage_guard:
            return self._conn.search(info.number, index_name, request)

    def search_result(self, doc_id: str) -> dict[str, Any] | None:
        """A document :meth:`search` returned, counted as read (its read is the search's)."""
        return self._load(doc_id)

    def tables(self) -> list[TableInfo]:
        """Every table that exists, read so that a table created later invalidates the read."""
        self._record(TABLES_PSEUDO_INDEX, Interval(b"", b"\xff"))
        return list(self.catalog.tables())

    def count(self, table: str) -> int:
        """Number of documents in a table (reads the whole table's range)."""
        index = self.index(table, BY_CREATION_TIME)
        self._record(f"{table}.{BY_CREATION_TIME}", Interval(b"", b"\xff"))
        if index is None:
            return 0
        with self.storage_guard:
            return self._conn.count(index.id)

    # ------------------------------------------------------------------ writes

    def _require_writable(self) -> WriteConnection:
        if not self.writable:
            raise SystemTableError(
                "This transaction is read-only: queries cannot write. Use a mutation."
            )
        assert isinstance(self._conn, WriteConnection)
        return self._conn

    def _next_creation_time(self) -> float:
        value = self._creation_clock(self.ts)
        if self.first_creation_time is None:
            self.first_creation_time = value
        self.last_creation_time = value
        return value

    def ensure_table(self, name: str) -> TableInfo:
        """The table, created (with its built-in indexes) if it does not exist."""
        info = self.catalog.table(name)
        if info is not None:
            return info
        check_table_name(name)
        with self.storage_guard:
            return self._create_table(name)

    def _create_table(self, name: str) -> TableInfo:
        conn = self._require_writable()
        self.writes.add_key(TABLES_PSEUDO_INDEX, encode_key((name,)))
        spec = SYSTEM_TABLES_BY_NAME.get(name)
        number = spec.number if spec else self.catalog.next_user_table_number()
        conn.create_table(name, number)
        declared: dict[str, tuple[str, ...]] = {BY_ID: (), BY_CREATION_TIME: ()}
        if spec is not None:
            declared.update(spec.indexes)
        elif self.schema is not None and name in self.schema.tables:
            for idx in self.schema.tables[name].indexes:
                declared[idx.name] = tuple(idx.fields)
        indexes = {
            index_name: IndexInfo(
                conn.create_index(number, index_name, fields), name, index_name, fields
            )
            for index_name, fields in declared.items()
        }
        info = TableInfo(number, name, indexes)
        self.catalog = self.catalog.with_table(info)
        return info

    def next_creation_time(self) -> float:
        """A ``_creationTime`` for a document this transaction writes (strictly increasing)."""
        return self._next_creation_time()

    def renumber_table(self, name: str, number: int) -> TableInfo:
        """Give the empty user table ``name`` the table number ``number`` (which must be free).

        Ids embed their table's number, so restoring a snapshot's ids may need
        its table numbers. Raises InvalidValue if ``name`` is a system table or
        unknown, or ``number`` is taken or not a user table number; the
        persistence refuses a table that still has documents.
        """
        info = self.catalog.table(name)
        if info is None or info.is_system:
            raise InvalidValue(f"Cannot renumber table {name!r}: no such user table")
        if info.number == number:
            return info
        if not FIRST_USER_TABLE_NUMBER <= number < 2**32:
            raise InvalidValue(
                f"Table number {number} is not a user table number "
                f"({FIRST_USER_TABLE_NUMBER} or more)"
            )
        holder = self.catalog.table_by_number(number)
        if holder is not None:
            raise InvalidValue(f"Table number {number} is already used by table {holder.name!r}")
        self._require_writable().renumber_table(info.number, number)
        updated = TableInfo(number, name, info.indexes)
        self.catalog = self.catalog.with_table(updated)
        return updated

    def _validated_fields(self, table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        if self.schema is not None:
            return self.schema.validate_document(table, dict(fields), self)
        return object_from_python(dict(fields))

    @staticmethod
    def _user_fields(
        value: object, what: str, *, doc_id: str | None = None, creation_time: float | None = None
    ) -> dict[str, Any]:
        """Strip ``_id``/``_creationTime`` (allowed only if unchanged); reject other ``_`` fields."""
        if not isinstance(value, Mapping):
            raise InvalidValue(f"{what} expects an object (dict), got {type(value).__name__}")
        out: dict[str, Any] = {}
        for key, field_value in value.items():
            if not isinstance(key, str):
                raise InvalidValue(f"Field names must be strings, got {key!r}")
            if key == "_id":
                if doc_id is None or field_value != doc_id:
                    raise InvalidValue(
                        f"{what}: `_id` may only be given if it equals the document's id "
                        f"(got {field_value!r})",
                        code="InvalidIdError",
                    )
                continue
            if key == "_creationTime":
                if creation_time is None or field_value != creation_time:
                    raise InvalidValue(
                        f"{what}: `_creationTime` may only be given if it equals the "
                        f"document's creation time (got {field_value!r})",
                        code="InvalidCreationTimeError",
                    )
                continue
            if key.startswith("_"):
                raise InvalidValue(
                    f"{what}: field `{key}` starts with an underscore, which is reserved "
                    "for system fields"
                )
            out[key] = field_value
        return out

    def insert(self, table: str, value: Mapping[str, Any]) -> str:
        self._require_writable()
        check_table_name(table)
        fields = self._user_fields(value, f"insert into {table!r}")
        fields = {k: v for k, v in fields.items() if v is not UNDEFINED}
        normalized = self._validated_fields(table, fields)
        info = self.ensure_table(table)
        doc_id = self._new_id(info.number)
        doc = {"_id": doc_id, "_creationTime": self._next_creation_time(), **normalized}
        self._write(info, doc_id, None, doc)
        return doc_id

    def _existing(self, doc_id: str, op: str) -> tuple[TableInfo, dict[str, Any]]:
        if not isinstance(doc_id, str) or table_number_of(doc_id) is None:
            raise InvalidId(f"Invalid argument `id` for `db.{op}`: {doc_id!r} is not a valid id")
        old = self.get(doc_id)
        info = self.catalog.table_by_number(table_number_of(doc_id) or 0)
        if old is None or info is None:
            verb = {"patch": "Update", "replace": "Replace", "delete": "Delete"}[op]
            raise NonexistentDocument(f"{verb} on nonexistent document ID {doc_id}")
        return info, old

    def patch(self, doc_id: str, value: Mapping[str, Any]) -> None:
        """Shallow merge: listed fields overwrite, UNDEFINED removes, others stay."""
        self._require_writable()
        info, old = self._existing(doc_id, "patch")
        changes = self._user_fields(
            value, "patch", doc_id=doc_id, creation_time=old["_creationTime"]
        )
        merged = {k: v for k, v in old.items() if not k.startswith("_")}
        for key, field_value in changes.items():
            if field_value is UNDEFINED:
                merged.pop(key, None)
            else:
                merged[key] = field_value
        normalized = self._validated_fields(info.name, merged)
        new = {"_id": doc_id, "_creationTime": old["_creationTime"], **normalized}
        if values_equal(new, old):
            return
        self._write(info, doc_id, old, new)

    def replace(self, doc_id: str, value: Mapping[str, Any]) -> None:
        self._require_writable()
        info, old = self._existing(doc_id, "replace")
        fields = self._user_fields(
            value, "replace", doc_id=doc_id, creation_time=old["_creationTime"]
        )
        fields = {k: v for k, v in fields.items() if v is not UNDEFINED}
        normalized = self._validated_fields(info.name, fields)
        new = {"_id": doc_id, "_creationTime": old["_creationTime"], **normalized}
        if values_equal(new, old):
            return
        self._write(info, doc_id, old, new)

    def delete(self, doc_id: str) -> None:
        self._require_writable()
        info, old = self._existing(doc_id, "delete")
        self._write(info, doc_id, old, None)

    def write_raw(self, table: str, doc: dict[str, Any]) -> None:
        """Store a complete document as given (``_id`` and ``_creationTime`` included).

        For import and system code: the id must belong to ``table``; the
        document is schema-checked like any write. Overwrites an existing one.
        """
        self._require_writable()
        info = self.ensure_table(table)
        doc_id = doc.get("_id")
        if not isinstance(doc_id, str) or table_number_of(doc_id) != info.number:
            raise InvalidId(f"Document id {doc_id!r} does not belong to table {table!r}")
        creation_time = doc.get("_creationTime")
        if not isinstance(creation_time, float) or not creation_time > 0:
            raise InvalidValue(f"Document {doc_id}: `_creationTime` must be a positive float")
        fields = {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}
        normalized = self._validated_fields(table, fields)
        row = self._conn.get_document(doc_id)
        old = document_from_json_bytes(row[1]) if row else None
        new = {"_id": doc_id, "_creationTime": creation_time, **normalized}
        self._write(info, doc_id, old, new)

    def _write(
        self,
        info: TableInfo,
        doc_id: str,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        with self.storage_guard:
            self._write_unguarded(info, doc_id, old, new)

    def _write_unguarded(
        self,
        info: TableInfo,
        doc_id: str,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        conn = self._require_writable()
        raw: bytes | None = None
        if new is not None:
            if info.is_system:
                # System rows are written by Syncline itself under their own limits (a
                # scheduled job's arguments may reach 4 MiB, nested two levels down):
                # only the generic value limits apply, not the 1 MiB user document limit.
                check_value_limits(new, max_nesting=MAX_VALUE_NESTING + 2, what="system document")
            else:
                check_document(new)
            raw = to_json_bytes(new)
        self._docs_written.add(doc_id)
        self._bytes_written += len(raw) if raw is not None else 0
        if len(self._docs_written) > self.limits.max_docs_written:
            raise LimitExceeded(
                f"Too many documents written in a single mutation (limit: "
                f"{self.limits.max_docs_written}).",
                code="TooManyWrites",
            )
        if self._bytes_written > self.limits.max_bytes_written:
            raise LimitExceeded(
                f"Too many bytes written in a single mutation (limit: "
                f"{self.limits.max_bytes_written} bytes).",
                code="TooManyBytesWritten",
            )
        removed: list[tuple[int, bytes]] = []
        added: list[tuple[int, bytes, str]] = []
        for index in info.indexes.values():
            old_key = index.key_of(old) if old is not None else None
            new_key = index.key_of(new) if new is not None else None
            full_name = index.full_name
            if old_key is not None:
                self.writes.add_key(full_name, old_key)
            if new_key is not None and new_key != old_key:
                self.writes.add_key(full_name, new_key)
            if old_key != new_key and index.name != BY_ID:  # by_id: the documents themselves
                if old_key is not None:
                    removed.append((index.id, old_key))
                if new_key is not None:
                    added.append((index.id, new_key, doc_id))
        if removed:
            conn.delete_index_entries(removed)
        if raw is None:
            conn.delete_document(doc_id)
        else:
            conn.put_document(doc_id, info.number, self.ts, raw)
        if added:
            conn.insert_index_entries(added)
        specs = search_specs(self.schema, info.name) if conn.supports_search else []
        if specs:
            write_search_entries(conn, self.writes, specs, info.number, old, new)
        self._log[doc_id] = LogEntry(self.ts, doc_id, info.number, raw)
        self.writes.doc_ids.add(doc_id)
        self.writes.tables.add(info.name)

    def recorded_request(self, key: RequestKey) -> tuple[Any, int] | None:
        """(result, commit ts) of the client's mutation under ``key`` that already committed.

        Answered only for the same call: a record under the same (session,
        request) ids with another fingerprint raises :class:`InvalidRequest`
        (code ``RequestIdReused``) instead of handing out another call's result.
        """
        self._record(REQUESTS_PSEUDO_INDEX, point(_request_key(key.session_id, key.request_id)))
        pending = self._batch_requests
        record = None if pending is None else pending.get((key.session_id, key.request_id))
        if record is not None:
            row: tuple[int, bytes, bytes] | None = record[2:]
        else:
            row = self._conn.get_mutation_request(key.session_id, key.request_id)
        if row is None:
            return None
        ts, fingerprint, result = row
        if fingerprint != key.fingerprint:
            raise InvalidRequest(
                f"Request {key.request_id} of session {key.session_id!r} was already used for "
                "another call (another function, other arguments or another caller); a client "
                "must give each mutation of a session its own request id",
                code="RequestIdReused",
            )
        return from_json_bytes(result), ts

    def record_request(self, key: RequestKey, result: Any) -> None:
        """Remember this mutation's result under ``key``, for a client resending it."""
        conn = self._require_writable()
        record = (key.session_id, key.request_id, self.ts, key.fingerprint, to_json_bytes(result))
        self.writes.add_key(REQUESTS_PSEUDO_INDEX, _request_key(key.session_id, key.request_id))
        if self._batch_requests is None:
            conn.put_mutation_requests([record])
        else:
            self.request_records.append(record)

    def upload_token_used(self, nonce: bytes) -> bool:
        """Whether the upload token with ``nonce`` already stored a file."""
        self._record(UPLOAD_TOKENS_PSEUDO_INDEX, point(nonce))
        return self._conn.get_used_upload_token(nonce) is not None

    def record_upload_token(self, nonce: bytes, storage_id: str) -> None:
        """Mark the upload token with ``nonce`` used (by the upload of ``storage_id``)."""
        self.writes.add_key(UPLOAD_TOKENS_PSEUDO_INDEX, nonce)
        self._require_writable().put_used_upload_token(nonce, self.ts, storage_id)

    def log_entries(self) -> list[LogEntry]:
        """This transaction's final revision per document, for the commit log."""
        return list(self._log.values())
