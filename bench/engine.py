"""Engine benchmark: mutation throughput (group commit), point gets, index ranges.

    python bench/engine.py [--rounds 5] [--durability full|normal]

Everything runs through the real mutation/query path (user functions, args
validation, the writer thread, SQLite in WAL mode on a temp file). Prints the
median of several rounds; this machine is noisy, so compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.persistence.sqlite import SqlitePersistence

FUNCTIONS = """
from syncline import mutation, query, v, define_schema, define_table

@mutation(args={"n": v.number(), "group": v.number()})
def insert(ctx, n, group):
    return ctx.db.insert("items", {"n": n, "group": group})

@query(args={"id": v.id("items")})
def get(ctx, id):
    return ctx.db.get(id)

@query(args={"group": v.number()})
def group(ctx, group):
    return ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", group)).collect()
"""

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "items": define_table({"n": v.number(), "group": v.number()}).index("by_group", ["group"]),
})
"""


def _app(root: Path, durability: str) -> Application:
    functions = root / "functions"
    functions.mkdir()
    (functions / "bench.py").write_text(FUNCTIONS)
    (functions / "schema.py").write_text(SCHEMA)
    database = Database(
        SqlitePersistence(str(root / "bench.sqlite3"), durability=durability), clock=SystemClock()
    )
    app = Application(database, functions)
    app.load()
    return app


def sequential_inserts(app: Application, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        app.executor.mutation_sync("bench:insert", {"n": i, "group": i % 100}).unwrap()
    return count / (time.perf_counter() - start)


def concurrent_inserts(app: Application, submitters: int, per_submitter: int) -> float:
    """Submitters are asyncio tasks on one loop, as connections are in the server."""

    async def worker(offset: int) -> None:
        for i in range(per_submitter):
            outcome = await app.executor.mutation(
                "bench:insert", {"n": offset + i, "group": i % 100}
            )
            outcome.unwrap()

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(s * per_submitter) for s in range(submitters)))
        return time.perf_counter() - start

    return submitters * per_submitter / asyncio.run(run())


def engine_inserts(app: Application, submitters: int, per_submitter: int) -> float:
    """The engine alone: insert functions queued straight to the writer (no function layer)."""

    async def worker(offset: int) -> None:
        for i in range(per_submitter):
            await app.database.write(
                lambda tx, n=float(offset + i), g=float(i % 100): tx.insert(
                    "items", {"n": n, "group": g}
                )
            )

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(s * per_submitter) for s in range(submitters)))
        return time.perf_counter() - start

    return submitters * per_submitter / asyncio.run(run())


def point_get_us(app: Application, ids: list[str], samples: int) -> tuple[float, float]:
    """Median latency of a raw snapshot get, and of a full query-function call."""
    db = app.database
    raw: list[float] = []
    for i in range(samples):
        doc_id = ids[i % len(ids)]
        t0 = time.perf_counter()
        db.run_read(lambda tx, d=doc_id: tx.get(d))
        raw.append(time.perf_counter() - t0)
    full: list[float] = []
    for i in range(samples):
        doc_id = ids[i % len(ids)]
        t0 = time.perf_counter()
        app.executor.query_sync("bench:get", {"id": doc_id}).unwrap()
        full.append(time.perf_counter() - t0)
    return statistics.median(raw) * 1e6, statistics.median(full) * 1e6


def range_100_us(app: Application, samples: int) -> tuple[float, float]:
    db = app.database
    raw: list[float] = []
    full: list[float] = []
    for i in range(samples):
        group = float(i % 10)
        t0 = time.perf_counter()
        docs = db.run_read(
            lambda tx, g=group: (
                Query(tx, "items").with_index("by_group", lambda q: q.eq("group", g)).take(100)
            )
        ).value
        raw.append(time.perf_counter() - t0)
        assert len(docs) == 100, len(docs)
        t0 = time.perf_counter()
        docs = app.executor.query_sync("bench:group", {"group": group}).unwrap()
        full.append(time.perf_counter() - t0)
        assert len(docs) == 100, len(docs)
    return statistics.median(raw) * 1e6, statistics.median(full) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", default="full", choices=["full", "normal", "off"])
    args = parser.parse_args()

    seq, conc, conc64, eng, get_raw, get_full, rng_raw, rng_full = ([] for _ in range(8))
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            app = _app(Path(tmp), args.durability)
            try:
                seq.append(sequential_inserts(app, 2000))
                conc.append(concurrent_inserts(app, submitters=8, per_submitter=1000))
                # 100 docs per group: 2,000 + 8,000 inserts spread over 100 groups.
                ids = [
                    doc["_id"]
                    for doc in app.database.run_read(lambda tx: Query(tx, "items").take(5000)).value
                ]
                g_raw, g_full = point_get_us(app, ids, 3000)
                get_raw.append(g_raw)
                get_full.append(g_full)
                r_raw, r_full = range_100_us(app, 300)
                rng_raw.append(r_raw)
                rng_full.append(r_full)
                conc64.append(concurrent_inserts(app, submitters=64, per_submitter=100))
                eng.append(engine_inserts(app, submitters=64, per_submitter=100))
            finally:
                app.close()

    med = statistics.median
    print(f"engine benchmark (durability={args.durability}, {args.rounds} rounds, medians)")
    print(f"  single-insert mutations/s, 1 sequential submitter : {med(seq):9.0f}")
    print(f"  single-insert mutations/s, 8 concurrent submitters: {med(conc):9.0f}")
    print(f"  single-insert mutations/s, 64 concurrent submitters: {med(conc64):8.0f}")
    print(f"  engine only (no function layer), 64 submitters     : {med(eng):8.0f}")
    print(f"  point get, snapshot read            : {med(get_raw):7.1f} us")
    print(f"  point get, full query function call : {med(get_full):7.1f} us")
    print(f"  100-doc index range, snapshot read  : {med(rng_raw):7.1f} us")
    print(f"  100-doc index range, query function : {med(rng_full):7.1f} us")


if __name__ == "__main__":
    main()
