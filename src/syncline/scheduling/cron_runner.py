"""Cron jobs at run time: ``_cron_jobs`` kept in step with ``crons.py``, one run at a time.

Each job declared in ``functions/crons.py`` (see :mod:`syncline.functions.crons`)
has a row in the private system table ``_cron_jobs``::

    {"name": "cleanup", "function": "files:cleanup", "args": [{...}],
     "schedule": {"type": "daily", "hourUTC": 3, "minuteUTC": 0, "cron": "0 3 * * *"},
     "nextRun": 1.7e12, "lastRun": 1.7e12, "lastState": "success",
     "jobId": "<the _scheduled_functions id of the current run>"}

Guarantees, and how they are kept:

* **Each run is a scheduled function** (a ``_scheduled_functions`` row), so it
  has the scheduler's guarantees: a mutation runs exactly once, an action at
  most once, with no identity.
* **One run of a job at a time.** A job has exactly one current run
  (``jobId``). The next run is scheduled by a completion hook of the
  scheduler, in the same transaction that ends the current run (the
  mutation's own transaction, or the action's final state), so "this run is
  over" and "the next is scheduled" commit together — a crash cannot lose
  the job or double it.
* **Missed runs are skipped, not back-filled.** The next run is computed when
  the current one completes, from its scheduled time; occurrences already in
  the past (a long run, a server that was down) are skipped with a warning.
* **Definitions are synced on every load** (:meth:`CronRunner.sync`, one
  transaction): new jobs get their first run, changed ones have their pending
  run replaced (a running one finishes under the old definition; its
  successor follows the new one), removed ones have their pending run
  canceled. A job whose current run vanished is given a new one, so the
  table heals from any inconsistency at the next load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncline.database.query import Query
from syncline.errors import FunctionDefinitionError, SynclineError
from syncline.functions.crons import CronJobs, CronSchedule
from syncline.functions.registration import FunctionKind
from syncline.scheduling.jobs import CANCELED, IN_PROGRESS, PENDING, SYSTEM_LIMITS, ScheduledJobs
from syncline.values.json import object_from_python
from syncline.values.keys import values_equal

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.functions.loader import FunctionRegistry

__all__ = ["CronDefinition", "CronRunner", "CronSyncReport"]

log = logging.getLogger("syncline.crons")

CRON_JOBS = "_cron_jobs"


@dataclass(frozen=True, slots=True)
class CronDefinition:
    """A cron job from ``crons.py``, its function resolved to a path."""

    name: str
    path: str
    args: dict[str, Any]
    schedule: CronSchedule

    def fields(self) -> dict[str, Any]:
        """The definition's fields of a ``_cron_jobs`` row."""
        return object_from_python(
            {"function": self.path, "args": [self.args], "schedule": self.schedule.to_json()}
        )


@dataclass(slots=True)
class CronSyncReport:
    """What a sync changed (names of cron jobs)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class CronRunner:
    """Syncs cron definitions into ``_cron_jobs`` and schedules each job's next run."""

    def __init__(self, jobs: ScheduledJobs) -> None:
        self.jobs = jobs
        jobs.completion_hooks.append(self._on_job_completed)

    @staticmethod
    def definitions(registry: FunctionRegistry) -> list[CronDefinition]:
        """The cron jobs of a registry, checked: each must run an existing mutation or action.

        Raises FunctionDefinitionError (so the load fails and the previous code
        keeps serving) when one does not.
        """
        crons = registry.crons
        if crons is None:
            return []
        if not isinstance(crons, CronJobs):
            raise FunctionDefinitionError(
                "functions/crons.py: `crons` must be a CronJobs() "
                f"(from syncline import CronJobs), got {type(crons).__name__}"
            )
        out = []
        for job in crons.jobs.values():
            try:
                path = job.path
            except SynclineError as exc:
                raise FunctionDefinitionError(
                    f"functions/crons.py: cron job {job.name!r}: {exc}"
                ) from None
            fn = registry.get(path)
            if fn is None:
                raise FunctionDefinitionError(
                    f"functions/crons.py: cron job {job.name!r} runs '{path}', which does not exist"
                )
            if fn.kind not in (FunctionKind.MUTATION, FunctionKind.ACTION):
                raise FunctionDefinitionError(
                    f"functions/crons.py: cron job {job.name!r} runs '{path}', a "
                    f"{fn.kind.value}: cron jobs run mutations and actions"
                )
            out.append(CronDefinition(job.name, fn.path or path, job.args, job.schedule))
        return out

    def sync(self, definitions: list[CronDefinition]) -> CronSyncReport:
        """Make ``_cron_jobs`` (and the pending runs) match ``definitions``, in one transaction."""
        report: CronSyncReport = self.jobs.database.write_sync(
            lambda tx: self._sync(tx, definitions)
        ).value
        for what, names in (
            ("added", report.added),
            ("updated", report.updated),
            ("removed", report.removed),
        ):
            if names:
                log.info("cron jobs %s: %s", what, ", ".join(names))
        return report

    def _sync(self, tx: Transaction, definitions: list[CronDefinition]) -> CronSyncReport:
        tx.limits = SYSTEM_LIMITS
        report = CronSyncReport()
        now = self.jobs.clock.now_ms()
        existing = {row["name"]: row for row in Query(tx, CRON_JOBS)}
        for definition in definitions:
            fields = definition.fields()
            row = existing.pop(definition.name, None)
            if row is None:
                next_run = definition.schedule.first_run(now)
                job_id = self.jobs.insert_job(tx, definition.path, definition.args, next_run)
                tx.insert(
                    CRON_JOBS,
                    {"name": definition.name, **fields, "nextRun": next_run, "jobId": job_id},
                )
                report.added.append(definition.name)
                continue
            changed = not all(values_equal(row.get(k), v) for k, v in fields.items())
            schedule_changed = not values_equal(row.get("schedule"), fields["schedule"])
            current = self._current_run(tx, row)
            state = current["state"]["kind"] if current is not None else None
            if state == IN_PROGRESS:
                # It finishes under the old definition; its successor follows the new one.
                if changed:
                    tx.patch(row["_id"], fields)
                    report.updated.append(definition.name)
                continue
            if state == PENDING and not changed:
                continue
            if state == PENDING:
                assert current is not None
                self.jobs.complete(tx, current, {"kind": CANCELED}, hooks=False)
            if state == PENDING and not schedule_changed:
                next_run = float(row["nextRun"])
            elif row.get("lastRun") is not None:
                next_run, _ = definition.schedule.next_run(float(row["lastRun"]), now)
            else:
                next_run = definition.schedule.first_run(now)
            job_id = self.jobs.insert_job(tx, definition.path, definition.args, next_run)
            tx.patch(row["_id"], {**fields, "nextRun": next_run, "jobId": job_id})
            if changed:
                report.updated.append(definition.name)
        for name, row in existing.items():
            current = self._current_run(tx, row)
            if current is not None and current["state"]["kind"] == PENDING:
                self.jobs.complete(tx, current, {"kind": CANCELED}, hooks=False)
            tx.delete(row["_id"])
            report.removed.append(name)
        return report

    @staticmethod
    def _current_run(tx: Transaction, row: dict[str, Any]) -> dict[str, Any] | None:
        job_id = row.get("jobId")
        return tx.get(job_id) if isinstance(job_id, str) else None

    def _on_job_completed(self, tx: Transaction, job: dict[str, Any]) -> None:
        """A run is over (success, failed or canceled): schedule the job's next run."""
        row = Query(tx, CRON_JOBS).with_index("by_job", lambda r: r.eq("jobId", job["_id"])).first()
        if row is None:
            return  # not a cron run, or its job was removed meanwhile
        schedule = CronSchedule.from_json(row["schedule"])
        next_run, skipped = schedule.next_run(float(job["scheduledTime"]), self.jobs.clock.now_ms())
        if skipped:
            log.warning(
                "Skipping %d run(s) of cron job %r (%s): they were due while the previous run "
                "was still going or the server was down",
                skipped,
                row["name"],
                schedule.describe(),
            )
        job_id = self.jobs.insert_job(tx, row["function"], row["args"][0], next_run)
        tx.patch(
            row["_id"],
            {
                "lastRun": job["scheduledTime"],
                "lastState": job["state"]["kind"],
                "nextRun": next_run,
                "jobId": job_id,
            },
        )

    def current_run_ids(self) -> frozenset[str]:
        """The ``_scheduled_functions`` ids of every cron job's current run."""

        def body(tx: Transaction) -> frozenset[str]:
            tx.limits = SYSTEM_LIMITS
            return frozenset(
                row["jobId"] for row in Query(tx, CRON_JOBS) if isinstance(row.get("jobId"), str)
            )

        return self.jobs.database.run_read(body).value
