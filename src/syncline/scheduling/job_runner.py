"""The scheduled-function executor: runs the jobs of ``_scheduled_functions``.

The rows and their states are :mod:`syncline.scheduling.jobs`, ``ctx.scheduler`` is
:mod:`syncline.scheduling.ctx_scheduler`; this module runs the jobs.

Guarantees, and how they are kept
---------------------------------

* **Scheduling from a mutation is transactional.** ``ctx.scheduler.run_after``
  inserts the row in the mutation's own transaction: the job exists if and
  only if the mutation commits. From an action each call is its own small
  transaction, independent of the action's outcome.
* **A scheduled mutation runs exactly once.** The executor runs it through
  :meth:`Executor.mutation` with an ``extra`` step that, in the *same*
  transaction, checks the row is still ``pending`` and marks it ``success``.
  The mutation's writes and its ``success`` commit together or not at all: a
  crash before the commit leaves the row ``pending`` (it runs again after the
  restart, and nothing of the first attempt is visible); a second dispatch of
  a job that already ran finds it no longer pending and rolls back. If the
  mutation raises, its writes are rolled back and a separate transaction
  marks the row ``failed`` with the error. A transient storage failure
  (a commit that could not be written) is retried with backoff, not reported.
* **A scheduled action runs at most once.** ``pending -> inProgress`` is
  committed *before* the action starts (and only if the row is still
  pending); ``success`` / ``failed`` afterwards. Rows left ``inProgress`` by a
  crash or a shutdown become ``failed`` ("Transient error while executing
  action") when the executor starts (or stops) and are never run again.
* Jobs run with no user identity (:data:`syncline.identity.SYSTEM`); their
  arguments are validated against the target's validators when they run (a
  mismatch fails the job with the validation message).
* Completed rows (``success``, ``failed``, ``canceled``) are deleted after the
  retention period (7 days by default).

The executor loop
-----------------

One asyncio task dispatches jobs, at most ``parallelism`` (8) at a time, in
``scheduledTime`` order (FIFO among equal times); a job holds its slot while
its function runs (a mutation until its commit, an action until it returns). It reads the pending jobs
that are due (index ``by_state_and_time``), starts them, and then sleeps on
the injected :class:`~syncline.clock.Clock` until the next job is due or the
next completed row expires — no polling. A commit that touches
``_scheduled_functions`` (a new job, a cancel) and every finished job wake it
early; the commit listener runs on the writer thread and hands off with
``call_soon_threadsafe``. Every time comes from the clock, so tests drive it
with a :class:`~syncline.clock.ManualClock`.

Completion hooks (used by cron jobs, :mod:`syncline.scheduling.cron_runner`) run in the
transaction that ends a job's execution, so "this run is over" and "the next
run is scheduled" commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncline import metrics
from syncline.clock import Clock
from syncline.errors import InternalError, SynclineError
from syncline.functions.registration import FunctionKind
from syncline.identity import SYSTEM
from syncline.scheduling.ctx_scheduler import install_ctx_scheduler
from syncline.scheduling.jobs import (
    IN_PROGRESS,
    PENDING,
    SCHEDULED_FUNCTIONS,
    SUCCESS,
    Poll,
    ScheduledJobs,
    current_job,
    error_message,
    failed,
    is_transient,
)

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction
    from syncline.database.writes import Commit
    from syncline.functions.executor import Executor
    from syncline.functions.loader import FunctionRegistry

__all__ = ["DEFAULT_PARALLELISM", "DEFAULT_RETENTION_MS", "ScheduledJobExecutor"]

log = logging.getLogger("syncline.scheduler")

DEFAULT_PARALLELISM = 8
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000.0
#: completed rows deleted per retention transaction
_GC_BATCH = 256


class _NotPending(Exception):
    """Raised inside a scheduled mutation's transaction to roll it back: the job was
    canceled or already ran (another dispatch won)."""


class ScheduledJobExecutor:
    """Runs the jobs of ``_scheduled_functions`` (and provides ``ctx.scheduler``).

    ``start()`` (on the serving event loop) recovers interrupted actions and
    starts the dispatch loop; ``stop()`` ends it. ``run_due()`` runs every job
    that is due, to completion, without the background loop (the test kit).
    """

    def __init__(
        self,
        database: Database,
        executor: Executor,
        registry: Callable[[], FunctionRegistry],
        *,
        clock: Clock,
        parallelism: int = DEFAULT_PARALLELISM,
        retention_ms: float = DEFAULT_RETENTION_MS,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 3600.0,
    ) -> None:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self.database = database
        self.executor = executor
        self.clock = clock
        #: the table (rows, validation, hooks); ``ctx.scheduler`` comes from it
        self.jobs = ScheduledJobs(database, registry, clock=clock)
        #: how many jobs run at once
        self.parallelism = parallelism
        #: how long completed rows are kept (ms)
        self.retention_ms = retention_ms
        #: backoff for transient storage failures (seconds, doubling up to retry_max_s)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        #: every job task the loop started, by job id (until its final state is written)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: the jobs holding one of the ``parallelism`` slots (their function is running)
        self._busy: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sleeper: asyncio.Task[None] | None = None
        self._sleeper_deadline: float | None = None
        self._pass = 0
        self._idle_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False
        install_ctx_scheduler(executor, self.jobs)

    # ------------------------------------------------------------------ reads

    async def _poll(self, now: float, free: int) -> Poll:
        skip = frozenset(self._tasks)
        return (await self.database.read(self.jobs.poll_body(now, free, skip))).value

    def _expire_at(self, poll: Poll) -> float | None:
        if poll.oldest_completed is None:
            return None
        return poll.oldest_completed + self.retention_ms

    async def next_pending_time(self, *, exclude: frozenset[str] = frozenset()) -> float | None:
        """The scheduledTime of the first pending job whose id is not in ``exclude``."""
        return await self.jobs.next_pending_time(exclude=exclude)

    # ------------------------------------------------------------------ running jobs

    async def _write_retrying(self, fn: Callable[[Transaction], Any]) -> Any:
        """A system write, retried with backoff while storage reports transient failures."""
        delay = self.retry_initial_s
        while True:
            try:
                return (await self.database.write(fn)).value
            except InternalError as exc:
                if self._stopping or not is_transient(exc):
                    raise
                log.warning("scheduler write failed (%s); retrying in %.1f s", exc, delay)
                await self.clock.sleep(delay)
                delay = min(max(delay * 2, 0.001), self.retry_max_s)

    async def _run_job(self, row: dict[str, Any]) -> None:
        job_id: str = row["_id"]
        path: str = row["name"]
        args = row["args"][0] if row.get("args") else {}
        lag_ms = self.clock.now_ms() - float(row["scheduledTime"])
        metrics.SCHEDULER_LAG.observe(max(lag_ms, 0.0) / 1000)
        fn = self.jobs.get_function(path)
        if fn is None or fn.kind not in (FunctionKind.MUTATION, FunctionKind.ACTION):
            metrics.SCHEDULED_JOBS.labels("unknown", "failed").inc()
            message = (
                f"Could not find function for '{path}'"
                if fn is None
                else f"Unsupported function type: '{path}' is a {fn.kind.value}"
            )
            await self._write_retrying(
                lambda tx: self.jobs.finish(tx, job_id, PENDING, failed(message))
            )
            return
        if fn.kind is FunctionKind.MUTATION:
            await self._run_mutation(job_id, path, args)
        else:
            await self._run_action(job_id, path, args)

    async def _run_mutation(self, job_id: str, path: str, args: dict[str, Any]) -> None:
        def finish(tx: Transaction, _result: Any) -> None:
            # Same transaction as the mutation's writes: both commit, or neither does.
            row = tx.get(job_id)
            if row is None or row["state"]["kind"] != PENDING:
                raise _NotPending(job_id)
            self.jobs.complete(tx, row, {"kind": SUCCESS})

        delay = self.retry_initial_s
        while True:
            outcome = await self.executor.mutation(
                path, args, identity=SYSTEM, allow_internal=True, extra=finish
            )
            error = outcome.error
            if error is None:
                metrics.SCHEDULED_JOBS.labels("mutation", "success").inc()
                return
            if isinstance(error, _NotPending):
                return
            if not is_transient(error):
                break
            if self._stopping:
                return  # still pending: it runs (once) after the restart
            log.warning("scheduled mutation %s hit a transient error (%s); retrying", path, error)
            await self.clock.sleep(delay)
            delay = min(max(delay * 2, 0.001), self.retry_max_s)
        message = error_message(error)
        metrics.SCHEDULED_JOBS.labels("mutation", "failed").inc()
        log.info("scheduled mutation %s (%s) failed: %s", path, job_id, message)
        await self._write_retrying(
            lambda tx: self.jobs.finish(tx, job_id, PENDING, failed(message))
        )

    async def _run_action(self, job_id: str, path: str, args: dict[str, Any]) -> None:
        # At most once: the action runs only after inProgress is durable.
        if not await self._write_retrying(lambda tx: self.jobs.start_action(tx, job_id)):
            return
        token = current_job.set(job_id)
        try:
            outcome = await self.executor.action(path, args, identity=SYSTEM, allow_internal=True)
        finally:
            current_job.reset(token)
        # The function is done: its slot is free while the final state is written (the
        # row stays inProgress until then, so it is never dispatched again).
        self._release(job_id)
        metrics.SCHEDULED_JOBS.labels(
            "action", "success" if outcome.error is None else "failed"
        ).inc()
        if outcome.error is None:
            state: dict[str, Any] = {"kind": SUCCESS}
        else:
            state = failed(error_message(outcome.error))
            log.info("scheduled action %s (%s) failed: %s", path, job_id, state["error"])
        await self._write_retrying(lambda tx: self.jobs.finish(tx, job_id, IN_PROGRESS, state))

    async def recover(self) -> int:
        """Mark actions left ``inProgress`` (by a crash or a stop) as failed; never re-run them."""
        body = self.jobs.fail_interrupted_body(frozenset(self._tasks))
        count: int = (await self.database.write(body)).value
        if count:
            log.warning("%d scheduled action(s) were interrupted and are now failed", count)
        return count

    async def collect_garbage(self, now: float | None = None) -> int:
        """Delete completed rows older than the retention period; return how many."""
        cutoff = (self.clock.now_ms() if now is None else now) - self.retention_ms
        body = self.jobs.delete_completed_body(cutoff, _GC_BATCH)
        total = 0
        while True:
            deleted: int = await self._write_retrying(body)
            total += deleted
            if deleted < _GC_BATCH:
                return total

    async def run_due(self, *, limit: int | None = None) -> int:
        """Run every job due now (and any it makes due now) to completion; return how many.

        For the test kit and tools: no background loop needed. Jobs still run
        ``parallelism`` at a time, in scheduledTime order. With ``limit``, stop
        starting jobs once that many have run.
        """
        ran = 0
        while limit is None or ran < limit:
            now = self.clock.now_ms()
            free = self.parallelism if limit is None else min(self.parallelism, limit - ran)
            poll = await self._poll(now, free)
            expire_at = self._expire_at(poll)
            if expire_at is not None and expire_at <= now:
                await self.collect_garbage(now)
            if not poll.due:
                return ran
            await asyncio.gather(*(self._run_job(row) for row in poll.due))
            ran += len(poll.due)
        return ran

    # ------------------------------------------------------------------ the loop

    async def start(self) -> None:
        """Recover interrupted actions and start dispatching (on the serving event loop)."""
        if self._task is not None:
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await self.recover()
        self.database.add_commit_listener(self._on_commits)
        self._task = self._loop.create_task(self._dispatch_loop(), name="syncline-scheduler")

    async def stop(self) -> None:
        """Stop dispatching; running jobs are cancelled (interrupted actions become failed)."""
        if self._task is None:
            return
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.database.remove_commit_listener(self._on_commits)
        tasks = [self._task, *self._tasks.values()]
        if self._sleeper is not None:
            tasks.append(self._sleeper)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("scheduler task failed", exc_info=result)
        self._task = None
        self._sleeper = None
        self._tasks.clear()
        self._busy.clear()
        for _, waiter in self._idle_waiters:
            if not waiter.done():
                waiter.cancel()
        self._idle_waiters.clear()
        try:
            # Actions cut off by the stop would otherwise sit in inProgress until the next start.
            await self.recover()
        except SynclineError as exc:
            log.warning("could not mark interrupted scheduled actions as failed: %s", exc)

    def _on_commits(self, commits: list[Commit]) -> None:
        # Writer thread: only look at what was written, and hand off to the loop.
        tasks = self._tasks
        for commit in commits:
            writes = commit.writes
            if SCHEDULED_FUNCTIONS not in writes.tables:
                continue
            if len(writes.tables) == 1 and all(doc_id in tasks for doc_id in writes.doc_ids):
                # Only state changes of jobs this loop is running (inProgress, final
                # states): nothing new is due, and their tasks wake the loop as they end.
                continue
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                    loop.call_soon_threadsafe(self._wake_up)
            return

    def _release(self, job_id: str) -> None:
        if job_id in self._busy:
            self._busy.discard(job_id)
            self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, row: dict[str, Any]) -> None:
        assert self._loop is not None
        job_id = row["_id"]
        task = self._loop.create_task(self._run_job(row), name=f"syncline-job-{job_id}")
        self._tasks[job_id] = task
        self._busy.add(job_id)

        def done(finished: asyncio.Task[None]) -> None:
            held_slot = job_id in self._busy
            if self._tasks.get(job_id) is finished:
                del self._tasks[job_id]
                self._busy.discard(job_id)
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "scheduled function %s could not be run", job_id, exc_info=finished.exception()
                )
            if held_slot or not self._tasks:
                # A slot is free (an action freed its slot earlier, when it returned), or
                # everything is done (an idle pass lets wait_idle() return).
                self._wake_up()

        task.add_done_callback(done)

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        failures = 0
        expire_at: float | None = None
        while True:
            self._pass += 1
            pass_no = self._pass
            self._wake.clear()
            now = self.clock.now_ms()
            free = self.parallelism - len(self._busy)
            if free <= 0 and (expire_at is None or expire_at > now):
                # Every slot is busy: nothing can start until one frees (which wakes us),
                # so do not read the queue meanwhile.
                await self._wait(expire_at)
                continue
            try:
                poll = await self._poll(now, max(free, 0))
                expire_at = self._expire_at(poll)
                if expire_at is not None and expire_at <= now:
                    await self.collect_garbage(now)
                    continue
            except Exception:
                failures += 1
                log.exception("scheduler could not read its jobs; retrying")
                await self.clock.sleep(min(self.retry_initial_s * 2**failures, self.retry_max_s))
                continue
            failures = 0
            for row in poll.due:
                self._spawn(row)
            if not poll.due and not poll.more_due and not self._tasks:
                # (more_due with no free slot: jobs may have finished during the poll.)
                self._notify_idle(pass_no)
            deadline = expire_at
            # With every slot busy only a finishing job (which wakes us) can start another;
            # otherwise sleep until the next job is due. (more_due implies every slot is busy.)
            if len(self._busy) < self.parallelism and poll.next_at is not None:
                deadline = poll.next_at if deadline is None else min(deadline, poll.next_at)
            await self._wait(deadline)

    async def _wait(self, deadline: float | None) -> None:
        """Until woken, or until the clock reaches ``deadline``."""
        assert self._wake is not None
        if self._sleeper is not None and (
            self._sleeper.done() or self._sleeper_deadline != deadline
        ):
            # A sleeper for another deadline: drop it (one live sleeper at a time).
            self._sleeper.cancel()
            self._sleeper = None
        if deadline is not None and self._sleeper is None:
            self._sleeper = asyncio.ensure_future(self.clock.sleep_until_ms(deadline))
            self._sleeper_deadline = deadline
        if self._wake.is_set():
            return
        waker = asyncio.ensure_future(self._wake.wait())
        waits: set[asyncio.Future[Any]] = {waker}
        if self._sleeper is not None:
            waits.add(self._sleeper)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()

    # ------------------------------------------------------------------ waiting (tests, tools)

    def _notify_idle(self, pass_no: int) -> None:
        keep = []
        for started, waiter in self._idle_waiters:
            if pass_no > started:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                keep.append((started, waiter))
        self._idle_waiters = keep

    async def wait_idle(self) -> None:
        """Wait until every job due by now has run and nothing is running.

        Only a pass of the loop that started after this call counts, so after
        ``clock.advance(ms)`` this waits for the jobs that became due.
        """
        if self._task is None or self._loop is None:
            raise InternalError("The scheduler is not running: call start() first")
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._idle_waiters.append((self._pass, waiter))
        self._wake_up()
        await waiter

    @property
    def running_jobs(self) -> int:
        return len(self._tasks)
