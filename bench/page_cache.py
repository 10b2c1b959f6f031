"""CPU per operation against SQLite page cache sizes (writer, readers).

    python bench/page_cache.py [--docs 100000] [--rounds 3] [--sizes 64/64,16/8,8/4]

Builds one database of ``--docs`` documents (about 300 bytes each, two indexes:
several times larger than the caches compared), then for each ``WRITER/READER``
size in MiB opens a copy of it and measures process CPU time (all threads: the
writer thread too) per operation through the real function path:

  * insert: a single-insert mutation at a random place of an index;
  * get: a point get of a random document;
  * range: 20 documents of a random group through an index;
  * mixed: a point get, with a mutation after every 10 (each commit empties the
    readers' caches, as in a server under writes).

Prints the median over rounds. CPU time, not wall-clock: it holds on a busy
machine, where throughput does not.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import syncline.persistence.sqlite as sqlite_persistence
from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence

FUNCTIONS = """
from syncline import mutation, query, v

@mutation(args={"group": v.number(), "body": v.string()})
def insert(ctx, group, body):
    return ctx.db.insert("items", {"group": group, "body": body})

@query(args={"id": v.id("items")})
def get(ctx, id):
    return ctx.db.get(id)

@query(args={"group": v.number()})
def group(ctx, group):
    return ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", group)).take(20)
"""

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "items": define_table({"group": v.number(), "body": v.string()}).index("by_group", ["group"]),
})
"""

GROUPS = 5000


def body() -> str:
    return "".join(random.choices("abcdefghijklmnopqrstuvwxyz ", k=250))


def open_app(root: Path, db_file: Path) -> Application:
    functions = root / "functions"
    functions.mkdir(exist_ok=True)
    (functions / "bench.py").write_text(FUNCTIONS)
    (functions / "schema.py").write_text(SCHEMA)
    database = Database(SqlitePersistence(str(db_file), durability="normal"), clock=SystemClock())
    app = Application(database, functions)
    app.load()
    return app


def build(root: Path, docs: int) -> tuple[Path, list[str]]:
    db_file = root / "template.sqlite3"
    app = open_app(root, db_file)
    ids: list[str] = []
    try:
        for start in range(0, docs, 1000):
            rows = [
                (float(random.randrange(GROUPS)), body()) for _ in range(min(1000, docs - start))
            ]
            ids += app.database.write_sync(
                lambda tx, rows=rows: [tx.insert("items", {"group": g, "body": b}) for g, b in rows]
            ).value
    finally:
        app.close()
    return db_file, ids


def cpu_us(ops: int, step: Callable[[int], object]) -> float:
    started = time.process_time()
    for i in range(ops):
        step(i)
    return (time.process_time() - started) / ops * 1e6


def measure(app: Application, ids: list[str]) -> dict[str, float]:
    run_query = app.executor.query_sync
    run_mutation = app.executor.mutation_sync

    def insert(_: int) -> None:
        run_mutation(
            "bench:insert", {"group": float(random.randrange(GROUPS)), "body": body()}
        ).unwrap()

    def get(_: int) -> None:
        run_query("bench:get", {"id": random.choice(ids)}).unwrap()

    def group(_: int) -> None:
        run_query("bench:group", {"group": float(random.randrange(GROUPS))}).unwrap()

    def mixed(i: int) -> None:
        get(i)
        if i % 10 == 9:
            insert(i)

    return {
        "insert": cpu_us(2000, insert),
        "get": cpu_us(5000, get),
        "range": cpu_us(2000, group),
        "mixed": cpu_us(5000, mixed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="64/64,16/8,8/4", help="WRITER/READER MiB, ...")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in pair.split("/")) for pair in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template, ids = build(root, args.docs)
        mib = template.stat().st_size / 2**20
        print(f"database: {args.docs} documents, {mib:.0f} MiB; CPU us per operation, medians")
        print(f"{'writer/reader MiB':>18} {'insert':>8} {'get':>8} {'range':>8} {'mixed':>8}")
        results: dict[tuple[int, ...], list[dict[str, float]]] = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:  # interleaved: a slow moment of the machine hits every size
                sqlite_persistence._WRITER_CACHE_KIB = size[0] * 1024
                sqlite_persistence._READER_CACHE_KIB = size[1] * 1024
                copy = root / "copy.sqlite3"
                shutil.copy(template, copy)
                app = open_app(root, copy)
                try:
                    results[size].append(measure(app, ids))
                finally:
                    app.close()
                    for f in root.glob("copy.sqlite3*"):
                        f.unlink()
        for size, rounds in results.items():
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            label = f"{size[0]}/{size[1]}"
            print(
                f"{label:>18} {med['insert']:8.1f} {med['get']:8.1f} "
                f"{med['range']:8.1f} {med['mixed']:8.1f}"
            )


if __name__ == "__main__":
    main()
