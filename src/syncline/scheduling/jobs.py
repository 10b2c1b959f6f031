"""The ``_scheduled_functions`` table and ``ctx.scheduler``: writing and reading jobs.

Every scheduled call is a row of the system table ``_scheduled_functions``
(user-visible, read-only, through ``ctx.db.system``)::

    {"name": "tasks:enrich",             # canonical path of a mutation or action
     "args": [{...}],                    # one-element array holding the args object
     "scheduledTime": 1.7e12,            # ms since the epoch (float)
     "state": {"kind": "pending"},       # -> inProgress (actions) -> success |
                                         #    failed (+ "error") | canceled
     "completedTime": 1.7e12}            # once success, failed or canceled

State machine (every transition is one transaction)::

    pending --(mutation ran: same transaction as its writes)--> success
    pending --(mutation raised: its writes rolled back)-------> failed
    pending --(action about to start)--> inProgress --> success | failed
    inProgress --(crash or shutdown)--> failed "Transient error while executing action"
    pending | inProgress --(cancel)--> canceled   (a running action keeps running)

This module owns the rows: :class:`ScheduledJobs` validates, inserts, cancels
and completes them and runs the completion hooks (cron jobs use one to
schedule their next run in the same transaction). The ``ctx.scheduler``
objects are in :mod:`syncline.scheduling.ctx_scheduler`; running the jobs is
:mod:`syncline.scheduling.job_runner`.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeGuard

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
from syncline.values.json import object_from_python
from syncline.values.size import MAX_VALUE_SIZE, check_value_limits

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.functions.loader import FunctionRegistry

__all__ = ["ScheduledJobs"]

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
TRANSIENT_ACTION_ERROR = "Transient error while executing action"
#: a failed job's error message is cut to this length (it is stored in the row)
MAX_ERROR_CHARS = 16_384

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
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "syncline_scheduled_job", default=None
)

CompletionHook = Callable[[Transaction, dict[str, Any]], None]


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


def is_transient(exc: BaseException) -> bool:
    """A storage failure (a commit that could not be written), not the function's fault."""
    # The database reports a commit it could not write (disk full, I/O error) as a plain
    # InternalError caused by the storage's exception; anything else (a closed database
    # included) is final.
    return type(exc) is InternalError and exc.__cause__ is not None


def failed(message: str) -> dict[str, Any]:
    return {"kind": FAILED, "error": message}


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class Poll:
    """What one look at the queue found."""

    due: list[dict[str, Any]] = field(default_factory=list)
    #: more jobs are due than there were free slots
    more_due: bool = False
    #: scheduledTime of the first pending job not yet due
    next_at: float | None = None
    #: completedTime of the oldest completed row
    oldest_completed: float | None = None


# ---------------------------------------------------------------------- the table


class ScheduledJobs:
    """The rows of ``_scheduled_functions``: validation, writes, queue reads, hooks.

    Methods taking a ``tx`` work inside the caller's transaction; the
    caller decides which one (a user mutation, or a small system write).
    """

    def __init__(
        self, database: Database, registry: Callable[[], FunctionRegistry], *, clock: Clock
    ) -> None:
        self.database = database
        self._registry = registry
        self.clock = clock
        #: called as ``hook(tx, job_row)`` in the transaction that ends a job's execution
        self.completion_hooks: list[CompletionHook] = []

    def get_function(self, path: str) -> Any:
        """The registered function at ``path`` now, or None."""
        return self._registry().get(path)

    # ------------------------------------------------------------------ validation

    @staticmethod
    def time_after(delay_ms: object, now_ms: float) -> float:
        """The run time of ``run_after(delay_ms, ...)`` called at ``now_ms``."""
        delay = float(delay_ms) if _is_number(delay_ms) else math.nan
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
            when = float(timestamp) if _is_number(timestamp) else math.nan
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
        value = object_from_python(dict(args))
        size = check_value_limits(
            value, max_size=MAX_VALUE_SIZE, what="scheduled function arguments"
        )
        if size > MAX_JOB_ARGS_BYTES:
            raise LimitExceeded(
                f"The arguments of a scheduled function are {size} bytes, more than the "
                f"limit of {MAX_JOB_ARGS_BYTES} bytes (4 MiB).",
                code="ScheduledFunctionArgumentsTooLarge",
            )
        return value, size

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
        """``ctx.scheduler.cancel``: pending -> canceled; a running action is marked canceled
        (what it schedules from then on is canceled too); completed jobs are left alone."""
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
        """Set a job's state (and ``completedTime`` for a final one); return the new row."""
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
            self.run_hooks(tx, updated)

    def run_hooks(self, tx: Transaction, row: dict[str, Any]) -> None:
        """Tell the completion hooks that this job's execution is over."""
        for hook in self.completion_hooks:
            try:
                hook(tx, row)
            except Exception:
                # A hook (cron bookkeeping) must never keep a job from completing, or the
                # job would run again; the cron state heals on the next load.
                log.exception("completion hook failed for scheduled function %s", row["_id"])

    def finish(self, tx: Transaction, job_id: str, expect: str, state: dict[str, Any]) -> bool:
        """Complete the job with ``state`` if it is still in state ``expect``."""
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
            self.run_hooks(tx, row)
        return False

    def start_action(self, tx: Transaction, job_id: str) -> bool:
        """pending -> inProgress; False if the job is no longer pending (do not run it)."""
        tx.limits = SYSTEM_LIMITS
        row = tx.get(job_id)
        if row is None or row["state"]["kind"] != PENDING:
            return False
        self.set_state(tx, row, {"kind": IN_PROGRESS})
        return True

    # ------------------------------------------------------------------ queue reads

    def poll_body(
        self, now: float, free: int, skip: frozenset[str]
    ) -> Callable[[Transaction], Poll]:
        """A read of the queue: up to ``free`` due pending jobs not in ``skip`` (in due
        order), when the next one is due, and the oldest completion time."""

        def body(tx: Transaction) -> Poll:
            tx.limits = SYSTEM_LIMITS
            poll = Poll()
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
                poll.oldest_completed = oldest["completedTime"]
            return poll

        return body

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

    def fail_interrupted_body(self, running: frozenset[str]) -> Callable[[Transaction], int]:
        """A write marking ``inProgress`` rows (except ``running``) failed; returns how many."""

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
                    self.complete(tx, row, failed(TRANSIENT_ACTION_ERROR))
                    count += 1
            return count

        return body

    def delete_completed_body(self, cutoff: float, batch: int) -> Callable[[Transaction], int]:
        """A write deleting up to ``batch`` rows completed at or before ``cutoff``."""

        def body(tx: Transaction) -> int:
            tx.limits = SYSTEM_LIMITS
            rows = (
                Query(tx, SCHEDULED_FUNCTIONS)
                .with_index(
                    BY_COMPLETION,
                    lambda r: r.gte("completedTime", -math.inf).lte("completedTime", cutoff),
                )
                .take(batch)
            )
            for row in rows:
                tx.delete(row["_id"])
            return len(rows)

        return body
