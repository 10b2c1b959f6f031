"""Engine benchmark: mutations (group commit) and point reads, in process.

    python bench/engine.py [--rounds 5] [--durability full,normal] [--mutation-threads N]

Everything runs through the real paths: mutations through the function
executor (args validation, the writer thread, SQLite in WAL mode on a temp
file) from asyncio tasks, as connections call it in the server; point reads
through ``Database.read`` (the read thread pool) and through a query function.

Prints, per durability, the median over rounds of: mutations/s and process
CPU per mutation with 1 and 64 concurrent callers, SQLite statements the
writer runs per create (sequential callers, and 64 concurrent ones), and CPU
per point read. On a shared machine wall-clock rates are noisy; CPU per
operation and statement counts are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import RequestKey
from syncline.persistence.sqlite import SqlitePersistence

FUNCTIONS = """
from syncline import mutation, query, v

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


def _app(root: Path, durability: str, mutation_threads: int | None = None) -> Application:
    functions = root / "functions"
    functions.mkdir()
    (functions / "bench.py").write_text(FUNCTIONS)
    (functions / "schema.py").write_text(SCHEMA)
    options: dict[str, Any] = {}
    if mutation_threads is not None:
        options["mutation_threads"] = mutation_threads
    database = Database(
        SqlitePersistence(str(root / "bench.sqlite3"), durability=durability),  # type: ignore[arg-type]
        clock=SystemClock(),
        **options,
    )
    app = Application(database, functions)
    app.load()
    return app


def _timed(ops: int, main: Callable[[], Coroutine[Any, Any, None]]) -> tuple[float, float]:
    """(operations per second, process CPU microseconds per operation) of ``main``."""

    async def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        await main()
        return time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = asyncio.run(run())
    return ops / wall, cpu / ops * 1e6


def inserts(
    app: Application, callers: int, per_caller: int, *, request_ids: bool = False
) -> tuple[float, float]:
    """Callers are asyncio tasks on one loop, each awaiting its mutation before the next.

    ``request_ids``: each mutation carries a (session, request id), as sync clients'
    mutations do, so its outcome is recorded for resends.
    """
    session = uuid.uuid4().hex

    async def caller(offset: int) -> None:
        for i in range(per_caller):
            key = RequestKey(session, offset + i, b"bench") if request_ids else None
            outcome = await app.executor.mutation(
                "bench:insert", {"n": offset + i, "group": i % 100}, idempotency_key=key
            )
            outcome.unwrap()

    async def main() -> None:
        await asyncio.gather(*(caller(c * per_caller) for c in range(callers)))

    return _timed(callers * per_caller, main)


def statements_per_create(
    app: Application, callers: int, per_caller: int, *, request_ids: bool = False
) -> float:
    """SQLite statements the writer connection runs per created document."""
    persistence = app.database.persistence
    assert isinstance(persistence, SqlitePersistence)
    count = 0

    def trace(_sql: str) -> None:
        nonlocal count
        count += 1

    conn = persistence._writer.conn
    conn.set_trace_callback(trace)
    try:
        inserts(app, callers, per_caller, request_ids=request_ids)
    finally:
        conn.set_trace_callback(None)
    return count / (callers * per_caller)


def point_reads(
    app: Application, ids: list[str], callers: int, per_caller: int
) -> tuple[float, float]:
    """CPU us per point read by ``callers`` concurrent tasks: a raw ``Database.read`` get,
    and a query function call."""
    db = app.database

    async def raw() -> None:
        async def caller(offset: int) -> None:
            for i in range(per_caller):
                doc_id = ids[(offset + i) % len(ids)]
                await db.read(lambda tx, d=doc_id: tx.get(d))

        await asyncio.gather(*(caller(c * per_caller) for c in range(callers)))

    async def full() -> None:
        async def caller(offset: int) -> None:
            for i in range(per_caller):
                doc_id = ids[(offset + i) % len(ids)]
                (await app.executor.query("bench:get", {"id": doc_id})).unwrap()

        await asyncio.gather(*(caller(c * per_caller) for c in range(callers)))

    ops = callers * per_caller
    return _timed(ops, raw)[1], _timed(ops, full)[1]


def range_100_us(app: Application, samples: int) -> float:
    db = app.database
    cpu = time.process_time()
    for i in range(samples):
        docs = db.run_read(
            lambda tx, g=float(i % 10): (
                Query(tx, "items").with_index("by_group", lambda q: q.eq("group", g)).take(100)
            )
        ).value
        assert len(docs) == 100, len(docs)
    return (time.process_time() - cpu) / samples * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", default="full,normal", help="comma-separated")
    parser.add_argument(
        "--mutation-threads", type=int, default=None, help="Database(mutation_threads=...)"
    )
    args = parser.parse_args()

    med = statistics.median
    for durability in args.durability.split(","):
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float, figures: dict[str, list[float]] = figures) -> None:
            figures.setdefault(name, []).append(value)

        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                app = _app(Path(tmp), durability, args.mutation_threads)
                try:
                    inserts(app, 1, 200)  # warm up (imports, caches)
                    rate, cpu = inserts(app, 1, 2000)
                    add("c1 mutations/s", rate)
                    add("c1 CPU us/mutation", cpu)
                    rate, cpu = inserts(app, 64, 100)
                    add("c64 mutations/s", rate)
                    add("c64 CPU us/mutation", cpu)
                    add("statements/create, c1", statements_per_create(app, 1, 500))
                    add("statements/create, c64", statements_per_create(app, 64, 20))
                    add(
                        "statements/create, request ids, c1",
                        statements_per_create(app, 1, 500, request_ids=True),
                    )
                    add(
                        "statements/create, request ids, c64",
                        statements_per_create(app, 64, 20, request_ids=True),
                    )
                    ids = [
                        doc["_id"]
                        for doc in app.database.run_read(
                            lambda tx: Query(tx, "items").take(5000)
                        ).value
                    ]
                    for callers, per_caller in ((1, 3000), (16, 200)):
                        raw, full = point_reads(app, ids, callers, per_caller)
                        add(f"c{callers} point read CPU us, Database.read", raw)
                        add(f"c{callers} point read CPU us, query function", full)
                    add("100-doc index range CPU us", range_100_us(app, 300))
                finally:
                    app.close()
        print(f"engine benchmark (durability={durability}, {args.rounds} rounds, medians)")
        for name, values in figures.items():
            print(f"  {name:38s} {med(values):9.1f}")


if __name__ == "__main__":
    main()
