"""Scheduled functions: ``ctx.scheduler`` and the executor that runs ``_scheduled_functions``.

Every scheduled call is a row of the system table ``_scheduled_functions``::

    {"name": "tasks:enrich", "args": [{...}], "scheduledTime": 1.7e12,
     "state": {"kind": "pending"}}                   # then inProgress / success /
                                                     # failed (+ "error") / canceled,
                                                     # with "completedTime" once done

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
``scheduledTime`` order (FIFO among equal times). It reads the pending jobs
that are due (index ``by_state_and_time``), starts them, and then sleeps on
the injected :class:`~syncline.clock.Clock` until the next job is due or the
next completed row expires — no polling. A commit that touches
``_scheduled_functions`` (a new job, a cancel) and every finished job wake it
early; the commit listener runs on the writer thread and hands off with
``call_soon_threadsafe``. Every time comes from the clock, so tests drive it
with a :class:`~syncline.clock.ManualClock`.

Completion hooks (used by cron jobs, :mod:`syncline.crons`) run in the
transaction that ends a job's execution, so "this run is over" and "the next
run is scheduled" commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncline.clock import Clock
from syncline.database.query import Query
from syncline.database.transaction import Limits, Transaction
from syncline.errors import (
    ConvexError,
    InternalError,
    InvalidId,
    InvalidRequest,
    InvalidValue,
    LimitExceeded,
    SynclineError,
)
from syncline.functions.paths import function_path
from syncline.functions.registration import FunctionKind
from syncline.identity import SYSTEM, Identity
from syncline.values.json import from_python
from syncline.values.size import MAX_VALUE_SIZE, check_value_limits

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.writes import Commit
    from syncline.functions.executor import Executor
    from syncline.functions.loader import FunctionRegistry

__all__ = [
    "ActionScheduler",
    "MutationScheduler",
    "ScheduledJobExecutor",
]

log = logging.getLogger("syncline.scheduler")

SCHEDULED_FUNCTIONS = "_scheduled_functions"
BY_STATE_AND_TIME = "by_state_and_time"
BY_COMPLETION = "by_completion"

PENDING = "pending"
IN_PROGRESS = "inProgress"
SUCCESS = "success"
FAILED = "failed"
CANCELED = "canceled"

MiB = 1 << 20
#: scheduled functions per mutation (semantics §13, TooManyFunctionsScheduled)
MAX_SCHEDULED_PER_MUTATION = 1000
#: arguments of one scheduled function (semantics §17: enforced)
MAX_JOB_ARGS_BYTES = 4 * MiB
#: arguments of all functions scheduled by one mutation
MAX_TOTAL_ARGS_BYTES = 16 * MiB
#: run_after / run_at must land within this distance of now (InvalidScheduledFunctionDelay)
MAX_SCHEDULE_DISTANCE_MS = 5 * 365.25 * 24 * 3600 * 1000
DEFAULT_PARALLELISM = 8
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000.0
TRANSIENT_ACTION_ERROR = "Transient error while executing action"
#: a failed job's error message is cut to this length (it is stored in the row)
MAX_ERROR_CHARS = 16_384
#: completed rows deleted per retention transaction
_GC_BATCH = 256

#: System work reads whole rows (arguments of up to 4 MiB each) and is not user code:
#: the per-function read limits do not apply to it.
SYSTEM_LIMITS = Limits(
    max_docs_read=1 << 40,
    max_bytes_read=1 << 60,
    max_read_intervals=1 << 40,
    max_docs_written=1 << 40,
    max_bytes_written=1 << 60,
)

#: the id of the scheduled action running in this context (so that what it schedules
#: after being canceled is canceled too, as in Convex)
_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "syncline_scheduled_job", default=None
)

CompletionHook = Callable[[Transaction, dict[str, Any]], None]


class _NotPending(Exception):
    """Raised inside a scheduled mutation's transaction to roll it back: the job was
    canceled or already ran (another dispatch won)."""


def error_message(exc: BaseException) -> str:
    """The text stored in a failed job's ``state.error``."""
    if isinstance(exc, ConvexError):
        message = f"Uncaught ConvexError: {exc.message}"
    elif isinstance(exc, SynclineError):
        message = exc.message
    else:
        message = f"Uncaught {type(exc).__name__}: {exc}"
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + " [truncated]"
    return message


def _is_transient(exc: BaseException) -> bool:
    # The database reports a commit it could not write (disk full, I/O error) as a
    # plain InternalError; the mutation itself did nothing wrong: retry it.
    return type(exc) is InternalError and exc.code == "InternalError"


def _failed(message: str) -> dict[str, Any]:
    return {"kind": FAILED, "error": message}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class _Poll:
    """What one look at ``_scheduled_functions`` found."""

    due: list[dict[str, Any]] = field(default_factory=list)
    #: more jobs are due than there were free slots
    more_due: bool = False
    #: scheduledTime of the first pending job not yet due
    next_at: float | None = None
    #: when the oldest completed row expires
    expire_at: float | None = None


# ---------------------------------------------------------------------- ctx.scheduler


class MutationScheduler:
    """``ctx.scheduler`` in a mutation: jobs are written in the mutation's transaction.

    ``run_after(delay_ms, ref, args)`` and ``run_at(timestamp_ms, ref, args)`` return the
    job's id (an ``Id<"_scheduled_functions">``); the target must be a mutation or an
    action. ``cancel(id)`` stops a job that has not run (a running action keeps running;
    a completed job is left alone). The delay counts from the mutation's start time.
    """

    def __init__(self, service: ScheduledJobExecutor, tx: Transaction, now_ms: float) -> None:
        self._service = service
        self._tx = tx
        self._now = now_ms
        self._count = 0
        self._total_args = 0

    def run_after(self, delay_ms: float, ref: Any, args: Mapping[str, Any] | None = None) -> str:
        """Run ``ref(args)`` ``delay_ms`` milliseconds after this mutation's start."""
        return self._schedule(self._service.time_after(delay_ms, self._now), ref, args)

    def run_at(
        self, timestamp: float | datetime, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` at ``timestamp`` (ms since the epoch, or a datetime); past times
        run as soon as possible."""
        return self._schedule(self._service.time_at(timestamp, self._now), ref, args)

    def _schedule(self, when: float, ref: Any, args: Mapping[str, Any] | None) -> str:
        if self._count >= MAX_SCHEDULED_PER_MUTATION:
            raise LimitExceeded(
                f"Too many functions scheduled by this mutation (limit: "
                f"{MAX_SCHEDULED_PER_MUTATION}).",
                code="TooManyFunctionsScheduled",
            )
        path = self._service.check_target(ref)
        value, size = self._service.encode_args(args)
        if self._total_args + size > MAX_TOTAL_ARGS_BYTES:
            raise LimitExceeded(
                f"The arguments of the functions scheduled by this mutation total "
                f"{self._total_args + size} bytes, more than the limit of "
                f"{MAX_TOTAL_ARGS_BYTES} bytes (16 MiB).",
                code="ScheduledFunctionsArgumentsTooLarge",
            )
        job_id = self._service.insert_job(self._tx, path, value, when)
        self._count += 1
        self._total_args += size
        return job_id

    def cancel(self, job_id: str) -> None:
        """Cancel a scheduled function (a no-op if it already completed)."""
        self._service.cancel_in(self._tx, job_id)


class ActionScheduler:
    """``ctx.scheduler`` in an action: each call commits its own small transaction.

    The methods are coroutines: ``await ctx.scheduler.run_after(0, ref, args)``.
    """

    def __init__(self, service: ScheduledJobExecutor) -> None:
        self._service = service

    async def run_after(
        self, delay_ms: float, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` ``delay_ms`` milliseconds from now."""
        when = self._service.time_after(delay_ms, self._service.clock.now_ms())
        return await self._schedule(when, ref, args)

    async def run_at(
        self, timestamp: float | datetime, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` at ``timestamp`` (ms since the epoch, or a datetime)."""
        when = self._service.time_at(timestamp, self._service.clock.now_ms())
        return await self._schedule(when, ref, args)

    async def _schedule(self, when: float, ref: Any, args: Mapping[str, Any] | None) -> str:
        service = self._service
        path = service.check_target(ref)
        value, _size = service.encode_args(args)
        parent = _current_job.get()

        def body(tx: Transaction) -> str:
            tx.limits = SYSTEM_LIMITS
            # What a canceled scheduled action schedules is canceled too.
            canceled = False
            if parent is not None:
                row = tx.get(parent)
                canceled = row is not None and row["state"]["kind"] == CANCELED
            return service.insert_job(tx, path, value, when, canceled=canceled)

        return (await service.database.write(body)).value

    async def cancel(self, job_id: str) -> None:
        """Cancel a scheduled function (a no-op if it already completed)."""
        service = self._service
        await service.database.write(lambda tx: service.cancel_in(tx, job_id))


# ---------------------------------------------------------------------- the executor


class ScheduledJobExecutor:
    """Runs the jobs of ``_scheduled_functions`` and provides ``ctx.scheduler``.

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
        self._registry = registry
        self.clock = clock
        #: how many jobs run at once
        self.parallelism = parallelism
        #: how long completed rows are kept (ms)
        self.retention_ms = retention_ms
        #: backoff for transient storage failures (seconds, doubling up to retry_max_s)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        #: called as ``hook(tx, job_row)`` in the transaction that ends a job's execution
        self.completion_hooks: list[CompletionHook] = []
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
        executor.register_ctx_member("scheduler", self._ctx_member)

    # ------------------------------------------------------------------ ctx members

    def _ctx_member(self, kind: str, tx: Transaction | None, identity: Identity) -> Any:
        if kind == "mutation" and tx is not None:
            return MutationScheduler(self, tx, self.clock.now_ms())
        if kind == "action":
            return ActionScheduler(self)
        return None

    # ------------------------------------------------------------------ validation

    @staticmethod
    def time_after(delay_ms: object, now_ms: float) -> float:
        """The run time of ``run_after(delay_ms, ...)`` called at ``now_ms``."""
        delay = float(delay_ms) if _is_number(delay_ms) else math.nan  # type: ignore[arg-type]
        if not math.isfinite(delay) or delay < 0:
            raise InvalidRequest(
                f"run_after: the delay must be a finite number of milliseconds >= 0, "
                f"got {delay_ms!r}",
                code="InvalidScheduledFunctionDelay",
            )
        if delay > MAX_SCHEDULE_DISTANCE_MS:
            raise InvalidRequest(
                f"run_after: a delay of {delay_ms} ms is more than 5 years",
                code="InvalidScheduledFunctionDelay",
            )
        return now_ms + delay

    @staticmethod
    def time_at(timestamp: object, now_ms: float) -> float:
        """The run time of ``run_at(timestamp, ...)`` called at ``now_ms`` (past times are fine)."""
        if isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                raise InvalidRequest(
                    "run_at: pass a timezone-aware datetime (e.g. datetime.now(UTC)) or "
                    "milliseconds since the epoch",
                    code="InvalidScheduledFunctionDelay",
                )
            when = timestamp.timestamp() * 1000
        else:
            when = float(timestamp) if _is_number(timestamp) else math.nan  # type: ignore[arg-type]
        if not math.isfinite(when):
            raise InvalidRequest(
                f"run_at: the time must be a finite number of milliseconds since the epoch "
                f"or a datetime, got {timestamp!r}",
                code="InvalidScheduledFunctionDelay",
            )
        if abs(when - now_ms) > MAX_SCHEDULE_DISTANCE_MS:
            raise InvalidRequest(
                f"run_at: {when} ms is more than 5 years away from now ({now_ms} ms); "
                "is it in seconds instead of milliseconds?",
                code="InvalidScheduledFunctionDelay",
            )
        return when

    def check_target(self, ref: Any) -> str:
        """The canonical path of a schedulable function (an existing mutation or action)."""
        path = function_path(ref)
        fn = self._registry().get(path)
        if fn is None:
            raise InvalidRequest(
                f"Attempted to schedule function at nonexistent path '{path}'",
                code="InvalidScheduledFunction",
            )
        if fn.kind not in (FunctionKind.MUTATION, FunctionKind.ACTION):
            raise InvalidRequest(
                f"Attempted to schedule '{path}', which is a {fn.kind.value}: only mutations "
                "and actions can be scheduled",
                code="InvalidScheduledFunction",
            )
        return fn.path or path

    @staticmethod
    def encode_args(args: Mapping[str, Any] | None) -> tuple[dict[str, Any], int]:
        """The arguments as a Convex object and their size; checks the per-job limit."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise InvalidValue(
                f"Scheduled function arguments must be a dict, got {type(args).__name__}"
            )
        value = from_python(dict(args))
        size = check_value_limits(
            value, max_size=MAX_VALUE_SIZE, what="scheduled function arguments"
        )
        if size > MAX_JOB_ARGS_BYTES:
            raise LimitExceeded(
                f"The arguments of a scheduled function are {size} bytes, more than the "
                f"limit of {MAX_JOB_ARGS_BYTES} bytes (4 MiB).",
                code="ScheduledFunctionArgumentsTooLarge",
            )
        return value, size  # type: ignore[return-value]

    # ------------------------------------------------------------------ rows

    def insert_job(
        self,
        tx: Transaction,
        path: str,
        args: dict[str, Any],
        when: float,
        *,
        canceled: bool = False,
    ) -> str:
        """Write a new job row (in ``tx``) and return its id."""
        row: dict[str, Any] = {
            "name": path,
            "args": [args],
            "scheduledTime": float(when),
            "state": {"kind": PENDING},
        }
        if canceled:
            row["state"] = {"kind": CANCELED}
            row["completedTime"] = self.clock.now_ms()
        return tx.insert(SCHEDULED_FUNCTIONS, row)

    def cancel_in(self, tx: Transaction, job_id: object) -> None:
        if not isinstance(job_id, str) or tx.table_name_of_id(job_id) != SCHEDULED_FUNCTIONS:
            raise InvalidId(
                f"Invalid scheduled function ID: {job_id!r} is not an id of _scheduled_functions"
            )
        row = tx.get(job_id)
        if row is None:
            return  # already completed and removed after the retention period
        kind = row["state"]["kind"]
        if kind == PENDING:
            self.complete(tx, row, {"kind": CANCELED})
        elif kind == IN_PROGRESS:
            # The action keeps running; its execution ends (and the hooks run) when it returns.
            self.set_state(tx, row, {"kind": CANCELED})

    def set_state(
        self, tx: Transaction, row: dict[str, Any], state: dict[str, Any]
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"state": state}
        if state["kind"] in (SUCCESS, FAILED, CANCELED):
            fields["completedTime"] = self.clock.now_ms()
        tx.patch(row["_id"], fields)
        return {**row, **fields}

    def complete(
        self, tx: Transaction, row: dict[str, Any], state: dict[str, Any], *, hooks: bool = True
    ) -> None:
        """Give a job its final state and run the completion hooks, in ``tx``."""
        updated = self.set_state(tx, row, state)
        if hooks:
            self._run_hooks(tx, updated)

    def _run_hooks(self, tx: Transaction, row: dict[str, Any]) -> None:
        for hook in self.completion_hooks:
            try:
                hook(tx, row)
            except Exception:
                # A hook (cron bookkeeping) must never keep a job from completing, or the
                # job would run again; the cron state heals on the next load.
                log.exception("completion hook failed for scheduled function %s", row["_id"])

    def _finish(self, tx: Transaction, job_id: str, expect: str, state: dict[str, Any]) -> bool:
        tx.limits = SYSTEM_LIMITS
        row = tx.get(job_id)
        if row is None:
            return False
        kind = row["state"]["kind"]
        if kind == expect:
            self.complete(tx, row, state)
            return True
        if kind == CANCELED and expect == IN_PROGRESS:
            # Canceled while it ran: the state stays canceled, but the run is over now.
            self._run_hooks(tx, row)
        return False

    def _start_action(self, tx: Transaction, job_id: str) -> bool:
        tx.limits = SYSTEM_LIMITS
        row = tx.get(job_id)
        if row is None or row["state"]["kind"] != PENDING:
            return False
        self.set_state(tx, row, {"kind": IN_PROGRESS})
        return True

    # ------------------------------------------------------------------ reads

    def _poll_body(
        self, now: float, free: int, skip: frozenset[str]
    ) -> Callable[[Transaction], _Poll]:
        def body(tx: Transaction) -> _Poll:
            tx.limits = SYSTEM_LIMITS
            poll = _Poll()
            pending = Query(tx, SCHEDULED_FUNCTIONS).with_index(
                BY_STATE_AND_TIME, lambda r: r.eq("state.kind", PENDING)
            )
            for row in pending:
                if row["_id"] in skip:
                    continue  # running now (a mutation stays pending until it commits)
                if row["scheduledTime"] > now:
                    poll.next_at = row["scheduledTime"]
                    break
                if len(poll.due) >= free:
                    poll.more_due = True
                    break
                poll.due.append(row)
            oldest = (
                Query(tx, SCHEDULED_FUNCTIONS)
                .with_index(BY_COMPLETION, lambda r: r.gte("completedTime", -math.inf))
                .first()
            )
            if oldest is not None:
                poll.expire_at = oldest["completedTime"] + self.retention_ms
            return poll

        return body

    async def _poll(self, now: float, free: int) -> _Poll:
        skip = frozenset(self._tasks)
        return (await self.database.read(self._poll_body(now, free, skip))).value

    async def next_pending_time(self, *, exclude: frozenset[str] = frozenset()) -> float | None:
        """The scheduledTime of the first pending job whose id is not in ``exclude``."""

        def body(tx: Transaction) -> float | None:
            tx.limits = SYSTEM_LIMITS
            pending = Query(tx, SCHEDULED_FUNCTIONS).with_index(
                BY_STATE_AND_TIME, lambda r: r.eq("state.kind", PENDING)
            )
            for row in pending:
                if row["_id"] not in exclude:
                    return float(row["scheduledTime"])
            return None

        return (await self.database.read(body)).value

    # ------------------------------------------------------------------ running jobs

    async def _write_retrying(self, fn: Callable[[Transaction], Any]) -> Any:
        """A system write, retried with backoff while storage reports transient failures."""
        delay = self.retry_initial_s
        while True:
            try:
                return (await self.database.write(fn)).value
            except InternalError as exc:
                if self._stopping or not _is_transient(exc) or "closed" in exc.message:
                    raise
                log.warning("scheduler write failed (%s); retrying in %.1f s", exc, delay)
                await self.clock.sleep(delay)
                delay = min(max(delay * 2, 0.001), self.retry_max_s)

    async def _run_job(self, row: dict[str, Any]) -> None:
        job_id: str = row["_id"]
        path: str = row["name"]
        args = row["args"][0] if row.get("args") else {}
        fn = self._registry().get(path)
        if fn is None or fn.kind not in (FunctionKind.MUTATION, FunctionKind.ACTION):
            message = (
                f"Could not find function for '{path}'"
                if fn is None
                else f"Unsupported function type: '{path}' is a {fn.kind.value}"
            )
            await self._write_retrying(
                lambda tx: self._finish(tx, job_id, PENDING, _failed(message))
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
            self.complete(tx, row, {"kind": SUCCESS})

        delay = self.retry_initial_s
        while True:
            outcome = await self.executor.mutation(
                path, args, identity=SYSTEM, allow_internal=True, extra=finish
            )
            error = outcome.error
            if error is None or isinstance(error, _NotPending):
                return
            if not _is_transient(error) or self._stopping:
                break
            log.warning("scheduled mutation %s hit a transient error (%s); retrying", path, error)
            await self.clock.sleep(delay)
            delay = min(max(delay * 2, 0.001), self.retry_max_s)
        message = error_message(error)
        log.info("scheduled mutation %s (%s) failed: %s", path, job_id, message)
        await self._write_retrying(lambda tx: self._finish(tx, job_id, PENDING, _failed(message)))

    async def _run_action(self, job_id: str, path: str, args: dict[str, Any]) -> None:
        # At most once: the action runs only after inProgress is durable.
        if not await self._write_retrying(lambda tx: self._start_action(tx, job_id)):
            return
        token = _current_job.set(job_id)
        try:
            outcome = await self.executor.action(path, args, identity=SYSTEM, allow_internal=True)
        finally:
            _current_job.reset(token)
        # The function is done: its slot is free while the final state is written (the
        # row stays inProgress until then, so it is never dispatched again).
        self._release(job_id)
        if outcome.error is None:
            state: dict[str, Any] = {"kind": SUCCESS}
        else:
            state = _failed(error_message(outcome.error))
            log.info("scheduled action %s (%s) failed: %s", path, job_id, state["error"])
        await self._write_retrying(lambda tx: self._finish(tx, job_id, IN_PROGRESS, state))

    async def recover(self) -> int:
        """Mark actions left ``inProgress`` (by a crash or a stop) as failed; never re-run them."""
        running = frozenset(self._tasks)

        def body(tx: Transaction) -> int:
            tx.limits = SYSTEM_LIMITS
            rows = list(
                Query(tx, SCHEDULED_FUNCTIONS).with_index(
                    BY_STATE_AND_TIME, lambda r: r.eq("state.kind", IN_PROGRESS)
                )
            )
            count = 0
            for row in rows:
                if row["_id"] not in running:
                    self.complete(tx, row, _failed(TRANSIENT_ACTION_ERROR))
                    count += 1
            return count

        count: int = (await self.database.write(body)).value
        if count:
            log.warning("%d scheduled action(s) were interrupted and are now failed", count)
        return count

    async def collect_garbage(self, now: float | None = None) -> int:
        """Delete completed rows older than the retention period; return how many."""
        cutoff = (self.clock.now_ms() if now is None else now) - self.retention_ms

        def body(tx: Transaction) -> int:
            tx.limits = SYSTEM_LIMITS
            rows = (
                Query(tx, SCHEDULED_FUNCTIONS)
                .with_index(
                    BY_COMPLETION,
                    lambda r: r.gte("completedTime", -math.inf).lte("completedTime", cutoff),
                )
                .take(_GC_BATCH)
            )
            for row in rows:
                tx.delete(row["_id"])
            return len(rows)

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
            if poll.expire_at is not None and poll.expire_at <= now:
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
        # Writer thread: only look at the table names and hand off to the loop.
        if any(SCHEDULED_FUNCTIONS in commit.writes.tables for commit in commits):
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                    loop.call_soon_threadsafe(self._wake_up)

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
            if self._tasks.get(job_id) is finished:
                del self._tasks[job_id]
                self._busy.discard(job_id)
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "scheduled function %s could not be run", job_id, exc_info=finished.exception()
                )
            self._wake_up()  # a slot is free

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
                if poll.expire_at is not None and poll.expire_at <= now:
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
            deadline = expire_at = poll.expire_at
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
