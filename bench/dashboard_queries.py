"""The web dashboard's reads on a large table: the system queries its Data page runs.

    python bench/dashboard_queries.py [--documents 100000] [--runs 30]

A project with one table of ``--documents`` documents (and an index on
``done, rank``) is opened in process on SQLite; each query runs ``--runs``
times through the executor as an admin, as the sync protocol runs it. Prints
the median time of: ``data:tables`` (every table with its document count),
the first page of 100 newest documents, a page of an index range
(``eq`` and ``lower``), and a page filtered on a field that one document in
the table matches (the scan stops at the read budget and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from syncline.application import Application
from syncline.dashboard import install_system_functions
from syncline.identity import Admin

FUNCTIONS = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "tasks": define_table({"title": v.string(), "done": v.boolean(), "rank": v.float64()})
                .index("by_done_rank", ["done", "rank"]),
        })
    """,
    "tasks.py": """
        from syncline import internal_mutation, v


        @internal_mutation(args={"start": v.float64(), "n": v.float64()})
        def seed(ctx, start, n):
            for i in range(int(start), int(start + n)):
                ctx.db.insert("tasks", {"title": f"t{i}", "done": i % 2 == 0, "rank": float(i)})
    """,
}
BATCH = 5000
PAGE = {"numItems": 100, "cursor": None}


async def median_ms(app: Application, path: str, args: dict[str, Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        outcome = await app.executor.query("_system/dashboard/" + path, args, identity=Admin())
        times.append((time.perf_counter() - started) * 1000)
        outcome.unwrap()
    return statistics.median(times)


async def main(documents: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as folder:
        await measure(Path(folder), documents, runs)


async def measure(project: Path, documents: int, runs: int) -> None:
    for name, source in FUNCTIONS.items():
        path = project / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    with Application.open(project, durability="off") as app:
        install_system_functions(app)
        await app.start()
        try:
            for start in range(0, documents, BATCH):
                n = min(BATCH, documents - start)
                outcome = await app.executor.mutation(
                    "tasks:seed", {"start": start, "n": n}, identity=Admin()
                )
                outcome.unwrap()
            cases: list[tuple[str, str, dict[str, Any], int]] = [
                ("data:tables", "data:tables", {}, runs),
                ("first page of 100, newest first", "data:page", {"table": "tasks"}, runs),
                (
                    "page of 100 on an index range (eq + lower)",
                    "data:page",
                    {
                        "table": "tasks",
                        "index": "by_done_rank",
                        "eq": [["done", True]],
                        "lower": {"value": documents / 2, "inclusive": True},
                    },
                    runs,
                ),
                (
                    "page filtered on a field one document matches",
                    "data:page",
                    {"table": "tasks", "filters": [["title", "t5"]]},
                    max(3, runs // 10),
                ),
            ]
            print(f"{documents} documents, median of {runs} runs (filtered: fewer)")
            for label, path, args, n in cases:
                if path == "data:page":
                    args = {**args, "paginationOpts": PAGE}
                print(f"  {label:<48} {await median_ms(app, path, args, n):8.2f} ms")
        finally:
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    asyncio.run(main(options.documents, options.runs))
