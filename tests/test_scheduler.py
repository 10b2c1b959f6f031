"""Scheduled functions: ``ctx.scheduler``, ``_scheduled_functions`` and the job executor.

Everything runs on a ManualClock: time moves only when a test moves it, and
nothing sleeps for real (the one test that needs a server uses a real socket
but still a manual clock for the scheduler).
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeBackend, write_functions
from syncline import ConvexError, api, internal
from syncline._devtools import free_port
from syncline.clock import ManualClock
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.errors import InvalidId, InvalidRequest, LimitExceeded
from syncline.scheduling.job_runner import DEFAULT_RETENTION_MS
from syncline.scheduling.jobs import (
    IN_PROGRESS,
    MAX_JOB_ARGS_BYTES,
    TRANSIENT_ACTION_ERROR,
    ScheduledJobs,
)
from syncline.testing import TestBackend

JOBS = """
import asyncio

from syncline import (
    ConvexError, action, internal, internal_action, internal_mutation, internal_query,
    mutation, query, v,
)


@mutation(args={"delay": v.number(), "label": v.string()})
def later(ctx, delay, label):
    return ctx.scheduler.run_after(delay, internal.jobs.record, {"label": label})


@mutation(args={"at": v.any(), "label": v.string()})
def at(ctx, at, label):
    return ctx.scheduler.run_at(at, internal.jobs.record, {"label": label})


@mutation(args={"delay": v.number(), "label": v.string()})
def later_action(ctx, delay, label):
    return ctx.scheduler.run_after(delay, internal.jobs.act, {"label": label})


@mutation(args={"delay": v.number(), "target": v.string(), "args": v.any()})
def later_any(ctx, delay, target, args):
    return ctx.scheduler.run_after(delay, target, args)


@mutation(args={"items": v.array(v.object({"delay": v.number(), "label": v.string()}))})
def many(ctx, items):
    return [ctx.scheduler.run_after(i["delay"], internal.jobs.record, {"label": i["label"]})
            for i in items]


@mutation(args={"n": v.number()})
def schedule_n(ctx, n):
    for i in range(int(n)):
        ctx.scheduler.run_after(0, internal.jobs.record, {"label": f"n{i}"})


@mutation(args={"sizes": v.array(v.number())})
def schedule_big(ctx, sizes):
    return [ctx.scheduler.run_after(0, internal.jobs.blob, {"data": "x" * int(s)})
            for s in sizes]


@mutation
def schedule_then_fail(ctx):
    ctx.scheduler.run_after(0, internal.jobs.record, {"label": "never"})
    raise ConvexError("nope")


@mutation(args={"id": v.string()})
def cancel(ctx, id):
    ctx.scheduler.cancel(id)


@internal_mutation(args={"label": v.string()})
def record(ctx, label):
    ctx.db.insert("effects", {
        "label": label, "now": ctx.now, "anonymous": ctx.auth.get_user_identity() is None,
    })


@internal_mutation(args={"data": v.string()})
def blob(ctx, data):
    ctx.db.insert("effects", {"label": f"blob{len(data)}", "now": ctx.now, "anonymous": True})


@internal_mutation(args={"label": v.string()})
def explode(ctx, label):
    ctx.db.insert("effects", {"label": label, "now": ctx.now, "anonymous": True})
    raise ValueError(f"boom {label}")


@internal_mutation(args={"n": v.number()})
def typed(ctx, n):
    ctx.db.insert("effects", {"label": f"typed{n}", "now": ctx.now, "anonymous": True})


@internal_query
def list_effects(ctx):
    return [e["label"] for e in ctx.db.query("effects").collect()]


@query
def effects(ctx):
    return [e["label"] for e in ctx.db.query("effects").collect()]


@query
def effect_docs(ctx):
    return ctx.db.query("effects").collect()


@query
def jobs(ctx):
    return ctx.db.system.query("_scheduled_functions").collect()


@query(args={"id": v.string()})
def job(ctx, id):
    return ctx.db.system.get(id)


@internal_query(args={"name": v.string(), "kind": v.string()})
def job_ids(ctx, name, kind):
    return [j["_id"] for j in ctx.db.system.query("_scheduled_functions").collect()
            if j["name"] == name and j["state"]["kind"] == kind]


@internal_action(args={"label": v.string()})
async def act(ctx, label):
    mine = await ctx.run_query(internal.jobs.job_ids, {"name": "jobs:act", "kind": "inProgress"})
    anonymous = ctx.auth.get_user_identity() is None
    await ctx.run_mutation(
        internal.jobs.record,
        {"label": f"{label}:running={len(mine)}:anonymous={anonymous}"},
    )
    return label


@internal_action(args={"label": v.string()})
async def act_fail(ctx, label):
    raise RuntimeError(f"action {label} failed")


@action
async def chain(ctx):
    first = await ctx.scheduler.run_after(0, internal.jobs.record, {"label": "from-action"})
    nested = await ctx.scheduler.run_after(1000, internal.jobs.act, {"label": "nested"})
    doomed = await ctx.scheduler.run_at(ctx.now + 2000, internal.jobs.record, {"label": "doomed"})
    await ctx.scheduler.cancel(doomed)
    return [first, nested, doomed]


@action
async def schedule_then_raise(ctx):
    await ctx.scheduler.run_after(0, internal.jobs.record, {"label": "kept"})
    raise RuntimeError("after scheduling")


@internal_action
async def cancel_self_then_schedule(ctx):
    mine = await ctx.run_query(
        internal.jobs.job_ids, {"name": "jobs:cancel_self_then_schedule", "kind": "inProgress"}
    )
    await ctx.scheduler.cancel(mine[0])
    return await ctx.scheduler.run_after(0, internal.jobs.record, {"label": "after-cancel"})


@internal_mutation
def enter(ctx):
    doc = ctx.db.query("gauge").first()
    if doc is None:
        ctx.db.insert("gauge", {"now": 1.0, "max": 1.0})
    else:
        ctx.db.patch(doc["_id"], {"now": doc["now"] + 1, "max": max(doc["max"], doc["now"] + 1)})


@internal_mutation
def leave(ctx):
    doc = ctx.db.query("gauge").first()
    ctx.db.patch(doc["_id"], {"now": doc["now"] - 1})


@internal_action
async def busy(ctx):
    await ctx.run_mutation(internal.jobs.enter, {})
    for _ in range(20):
        await asyncio.sleep(0)
    await ctx.run_mutation(internal.jobs.leave, {})


@query
def gauge(ctx):
    return ctx.db.query("gauge").first()


@mutation
def open_gate(ctx):
    ctx.db.insert("gate", {"open": True})


@internal_query
def gate_open(ctx):
    return ctx.db.query("gate").first() is not None


@internal_action
async def wait_for_gate(ctx):
    # Polls the database (the server runs in another thread): the test opens the gate
    # once it has seen this action in progress.
    while not await ctx.run_query(internal.jobs.gate_open, {}):
        await asyncio.sleep(0.005)


@internal_action
async def hang(ctx):
    await asyncio.Event().wait()  # until cancelled


@mutation
def schedule_gated(ctx):
    return ctx.scheduler.run_after(1000, internal.jobs.wait_for_gate, {})


@query
def count_q(ctx):
    return 1
"""

FILES = {"jobs.py": JOBS}


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a timeout (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            async with asyncio.timeout(20):
                await fn(*args, **kwargs)

        asyncio.run(main())

    return wrapper


def job_rows(t: TestBackend) -> list[dict[str, Any]]:
    return t.query(api.jobs.jobs)  # type: ignore[no-any-return]


def states(t: TestBackend) -> dict[str, str]:
    return {row["_id"]: row["state"]["kind"] for row in job_rows(t)}


@pytest.fixture
def t(make_backend: MakeBackend) -> TestBackend:
    return make_backend(FILES)


# ---------------------------------------------------------------------- scheduling


def test_run_after_writes_a_pending_row_in_the_mutations_transaction(t: TestBackend) -> None:
    now = t.clock.now_ms()
    job_id = t.mutation(api.jobs.later, {"delay": 1500, "label": "a"})
    row = t.query(api.jobs.job, {"id": job_id})
    assert row == {
        "_id": job_id,
        "_creationTime": row["_creationTime"],
        "name": "jobs:record",
        "args": [{"label": "a"}],
        "scheduledTime": now + 1500,
        "state": {"kind": "pending"},
    }
    assert t.database.catalog.table_by_number(1).name == "_scheduled_functions"  # type: ignore[union-attr]
    # Nothing runs before its time.
    assert t.run_scheduled_functions() == 0
    assert t.query(api.jobs.effects) == []


def test_a_mutation_that_fails_schedules_nothing(t: TestBackend) -> None:
    with pytest.raises(ConvexError):
        t.mutation(api.jobs.schedule_then_fail)
    assert job_rows(t) == []
    t.advance(10_000)
    assert t.query(api.jobs.effects) == []


def test_jobs_run_in_scheduled_time_order_fifo_among_equal_times(t: TestBackend) -> None:
    t.mutation(
        api.jobs.many,
        {
            "items": [
                {"delay": 3000, "label": "d"},
                {"delay": 1000, "label": "b"},
                {"delay": 0, "label": "a1"},
                {"delay": 0, "label": "a2"},
                {"delay": 2000, "label": "c"},
                {"delay": 1000, "label": "b2"},
            ]
        },
    )
    start = t.clock.now_ms()
    assert t.advance(3000) == 6
    docs = t.query(api.jobs.effect_docs)
    assert [d["label"] for d in docs] == ["a1", "a2", "b", "b2", "c", "d"]
    # Each ran at its own scheduled time (ctx.now is the run's start time).
    assert [d["now"] - start for d in docs] == [0, 0, 1000, 1000, 2000, 3000]


def test_run_at_in_the_past_runs_as_soon_as_possible(t: TestBackend) -> None:
    job_id = t.mutation(api.jobs.at, {"at": t.clock.now_ms() - 60_000, "label": "late"})
    assert t.run_scheduled_functions() == 1
    assert t.query(api.jobs.effects) == ["late"]
    assert states(t) == {job_id: "success"}


def test_run_at_accepts_an_aware_datetime(t: TestBackend) -> None:
    def schedule(ctx: Any) -> str:
        when = datetime.fromtimestamp((t.clock.now_ms() + 5000) / 1000, tz=UTC)
        return ctx.scheduler.run_at(when, internal.jobs.record, {"label": "dt"})  # type: ignore[no-any-return]

    job_id = t.run(schedule)
    assert t.query(api.jobs.job, {"id": job_id})["scheduledTime"] == t.clock.now_ms() + 5000


def test_every_state_transition(t: TestBackend) -> None:
    start = t.clock.now_ms()
    ok = t.mutation(api.jobs.later, {"delay": 0, "label": "ok"})
    bad = t.mutation(
        api.jobs.later_any, {"delay": 0, "target": "jobs:explode", "args": {"label": "x"}}
    )
    acted = t.mutation(api.jobs.later_action, {"delay": 0, "label": "act"})
    act_bad = t.mutation(
        api.jobs.later_any, {"delay": 0, "target": "jobs:act_fail", "args": {"label": "y"}}
    )
    canceled = t.mutation(api.jobs.later, {"delay": 10, "label": "canceled"})
    assert set(states(t).values()) == {"pending"}
    t.mutation(api.jobs.cancel, {"id": canceled})
    t.advance(100)
    rows = {row["_id"]: row for row in job_rows(t)}
    assert rows[ok]["state"] == {"kind": "success"}
    # A failed mutation's writes are rolled back; the error is recorded.
    assert rows[bad]["state"] == {"kind": "failed", "error": "Uncaught ValueError: boom x"}
    assert rows[acted]["state"] == {"kind": "success"}
    assert rows[act_bad]["state"] == {
        "kind": "failed",
        "error": "Uncaught RuntimeError: action y failed",
    }
    assert rows[canceled]["state"] == {"kind": "canceled"}
    # All completed (or were canceled) at the start time: the zero-delay jobs ran at once.
    assert {row["completedTime"] for row in rows.values()} == {start}
    # The action saw itself inProgress while it ran (committed before it started).
    assert sorted(t.query(api.jobs.effects)) == ["act:running=1:anonymous=True", "ok"]


def test_cancel(t: TestBackend) -> None:
    job_id = t.mutation(api.jobs.later, {"delay": 1000, "label": "never"})
    t.clock.advance(500)
    t.mutation(api.jobs.cancel, {"id": job_id})
    row = t.query(api.jobs.job, {"id": job_id})
    assert row["state"] == {"kind": "canceled"}
    assert row["completedTime"] == t.clock.now_ms()
    t.advance(5000)
    assert t.query(api.jobs.effects) == []
    # Canceling a completed job is a no-op.
    done = t.mutation(api.jobs.later, {"delay": 0, "label": "done"})
    t.run_scheduled_functions()
    t.mutation(api.jobs.cancel, {"id": done})
    assert t.query(api.jobs.job, {"id": done})["state"] == {"kind": "success"}
    # An id of another table is rejected.
    other = t.run(lambda ctx: ctx.db.insert("things", {}))
    with pytest.raises(InvalidId, match="Invalid scheduled function ID"):
        t.mutation(api.jobs.cancel, {"id": other})


def test_actions_schedule_cancel_and_chain_more_jobs(t: TestBackend) -> None:
    first, nested, doomed = t.action(api.jobs.chain)
    assert states(t) == {first: "pending", nested: "pending", doomed: "canceled"}
    t.finish_scheduled_functions()
    assert t.query(api.jobs.effects) == ["from-action", "nested:running=1:anonymous=True"]
    assert states(t) == {first: "success", nested: "success", doomed: "canceled"}


def test_scheduling_from_an_action_is_not_undone_when_it_fails(t: TestBackend) -> None:
    with pytest.raises(RuntimeError, match="after scheduling"):
        t.action(api.jobs.schedule_then_raise)
    t.run_scheduled_functions()
    assert t.query(api.jobs.effects) == ["kept"]


def test_what_a_canceled_running_action_schedules_is_canceled(t: TestBackend) -> None:
    job_id = t.mutation(
        api.jobs.later_any, {"delay": 0, "target": "jobs:cancel_self_then_schedule", "args": {}}
    )
    t.run_scheduled_functions()
    rows = {row["_id"]: row for row in job_rows(t)}
    assert rows[job_id]["state"] == {"kind": "canceled"}  # stays canceled after it returns
    (after,) = [r for r in rows.values() if r["args"] == [{"label": "after-cancel"}]]
    assert after["state"] == {"kind": "canceled"}
    assert t.query(api.jobs.effects) == []


# ---------------------------------------------------------------------- targets and args


def test_scheduling_a_query_or_a_missing_function_is_an_error(t: TestBackend) -> None:
    with pytest.raises(InvalidRequest, match="nonexistent path 'jobs:nope'") as missing:
        t.mutation(api.jobs.later_any, {"delay": 0, "target": "jobs:nope", "args": {}})
    assert missing.value.code == "InvalidScheduledFunction"
    with pytest.raises(InvalidRequest, match="which is a query") as a_query:
        t.mutation(api.jobs.later_any, {"delay": 0, "target": "jobs:count_q", "args": {}})
    assert a_query.value.code == "InvalidScheduledFunction"
    with pytest.raises(InvalidRequest) as bad_path:
        t.mutation(api.jobs.later_any, {"delay": 0, "target": "not a path!", "args": {}})
    assert bad_path.value.code == "InvalidFunctionPath"
    assert job_rows(t) == []


def test_args_are_validated_when_the_job_runs(t: TestBackend) -> None:
    job_id = t.mutation(
        api.jobs.later_any, {"delay": 0, "target": "jobs:typed", "args": {"n": "three"}}
    )
    t.run_scheduled_functions()
    state = t.query(api.jobs.job, {"id": job_id})["state"]
    assert state["kind"] == "failed"
    assert state["error"].startswith("ArgumentValidationError:")
    assert "three" in state["error"]
    assert t.query(api.jobs.effects) == []


def test_a_target_removed_before_it_runs_fails_the_job(t: TestBackend) -> None:
    job_id = t.mutation(api.jobs.later, {"delay": 1000, "label": "x"})
    functions = t.app.functions_dir
    assert functions is not None
    (functions / "jobs.py").write_text(JOBS.replace("def record(", "def renamed("))
    t.app.load()
    t.advance(1000)
    assert t.query(api.jobs.job, {"id": job_id})["state"] == {
        "kind": "failed",
        "error": "Could not find function for 'jobs:record'",
    }


def test_scheduled_functions_run_without_identity(t: TestBackend) -> None:
    user = t.with_identity({"subject": "alice", "name": "Alice"})
    user.mutation(api.jobs.later, {"delay": 0, "label": "m"})
    user.mutation(api.jobs.later_action, {"delay": 0, "label": "a"})
    t.run_scheduled_functions()
    docs = t.query(api.jobs.effect_docs)
    assert sorted(d["label"] for d in docs) == ["a:running=1:anonymous=True", "m"]
    assert all(d["anonymous"] for d in docs)


# ---------------------------------------------------------------------- limits


def test_at_most_1000_functions_per_mutation(t: TestBackend) -> None:
    with pytest.raises(LimitExceeded) as exc:
        t.mutation(api.jobs.schedule_n, {"n": 1001})
    assert exc.value.code == "TooManyFunctionsScheduled"
    assert job_rows(t) == []
    t.mutation(api.jobs.schedule_n, {"n": 1000})
    assert len(job_rows(t)) == 1000


def test_argument_size_limits(t: TestBackend) -> None:
    mib = 1 << 20
    with pytest.raises(LimitExceeded) as one:
        t.mutation(api.jobs.schedule_big, {"sizes": [MAX_JOB_ARGS_BYTES]})
    assert one.value.code == "ScheduledFunctionArgumentsTooLarge"
    with pytest.raises(LimitExceeded) as total:
        t.mutation(api.jobs.schedule_big, {"sizes": [3.5 * mib] * 5})
    assert total.value.code == "ScheduledFunctionsArgumentsTooLarge"
    assert job_rows(t) == []
    # Up to 4 MiB per job works (larger than a user document may be).
    (job_id,) = t.mutation(api.jobs.schedule_big, {"sizes": [3 * mib]})
    t.run_scheduled_functions()
    assert t.query(api.jobs.effects) == [f"blob{3 * mib}"]
    assert states(t) == {job_id: "success"}


@pytest.mark.parametrize("delay", [-1, math.inf, math.nan, 6 * 365 * 24 * 3600 * 1000.0])
def test_run_after_rejects_bad_delays(t: TestBackend, delay: float) -> None:
    with pytest.raises(InvalidRequest) as exc:
        t.mutation(api.jobs.later, {"delay": delay, "label": "x"})
    assert exc.value.code == "InvalidScheduledFunctionDelay"


@pytest.mark.parametrize(
    "offset_ms", [6 * 365 * 24 * 3600 * 1000.0, -6 * 365 * 24 * 3600 * 1000.0, "soon", None]
)
def test_run_at_must_be_within_five_years(t: TestBackend, offset_ms: Any) -> None:
    at = t.clock.now_ms() + offset_ms if isinstance(offset_ms, float) else offset_ms
    with pytest.raises(InvalidRequest) as exc:
        t.mutation(api.jobs.at, {"at": at, "label": "x"})
    assert exc.value.code == "InvalidScheduledFunctionDelay"


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="timezone-aware"):
        ScheduledJobs.time_at(datetime(2030, 1, 1), 0.0)


# ---------------------------------------------------------------------- exactly once


def test_a_stale_dispatch_of_a_canceled_mutation_rolls_back(t: TestBackend) -> None:
    job_id = t.mutation(api.jobs.later, {"delay": 0, "label": "raced"})
    stale = t.query(api.jobs.job, {"id": job_id})
    t.mutation(api.jobs.cancel, {"id": job_id})
    # The executor read the row while it was pending; the cancel committed before it ran.
    asyncio.run(t.app.scheduler._run_job(stale))
    assert t.query(api.jobs.effects) == []
    assert states(t) == {job_id: "canceled"}


def test_two_dispatches_of_one_job_run_it_once(t: TestBackend) -> None:
    m = t.mutation(api.jobs.later, {"delay": 0, "label": "m"})
    a = t.mutation(api.jobs.later_action, {"delay": 0, "label": "a"})
    rows = [t.query(api.jobs.job, {"id": m}), t.query(api.jobs.job, {"id": a})]
    scheduler = t.app.scheduler

    async def twice() -> None:
        await asyncio.gather(*(scheduler._run_job(row) for row in rows + rows))

    asyncio.run(twice())
    assert sorted(t.query(api.jobs.effects)) == ["a:running=1:anonymous=True", "m"]
    assert states(t) == {m: "success", a: "success"}


def test_a_transient_commit_failure_is_retried_not_reported(
    t: TestBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = t.mutation(api.jobs.later, {"delay": 0, "label": "once"})
    persistence = t.database.persistence
    original = persistence.commit_write
    failures = []

    def flaky(conn: Any) -> None:
        if not failures:
            failures.append(1)
            persistence.abort_write(conn)  # a failed commit ends the write (its contract)
            raise OSError("disk I/O error (injected)")
        original(conn)

    monkeypatch.setattr(persistence, "commit_write", flaky)
    t.app.scheduler.retry_initial_s = 0.0
    assert t.run_scheduled_functions() == 1
    assert failures == [1]
    assert t.query(api.jobs.effects) == ["once"]
    assert states(t) == {job_id: "success"}


# ---------------------------------------------------------------------- retention


def test_completed_rows_are_removed_after_the_retention_period(t: TestBackend) -> None:
    done = t.mutation(api.jobs.later, {"delay": 0, "label": "done"})
    canceled = t.mutation(api.jobs.later, {"delay": 100_000, "label": "c"})
    t.mutation(api.jobs.cancel, {"id": canceled})
    far = t.mutation(api.jobs.later, {"delay": 30 * 24 * 3600 * 1000, "label": "far"})
    t.run_scheduled_functions()
    assert DEFAULT_RETENTION_MS == 7 * 24 * 3600 * 1000
    t.advance(DEFAULT_RETENTION_MS - 1)
    assert set(states(t)) == {done, canceled, far}
    t.advance(1)
    assert states(t) == {far: "pending"}  # pending rows are never removed


def test_retention_is_configurable(t: TestBackend) -> None:
    t.app.scheduler.retention_ms = 1000
    job_id = t.mutation(api.jobs.later, {"delay": 0, "label": "x"})
    t.run_scheduled_functions()
    t.advance(999)
    assert states(t) == {job_id: "success"}
    t.advance(1)
    assert states(t) == {}


# ---------------------------------------------------------------------- the background loop


@run_async
async def test_the_loop_wakes_exactly_when_a_job_is_due(t: TestBackend) -> None:
    scheduler = t.app.scheduler
    await t.app.start()
    try:
        t.mutation(api.jobs.later, {"delay": 1000, "label": "x"})
        await scheduler.wait_idle()
        # Idle: the loop sleeps on the clock until the job is due, and does not poll.
        for _ in range(50):
            await asyncio.sleep(0)
        passes = scheduler._pass
        for _ in range(50):
            await asyncio.sleep(0)
        assert scheduler._pass == passes
        assert scheduler._sleeper is not None and not scheduler._sleeper.done()
        assert scheduler._sleeper_deadline == t.clock.now_ms() + 1000
        t.clock.advance(999)
        await scheduler.wait_idle()
        assert t.query(api.jobs.effects) == []
        t.clock.advance(1)
        await scheduler.wait_idle()
        assert t.query(api.jobs.effects) == ["x"]
        # A job scheduled for now wakes the loop through the commit listener.
        t.mutation(api.jobs.later, {"delay": 0, "label": "y"})
        await scheduler.wait_idle()
        assert t.query(api.jobs.effects) == ["x", "y"]
    finally:
        await t.app.stop()


@run_async
async def test_the_loop_runs_a_bounded_number_of_jobs_at_once(t: TestBackend) -> None:
    scheduler = t.app.scheduler
    scheduler.parallelism = 3

    def schedule(ctx: Any) -> None:
        for _ in range(12):
            ctx.scheduler.run_after(0, internal.jobs.busy, {})

    t.run(schedule)
    await t.app.start()
    try:
        await scheduler.wait_idle()
    finally:
        await t.app.stop()
    gauge = t.query(api.jobs.gauge)
    assert gauge["now"] == 0
    assert 2 <= gauge["max"] <= 3
    assert set(states(t).values()) == {"success"}


@run_async
async def test_the_loop_removes_expired_rows_when_they_expire(t: TestBackend) -> None:
    scheduler = t.app.scheduler
    await t.app.start()
    try:
        job_id = t.mutation(api.jobs.later, {"delay": 0, "label": "x"})
        await scheduler.wait_idle()
        assert states(t) == {job_id: "success"}
        t.clock.advance(DEFAULT_RETENTION_MS)
        await scheduler.wait_idle()
        assert states(t) == {}
    finally:
        await t.app.stop()


def _reopen(t: TestBackend) -> TestBackend:
    functions, data_dir, clock = t.app.functions_dir, t.data_dir, t.clock
    t.close()
    return TestBackend(functions, clock=clock, data_dir=data_dir)


@run_async
async def test_restart_runs_pending_jobs_once_and_fails_interrupted_actions(
    t: TestBackend,
) -> None:
    due = t.mutation(api.jobs.later, {"delay": 1000, "label": "missed-while-down"})
    future = t.mutation(api.jobs.later, {"delay": 60_000, "label": "future"})
    interrupted = t.mutation(api.jobs.later_action, {"delay": 0, "label": "cut"})
    # The action had been started (inProgress committed) when the process died.
    t.database.write_sync(lambda tx: t.app.scheduler.jobs.start_action(tx, interrupted))
    assert states(t)[interrupted] == IN_PROGRESS
    t.clock.advance(5000)  # the server was down meanwhile
    t2 = _reopen(t)
    try:
        await t2.app.start()
        await t2.app.scheduler.wait_idle()
        rows = {row["_id"]: row for row in job_rows(t2)}
        assert rows[interrupted]["state"] == {"kind": "failed", "error": TRANSIENT_ACTION_ERROR}
        assert rows[due]["state"] == {"kind": "success"}
        assert rows[future]["state"] == {"kind": "pending"}
        t2.clock.advance(60_000)
        await t2.app.scheduler.wait_idle()
        assert states(t2)[future] == "success"
        # Each mutation ran once; the interrupted action never ran again.
        assert t2.query(api.jobs.effects) == ["missed-while-down", "future"]
    finally:
        await t2.app.stop()
        t2.close()


@run_async
async def test_stopping_fails_running_actions(t: TestBackend) -> None:
    t.mutation(api.jobs.later_any, {"delay": 0, "target": "jobs:hang", "args": {}})
    await t.app.start()
    try:
        while t.app.scheduler.running_jobs == 0 or IN_PROGRESS not in states(t).values():
            await asyncio.sleep(0)  # the action starts once inProgress is committed
        assert list(states(t).values()) == [IN_PROGRESS]
    finally:
        await t.app.stop()
    (row,) = job_rows(t)
    assert row["state"] == {"kind": "failed", "error": TRANSIENT_ACTION_ERROR}


def test_scheduled_rows_are_visible_through_db_system_only(t: TestBackend) -> None:
    job_id = t.mutation(api.jobs.later, {"delay": 0, "label": "x"})

    def direct(tx: Transaction) -> list[str]:
        return [row["_id"] for row in Query(tx, "_scheduled_functions")]

    assert t.database.run_read(direct).value == [job_id]
    with pytest.raises(Exception, match="System tables"):
        t.run(lambda ctx: ctx.db.query("_scheduled_functions").collect())
    with pytest.raises(Exception, match="System tables"):
        t.run(lambda ctx: ctx.db.insert("_scheduled_functions", {"name": "x"}))


def test_queries_have_no_scheduler(t: TestBackend, make_backend: MakeBackend) -> None:
    q = make_backend(
        {
            "q.py": """
                from syncline import query

                @query
                def probe(ctx):
                    return hasattr(ctx, "scheduler")
            """
        }
    )
    assert q.query("q:probe") is False


# ---------------------------------------------------------------------- live view


class _ServerThread:
    """A real uvicorn serving ``app`` (its lifespan starts the scheduler) in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from syncline.server.app import create_app

        self.port = free_port()
        config = uvicorn.Config(
            create_app(app), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _ServerThread:
        self.thread.start()
        for _ in range(1000):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def test_a_subscribed_client_sees_job_states_change(tmp_path: Path) -> None:
    from syncline.client import AsyncClient

    clock = ManualClock()
    functions = write_functions(tmp_path / "functions", FILES)
    backend = TestBackend(functions, clock=clock, data_dir=tmp_path / "data")
    try:
        with _ServerThread(backend.app) as server:

            async def main() -> None:
                async with AsyncClient(f"http://127.0.0.1:{server.port}") as client:
                    seen: list[list[str]] = []
                    subscription = client.subscribe(api.jobs.jobs)

                    async def until(predicate: Callable[[list[str]], bool]) -> None:
                        async with asyncio.timeout(10):
                            async for rows in subscription:
                                kinds = sorted(r["state"]["kind"] for r in rows)
                                if not seen or seen[-1] != kinds:
                                    seen.append(kinds)
                                if predicate(kinds):
                                    return

                    await until(lambda kinds: kinds == [])
                    await client.mutation(api.jobs.later, {"delay": 1000, "label": "m"})
                    await client.mutation(api.jobs.schedule_gated)
                    await until(lambda kinds: kinds == ["pending", "pending"])
                    clock.advance(1000)
                    await until(lambda kinds: kinds == ["inProgress", "success"])
                    await client.mutation(api.jobs.open_gate)
                    await until(lambda kinds: kinds == ["success", "success"])
                    assert seen[0] == []
                    assert ["inProgress", "success"] in seen
                    assert seen[-1] == ["success", "success"]

            asyncio.run(main())
    finally:
        backend.close()
