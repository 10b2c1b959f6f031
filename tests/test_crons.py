"""Cron jobs: ``CronJobs`` definitions, their sync into ``_cron_jobs``, and their runs.

All on a ManualClock that starts at 2023-11-14 22:13:20 UTC; no real sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeBackend, write_functions
from syncline import CronJobs, api, internal
from syncline.clock import ManualClock
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.errors import FunctionDefinitionError
from syncline.functions.crons import CronSchedule
from syncline.testing import TestBackend

MINUTE = 60_000.0
START = ManualClock().now_ms()  # 2023-11-14T22:13:20Z

WORK = """
import asyncio

from syncline import internal, internal_action, internal_mutation, internal_query, query, v


@internal_mutation(args={"tag": v.string()})
def tick(ctx, tag):
    ctx.db.insert("ticks", {
        "tag": tag, "now": ctx.now, "anonymous": ctx.auth.get_user_identity() is None,
    })


@internal_mutation
def fail(ctx):
    ctx.db.insert("ticks", {"tag": "never", "now": ctx.now, "anonymous": True})
    raise RuntimeError("cron failure")


@internal_query
def pending_runs(ctx):
    return len([j for j in ctx.db.system.query("_scheduled_functions").collect()
                if j["name"] == "work:slow" and j["state"]["kind"] == "pending"])


@internal_action
async def slow(ctx):
    # While a run is going, the job has no other pending run: one run at a time.
    pending = await ctx.run_query(internal.work.pending_runs, {})
    for _ in range(10):
        await asyncio.sleep(0)
    await ctx.run_mutation(internal.work.tick, {"tag": f"slow pending={int(pending)}"})


@query
def ticks(ctx):
    return [[t["tag"], t["now"]] for t in ctx.db.query("ticks").collect()]


@query
def jobs(ctx):
    return ctx.db.system.query("_scheduled_functions").collect()


@query
def count(ctx):
    return 0
"""


def crons_source(body: str) -> str:
    return "from syncline import CronJobs, internal\n\ncrons = CronJobs()\n" + textwrap.dedent(body)


def project(crons_body: str) -> dict[str, str]:
    return {"work.py": WORK, "crons.py": crons_source(crons_body)}


def cron_rows(t: TestBackend) -> dict[str, dict[str, Any]]:
    def body(tx: Transaction) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in Query(tx, "_cron_jobs")}

    return t.database.run_read(body).value


def ticks(t: TestBackend) -> list[tuple[str, float]]:
    return [(tag, now - START) for tag, now in t.query(api.work.ticks)]


def pending(t: TestBackend) -> list[dict[str, Any]]:
    return [j for j in t.query(api.work.jobs) if j["state"]["kind"] == "pending"]


def reload(t: TestBackend, crons_body: str) -> None:
    assert t.app.functions_dir is not None
    (t.app.functions_dir / "crons.py").write_text(crons_source(crons_body))
    t.app.load()


# ---------------------------------------------------------------------- definitions


def test_schedules_become_cron_expressions() -> None:
    crons = CronJobs()
    crons.hourly("h", "work:tick", minute_utc=7)
    crons.daily("d", "work:tick", hour_utc=3, minute_utc=30)
    crons.weekly("w", "work:tick", day_of_week="friday", hour_utc=9)
    crons.monthly("m", "work:tick", day=31, hour_utc=6, minute_utc=5)
    crons.cron("c", "  */5   * * * *", "work:tick", {"x": 1})
    crons.interval("i", "work:tick", minutes=5)
    expressions = {name: job.schedule.expression for name, job in crons.jobs.items()}
    assert expressions == {
        "h": "7 * * * *",
        "d": "30 3 * * *",
        "w": "0 9 * * 5",
        "m": "5 6 31 * *",
        "c": "*/5 * * * *",
        "i": None,
    }
    assert crons.jobs["i"].schedule.interval_ms == 5 * MINUTE
    assert crons.jobs["c"].args == {"x": 1.0}
    assert crons.jobs["d"].schedule.to_json() == {
        "type": "daily",
        "hourUTC": 3,
        "minuteUTC": 30,
        "cron": "30 3 * * *",
    }
    assert CronSchedule.from_json(crons.jobs["d"].schedule.to_json()) == crons.jobs["d"].schedule
    assert len(crons) == 6


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda c: c.interval("x", "work:tick"), "exactly one of"),
        (lambda c: c.interval("x", "work:tick", seconds=1, minutes=1), "exactly one of"),
        (lambda c: c.interval("x", "work:tick", seconds=0), "positive number"),
        (lambda c: c.interval("x", "work:tick", hours=float("inf")), "positive number"),
        (lambda c: c.cron("x", "* * * *", "work:tick"), "Invalid cron expression"),
        (lambda c: c.cron("x", "0 0 * * * *", "work:tick"), "Invalid cron expression"),
        (lambda c: c.cron("x", "61 * * * *", "work:tick"), "Invalid cron expression"),
        (lambda c: c.hourly("x", "work:tick", minute_utc=60), "minute_utc"),
        (lambda c: c.daily("x", "work:tick", hour_utc=24), "hour_utc"),
        (lambda c: c.weekly("x", "work:tick", day_of_week="funday", hour_utc=1), "day_of_week"),
        (lambda c: c.monthly("x", "work:tick", day=0, hour_utc=1), "day"),
        (lambda c: c.hourly("x", "work:tick", [1, 2]), "args must be a dict"),
        (lambda c: c.hourly("", "work:tick"), "non-empty"),
        (lambda c: c.hourly("caf\u00e9", "work:tick"), "printable ASCII"),
    ],
)
def test_bad_definitions_are_rejected(register: Any, message: str) -> None:
    with pytest.raises(FunctionDefinitionError, match=message):
        register(CronJobs())


def test_a_name_registered_twice_is_an_error() -> None:
    crons = CronJobs()
    crons.hourly("cleanup", "work:tick")
    with pytest.raises(FunctionDefinitionError, match="registered twice: 'cleanup'"):
        crons.daily("cleanup", "work:tick", hour_utc=1)


def test_importing_cron_jobs_loads_no_database() -> None:
    code = (
        "import sys; from syncline import CronJobs; c = CronJobs(); "
        "c.cron('x', '*/5 * * * *', 'a:b'); "
        "print(any(m.startswith(('syncline.database', 'syncline.scheduling', 'starlette')) "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_next_run_skips_missed_occurrences() -> None:
    every_minute = CronSchedule("interval", interval_ms=MINUTE)
    assert every_minute.first_run(START) == START
    assert every_minute.next_run(START, START + 10) == (START + MINUTE, 0)
    # Finished 3.5 intervals late: three runs skipped, the next is the first one ahead.
    assert every_minute.next_run(START, START + 3.5 * MINUTE) == (START + 4 * MINUTE, 3)
    five = CronSchedule("cron", expression="*/5 * * * *")

    def utc(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000

    assert five.first_run(START) == utc("2023-11-14T22:15:00")
    assert five.first_run(utc("2023-11-14T22:15:00")) == utc("2023-11-14T22:15:00")
    assert five.next_run(utc("2023-11-14T22:15:00"), START) == (utc("2023-11-14T22:20:00"), 0)
    assert five.next_run(utc("2023-11-14T22:15:00"), utc("2023-11-14T22:31:00")) == (
        utc("2023-11-14T22:35:00"),
        3,
    )
    monthly = CronSchedule("monthly", expression="0 0 31 * *")
    assert monthly.next_run(utc("2024-01-31T00:00:00"), utc("2024-02-01T00:00:00")) == (
        utc("2024-03-31T00:00:00"),
        0,
    )


# ---------------------------------------------------------------------- sync and runs


def test_load_syncs_definitions_and_schedules_first_runs(make_backend: MakeBackend) -> None:
    t = make_backend(
        project(
            """
            crons.interval("every minute", internal.work.tick, {"tag": "i"}, minutes=1)
            crons.cron("five", "*/5 * * * *", internal.work.tick, {"tag": "c"})
            """
        )
    )
    rows = cron_rows(t)
    assert set(rows) == {"every minute", "five"}
    assert rows["every minute"]["function"] == "work:tick"
    assert rows["every minute"]["args"] == [{"tag": "i"}]
    assert rows["every minute"]["schedule"]["type"] == "interval"
    assert rows["every minute"]["nextRun"] == START  # first run when deployed
    assert rows["five"]["nextRun"] == START + 100_000  # 22:15:00
    jobs = {j["_id"]: j for j in t.query(api.work.jobs)}
    for row in rows.values():
        job = jobs[row["jobId"]]
        assert job["state"] == {"kind": "pending"}
        assert job["scheduledTime"] == row["nextRun"]
        assert job["name"] == "work:tick"
    # _cron_jobs is private.
    with pytest.raises(Exception, match="not a system table readable"):
        t.run(lambda ctx: ctx.db.system.query("_cron_jobs").collect())


def test_interval_jobs_run_every_interval_one_pending_run_at_a_time(
    make_backend: MakeBackend,
) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "i"}, seconds=30)'))
    t.advance(2 * MINUTE)
    assert ticks(t) == [("i", 0), ("i", 30_000), ("i", 60_000), ("i", 90_000), ("i", 120_000)]
    assert len(pending(t)) == 1
    row = cron_rows(t)["i"]
    assert row["lastRun"] == START + 120_000
    assert row["lastState"] == "success"
    assert row["nextRun"] == START + 150_000


def test_cron_expression_jobs_run_at_their_times_in_utc(make_backend: MakeBackend) -> None:
    t = make_backend(
        project(
            """
            crons.cron("five", "*/5 * * * *", internal.work.tick, {"tag": "five"})
            crons.daily("daily", internal.work.tick, {"tag": "daily"}, hour_utc=23)
            """
        )
    )
    t.advance(50 * MINUTE)  # to 23:03:20
    assert ticks(t) == [
        ("five", 100_000),  # 22:15
        ("five", 400_000),  # 22:20
        ("five", 700_000),
        ("five", 1_000_000),
        ("five", 1_300_000),
        ("five", 1_600_000),
        ("five", 1_900_000),
        ("five", 2_200_000),  # 22:50
        ("five", 2_500_000),  # 22:55
        ("daily", 2_800_000),  # 23:00 (the cron job at 23:00 comes next)
        ("five", 2_800_000),
    ]


def test_missed_runs_are_skipped_not_back_filled(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "i"}, minutes=1)'))
    t.run_scheduled_functions()
    # The server is down (nothing runs) for 10.5 minutes.
    t.clock.advance(10.5 * MINUTE)
    with caplog.at_level(logging.WARNING, logger="syncline.crons"):
        assert t.run_scheduled_functions() == 1  # the overdue run, once
    assert ticks(t) == [("i", 0), ("i", 10.5 * MINUTE)]
    (next_run,) = pending(t)
    assert next_run["scheduledTime"] == START + 11 * MINUTE
    assert "Skipping 9 run(s) of cron job 'i'" in caplog.text


def test_a_run_never_overlaps_the_next(make_backend: MakeBackend) -> None:
    t = make_backend(project('crons.interval("slow", internal.work.slow, seconds=1)'))
    t.advance(3000)
    assert [tag for tag, _ in ticks(t)] == ["slow pending=0"] * 4
    assert len(pending(t)) == 1


@pytest.fixture
def two_crons(make_backend: MakeBackend) -> TestBackend:
    return make_backend(
        project(
            """
            crons.interval("a", internal.work.tick, {"tag": "a"}, minutes=10)
            crons.hourly("b", internal.work.tick, {"tag": "b"}, minute_utc=30)
            """
        )
    )


def test_reload_updates_adds_and_removes_jobs(two_crons: TestBackend) -> None:
    t = two_crons
    t.run_scheduled_functions()  # "a" ran at START
    before = cron_rows(t)
    reload(
        t,
        """
        crons.interval("a", internal.work.tick, {"tag": "a2"}, minutes=10)
        crons.daily("c", internal.work.tick, {"tag": "c"}, hour_utc=0)
        """,
    )
    after = cron_rows(t)
    assert set(after) == {"a", "c"}
    jobs = {j["_id"]: j for j in t.query(api.work.jobs)}
    # "a": same schedule, new args: its pending run is replaced at the same time.
    assert jobs[before["a"]["jobId"]]["state"] == {"kind": "canceled"}
    assert after["a"]["nextRun"] == before["a"]["nextRun"] == START + 10 * MINUTE
    assert jobs[after["a"]["jobId"]]["args"] == [{"tag": "a2"}]
    # "b" removed: its pending run is canceled.
    assert jobs[before["b"]["jobId"]]["state"] == {"kind": "canceled"}
    # "c" added.
    assert jobs[after["c"]["jobId"]]["state"] == {"kind": "pending"}
    assert len(pending(t)) == 2
    # A new schedule counts from the last run.
    reload(
        t,
        """
        crons.interval("a", internal.work.tick, {"tag": "a2"}, minutes=3)
        crons.daily("c", internal.work.tick, {"tag": "c"}, hour_utc=0)
        """,
    )
    assert cron_rows(t)["a"]["nextRun"] == START + 3 * MINUTE
    t.advance(4 * MINUTE)
    assert ticks(t) == [("a", 0), ("a2", 3 * MINUTE)]


def test_reloading_unchanged_definitions_changes_nothing(two_crons: TestBackend) -> None:
    t = two_crons
    before = cron_rows(t)
    jobs_before = t.query(api.work.jobs)
    t.app.load()
    assert cron_rows(t) == before
    assert t.query(api.work.jobs) == jobs_before


def test_definitions_must_name_a_mutation_or_action(two_crons: TestBackend) -> None:
    t = two_crons
    before = cron_rows(t)
    with pytest.raises(FunctionDefinitionError, match="'work:nope', which does not exist"):
        reload(t, 'crons.hourly("x", "work:nope")')
    with pytest.raises(FunctionDefinitionError, match="a query: cron jobs run mutations"):
        reload(t, 'crons.hourly("x", internal.work.count)')
    assert cron_rows(t) == before  # the failed loads changed nothing


def test_failed_runs_are_recorded_and_the_job_goes_on(make_backend: MakeBackend) -> None:
    t = make_backend(project('crons.interval("f", internal.work.fail, minutes=1)'))
    t.advance(MINUTE)
    failed = [j for j in t.query(api.work.jobs) if j["state"]["kind"] == "failed"]
    assert [j["state"]["error"] for j in failed] == ["Uncaught RuntimeError: cron failure"] * 2
    assert ticks(t) == []
    assert cron_rows(t)["f"]["lastState"] == "failed"
    assert len(pending(t)) == 1


def test_crons_run_without_identity(make_backend: MakeBackend) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "i"}, minutes=1)'))
    t.run_scheduled_functions()
    assert [doc["anonymous"] for doc in t.run(lambda ctx: ctx.db.query("ticks").collect())] == [
        True
    ]


def test_canceling_a_run_schedules_the_next(make_backend: MakeBackend) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "i"}, minutes=1)'))
    (first,) = pending(t)
    t.run(lambda ctx: ctx.scheduler.cancel(first["_id"]))
    (second,) = pending(t)
    assert second["scheduledTime"] == START + MINUTE
    t.advance(MINUTE)
    assert ticks(t) == [("i", MINUTE)]


def test_finish_scheduled_functions_stops_when_only_cron_runs_remain(
    make_backend: MakeBackend,
) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "cron"}, minutes=2)'))
    t.run(lambda ctx: ctx.scheduler.run_after(5 * MINUTE, internal.work.tick, {"tag": "one-off"}))
    t.finish_scheduled_functions()
    assert ticks(t) == [
        ("cron", 0),
        ("cron", 2 * MINUTE),
        ("cron", 4 * MINUTE),
        ("one-off", 5 * MINUTE),
    ]
    assert len(pending(t)) == 1


def test_restart_keeps_one_schedule_per_job(tmp_path: Path) -> None:
    functions = write_functions(
        tmp_path / "functions",
        project('crons.interval("i", internal.work.tick, {"tag": "i"}, minutes=1)'),
    )
    clock = ManualClock()
    with TestBackend(functions, clock=clock, data_dir=tmp_path / "data") as t:
        t.advance(MINUTE)
        rows = cron_rows(t)
    clock.advance(5.5 * MINUTE)  # down for a while
    with TestBackend(functions, clock=clock, data_dir=tmp_path / "data") as t:
        assert cron_rows(t) == rows
        assert len(pending(t)) == 1
        t.run_scheduled_functions()
        assert [now for _, now in ticks(t)] == [0, MINUTE, 6.5 * MINUTE]
        assert pending(t)[0]["scheduledTime"] == START + 7 * MINUTE


def test_a_lost_current_run_is_healed_on_load(two_crons: TestBackend) -> None:
    t = two_crons
    row = cron_rows(t)["a"]
    t.database.write_sync(lambda tx: tx.delete(row["jobId"]))  # as if it went missing
    t.app.load()
    healed = cron_rows(t)["a"]
    assert healed["jobId"] != row["jobId"]
    assert {j["_id"] for j in pending(t)} == {healed["jobId"], cron_rows(t)["b"]["jobId"]}


def test_the_background_loop_runs_crons(make_backend: MakeBackend) -> None:
    t = make_backend(project('crons.interval("i", internal.work.tick, {"tag": "i"}, seconds=10)'))

    async def main() -> None:
        await t.app.start()
        try:
            await t.app.scheduler.wait_idle()
            for _ in range(3):
                t.clock.advance(10_000)
                await t.app.scheduler.wait_idle()
        finally:
            await t.app.stop()

    asyncio.run(main())
    assert ticks(t) == [("i", 0), ("i", 10_000), ("i", 20_000), ("i", 30_000)]


def test_a_crons_module_without_crons_object_is_fine(make_backend: MakeBackend) -> None:
    t = make_backend({"work.py": WORK, "crons.py": "X = 1\n"})
    assert cron_rows(t) == {}


def test_crons_must_be_a_cron_jobs_object(make_backend: MakeBackend) -> None:
    with pytest.raises(FunctionDefinitionError, match="must be a CronJobs"):
        make_backend({"work.py": WORK, "crons.py": "crons = [1, 2]\n"})
