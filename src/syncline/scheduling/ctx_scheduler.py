"""``ctx.scheduler``: scheduling functions from mutations and actions.

:class:`MutationScheduler` writes jobs in the mutation's own transaction (a job
exists if and only if the mutation commits), with the per-mutation limits of
semantics §13; :class:`ActionScheduler` commits each call as its own small
transaction. Queries have no ``ctx.scheduler``. The rows themselves are
:mod:`syncline.scheduling.jobs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncline.errors import LimitExceeded
from syncline.scheduling.jobs import (
    CANCELED,
    MAX_SCHEDULED_PER_MUTATION,
    MAX_TOTAL_ARGS_BYTES,
    SYSTEM_LIMITS,
    ScheduledJobs,
    current_job,
)

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.functions.executor import Executor
    from syncline.identity import Identity

__all__ = ["ActionScheduler", "MutationScheduler", "install_ctx_scheduler"]


def install_ctx_scheduler(executor: Executor, jobs: ScheduledJobs) -> None:
    """Give mutations and actions run by ``executor`` a ``ctx.scheduler`` writing to ``jobs``."""

    def ctx_member(kind: str, tx: Transaction | None, identity: Identity) -> Any:
        if kind == "mutation" and tx is not None:
            return MutationScheduler(jobs, tx, jobs.clock.now_ms())
        if kind == "action":
            return ActionScheduler(jobs)
        return None

    executor.register_ctx_member("scheduler", ctx_member)


class MutationScheduler:
    """``ctx.scheduler`` in a mutation: jobs are written in the mutation's transaction.

    ``run_after(delay_ms, ref, args)`` and ``run_at(timestamp_ms, ref, args)`` return the
    job's id (an ``Id<"_scheduled_functions">``); the target must be a mutation or an
    action. ``cancel(id)`` stops a job that has not run (a running action keeps running;
    a completed job is left alone). The delay counts from the mutation's start time.
    """

    def __init__(self, jobs: ScheduledJobs, tx: Transaction, now_ms: float) -> None:
        self._jobs = jobs
        self._tx = tx
        self._now = now_ms
        self._count = 0
        self._total_args = 0

    def run_after(self, delay_ms: float, ref: Any, args: Mapping[str, Any] | None = None) -> str:
        """Run ``ref(args)`` ``delay_ms`` milliseconds after this mutation's start."""
        return self._schedule(self._jobs.time_after(delay_ms, self._now), ref, args)

    def run_at(
        self, timestamp: float | datetime, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` at ``timestamp`` (ms since the epoch, or a datetime); past times
        run as soon as possible."""
        return self._schedule(self._jobs.time_at(timestamp, self._now), ref, args)

    def _schedule(self, when: float, ref: Any, args: Mapping[str, Any] | None) -> str:
        if self._count >= MAX_SCHEDULED_PER_MUTATION:
            raise LimitExceeded(
                f"Too many functions scheduled by this mutation (limit: "
                f"{MAX_SCHEDULED_PER_MUTATION}).",
                code="TooManyFunctionsScheduled",
            )
        path = self._jobs.check_target(ref)
        value, size = self._jobs.encode_args(args)
        if self._total_args + size > MAX_TOTAL_ARGS_BYTES:
            raise LimitExceeded(
                f"The arguments of the functions scheduled by this mutation total "
                f"{self._total_args + size} bytes, more than the limit of "
                f"{MAX_TOTAL_ARGS_BYTES} bytes (16 MiB).",
                code="ScheduledFunctionsArgumentsTooLarge",
            )
        job_id = self._jobs.insert_job(self._tx, path, value, when)
        self._count += 1
        self._total_args += size
        return job_id

    def cancel(self, job_id: str) -> None:
        """Cancel a scheduled function (a no-op if it already completed)."""
        self._jobs.cancel_in(self._tx, job_id)


class ActionScheduler:
    """``ctx.scheduler`` in an action: each call commits its own small transaction.

    The methods are coroutines: ``await ctx.scheduler.run_after(0, ref, args)``.
    """

    def __init__(self, jobs: ScheduledJobs) -> None:
        self._jobs = jobs

    async def run_after(
        self, delay_ms: float, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` ``delay_ms`` milliseconds from now."""
        when = self._jobs.time_after(delay_ms, self._jobs.clock.now_ms())
        return await self._schedule(when, ref, args)

    async def run_at(
        self, timestamp: float | datetime, ref: Any, args: Mapping[str, Any] | None = None
    ) -> str:
        """Run ``ref(args)`` at ``timestamp`` (ms since the epoch, or a datetime)."""
        when = self._jobs.time_at(timestamp, self._jobs.clock.now_ms())
        return await self._schedule(when, ref, args)

    async def _schedule(self, when: float, ref: Any, args: Mapping[str, Any] | None) -> str:
        jobs = self._jobs
        path = jobs.check_target(ref)
        value, _size = jobs.encode_args(args)
        parent = current_job.get()

        def body(tx: Transaction) -> str:
            tx.limits = SYSTEM_LIMITS
            # What a canceled scheduled action schedules is canceled too.
            canceled = False
            if parent is not None:
                row = tx.get(parent)
                canceled = row is not None and row["state"]["kind"] == CANCELED
            return jobs.insert_job(tx, path, value, when, canceled=canceled)

        return (await jobs.database.write(body)).value

    async def cancel(self, job_id: str) -> None:
        """Cancel a scheduled function (a no-op if it already completed)."""
        jobs = self._jobs
        await jobs.database.write(lambda tx: jobs.cancel_in(tx, job_id))
