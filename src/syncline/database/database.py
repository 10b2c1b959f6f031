"""The database: snapshot reads on a thread pool, serial writes with group commit.

Writes (mutations, system updates) are functions ``fn(tx) -> result`` queued
to a single writer thread. The writer takes everything queued (up to
``max_batch``), opens one storage transaction, and runs each function in its
own savepoint with its own commit timestamp; a function that raises is rolled
back alone. One COMMIT (one fsync) then makes the whole batch durable, after
which the commits are published to listeners in ts order and the callers'
futures resolve. Because writes are serial there are no write conflicts on
SQLite: serial execution is serializable.

Reads are functions run against a snapshot whose ``ts`` is known; they never
block the writer.

Timestamps are nanoseconds since the epoch, strictly increasing, and never
reused across restarts: a new ts is ``max(last + 1, now)`` and the last one is
stored with every commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

from syncline.clock import Clock, SystemClock
from syncline.database.catalog import (
    BY_CREATION_TIME,
    BY_ID,
    SYSTEM_TABLES,
    Catalog,
    IndexInfo,
    TableInfo,
)
from syncline.database.read_threads import ReadThreads
from syncline.database.reads import ReadSet
from syncline.database.transaction import DEFAULT_LIMITS, Limits, Transaction
from syncline.database.writes import Commit, WriteSet
from syncline.errors import InternalError, SchemaDefinitionError
from syncline.persistence.base import (
    LogEntry,
    MutationRecord,
    Persistence,
    ReadConnection,
    WriteConnection,
)
from syncline.values.json import document_from_json_bytes
from syncline.values.validators import ValidatorError

if TYPE_CHECKING:
    from syncline.schema import Schema

T = TypeVar("T")
log = logging.getLogger("syncline.database")

#: rows read from storage per round trip by :meth:`Database.scan_table`
SCAN_BATCH = 1000

_TS_KEY = "ts"
_CREATION_TIME_KEY = "creation_time"
_SCHEMA_KEY = "schema"


@dataclass(frozen=True, slots=True)
class ReadResult(Generic[T]):
    value: T
    ts: int
    read_set: ReadSet
    #: the end cursor of a paginated read (see ``Transaction.journal``)
    journal: str | None = None


@dataclass(frozen=True, slots=True)
class WriteResult(Generic[T]):
    value: T
    ts: int
    read_set: ReadSet
    writes: WriteSet


@dataclass(slots=True)
class _WriteJob:
    fn: Callable[[Transaction], Any]
    #: a concurrent future (sync callers), or an asyncio future (resolved on its loop)
    future: concurrent.futures.Future[Any] | asyncio.Future[Any]
    exclusive: bool = False

    def start(self) -> bool:
        """False if the caller gave up (cancelled) before the job ran."""
        if isinstance(self.future, concurrent.futures.Future):
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()


def _settle(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """Resolve many asyncio futures in one loop callback (one wake-up per batch)."""
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What applying a schema did."""

    added_indexes: list[str] = field(default_factory=list)
    removed_indexes: list[str] = field(default_factory=list)
    created_tables: list[str] = field(default_factory=list)


CommitListener = Callable[[list[Commit]], None]


class Database:
    def __init__(
        self,
        persistence: Persistence,
        *,
        clock: Clock | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_batch: int = 512,
        read_threads: int = 4,
        log_retention_ns: int = 3600 * 10**9,
        session_request_retention_ns: int = 3600 * 10**9,
    ) -> None:
        self.persistence = persistence
        self.clock = clock or SystemClock()
        self.limits = limits
        self.max_batch = max_batch
        self.log_retention_ns = log_retention_ns
        #: how long a client's mutation results are kept for de-duplicating re-sends
        self.session_request_retention_ns = session_request_retention_ns
        self._listeners: list[CommitListener] = []
        self._queue: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self._reads: ReadThreads[Callable[[Transaction], Any], ReadResult[Any]] = ReadThreads(
            self.run_read, threads=read_threads, name="syncline-read"
        )
        self._closed = False
        self._commits_since_prune = 0

        reader = persistence.reader()
        try:
            self._last_ts = reader.ts
            self._catalog = Catalog.from_rows(reader.tables(), reader.indexes())
            raw_ct = reader.get_global(_CREATION_TIME_KEY)
            self._creation_time = float(raw_ct) if raw_ct else 0.0
            raw_schema = reader.get_global(_SCHEMA_KEY)
        finally:
            persistence.release_reader(reader)
        self._schema: Schema | None = None
        if raw_schema:
            from syncline.schema import Schema

            self._schema = Schema.from_json(orjson.loads(raw_schema))

        self._writer = threading.Thread(
            target=self._writer_loop, name="syncline-writer", daemon=True
        )
        self._writer.start()
        self._bootstrap()

    # ------------------------------------------------------------------ whole tables

    @staticmethod
    def scan_table(
        conn: ReadConnection, info: TableInfo, index: str = BY_ID, *, batch: int = SCAN_BATCH
    ) -> Iterator[tuple[str, bytes]]:
        """Every stored document of a table in ``index`` order, as ``(id, wire JSON bytes)``.

        Reads straight from ``conn`` in batches of ``batch`` rows: no read set and
        no transaction limits. For system work over whole tables (index backfill,
        schema checks, clearing a table, export); functions read with
        ``Transaction.scan``.
        """
        index_id = info.indexes[index].id
        start, end = b"", b"\xff"
        while True:
            rows = conn.scan(index_id, start, end, reverse=False, limit=batch)
            for _key, doc_id, raw in rows:
                yield doc_id, raw
            if len(rows) < batch:
                return
            start = rows[-1][0] + b"\x00"

    @contextlib.contextmanager
    def storage_snapshot(self) -> Iterator[tuple[ReadConnection, Catalog]]:
        """One consistent snapshot of storage and the catalog as of it, for :meth:`scan_table`."""
        conn = self.persistence.reader()
        try:
            yield conn, Catalog.from_rows(conn.tables(), conn.indexes())
        finally:
            self.persistence.release_reader(conn)

    # ------------------------------------------------------------------ state

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def schema(self) -> Schema | None:
        return self._schema

    @property
    def last_ts(self) -> int:
        return self._last_ts

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(commits)`` after every durable commit, in ts order.

        Listeners run on the writer thread before callers see their results:
        keep them quick and never block (hand the work to another thread or loop).
        """
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.remove(listener)

    # ------------------------------------------------------------------ reads

    def run_read(self, fn: Callable[[Transaction], T]) -> ReadResult[T]:
        """Run ``fn`` on a fresh snapshot, in the calling thread."""
        conn = self.persistence.reader()
        try:
            tx = Transaction(
                conn, self._catalog, ts=conn.ts, schema=self._schema, limits=self.limits
            )
            value = fn(tx)
            return ReadResult(value, conn.ts, tx.read_set, tx.journal_out)
        finally:
            self.persistence.release_reader(conn)

    async def read(self, fn: Callable[[Transaction], T]) -> ReadResult[T]:
        """Run ``fn`` on a fresh snapshot, on the read thread pool."""
        future: asyncio.Future[ReadResult[T]] = asyncio.get_running_loop().create_future()
        self._reads.submit(fn, future)
        return await future

    # ------------------------------------------------------------------ writes

    def submit_write(
        self, fn: Callable[[Transaction], T], *, exclusive: bool = False
    ) -> concurrent.futures.Future[WriteResult[T]]:
        """Queue ``fn`` for the writer; the future resolves after its commit is durable."""
        if self._closed:
            raise InternalError("The database is closed")
        future: concurrent.futures.Future[WriteResult[T]] = concurrent.futures.Future()
        self._queue.put(_WriteJob(fn, future, exclusive=exclusive))
        return future

    def write_sync(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        return self.submit_write(fn).result()

    async def write(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        """Queue ``fn`` for the writer and await its durable commit."""
        if self._closed:
            raise InternalError("The database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult[T]] = loop.create_future()
        self._queue.put(_WriteJob(fn, future))
        return await future

    def _next_ts(self) -> int:
        ts = max(self._last_ts + 1, self.clock.now_ns())
        self._last_ts = ts
        return ts

    def _writer_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            if not job.exclusive:
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    if nxt.exclusive:
                        self._run_batch(batch)
                        batch = [nxt]
                        break
                    batch.append(nxt)
            try:
                self._run_batch(batch)
            except BaseException as exc:  # the writer must outlive any one batch
                log.exception("writer batch failed")
                self._resolve([(j, exc) for j in batch if not j.future.done()])

    def _run_batch(self, batch: list[_WriteJob]) -> None:
        live = [j for j in batch if j.start()]
        if not live:
            return
        conn = self.persistence.begin_write()
        catalog = catalog_before = self._catalog
        schema = self._schema
        creation_time = self._creation_time
        ts_before = self._last_ts
        outcomes: list[tuple[_WriteJob, WriteResult[Any] | BaseException]] = []
        commits: list[Commit] = []
        log_entries: list[LogEntry] = []
        requests: dict[tuple[str, int], MutationRecord] = {}
        try:
            for job in live:
                ts = self._next_ts()
                # Until a function succeeds the transaction holds nothing to keep: a
                # failure rolls it all back, so the first function needs no savepoint
                # (at low load, a batch is one function).
                guarded = bool(commits)
                if guarded:
                    conn.savepoint()
                tx = Transaction(
                    conn,
                    catalog,
                    ts=ts,
                    schema=schema,
                    limits=self.limits,
                    creation_time_floor=creation_time,
                    batch_requests=requests,
                )
                try:
                    value = job.fn(tx)
                except BaseException as exc:
                    if guarded:
                        conn.rollback_to()
                    else:
                        conn.restart()
                    outcomes.append((job, exc))
                    continue
                if guarded:
                    conn.release()
                log_entries.extend(tx.log_entries())
                for record in tx.request_records:
                    requests[record[0], record[1]] = record
                catalog = tx.catalog
                schema = tx.schema
                creation_time = tx.creation_time_floor
                outcomes.append((job, WriteResult(value, ts, tx.read_set, tx.writes)))
                commits.append(Commit(ts, tx.writes))
            if log_entries:
                conn.append_log(log_entries)
            if requests:
                conn.put_mutation_requests(list(requests.values()))
            if commits:
                # Snapshots name the last *published* commit; a failed mutation's
                # ts is never visible (and is never reused: _last_ts moved past it).
                conn.set_globals(
                    {
                        _TS_KEY: str(commits[-1].ts).encode(),
                        _CREATION_TIME_KEY: repr(creation_time).encode(),
                    }
                )
            self._maybe_prune(conn)
            # Publish the catalog before the data becomes visible: a reader takes its
            # snapshot first and the catalog second, so it must never find rows of a
            # table its catalog does not know. (A table known early just reads empty.)
            self._catalog = catalog
            self.persistence.commit_write(conn)
        except BaseException as exc:
            self._catalog = catalog_before
            self.persistence.abort_write(conn)
            self._last_ts = max(ts_before, self._last_ts)
            error = InternalError(f"Commit failed: {exc}")
            error.__cause__ = exc
            self._resolve([(job, error) for job in live])
            return
        self._catalog = catalog
        self._schema = schema
        self._creation_time = creation_time
        if commits:
            for listener in self._listeners:
                try:
                    listener(commits)
                except Exception:
                    log.exception("commit listener failed")
        self._resolve(outcomes)

    @staticmethod
    def _resolve(outcomes: list[tuple[_WriteJob, Any]]) -> None:
        per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for job, outcome in outcomes:
            future = job.future
            if isinstance(future, asyncio.Future):
                per_loop.setdefault(future.get_loop(), []).append((future, outcome))
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        for loop, items in per_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:
                pass  # the caller's loop is closed: nobody is waiting any more

    def _maybe_prune(self, conn: WriteConnection) -> None:
        self._commits_since_prune += 1
        if self._commits_since_prune >= 1000:
            self._commits_since_prune = 0
            conn.prune_log(self._last_ts - self.log_retention_ns)
            conn.prune_request_records(self._last_ts - self.session_request_retention_ns)

    # ------------------------------------------------------------------ schema

    def _bootstrap(self) -> None:
        """Create the system tables (and their indexes) that do not exist yet."""

        def create(tx: Transaction) -> None:
            for spec in SYSTEM_TABLES:
                info = tx.ensure_table(spec.name)
                _sync_indexes(tx, info, {BY_ID: (), BY_CREATION_TIME: (), **spec.indexes})

        self.submit_write(create, exclusive=True).result()

    def apply_schema(self, schema: Schema | None) -> SchemaChange:
        """Make ``schema`` the active schema.

        Existing documents of validated tables are checked first; a mismatch
        raises SchemaDefinitionError naming the table, document and problem,
        and changes nothing. Then tables are created, indexes added (and
        backfilled) or dropped to match, and the schema is stored — all in one
        transaction.
        """

        def apply(tx: Transaction) -> SchemaChange:
            change = SchemaChange()
            previous = tx.schema
            if schema is not None:
                for table_name in schema.tables:
                    info = tx.table(table_name)
                    if info is None:
                        continue
                    if previous is not None and previous.validator_for(
                        table_name
                    ) == schema.validator_for(table_name):
                        continue  # every stored document was validated against this already
                    _check_existing_documents(tx, schema, info)
            desired: dict[str, dict[str, tuple[str, ...]]] = {}
            if schema is not None:
                for table_name, definition in schema.tables.items():
                    desired[table_name] = {i.name: tuple(i.fields) for i in definition.indexes}
            tx.schema = schema
            for info in list(tx.catalog.tables()):
                if info.is_system:
                    continue
                wanted = {BY_ID: (), BY_CREATION_TIME: (), **desired.get(info.name, {})}
                added, removed = _sync_indexes(tx, info, wanted)
                change.added_indexes.extend(added)
                change.removed_indexes.extend(removed)
            for table_name in desired:
                if tx.table(table_name) is None:
                    tx.ensure_table(table_name)
                    change.created_tables.append(table_name)
            conn = tx._require_writable()
            payload = orjson.dumps(schema.to_json(), option=orjson.OPT_SORT_KEYS) if schema else b""
            conn.set_global(_SCHEMA_KEY, payload)
            return change

        return self.submit_write(apply, exclusive=True).result().value

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(timeout=30)
        self._reads.close()
        self.persistence.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_existing_documents(tx: Transaction, schema: Schema, info: TableInfo) -> None:
    validator = schema.validator_for(info.name)
    if validator is None:
        return
    # A system task, not user code: read storage directly, so the per-transaction
    # read limits (sized for functions) do not cap how much data a schema can check.
    for _doc_id, raw in Database.scan_table(tx._require_writable(), info):
        doc = document_from_json_bytes(raw)
        fields = {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}
        try:
            validator.validate(fields, tx)
        except ValidatorError as exc:
            detail = exc.detail
            raise SchemaDefinitionError(
                f'Schema validation failed: document with ID "{doc["_id"]}" in table '
                f'"{info.name}" does not match the schema: {detail}'
            ) from None


def _sync_indexes(
    tx: Transaction, info: TableInfo, wanted: dict[str, tuple[str, ...]]
) -> tuple[list[str], list[str]]:
    """Add, rebuild or drop indexes of one table so they match ``wanted``."""
    conn = tx._require_writable()
    added: list[str] = []
    removed: list[str] = []
    indexes = dict(info.indexes)
    for name, index in list(indexes.items()):
        if name not in wanted or wanted[name] != index.fields:
            conn.drop_index(index.id)
            del indexes[name]
            removed.append(index.full_name)
    new_indexes = []
    for name, fields in wanted.items():
        if name not in indexes:
            index = IndexInfo(conn.create_index(info.number, name, fields), info.name, name, fields)
            indexes[name] = index
            new_indexes.append(index)
            added.append(index.full_name)
    if new_indexes and BY_ID in info.indexes and info.indexes[BY_ID] is indexes.get(BY_ID):
        _backfill(conn, info, new_indexes)
    updated = TableInfo(info.number, info.name, indexes)
    tx.catalog = tx.catalog.with_table(updated)
    return added, removed


def _backfill(conn: WriteConnection, info: TableInfo, indexes: list[IndexInfo]) -> None:
    indexes = [index for index in indexes if index.name != BY_ID]  # served by the documents
    if not indexes:
        return
    entries: list[tuple[int, bytes, str]] = []
    for doc_id, raw in Database.scan_table(conn, info):
        doc = document_from_json_bytes(raw)
        for index in indexes:
            entries.append((index.id, index.key_of(doc), doc_id))
        if len(entries) >= 1000:
            conn.insert_index_entries(entries)
            entries = []
    conn.insert_index_entries(entries)
