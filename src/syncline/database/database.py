"""The database: snapshot reads and optimistic mutations on threads, one committer.

Reads are functions run against a snapshot whose ``ts`` is known; they never
block the writer.

Writes (mutations, system updates) are functions ``fn(tx) -> result``. A write
runs optimistically on a mutation thread, at a snapshot, with its writes
buffered in memory (``overlay.py``); the committer thread then takes every
write that is ready and, inside one storage transaction holding the store's
write lock, checks each one's read set against every commit after its
snapshot (other processes' included, read from the commit log, and earlier
writes of the same batch). A write whose reads are still current gets the
next ts and its buffer is applied; one that conflicts runs again at a newer
snapshot. One COMMIT (one fsync) makes the batch durable, after which the
commits are published to listeners in ts order and the callers' futures
resolve. Outcomes are serializable in ts order.

Some writes run on the committer itself, under the lock, on the writer's
connection (where they cannot conflict): ``exclusive`` jobs (schema changes,
import), writes that change the catalog (creating a table), and writes that
conflicted on every optimistic attempt, so that a hot key slows a mutation
down but never fails it.

State several processes share lives in the store, not here: at commit time
the last ts, the catalog version and the creation-time floor are read under
the lock; a snapshot carries its catalog version, and the catalog and schema
are reloaded when it differs from the one held.

Timestamps are nanoseconds since the epoch, strictly increasing, and never
reused across restarts or processes: a new ts is ``max(last + 1, now)``, with
``last`` the store's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

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
from syncline.database.overlay import BufferedWrites, NeedsLock
from syncline.database.publisher import CommitListener, CommitPublisher
from syncline.database.read_threads import ReadThreads
from syncline.database.reads import ReadSet
from syncline.database.recent_writes import RecentWrites
from syncline.database.transaction import DEFAULT_LIMITS, Limits, Transaction
from syncline.database.writes import (
    CATALOG_CHANGED,
    SCHEMA_CHANGED,
    Commit,
    WriteSet,
    decode_write_set,
    encode_write_set,
)
from syncline.errors import (
    InternalError,
    OptimisticConcurrencyControlFailure,
    SchemaDefinitionError,
)
from syncline.persistence.base import (
    CATALOG_VERSION_GLOBAL,
    TS_GLOBAL,
    CommitRow,
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

__all__ = ["CommitListener", "Database", "ReadResult", "SchemaChange", "WriteResult"]

T = TypeVar("T")
log = logging.getLogger("syncline.database")

#: rows read from storage per round trip by :meth:`Database.scan_table`
SCAN_BATCH = 1000
#: commit-log rows read per round trip when catching up with other processes
COMMITS_BATCH = 1000

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


class _CatalogState(NamedTuple):
    """The catalog and schema as of one catalog version of the store."""

    version: int
    catalog: Catalog
    schema: Schema | None
    by_id_tables: Mapping[int, int]


def _load_state(conn: ReadConnection) -> _CatalogState:
    catalog = Catalog.from_rows(conn.tables(), conn.indexes())
    raw_schema = conn.get_global(_SCHEMA_KEY)
    schema = None
    if raw_schema:
        from syncline.schema import Schema

        schema = Schema.from_json(orjson.loads(raw_schema))
    return _CatalogState(conn.catalog_version, catalog, schema, catalog.by_id_tables())


class _CreationClock:
    """``_creationTime`` values for every transaction of one database (thread-safe).

    Strictly increasing in the order they are issued, and never below the
    transaction's ts or the clock (both in ms). The floor is stored with each
    commit and raised from the store at every batch, so it also survives
    restarts and follows other processes' commits.
    """

    def __init__(self, clock: Clock, floor: float) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.floor = floor

    def __call__(self, ts: int) -> float:
        candidate = max(ts, self._clock.now_ns()) / 1_000_000
        with self._lock:
            if candidate <= self.floor:
                candidate = math.nextafter(self.floor, math.inf)
            self.floor = candidate
            return candidate

    def raise_floor(self, floor: float) -> None:
        with self._lock:
            self.floor = max(self.floor, floor)


@dataclass(slots=True, eq=False)
class _WriteJob:
    fn: Callable[[Transaction], Any]
    #: a concurrent future (sync callers), or an asyncio future (resolved on its loop)
    future: concurrent.futures.Future[Any] | asyncio.Future[Any]
    exclusive: bool = False
    #: run on the committer, on the writer's connection, under the lock
    locked: bool = False
    started: bool = False
    #: optimistic attempts made so far
    attempts: int = 0
    #: the last optimistic attempt: its transaction, buffer, and outcome
    tx: Transaction | None = None
    buffer: BufferedWrites | None = None
    outcome: Any = None
    failed: bool = False
    catalog_version: int = 0

    def start(self) -> bool:
        """False if the caller gave up (cancelled) before the job ran."""
        if self.started:
            return True
        self.started = True
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


@dataclass(slots=True)
class _Batch:
    """What one group commit has done so far (on the committer thread)."""

    conn: WriteConnection
    state: _CatalogState
    catalog: Catalog
    schema: Schema | None
    catalog_changed: bool = False
    outcomes: list[tuple[_WriteJob, Any]] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    log_entries: list[LogEntry] = field(default_factory=list)
    requests: dict[tuple[str, int], MutationRecord] = field(default_factory=dict)
    retry: list[_WriteJob] = field(default_factory=list)
    #: this batch's commits so far, for checking its later transactions
    written: RecentWrites = field(default_factory=RecentWrites)

    def add(self, commit: Commit) -> None:
        self.commits.append(commit)
        self.written.add(commit)


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
        self.max_batch = max_batch
        #: how long the committer waits for running optimistic attempts to join its batch
        self.gather_s = gather_s
        #: optimistic runs of one mutation before it runs under the lock (or fails)
        self.optimistic_attempts = optimistic_attempts
        #: after ``optimistic_attempts`` conflicts, run under the lock rather than fail
        self.locked_fallback = locked_fallback
        self.log_retention_ns = log_retention_ns
        #: how long a client's mutation results are kept for de-duplicating re-sends
        self.session_request_retention_ns = session_request_retention_ns
        self._queue: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self._reads: ReadThreads[Callable[[Transaction], Any], ReadResult[Any]] = ReadThreads(
            self.run_read, threads=read_threads, name="syncline-read"
        )
        #: threads running optimistic writes. One keeps writes submitted in a row running
        #: (and, absent conflicts, committing) in that order; more let one slow mutation
        #: share the process with others. Zero: the committer runs each batch's attempts
        #: itself, before taking the write lock (the least CPU per write, for deployments
        #: whose parallelism comes from several processes).
        self._mutation_thread_count = mutation_threads
        self._mutation_jobs: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self._mutation_threads: list[threading.Thread] = []
        #: guards starting mutation threads, handing them jobs, and closing
        self._run_lock = threading.Lock()
        self._closing = False
        #: optimistic attempts handed to the mutation threads, and those over, so far
        self._submitted = 0
        self._finished = 0
        #: while the committer gathers a batch: the attempts it waits for (set when over)
        self._gather_target: int | None = None
        self._gathered = threading.Event()
        self._closed = False
        self._commits_since_prune = 0
        #: optimistic attempts that conflicted at commit so far, for benchmarks and tests
        self.conflicts = 0
        #: mutations that conflicted on every optimistic attempt and then ran under the lock
        self.locked_fallbacks = 0

        reader = persistence.reader()
        try:
            self._last_ts = reader.ts
            self._state = _load_state(reader)
            raw_ct = reader.get_global(_CREATION_TIME_KEY)
        finally:
            persistence.release_reader(reader)
        self._state_lock = threading.Lock()
        self._creation = _CreationClock(self.clock, float(raw_ct) if raw_ct else 0.0)
        self._publisher = CommitPublisher(self._last_ts)

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
            yield conn, self._state_of(conn).catalog
        finally:
            self.persistence.release_reader(conn)

    # ------------------------------------------------------------------ state

    @property
    def catalog(self) -> Catalog:
        """The newest catalog this process knows (another process's change: after a read or
        :meth:`catch_up` sees it)."""
        return self._state.catalog

    @property
    def schema(self) -> Schema | None:
        return self._state.schema

    @property
    def last_ts(self) -> int:
        """The ts of the last commit published to the listeners."""
        return self._publisher.published_ts

    @property
    def pending_commits(self) -> int:
        """Writes run (or to run under the lock) and waiting for the committer."""
        return self._queue.qsize()

    def _state_of(self, conn: ReadConnection) -> _CatalogState:
        """The catalog and schema of ``conn``'s snapshot (reloaded if its version is new)."""
        state = self._state
        if conn.catalog_version == state.version:
            return state
        loaded = _load_state(conn)
        with self._state_lock:
            if loaded.version > self._state.version:
                self._state = loaded
        return loaded

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(commits)`` after every durable commit, in ts order, each once.

        Commits of this process (``Commit.local``) and of other processes
        sharing the store (published by the committer or :meth:`catch_up`).
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
        nothing is new (one snapshot read).
        """
        conn = self.persistence.reader()
        try:
            publisher = self._publisher
            if conn.ts <= publisher.published_ts:
                return 0
            self._state_of(conn)  # listeners may need a table another process created
            with publisher.lock:
                commits = self._read_commits(
                    conn, publisher.published_ts, stop=publisher.committing_from
                )
                return publisher.publish(commits)
        finally:
            self.persistence.release_reader(conn)

    @staticmethod
    def _read_commits(conn: ReadConnection, after: int, *, stop: int | None) -> list[Commit]:
        """The commit log above ``after`` in ``conn``, as foreign commits, below ``stop``."""
        commits: list[Commit] = []
        while True:
            rows = conn.commits_since(after, limit=COMMITS_BATCH)
            for row in rows:
                if stop is not None and row.ts >= stop:
                    return commits
                commits.append(
                    Commit(row.ts, decode_write_set(row.writes), local=False, flags=row.flags)
                )
            if len(rows) < COMMITS_BATCH:
                return commits
            after = rows[-1].ts

    # ------------------------------------------------------------------ reads

    def run_read(self, fn: Callable[[Transaction], T]) -> ReadResult[T]:
        """Run ``fn`` on a fresh snapshot, in the calling thread."""
        conn = self.persistence.reader()
        try:
            state = self._state_of(conn)
            tx = Transaction(
                conn, state.catalog, ts=conn.ts, schema=state.schema, limits=self.limits
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
        """Queue ``fn`` as a write; the future resolves after its commit is durable.

        ``exclusive`` runs it alone, on the committer under the store's write lock
        (schema changes, import, whole-table work).
        """
        future: concurrent.futures.Future[WriteResult[T]] = concurrent.futures.Future()
        self._submit(_WriteJob(fn, future, exclusive=exclusive, locked=exclusive))
        return future

    def write_sync(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        return self.submit_write(fn).result()

    async def write(self, fn: Callable[[Transaction], T]) -> WriteResult[T]:
        """Run ``fn`` as a write and await its durable commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult[T]] = loop.create_future()
        self._submit(_WriteJob(fn, future))
        return await future

    def _submit(self, job: _WriteJob) -> None:
        if self._closed:
            raise InternalError("The database is closed")
        if job.locked:
            self._queue.put(job)
        else:
            self._run_optimistically([job])

    def _run_optimistically(self, jobs: list[_WriteJob]) -> None:
        """Hand ``jobs`` to the mutation threads (to the committer, locked, once closing).

        With no mutation threads, the committer runs them itself, at a snapshot
        and before it takes the write lock.
        """
        with self._run_lock:
            if self._closing or not self._mutation_thread_count:
                for job in jobs:
                    job.locked = job.locked or self._closing
                    self._queue.put(job)
                return
            if not self._mutation_threads:
                self._mutation_threads = [
                    threading.Thread(
                        target=self._mutation_loop, name=f"syncline-mutation-{i}", daemon=True
                    )
                    for i in range(self._mutation_thread_count)
                ]
                for thread in self._mutation_threads:
                    thread.start()
            self._submitted += len(jobs)
            for job in jobs:
                self._mutation_jobs.put(job)

    def _mutation_loop(self) -> None:
        conn: ReadConnection | None = None
        try:
            while True:
                job = self._mutation_jobs.get()
                if job is None:
                    return
                if not job.start():
                    self._executed(None)
                    continue
                try:
                    if conn is not None and conn.ts < self._publisher.published_ts:
                        self.persistence.release_reader(conn)
                        conn = None
                    if conn is None:
                        conn = self.persistence.reader()
                    self._execute(job, conn)
                except BaseException as exc:  # storage failed before the function could run
                    error = InternalError(f"Mutation could not start: {exc}")
                    error.__cause__ = exc
                    self._resolve([(job, error)])
                    self._executed(None)
                    continue
                if self._mutation_jobs.empty():
                    # Idle next: hold no snapshot (an open one keeps the WAL from being
                    # reset).
                    self.persistence.release_reader(conn)
                    conn = None
                self._executed(job)
        finally:
            if conn is not None:
                self.persistence.release_reader(conn)

    def _executed(self, job: _WriteJob | None) -> None:
        """An optimistic attempt is over: hand ``job`` (if any) to the committer."""
        with self._run_lock:
            self._finished += 1
            target = self._gather_target
            if target is not None and self._finished >= target:
                self._gathered.set()
        if job is not None:
            self._queue.put(job)

    def _execute(self, job: _WriteJob, conn: ReadConnection) -> None:
        """One optimistic attempt: run ``job`` at the snapshot ``conn``, writes buffered.

        Consecutive attempts on one thread share a snapshot until this process
        publishes a newer commit: a stale read only makes the attempt conflict.
        """
        job.attempts += 1
        state = self._state_of(conn)
        buffer = BufferedWrites(conn, state.by_id_tables)
        tx = Transaction(
            buffer,
            state.catalog,
            ts=conn.ts,
            schema=state.schema,
            limits=self.limits,
            creation_clock=self._creation,
        )
        job.tx, job.buffer, job.catalog_version = tx, buffer, conn.catalog_version
        try:
            job.outcome, job.failed = job.fn(tx), False
        except NeedsLock:
            job.locked = True
            job.tx = job.buffer = job.outcome = None
        except BaseException as exc:
            # Checked at commit like a result: a failure seen at a stale snapshot
            # (an insufficient balance, say) is retried as well.
            job.outcome, job.failed = exc, True

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
                waited = False
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        if waited or not self._wait_for_running_attempts():
                            break
                        waited = True
                        continue
                    if nxt is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    if nxt.exclusive:
                        self._execute_here(batch)
                        self._run_batch(batch)
                        batch = [nxt]
                        break
                    batch.append(nxt)
            try:
                self._execute_here(batch)
                self._run_batch(batch)
            except BaseException as exc:  # the writer must outlive any one batch
                log.exception("writer batch failed")
                self._resolve([(j, exc) for j in batch if not j.future.done()])

    def _execute_here(self, batch: list[_WriteJob]) -> None:
        """Without mutation threads: the optimistic attempts of ``batch``, on this thread.

        At one snapshot, before the write lock is taken: another process's
        commits are never held up by this process's user code.
        """
        todo = [j for j in batch if not j.locked and j.tx is None and j.start()]
        if not todo:
            return
        conn = self.persistence.reader()
        try:
            for job in todo:
                self._execute(job, conn)
        finally:
            self.persistence.release_reader(conn)

    def _wait_for_running_attempts(self) -> bool:
        """Wait (up to ``gather_s``) for the attempts already submitted to finish.

        Each would otherwise pay a commit (and with full durability an fsync)
        of its own: the batch waits for them, in one wake-up when the last one
        is over rather than one per attempt. False if none was running.
        """
        with self._run_lock:
            if self._finished >= self._submitted:
                return False
            self._gather_target = self._submitted
            self._gathered.clear()
        self._gathered.wait(self.gather_s)
        with self._run_lock:
            self._gather_target = None
        return True

    def _run_batch(self, batch: list[_WriteJob]) -> None:
        live = [j for j in batch if j.start()]
        if not live:
            return
        conn = self.persistence.begin_write()
        ts_before = self._last_ts
        publisher = self._publisher
        try:
            self._absorb_foreign_commits(conn)
            state = self._state
            batch_state = _Batch(conn, state, state.catalog, state.schema)
            self._last_ts = max(self._last_ts, conn.ts)
            for job in live:
                if job.locked:
                    self._run_locked(batch_state, job)
                else:
                    self._commit_optimistic(batch_state, job)
            self._finish_batch(batch_state)
            with publisher.lock:
                publisher.committing_from = (
                    batch_state.commits[0].ts if batch_state.commits else None
                )
            self.persistence.commit_write(conn)
        except BaseException as exc:
            with publisher.lock:
                publisher.committing_from = None
            self.persistence.abort_write(conn)
            self._last_ts = max(ts_before, self._last_ts)
            error = InternalError(f"Commit failed: {exc}")
            error.__cause__ = exc
            self._resolve([(job, error) for job in live])
            return
        if batch_state.catalog_changed or batch_state.schema is not state.schema:
            version = state.version + 1
            with self._state_lock:
                self._state = _CatalogState(
                    version,
                    batch_state.catalog,
                    batch_state.schema,
                    batch_state.catalog.by_id_tables(),
                )
        with publisher.lock:
            publisher.committing_from = None
            publisher.publish(batch_state.commits)
        self._resolve(batch_state.outcomes)
        if batch_state.retry:
            self._run_optimistically(batch_state.retry)

    def _absorb_foreign_commits(self, conn: WriteConnection) -> None:
        """Under the lock: publish other processes' commits, reload a changed catalog.

        Every commit of this process is published before its next batch
        begins, so whatever the log holds above the last published ts is
        another process's.
        """
        publisher = self._publisher
        if conn.ts > publisher.published_ts:
            raw_ct = conn.get_global(_CREATION_TIME_KEY)
            if raw_ct:
                self._creation.raise_floor(float(raw_ct))
            with publisher.lock:
                publisher.publish(self._read_commits(conn, publisher.published_ts, stop=None))
        if conn.catalog_version != self._state.version:
            state = _load_state(conn)
            with self._state_lock:
                self._state = state

    def _run_locked(self, batch: _Batch, job: _WriteJob) -> None:
        """Run ``job`` on the writer's connection at the next ts (it cannot conflict)."""
        conn = batch.conn
        ts = self._next_ts()
        # Until a function succeeds the transaction holds nothing to keep: a
        # failure rolls it all back, so the first function needs no savepoint
        # (at low load, a batch is one function).
        guarded = bool(batch.commits)
        if guarded:
            conn.savepoint()
        tx = Transaction(
            conn,
            batch.catalog,
            ts=ts,
            schema=batch.schema,
            limits=self.limits,
            creation_clock=self._creation,
            batch_requests=batch.requests,
        )
        try:
            value = job.fn(tx)
        except BaseException as exc:
            if guarded:
                conn.rollback_to()
            else:
                conn.restart()
            batch.outcomes.append((job, exc))
            return
        if guarded:
            conn.release()
        batch.log_entries.extend(tx.log_entries())
        for record in tx.request_records:
            batch.requests[record[0], record[1]] = record
        flags = 0
        if tx.catalog is not batch.catalog and not tx.catalog.same_as(batch.catalog):
            flags |= CATALOG_CHANGED
        if tx.schema is not batch.schema:
            flags |= SCHEMA_CHANGED
        if flags:
            batch.catalog_changed = True
        batch.catalog, batch.schema = tx.catalog, tx.schema
        batch.outcomes.append((job, WriteResult(value, ts, tx.read_set, tx.writes)))
        batch.add(Commit(ts, tx.writes, flags=flags))

    def _conflict(self, batch: _Batch, job: _WriteJob) -> str | None:
        """The table of a write committed after ``job``'s snapshot that it read; else None."""
        tx = job.tx
        assert tx is not None
        if job.catalog_version != batch.state.version or batch.catalog_changed:
            return "(the catalog)"
        read_set = tx.read_set
        if not read_set.interval_count():
            return None
        index = self._publisher.conflict(read_set, tx.ts) or batch.written.conflict(read_set, tx.ts)
        return None if index is None else repr(index.rpartition(".")[0])

    def _commit_optimistic(self, batch: _Batch, job: _WriteJob) -> None:
        """Check ``job``'s reads; apply its buffered writes at the next ts, or retry it."""
        table = self._conflict(batch, job)
        if table is not None:
            self.conflicts += 1
            job.tx = job.buffer = job.outcome = None
            if job.attempts < self.optimistic_attempts:
                batch.retry.append(job)
            elif self.locked_fallback:
                self.locked_fallbacks += 1
                self._run_locked(batch, job)
            else:
                batch.outcomes.append(
                    (
                        job,
                        OptimisticConcurrencyControlFailure(
                            f"Documents read from or written to the table {table} changed "
                            f"while this mutation was being run, on each of its "
                            f"{job.attempts} attempts"
                        ),
                    )
                )
            return
        tx, buffer = job.tx, job.buffer
        assert tx is not None and buffer is not None
        if job.failed:
            batch.outcomes.append((job, job.outcome))
            return
        ts = self._next_ts()
        # No savepoint: replaying checked writes fails only if storage does, and then
        # the whole batch fails (as a failed COMMIT would).
        records = buffer.apply(batch.conn, ts)
        batch.log_entries.extend(
            LogEntry(ts, e.doc_id, e.table_number, e.value) for e in tx.log_entries()
        )
        for record in records:
            batch.requests[record[0], record[1]] = record
        batch.outcomes.append((job, WriteResult(job.outcome, ts, tx.read_set, tx.writes)))
        batch.add(Commit(ts, tx.writes))
        job.tx = job.buffer = None

    def _finish_batch(self, batch: _Batch) -> None:
        """Store the batch's log, records, commit-log rows and globals (before COMMIT)."""
        conn = batch.conn
        if batch.log_entries:
            conn.append_log(batch.log_entries)
        if batch.requests:
            conn.put_mutation_requests(list(batch.requests.values()))
        if batch.commits:
            conn.append_commits(
                [CommitRow(c.ts, c.flags, encode_write_set(c.writes)) for c in batch.commits]
            )
            # Snapshots name the last *published* commit; a failed mutation's
            # ts is never visible (and is never reused: _last_ts moved past it).
            values = {
                TS_GLOBAL: str(batch.commits[-1].ts).encode(),
                _CREATION_TIME_KEY: repr(self._creation.floor).encode(),
            }
            if batch.catalog_changed or batch.schema is not batch.state.schema:
                values[CATALOG_VERSION_GLOBAL] = str(batch.state.version + 1).encode()
            conn.set_globals(values)
        self._maybe_prune(conn)

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
        transaction, under the store's write lock.
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
        """Finish every write submitted so far, then stop the threads and the storage."""
        if self._closed:
            return
        self._closed = True
        with self._run_lock:
            self._closing = True
            threads = self._mutation_threads
            for _ in threads:
                self._mutation_jobs.put(None)
        for thread in threads:
            thread.join(timeout=30)
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
