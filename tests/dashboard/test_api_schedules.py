"""``_system/dashboard/schedules:*``: scheduled functions by state, cancel, cron jobs."""

from __future__ import annotations

from typing import Any

from dashboard.conftest import DASHBOARD_FILES, PREFIX, Board
from server.conftest import MakeServer
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.scheduling.jobs import failed

FIRST = {"numItems": 10, "cursor": None}
CRONS = {
    "crons.py": """
        from syncline import CronJobs

        crons = CronJobs()
        crons.cron("tidy", "15 4 * * *", "tasks:add", {"title": "tidy"})
        crons.daily("nightly", "tasks:later", {"delay": 5.0}, hour_utc=3, minute_utc=30)
    """,
}


def schedule(board: Board, delay_ms: float) -> str:
    run = board.action("functions:run", {"path": "tasks:later", "args": {"delay": delay_ms}})
    assert run["status"] == "success", run
    job_id: str = run["value"]
    return job_id


def jobs(board: Board, **args: Any) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = board.query("schedules:list", {"paginationOpts": FIRST, **args})[
        "page"
    ]
    return page


def test_list_shows_jobs_by_state_newest_first_and_cancel_cancels(board: Board) -> None:
    first, second = schedule(board, 1e9), schedule(board, 2e9)
    pending = jobs(board, state="pending")
    assert [j["_id"] for j in pending] == [second, first]
    job = pending[0]
    assert job["name"] == "tasks:add"
    assert job["args"] == [{"title": "later"}]
    assert job["state"] == {"kind": "pending"}
    assert job["scheduledTime"] > job["_creationTime"]
    assert [j["_id"] for j in jobs(board)] == [second, first]

    ws = board.admin_ws()
    ws.add(0, PREFIX + "schedules:list", {"state": "pending", "paginationOpts": FIRST})
    ws.until(lambda m: 0 in ws.state.results)
    assert board.mutation("schedules:cancel", {"id": first}) is None
    ws.until(lambda m: len(ws.state.value(0)["page"]) == 1)
    canceled = jobs(board, state="canceled")
    assert [j["_id"] for j in canceled] == [first]
    assert canceled[0]["state"] == {"kind": "canceled"}
    assert "completedTime" in canceled[0]

    again = board.error("mutation", "schedules:cancel", {"id": first})
    assert again["code"] == "NotPending"
    assert "canceled" in again["message"]
    not_a_job = board.error("mutation", "schedules:cancel", {"id": "nonsense"})
    assert not_a_job["code"] == "NotFound"
    assert jobs(board, state="pending")[0]["_id"] == second


def test_crons_show_schedule_next_run_and_last_outcome(make_server: MakeServer) -> None:
    board = Board(make_server({**DASHBOARD_FILES, **CRONS}))
    crons = board.query("schedules:crons")
    assert [c["name"] for c in crons] == ["nightly", "tidy"]
    nightly, tidy = crons
    assert nightly["function"] == "tasks:later"
    assert nightly["args"] == {"delay": 5}
    assert nightly["schedule"] == "cron '30 3 * * *' (UTC)"
    assert tidy["schedule"] == "cron '15 4 * * *' (UTC)"
    assert tidy["nextRun"] > board.server.app.clock.now_ms()
    assert tidy["lastRun"] is None and nightly["lastRun"] is None
    app = board.server.app
    jobs_table = app.scheduler.jobs

    def last_runs(tx: Transaction) -> None:
        job_id = jobs_table.insert_job(tx, "tasks:add", {"title": "tidy"}, 1000.0)
        jobs_table.complete(tx, tx.get(job_id) or {}, failed("boom"), hooks=False)
        for row in Query(tx, "_cron_jobs"):
            state = "failed" if row["name"] == "tidy" else "success"
            tx.patch(row["_id"], {"lastRun": 1000.0, "lastState": state})

    app.database.write_sync(last_runs)
    nightly, tidy = board.query("schedules:crons")
    assert nightly["lastRun"] == {"ts": 1000, "status": "success"}
    assert tidy["lastRun"] == {"ts": 1000, "status": "failure", "error": "boom"}
