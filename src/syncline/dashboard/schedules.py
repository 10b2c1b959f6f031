"""``_system/dashboard/schedules:*``: scheduled functions and cron jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.dashboard.errors import dashboard_error, user_errors
from syncline.database.query import Query
from syncline.functions.context import transaction_of
from syncline.functions.crons import CronSchedule
from syncline.functions.registration import RegisteredFunction, internal_mutation, internal_query
from syncline.scheduling.cron_runner import CRON_JOBS
from syncline.scheduling.jobs import (
    BY_STATE_AND_TIME,
    CANCELED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    SCHEDULED_FUNCTIONS,
    SUCCESS,
)
from syncline.values.validators import pagination_opts_validator, v

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.database.transaction import Transaction

__all__ = ["functions"]

_STATES = (PENDING, IN_PROGRESS, SUCCESS, FAILED, CANCELED)


def _last_error(tx: Transaction, row: dict[str, Any]) -> str | None:
    """The error of a cron job's last run, when it failed and its record is still kept."""
    last_run = row.get("lastRun")
    found = (
        Query(tx, SCHEDULED_FUNCTIONS)
        .with_index(
            BY_STATE_AND_TIME,
            lambda q: q.eq("state.kind", FAILED).eq("scheduledTime", last_run),
        )
        .filter(lambda q: q.eq(q.field("name"), row["function"]))
        .first()
    )
    return None if found is None else found["state"].get("error")


def _cron(tx: Transaction, row: dict[str, Any]) -> dict[str, Any]:
    last_run = row.get("lastRun")
    last: dict[str, Any] | None = None
    if last_run is not None:
        ok = row.get("lastState") == SUCCESS
        last = {"ts": last_run, "status": "success" if ok else "failure"}
        error = None if ok else _last_error(tx, row)
        if error is not None:
            last["error"] = error
    return {
        "name": row["name"],
        "schedule": CronSchedule.from_json(row["schedule"]).describe(),
        "function": row["function"],
        "args": row["args"][0] if row.get("args") else {},
        "nextRun": row.get("nextRun"),
        "lastRun": last,
    }


def functions(app: Application) -> dict[str, RegisteredFunction]:
    """The schedules page's system functions for ``app``, by path below ``_system/dashboard/``."""
    jobs = app.scheduler.jobs

    @internal_query(
        args={
            "state": v.optional(v.union(*(v.literal(state) for state in _STATES))),
            "paginationOpts": pagination_opts_validator,
        }
    )
    @user_errors
    def list_jobs(
        ctx: Any,
        paginationOpts: dict[str, Any],
        state: str | None = None,
    ) -> dict[str, Any]:
        tx = transaction_of(ctx)
        if state is None:
            # Newest scheduledTime first across states: every job is in the index under its
            # state, so the table's own order (creation) stands in for it.
            query = Query(tx, SCHEDULED_FUNCTIONS).order("desc")
        else:
            query = (
                Query(tx, SCHEDULED_FUNCTIONS)
                .with_index(BY_STATE_AND_TIME, lambda q: q.eq("state.kind", state))
                .order("desc")
            )
        return query.paginate(paginationOpts)

    @internal_mutation(args={"id": v.string()})
    @user_errors
    def cancel(ctx: Any, id: str) -> None:
        tx = transaction_of(ctx)
        if tx.table_name_of_id(id) != SCHEDULED_FUNCTIONS:
            raise dashboard_error("NotFound", f"{id!r} is not the id of a scheduled function")
        row = tx.get(id)
        if row is None or row["state"]["kind"] != PENDING:
            kind = "gone" if row is None else row["state"]["kind"]
            raise dashboard_error(
                "NotPending", f"Only a pending scheduled function can be canceled; {id} is {kind}"
            )
        jobs.cancel_in(tx, id)

    @internal_query
    @user_errors
    def crons(ctx: Any) -> list[dict[str, Any]]:
        tx = transaction_of(ctx)
        rows = Query(tx, CRON_JOBS).with_index("by_name")
        return [_cron(tx, row) for row in rows]

    return {"schedules:list": list_jobs, "schedules:cancel": cancel, "schedules:crons": crons}
