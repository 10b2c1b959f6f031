"""The committer: runs writes optimistically and commits them in groups, in ts order.

Contract (what :class:`Committer` promises its :class:`~syncline.database.database.Database`):

* :meth:`Committer.submit` takes a :class:`WriteJob`; its future resolves with a
  :class:`WriteResult` once its commit is durable and published, or with the
  function's error (nothing of it is stored), or with InternalError when storage
  failed (nothing of its batch is stored).
* An optimistic job runs at a snapshot (on a mutation thread, or on the
  committer before it takes the lock when there are none), its writes buffered
  (``overlay.py``). Inside one storage transaction holding the store's write
  lock, the committer first publishes other processes' commits, then checks each
  job's read set against every commit after its snapshot (published ones and
  earlier ones of the same batch) and either applies its buffer at the next ts
  or runs it again at a newer snapshot. After ``optimistic_attempts`` conflicts
  a job runs under the lock (``locked_fallback``) or fails with
  OptimisticConcurrencyControlFailure naming the table.
* Locked jobs (``exclusive`` ones, catalog changes, fallbacks) run on the
  writer's connection at the next ts and cannot conflict; an exclusive job is
  alone in its batch.
* Batches are made by the committer thread, or, when nothing else is under
  way (the committer waits for work, no other attempt runs or is queued), by
  the mutation thread whose attempt just finished: a batch of that one job,
  without the hand-off to the committer and back. One batch at a time either
  way; writes submitted in a row still commit in that order.
* One COMMIT makes a batch durable; then its commits are published in ts
  order (listeners first, callers after), and the catalog state is replaced if
  the batch changed it. Nobody else publishes this process's commits as
  foreign while they are being made durable (``CommitPublisher.committing_from``).
* Timestamps are strictly increasing, above the store's last ts, never reused.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from syncline import metrics
from syncline.clock import Clock
from syncline.database.catalog import Catalog
from syncline.database.catalog_state import CatalogState, CatalogStates, load_state
from syncline.database.lazy_snapshot import LazySnapshot
from syncline.database.overlay import BufferedWrites, NeedsLock
from syncline.database.publisher import CommitPublisher
from syncline.database.reads import ReadSet
from syncline.database.recent_writes import RecentWrites
from syncline.database.transaction import Limits, Transaction
from syncline.database.writes import (
    CATALOG_CHANGED,
    EVERYTHING_CHANGED,
    SCHEMA_CHANGED,
    Commit,
    WriteSet,
    decode_write_set,
    encode_write_set,
)
from syncline.errors import (
    DatabaseUnavailable,
    InternalError,
    OptimisticConcurrencyControlFailure,
)
from syncline.persistence.base import (
    CATALOG_VERSION_GLOBAL,
    LOG_PRUNED_GLOBAL,
    TS_GLOBAL,
    CommitRow,
    LogEntry,
    MutationRecord,
    Persistence,
    ReadConnection,
    WriteConnection,
)

if TYPE_CHECKING:
    from syncline.schema import Schema

__all__ = [
    "CREATION_TIME_KEY",
    "Committer",
    "CreationClock",
    "WriteJob",
    "WriteResult",
    "read_commits",
]

T = TypeVar("T")
log = logging.getLogger("syncline.database")

#: commit-log rows read per round trip when catching up with other processes
COMMITS_BATCH = 1000
#: batches between two prunings of the logs (commit log, mutation records)
PRUNE_EVERY = 1000
#: the global holding the creation-time floor (see :class:`CreationClock`)
CREATION_TIME_KEY = "creation_time"


@dataclass(frozen=True, slots=True)
class WriteResult(Generic[T]):
    value: T
    ts: int
    read_set: ReadSet
    writes: WriteSet


class CreationClock:
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
class WriteJob:
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
    #: the catalog version and snapshot ts the last attempt ran at (its reads are
    #: checked against the commits after that ts)
    catalog_version: int = 0
    snapshot_ts: int = 0

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


@dataclass(slots=True)
class _Batch:
    """What one group commit has done so far (on the committer thread)."""

    conn: WriteConnection
    state: CatalogState
    catalog: Catalog
    schema: Schema | None
    catalog_changed: bool = False
    outcomes: list[tuple[WriteJob, Any]] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    log_entries: list[LogEntry] = field(default_factory=list)
    requests: dict[tuple[str, int], MutationRecord] = field(default_factory=dict)
    retry: list[WriteJob] = field(default_factory=list)
    #: this batch's commits so far, for checking its later transactions
    written: RecentWrites = field(default_factory=RecentWrites)
    #: the highest ``_creationTime`` committed so far, this batch included
    creation_high: float = 0.0
    #: rows of commits that only put, not written yet: written together, in a few
    #: statements, before anything else uses ``conn`` (:meth:`write_puts`)
    documents: list[tuple[str, int, int, bytes]] = field(default_factory=list)
    entries: list[tuple[int, bytes, str]] = field(default_factory=list)

    def write_puts(self) -> None:
        if self.documents:
            self.conn.put_documents(self.documents)
            self.documents = []
        if self.entries:
            self.conn.insert_index_entries(self.entries)
            self.entries = []

    def add_creation_times(self, tx: Transaction) -> None:
        if tx.last_creation_time is not None:
            self.creation_high = max(self.creation_high, tx.last_creation_time)

    def add(self, commit: Commit) -> None:
        self.commits.append(commit)
        self.written.add(commit)


def read_commits(
    conn: ReadConnection, after: int, catalog: Catalog, *, stop: int | None
) -> list[Commit]:
    """The commits in ``conn`` above ``after``, as foreign commits, below ``stop``.

    When the log was pruned above ``after`` (this process fell further behind
    than the log's retention), the commits it lost cannot be read: one commit
    at ``conn.ts`` flagged :data:`EVERYTHING_CHANGED`, naming every table of
    ``catalog`` (``conn``'s), stands for all of them.
    """
    pruned = conn.get_global(LOG_PRUNED_GLOBAL)
    if pruned is not None and int(pruned) > after:
        if stop is not None and conn.ts >= stop:
            return []
        log.warning(
            "this process fell behind the commit log's retention: "
            "every live query and listener is refreshed"
        )
        tables = {info.name for info in catalog.tables()}
        return [Commit(conn.ts, WriteSet(tables=tables), local=False, flags=EVERYTHING_CHANGED)]
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


class Committer:
    """The write path of one :class:`Database` (see the module docs for the contract)."""

    def __init__(
        self,
        persistence: Persistence,
        publisher: CommitPublisher,
        catalogs: CatalogStates,
        creation: CreationClock,
        *,
        clock: Clock,
        limits: Limits,
        last_ts: int,
        max_batch: int,
        gather_s: float,
        mutation_threads: int,
        optimistic_attempts: int,
        locked_fallback: bool,
        log_retention_ns: int,
        session_request_retention_ns: int,
    ) -> None:
        self.persistence = persistence
        self._publisher = publisher
        self._catalogs = catalogs
        self._creation = creation
        self.clock = clock
        self.limits = limits
        self._last_ts = last_ts
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
        self._queue: queue.SimpleQueue[WriteJob | None] = queue.SimpleQueue()
        #: jobs the committer took from the queue but left for its next batch, in
        #: queue order (only the committer thread touches it)
        self._carried: collections.deque[WriteJob | None] = collections.deque()
        #: threads running optimistic writes. One keeps writes submitted in a row running
        #: (and, absent conflicts, committing) in that order; more let one slow mutation
        #: share the process with others. Zero: the committer runs each batch's attempts
        #: itself, before taking the write lock (the least CPU per write, for deployments
        #: whose parallelism comes from several processes).
        self._mutation_thread_count = mutation_threads
        self._mutation_jobs: queue.SimpleQueue[WriteJob | None] = queue.SimpleQueue()
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
        #: held by the thread running a batch: the committer, or a mutation thread that
        #: commits its own attempt while the committer waits (:meth:`_commit_here`)
        self._committing = threading.Lock()
        #: the committer waits for a job, none queued (guarded by ``_run_lock``)
        self._writer_idle = False
        self._commits_since_prune = 0
        #: optimistic attempts that conflicted at commit so far, for benchmarks and tests
        self.conflicts = 0
        #: mutations that conflicted on every optimistic attempt and then ran under the lock
        self.locked_fallbacks = 0
        #: the highest ``_creationTime`` this process committed: a transaction that
        #: issued one below it runs again under the lock, so that ``_creationTime``
        #: order is commit order (the default order of a table)
        self._creation_committed = 0.0
        #: optimistic attempts run again under the lock for that reason
        self.creation_reruns = 0
        self._writer = threading.Thread(
            target=self._writer_loop, name="syncline-writer", daemon=True
        )
        self._writer.start()

    @property
    def pending(self) -> int:
        """Writes run (or to run under the lock) and waiting for the committer."""
        return self._queue.qsize() + len(self._carried)

    def submit(self, job: WriteJob) -> None:
        """Queue ``job``: optimistic, or (``job.locked``) to run under the lock."""
        if job.locked:
            self._queue.put(job)
        else:
            self._run_optimistically([job])

    def close(self) -> None:
        """Finish every job submitted so far, then stop the threads."""
        with self._run_lock:
            self._closing = True
            threads = self._mutation_threads
            for _ in threads:
                self._mutation_jobs.put(None)
        for thread in threads:
            thread.join(timeout=30)
        self._queue.put(None)
        self._writer.join(timeout=30)

    def _run_optimistically(self, jobs: list[WriteJob]) -> None:
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
                if conn is not None and conn.ts < self._publisher.published_ts:
                    self._release_reader(conn)
                    conn = None
                snapshot = self._snapshot(conn)
                try:
                    self._execute(job, snapshot)
                except BaseException as exc:  # storage failed before the function could run
                    if snapshot.opened is not None:
                        self._release_reader(snapshot.opened)
                    conn = None
                    error = exc
                    if not isinstance(exc, DatabaseUnavailable):
                        error = InternalError(f"Mutation could not start: {exc}")
                        error.__cause__ = exc
                    self._resolve([(job, error)])
                    self._executed(None)
                    continue
                conn = snapshot.opened
                broken = job.failed and isinstance(job.outcome, DatabaseUnavailable)
                if conn is not None and (self._mutation_jobs.empty() or broken):
                    # Idle next: hold no snapshot (an open one keeps the WAL from being
                    # reset). Broken: the next attempt needs another connection.
                    self._release_reader(conn)
                    conn = None
                if broken or not self._commit_here(job):
                    self._executed(job)
        finally:
            if conn is not None:
                self._release_reader(conn)

    def _snapshot(self, opened: ReadConnection | None) -> LazySnapshot:
        """The snapshot of an attempt: ``opened``, or one begun at its first read."""
        return LazySnapshot(
            self.persistence.reader,
            ts=self._publisher.published_ts,
            catalog_version=self._catalogs.current.version,
            supports_search=self.persistence.supports_search,
            opened=opened,
        )

    def _release_reader(self, conn: ReadConnection) -> None:
        """Give a mutation thread's snapshot back; a store that cannot end it is logged.

        Never raises: a mutation thread that died here would leave every later
        mutation of this process waiting (the store being down is what makes
        ending a snapshot fail, and the next attempt opens another).
        """
        try:
            self.persistence.release_reader(conn)
        except Exception as exc:
            log.warning("ending a mutation snapshot failed: %s", exc)

    def _commit_here(self, job: WriteJob) -> bool:
        """At low load: commit ``job``'s attempt on this thread; False to hand it over.

        Only when nothing else is under way (the committer waits for work, no
        other attempt runs or is queued): the batch is this one job, as the
        committer would have made it, without the hand-off to its thread and
        back. Anything submitted meanwhile waits for this thread or goes to
        the committer as usual; user code never runs while the batch is held.
        """
        with self._run_lock:
            if (
                self._closing
                or not self._writer_idle
                or self._finished + 1 < self._submitted
                or not self._queue.empty()
                or not self._committing.acquire(blocking=False)
            ):
                return False
            self._attempt_over()
        try:
            self._run_batch([job])
        except BaseException as exc:  # as on the committer: the thread outlives the batch
            log.exception("writer batch failed")
            if not job.future.done():
                self._resolve([(job, exc)])
        finally:
            self._committing.release()
        return True

    def _executed(self, job: WriteJob | None) -> None:
        """An optimistic attempt is over: hand ``job`` (if any) to the committer.

        Queued before it counts as over (under the lock): a committer woken by
        the count finds it in the queue.
        """
        with self._run_lock:
            if job is not None:
                self._queue.put(job)
            self._attempt_over()

    def _attempt_over(self) -> None:
        """Under ``_run_lock``: count an attempt as over; wake a committer gathering them."""
        self._finished += 1
        target = self._gather_target
        if target is not None and self._finished >= target:
            self._gathered.set()

    def _execute(self, job: WriteJob, conn: LazySnapshot) -> None:
        """One optimistic attempt: run ``job`` at the snapshot ``conn``, writes buffered.

        Consecutive attempts on one thread share a snapshot until this process
        publishes a newer commit: a stale read only makes the attempt conflict.
        """
        job.attempts += 1
        state = self._catalogs.of(conn)
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
        # Begun by the function's first read, the snapshot may be newer than assumed.
        job.snapshot_ts = conn.ts

    def _next_ts(self) -> int:
        ts = max(self._last_ts + 1, self.clock.now_ns())
        self._last_ts = ts
        return ts

    def _writer_loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            with self._committing:
                self._run_jobs(job)

    def _take_nowait(self) -> WriteJob | None:
        """The committer's next job if one is waiting (None: stop); raises queue.Empty."""
        if self._carried:
            return self._carried.popleft()
        return self._queue.get_nowait()

    def _next_job(self) -> WriteJob | None:
        """The next job (None: stop), waiting for one while marked idle."""
        try:
            return self._take_nowait()
        except queue.Empty:
            pass
        with self._run_lock:
            self._writer_idle = self._queue.empty()
        job = self._queue.get()
        with self._run_lock:
            self._writer_idle = False
        return job

    def _run_jobs(self, job: WriteJob) -> None:
        """Gather a batch starting with ``job`` and commit it (more than one if one is exclusive)."""
        batch = [job]
        if not job.exclusive:
            waited = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._take_nowait()
                except queue.Empty:
                    if waited or not self._wait_for_running_attempts():
                        break
                    waited = True
                    continue
                if nxt is None:
                    self._carried.appendleft(None)  # stop after this batch
                    break
                if nxt.exclusive:
                    self._execute_here(batch)
                    self._run_batch(batch)
                    batch = [nxt]
                    break
                batch.append(nxt)
        try:
            self._execute_here(batch)
            # An exclusive job is alone in its batch; any other batch takes what is
            # ready once it holds the lock.
            self._run_batch(batch, join_ready=not batch[0].exclusive)
        except BaseException as exc:  # the writer must outlive any one batch
            log.exception("writer batch failed")
            self._resolve([(j, exc) for j in batch if not j.future.done()])

    def _execute_here(self, batch: list[WriteJob]) -> None:
        """Without mutation threads: the optimistic attempts of ``batch``, on this thread.

        At one snapshot, before the write lock is taken: another process's
        commits are never held up by this process's user code.
        """
        todo = [j for j in batch if not j.locked and j.tx is None and j.start()]
        if not todo:
            return
        snapshot = self._snapshot(None)
        try:
            for job in todo:
                self._execute(job, snapshot)
        finally:
            if snapshot.opened is not None:
                self.persistence.release_reader(snapshot.opened)

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

    def _join_ready(self, live: list[WriteJob]) -> None:
        """Under the write lock: add the jobs that became ready meanwhile to ``live``.

        Taking the lock may have waited for another process's batch; whatever
        finished its attempt during the wait commits now, in the same COMMIT,
        instead of waiting for the lock once more. Queue order holds: the
        first job that cannot join (exclusive, not yet run, or the stop
        marker) and everything after it stay queued for the next batch.
        """
        while len(live) < self.max_batch:
            try:
                job = self._take_nowait()
            except queue.Empty:
                return
            if job is None or job.exclusive or not (job.locked or job.tx is not None):
                self._carried.appendleft(job)
                return
            if job.start():
                live.append(job)

    def _run_batch(self, batch: list[WriteJob], *, join_ready: bool = False) -> None:
        """Commit ``batch``; ``join_ready`` (committer thread only): with what is ready by then."""
        live = [j for j in batch if j.start()]
        if not live:
            return
        metrics.COMMITTER_QUEUE.set(self._queue.qsize())
        started = time.perf_counter()
        conn = self.persistence.begin_write()
        ts_before = self._last_ts
        publisher = self._publisher
        open_write = True
        try:
            if join_ready:
                self._join_ready(live)
            self._absorb_foreign_commits(conn)
            state = self._catalogs.current
            batch_state = _Batch(conn, state, state.catalog, state.schema)
            batch_state.creation_high = self._creation_committed
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
            durable_from = time.perf_counter()
            # commit_write ends the write transaction (and its lock) even when it
            # raises: from here on there is nothing to abort.
            open_write = False
            self.persistence.commit_write(conn)
            metrics.COMMIT_DURABLE_SECONDS.observe(time.perf_counter() - durable_from)
            self._creation_committed = batch_state.creation_high
        except BaseException as exc:
            with publisher.lock:
                publisher.committing_from = None
            if open_write:
                self.persistence.abort_write(conn)
            self._last_ts = max(ts_before, self._last_ts)
            error: BaseException = exc
            if not isinstance(exc, DatabaseUnavailable):
                error = InternalError(f"Commit failed: {exc}")
                error.__cause__ = exc
            self._resolve([(job, error) for job in live])
            return
        if batch_state.catalog_changed or batch_state.schema is not state.schema:
            version = state.version + 1
            self._catalogs.replace(
                CatalogState(
                    version,
                    batch_state.catalog,
                    batch_state.schema,
                    batch_state.catalog.by_id_tables(),
                )
            )
        with publisher.lock:
            publisher.committing_from = None
            publisher.publish(batch_state.commits)
        metrics.COMMIT_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.COMMIT_BATCH_SIZE.observe(len(batch_state.commits))
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
        if conn.catalog_version != self._catalogs.current.version:
            # First: listeners may need a table another process created.
            self._catalogs.replace(load_state(conn))
        if conn.ts > publisher.published_ts:
            raw_ct = conn.get_global(CREATION_TIME_KEY)
            if raw_ct:
                self._creation.raise_floor(float(raw_ct))
            with publisher.lock:
                publisher.publish(
                    read_commits(
                        conn, publisher.published_ts, self._catalogs.current.catalog, stop=None
                    )
                )

    def _run_locked(self, batch: _Batch, job: WriteJob) -> None:
        """Run ``job`` on the writer's connection at the next ts (it cannot conflict)."""
        batch.write_puts()
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
        batch.add_creation_times(tx)

    def _conflict(self, batch: _Batch, job: WriteJob) -> str | None:
        """The table of a write committed after ``job``'s snapshot that it read; else None."""
        tx = job.tx
        assert tx is not None
        if job.catalog_version != batch.state.version or batch.catalog_changed:
            return "(the catalog)"
        read_set = tx.read_set
        if read_set.is_empty():
            return None
        ts = job.snapshot_ts
        index = self._publisher.conflict(read_set, ts) or batch.written.conflict(read_set, ts)
        return None if index is None else repr(index.rpartition(".")[0])

    def _commit_optimistic(self, batch: _Batch, job: WriteJob) -> None:
        """Check ``job``'s reads; apply its buffered writes at the next ts, or retry it."""
        first = job.tx.first_creation_time if job.tx is not None else None
        if first is not None and first <= batch.creation_high:
            # It issued a _creationTime before one already committed (a locked run's,
            # or a later attempt's that finished first): run it again here, under the
            # lock, so that it keeps its place in the commit order and _creationTime
            # order stays commit order.
            self.creation_reruns += 1
            job.tx = job.buffer = job.outcome = None
            self._run_locked(batch, job)
            return
        table = self._conflict(batch, job)
        if table is not None:
            self.conflicts += 1
            metrics.OCC_CONFLICTS.inc()
            job.tx = job.buffer = job.outcome = None
            if job.attempts < self.optimistic_attempts:
                metrics.OCC_RETRIES.inc()
                batch.retry.append(job)
            elif self.locked_fallback:
                self.locked_fallbacks += 1
                metrics.OCC_LOCKED_FALLBACKS.inc()
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
        if buffer.only_puts():
            records = buffer.put_rows(ts, batch.documents, batch.entries)
        else:
            batch.write_puts()
            records = buffer.apply(batch.conn, ts)
        batch.log_entries.extend(
            LogEntry(ts, e.doc_id, e.table_number, e.value) for e in tx.log_entries()
        )
        for record in records:
            batch.requests[record[0], record[1]] = record
        batch.outcomes.append((job, WriteResult(job.outcome, ts, tx.read_set, tx.writes)))
        batch.add(Commit(ts, tx.writes))
        batch.add_creation_times(tx)
        job.tx = job.buffer = None

    def _finish_batch(self, batch: _Batch) -> None:
        """Store the batch's log, records, commit-log rows and globals (before COMMIT)."""
        batch.write_puts()
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
                CREATION_TIME_KEY: repr(self._creation.floor).encode(),
            }
            if batch.catalog_changed or batch.schema is not batch.state.schema:
                values[CATALOG_VERSION_GLOBAL] = str(batch.state.version + 1).encode()
            conn.set_globals(values)
        self._maybe_prune(conn)

    @staticmethod
    def _resolve(outcomes: list[tuple[WriteJob, Any]]) -> None:
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
        if self._commits_since_prune >= PRUNE_EVERY:
            self._commits_since_prune = 0
            conn.prune_log(self._last_ts - self.log_retention_ns)
            conn.prune_request_records(self._last_ts - self.session_request_retention_ns)
