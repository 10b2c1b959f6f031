"""Scheduler benchmark: throughput and lateness of scheduled functions.

    python bench/scheduler.py [--burst 10000] [--rate 200] [--seconds 10]
                              [--kind mutation|action|both] [--durability full|normal]
                              [--parallelism 8]

Real clock, real SQLite file (WAL, ``durability=full`` by default), the real
scheduler loop of an Application. Two scenarios:

* **burst**: ``--burst`` jobs all due at the same instant T (scheduled ahead
  while the loop is idle). Prints jobs/s (jobs / (last finish - T)) and the
  lateness distribution.
* **steady**: a producer schedules ``--rate`` jobs/s for ``--seconds``
  seconds, each due 200 ms after it is scheduled, spread evenly. Prints
  lateness p50/p99 (target: p99 < 50 ms at 200 jobs/s).

Lateness = actual start - scheduledTime, where "actual start" is the job's
own start time (``ctx.now``: a mutation's start on the writer; an action's
first line). Each job records it in a document, read back at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
from pathlib import Path

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.persistence.sqlite import SqlitePersistence
from syncline.scheduling.jobs import SYSTEM_LIMITS

FUNCTIONS = """
from syncline import internal, internal_action, internal_mutation, mutation, v


@mutation(args={"kind": v.string(), "times": v.array(v.number())})
def schedule(ctx, kind, times):
    target = internal.bench.job if kind == "mutation" else internal.bench.act
    for due in times:
        ctx.scheduler.run_at(due, target, {"due": due})


@internal_mutation(args={"due": v.number()})
def job(ctx, due):
    ctx.db.insert("lateness", {"ms": ctx.now - due})


@internal_mutation(args={"ms": v.number()})
def record(ctx, ms):
    ctx.db.insert("lateness", {"ms": ms})


@internal_action(args={"due": v.number()})
async def act(ctx, due):
    started = ctx.now
    await ctx.run_mutation(internal.bench.record, {"ms": started - due})
"""

SCHEDULE_CHUNK = 1000  # per mutation: the per-mutation limit is 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def lateness(app: Application) -> list[float]:
    def body(tx: Transaction) -> list[float]:
        tx.limits = SYSTEM_LIMITS  # more rows than a function may read
        return [doc["ms"] for doc in Query(tx, "lateness")]

    return app.database.run_read(body).value


def open_app(root: Path, durability: str, parallelism: int) -> Application:
    functions = root / "functions"
    functions.mkdir()
    (functions / "bench.py").write_text(FUNCTIONS)
    database = Database(
        SqlitePersistence(str(root / "bench.sqlite3"), durability=durability), clock=SystemClock()
    )
    app = Application(database, functions, dev=False)
    app.load()
    app.scheduler.parallelism = parallelism
    # The GC settings of `syncline serve` (server/run.py): no cyclic GC pauses on the hot path.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return app


async def schedule(app: Application, kind: str, times: list[float]) -> None:
    for i in range(0, len(times), SCHEDULE_CHUNK):
        outcome = await app.executor.mutation(
            "bench:schedule", {"kind": kind, "times": times[i : i + SCHEDULE_CHUNK]}
        )
        outcome.unwrap()


async def burst(app: Application, kind: str, n: int) -> str:
    clock = app.clock
    await app.start()
    try:
        due = clock.now_ms() + 2000 + n * 0.5  # time enough to schedule them all first
        await schedule(app, kind, [due] * n)
        assert clock.now_ms() < due, "scheduling took longer than the lead time"
        await clock.sleep_until_ms(due)
        await app.scheduler.wait_idle()
        elapsed_s = (clock.now_ms() - due) / 1000
    finally:
        await app.stop()
    late = lateness(app)
    assert len(late) == n, (len(late), n)
    return (
        f"burst   {kind:8} {n} jobs due at once: {n / elapsed_s:7.0f} jobs/s "
        f"(drained in {elapsed_s:.2f} s); lateness p50 {percentile(late, 50):7.1f} ms, "
        f"p99 {percentile(late, 99):7.1f} ms"
    )


async def steady(app: Application, kind: str, rate: float, seconds: float) -> str:
    clock = app.clock
    await app.start()
    lead_ms = 200.0
    tick_s = 0.05
    try:
        per_tick = rate * tick_s
        start = clock.now_ms()
        scheduled = 0
        last_due = start
        tick = 0
        while clock.now_ms() - start < seconds * 1000:
            # Jobs due evenly over the next tick, lead_ms from now.
            base = start + tick * tick_s * 1000 + lead_ms
            count = round((tick + 1) * per_tick) - round(tick * per_tick)
            times = [base + k * (tick_s * 1000 / count) for k in range(count)]
            await schedule(app, kind, times)
            scheduled += count
            last_due = times[-1]
            tick += 1
            await clock.sleep_until_ms(start + tick * tick_s * 1000)
        await clock.sleep_until_ms(last_due)
        await app.scheduler.wait_idle()
        elapsed_s = (clock.now_ms() - start - lead_ms) / 1000
    finally:
        await app.stop()
    late = lateness(app)
    assert len(late) == scheduled, (len(late), scheduled)
    return (
        f"steady  {kind:8} {scheduled / elapsed_s:5.0f} jobs/s for {seconds:g} s "
        f"({scheduled} jobs): lateness p50 {percentile(late, 50):5.1f} ms, "
        f"p99 {percentile(late, 99):5.1f} ms, max {max(late):6.1f} ms, "
        f"mean {statistics.fmean(late):5.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kind", choices=["mutation", "action", "both"], default="both")
    parser.add_argument("--durability", choices=["full", "normal", "off"], default="full")
    parser.add_argument("--parallelism", type=int, default=8)
    args = parser.parse_args()
    kinds = ["mutation", "action"] if args.kind == "both" else [args.kind]
    print(
        f"scheduler benchmark: SQLite durability={args.durability}, "
        f"parallelism={args.parallelism}, real clock"
    )
    for kind in kinds:
        for scenario in ("burst", "steady"):
            with tempfile.TemporaryDirectory(prefix="syncline-bench-") as tmp:
                app = open_app(Path(tmp), args.durability, args.parallelism)
                try:
                    if scenario == "burst":
                        line = asyncio.run(burst(app, kind, args.burst))
                    else:
                        line = asyncio.run(steady(app, kind, args.rate, args.seconds))
                finally:
                    app.close()
            print(line, flush=True)


if __name__ == "__main__":
    main()
