"""The database: snapshot reads, optimistic writes, commit listeners, the schema.

Reads are functions run against a snapshot whose ``ts`` is known; they never
block the writer.

Writes (mutations, system updates) are functions ``fn(tx) -> result``, run
optimistically at a snapshot and committed in groups by the committer
(``committer.py``, which states the write path's contract): a write whose
reads are still current when its turn comes gets the next ts; one that
conflicts runs again at a newer snapshot. Outcomes are serializable in ts
order, and a caller hears back once its commit is durable and published.

Every commit, this process's and other processes' sharing the store, reaches
the commit listeners once and in ts order (``publisher.py``); other
processes' commits arrive through the committer or :meth:`Database.catch_up`.

State several processes share lives in the store, not here: at commit time
the last ts, the catalog version and the creation-time floor are read under
the lock; a snapshot carries its catalog version, and the catalog and schema
are reloaded when it differs from the one held (``catalog_state.py``).

Timestamps are nanoseconds since the epoch, strictly increasing, and never
reused across restarts or processes: a new ts is ``max(last + 1, now)``, with
``last`` the store's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
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
from syncline.database.catalog_state import SCHEMA_KEY, CatalogStates, load_state
from syncline.database.committer import (
    CREATION_TIME_KEY,
    Committer,
    CreationClock,
    WriteJob,
    WriteResult,
    read_commits,
)
from syncline.database.publisher import CommitListener, CommitPublisher
from syncline.database.read_threads import ReadThreads
from syncline.database.reads import ReadSet
from syncline.database.search_schema import drop_staged, stage_search_indexes, sync_search_indexes
from syncline.database.transaction import DEFAULT_LIMITS, Limits, Transaction
from syncline.errors import (
    InternalError,
    SchemaDefinitionError,
)
from syncline.persistence.base import (
    Persistence,
    ReadConnection,
    WriteConnection,
)
from syncline.values.json import document_from_json_bytes
from syncline.values.validators import ValidatorError

if TYPE_CHECKING:
    from syncline.schema import Schema

__all__ = ["CommitListener", "Database", "ReadResult", "SchemaChange", "WriteResult"]

T = TypeVar("T")
log = logging.getLogger("syncline.database")

#: rows read from storage per round trip by :meth:`Database.scan_table`
SCAN_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ReadResult(Generic[T]):
    value: T
    ts: int
    read_set: ReadSet
    #: the end cursor of a paginated read (see ``Transaction.journal``)
    journal: str | None = None


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What applying a schema did."""

    added_indexes: list[str] = field(default_factory=list)
    removed_indexes: list[str] = field(default_factory=list)
    created_tables: list[str] = field(default_factory=list)


class Database:
    def __init__(
        self,
        persistence: Persistence,
        *,
        clock: Clock | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_batch: int = 512,
        gather_s: float = 0.005,
        read_threads: int = 4,
        mutation_threads: int = 1,
        optimistic_attempts: int = 4,
        locked_fallback: bool = True,
        log_retention_ns: int = 3600 * 10**9,
        session_request_retention_ns: int = 3600 * 10**9,
    ) -> None:
        self.persistence = persistence
        self.clock = clock or SystemClock()
        self.limits = limits
        self._reads: ReadThreads[Callable[[Transaction], Any], ReadResult[Any]] = ReadThreads(
            self.run_read, threads=read_threads, name="syncline-read"
        )
        self._closed = False
        reader = persistence.reader()
        try:
            last_ts = reader.ts
            self._catalogs = CatalogStates(load_state(reader))
            raw_ct = reader.get_global(CREATION_TIME_KEY)
        finally:
            persistence.release_reader(reader)
        self._publisher = CommitPublisher(last_ts)
        self._committer = Committer(
            persistence,
            self._publisher,
            self._catalogs,
            CreationClock(self.clock, float(raw_ct) if raw_ct else 0.0),
            clock=self.clock,
            limits=limits,
            last_ts=last_ts,
            max_batch=max_batch,
            gather_s=gather_s,
            mutation_threads=mutation_threads,
            optimistic_attempts=optimistic_attempts,
            locked_fallback=locked_fallback,
            log_retention_ns=log_retention_ns,
            session_request_retention_ns=session_request_retention_ns,
        )
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
            yield conn, self._catalogs.of(conn).catalog
        finally:
            self.persistence.release_reader(conn)

    # ------------------------------------------------------------------ state

    @property
    def catalog(self) -> Catalog:
        """The newest catalog this process knows (another process's change: after a read or
        :meth:`catch_up` sees it)."""
        return self._catalogs.current.catalog

    @property
    def schema(self) -> Schema | None:
        return self._catalogs.current.schema

    @property
    def last_ts(self) -> int:
        """The ts of the last commit published to the listeners."""
        return self._publisher.published_ts

    @property
    def pending_commits(self) -> int:
        """Writes run (or to run under the lock) and waiting for the committer."""
        return self._committer.pending

    @property
    def session_request_retention_ns(self) -> int:
        """How long a client's mutation results are kept for de-duplicating re-sends."""
        return self._committer.session_request_retention_ns

    @property
    def conflicts(self) -> int:
        """Optimistic attempts that conflicted at commit so far (benchmarks, tests)."""
        return self._committer.conflicts

    @property
    def locked_fallbacks(self) -> int:
        """Mutations that conflicted on every optimistic attempt and then ran under the lock."""
        return self._committer.locked_fallbacks

    @property
    def creation_reruns(self) -> int:
        """Attempts run again under the lock to keep ``_creationTime`` in commit order."""
        return self._committer.creation_reruns

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(commits)`` after every durable commit, in ts order, each once.

        Commits of this process (``Commit.local``) and of other processes
        sharing the store (published by the committer or :meth:`catch_up`).
        A commit with ``changes_everything`` stands for commits pruned from
        the log before this process could read them: anything may have
        changed (its write set names every table, no keys or documents).
        Listeners run on the publishing thread, under the publication lock,
        before callers see their results: keep them quick and never block
        (hand the work to another thread or loop).
        """
        self._publisher.add_listener(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        self._publisher.remove_listener(listener)

    def catch_up(self) -> int:
        """Publish every commit in the store newer than the last one published; how many.

        For a process sharing the store with others: their commits reach this
        process's listeners (``local=False``) in ts order, each exactly once,
        even when this races with the committer. Thread-safe; cheap when
        nothing is new (one snapshot read). Commits pruned from the log before
        this process read them arrive as one ``Commit.changes_everything``.
        """
        conn = self.persistence.reader()
        try:
            publisher = self._publisher
            if conn.ts <= publisher.published_ts:
                return 0
            # Listeners may need a table another process created.
            catalog = self._catalogs.of(conn).catalog
            with publisher.lock:
                commits = read_commits(
                    conn, publisher.published_ts, catalog, stop=publisher.committing_from
                )
                return publisher.publish(commits)
        finally:
            self.persistence.release_reader(conn)

    # ------------------------------------------------------------------ reads

    def run_read(self, fn: Callable[[Transaction], T]) -> ReadResult[T]:
        """Run ``fn`` on a fresh snapshot, in the calling thread."""
        conn = self.persistence.reader()
        try:
            state = self._catalogs.of(conn)
            tx = Transaction(
                conn, state.catalog, ts=conn.ts, schema=state.schema, limits=self.limits
            )
            value = fn(tx)
            return ReadResult(value, conn.ts, tx.read_set, tx.journal_out)
        finally:
            self.persistence.release_reader(conn)

    async def read(self, fn: Callable[[Transaction], T]) -> ReadResult[T]:
        """Run ``fn`` on a fresh snapshot, on the read thread pool."""
        return await self.start_read(fn)

    def start_read(self, fn: Callable[[Transaction], T]) -> asyncio.Future[ReadResult[T]]:
        """Hand ``fn`` to the read thread pool now; the future resolves on this loop."""
        future: asyncio.Future[ReadResult[T]] = asyncio.get_running_loop().create_future()
        self._reads.submit(fn, future)
        return future

    # ------------------------------------------------------------------ writes

    def submit_write(
        self, fn: Callable[[Transaction], T], *, exclusive: bool = False
    ) -> concurrent.futures.Future[WriteResult[T]]:
        """Queue ``fn`` as a write; the future resolves after its commit is durable.

        ``exclusive`` runs it alone, on the committer under the store's write lock
        (schema changes, import, whole-table work).
        """
        future: concurrent.futures.Future[WriteResult[T]] = concurrent.futures.Future()
        self._submit(WriteJob(fn, future, exclusive=exclusive, locked=exclusive))
        return future

    def write_sync(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        return self.submit_write(fn).result()

    async def write(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        """Run ``fn`` as a write and await its durable commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult[T]] = loop.create_future()
        self._submit(WriteJob(fn, future))
        return await future

    def _submit(self, job: WriteJob) -> None:
        if self._closed:
            raise InternalError("The database is closed")
        self._committer.submit(job)

    # ------------------------------------------------------------------ schema

    def _bootstrap(self) -> None:
        """Create the system tables (and their indexes) that do not exist yet."""

        def create(tx: Transaction) -> None:
            for spec in SYSTEM_TABLES:
                info = tx.ensure_table(spec.name)
                _sync_indexes(tx, info, {BY_ID: (), BY_CREATION_TIME: (), **spec.indexes})

        self.submit_write(create, exclusive=True).result()

    def apply_schema(
        self, schema: Schema | None, *, store: Mapping[str, bytes] | None = None
    ) -> SchemaChange:
        """Make ``schema`` the active schema.

        Existing documents of validated tables are checked first; a mismatch
        raises SchemaDefinitionError naming the table, document and problem,
        and changes nothing. Then tables are created, indexes added (and
        backfilled) or dropped to match, and the schema is stored — all in one
        transaction, under the store's write lock. ``store``: globals written
        in that same transaction (a deploy's bundle).
        """

        def run_exclusive(fn: Callable[[Transaction], Any]) -> Any:
            return self.submit_write(fn, exclusive=True).result().value

        # New search indexes of large tables are built first, in short transactions.
        staged = stage_search_indexes(run_exclusive, schema)

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
                    _check_existing_documents(tx._require_writable(), tx, schema, info)
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
            added_search, removed_search = sync_search_indexes(tx, schema, staged)
            change.added_indexes.extend(added_search)
            change.removed_indexes.extend(removed_search)
            conn = tx._require_writable()
            payload = orjson.dumps(schema.to_json(), option=orjson.OPT_SORT_KEYS) if schema else b""
            conn.set_globals({**(store or {}), SCHEMA_KEY: payload})
            return change

        try:
            return self.submit_write(apply, exclusive=True).result().value
        except BaseException:
            drop_staged(run_exclusive, staged)
            raise

    def check_documents(self, schema: Schema) -> list[str]:
        """The tables whose stored documents would be checked by applying ``schema``.

        Reads one snapshot (nothing is written): raises SchemaDefinitionError,
        as :meth:`apply_schema` would, for the first document ``schema``
        rejects. For a dry run; :meth:`apply_schema` checks again under the lock.
        """

        def check(tx: Transaction) -> list[str]:
            previous = tx.schema
            checked = []
            for table_name in schema.tables:
                info = tx.table(table_name)
                if info is None or (
                    previous is not None
                    and previous.validator_for(table_name) == schema.validator_for(table_name)
                ):
                    continue
                _check_existing_documents(tx._conn, tx, schema, info)
                checked.append(table_name)
            return checked

        return self.run_read(check).value

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Finish every write submitted so far, then stop the threads and the storage."""
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        self._reads.close()
        self.persistence.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_existing_documents(
    conn: ReadConnection, tx: Transaction, schema: Schema, info: TableInfo
) -> None:
    validator = schema.validator_for(info.name)
    if validator is None:
        return
    # A system task, not user code: read storage directly, so the per-transaction
    # read limits (sized for functions) do not cap how much data a schema can check.
    for _doc_id, raw in Database.scan_table(conn, info):
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
