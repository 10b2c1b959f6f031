"""Optimistic concurrency under contention: conflicts and retries, hot key vs spread.

    python bench/occ.py [--rounds 3] [--threads 8] [--per-thread 250] [--mutation-threads 4]

Callers (threads) increment counters through ``Database.write_sync``: a get and
a patch. ``hot``: every increment hits one counter; ``spread``: each picks one
of 1,000. ``hot, two databases``: the hot workload through two Database objects
over one file, as two processes would share it. Prints, per workload, the median
over rounds of commits/s (wall; noisy on a shared machine), conflicts per commit
(optimistic attempts that had to run again), and the share of increments that
conflicted on every optimistic attempt and ran under the write lock. Every run
checks that no increment was lost.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from syncline.database.database import Database
from syncline.database.transaction import Transaction
from syncline.persistence.sqlite import SqlitePersistence


def _increment(doc_id: str) -> object:
    def body(tx: Transaction) -> None:
        doc = tx.get(doc_id)
        assert doc is not None
        tx.patch(doc_id, {"n": doc["n"] + 1})

    return body


def run(workload: str, threads: int, per_thread: int, mutation_threads: int) -> tuple[float, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "occ.sqlite3"
        dbs = [
            Database(
                SqlitePersistence(path, durability="normal"), mutation_threads=mutation_threads
            )
        ]
        if workload == "hot, two databases":
            dbs.append(
                Database(
                    SqlitePersistence(path, durability="normal"),
                    mutation_threads=mutation_threads,
                )
            )
        try:
            counters = 1 if workload.startswith("hot") else 1000
            docs = (
                dbs[0]
                .write_sync(lambda tx: [tx.insert("counters", {"n": 0.0}) for _ in range(counters)])
                .value
            )

            def caller(seed: int) -> None:
                rng = random.Random(seed)
                db = dbs[seed % len(dbs)]
                for _ in range(per_thread):
                    db.write_sync(_increment(rng.choice(docs)))  # type: ignore[arg-type]

            workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
            wall = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            wall = time.perf_counter() - wall
            total = (
                dbs[0]
                .run_read(
                    lambda tx: sum(tx.get(d)["n"] for d in docs)  # type: ignore[index]
                )
                .value
            )
            commits = threads * per_thread
            assert total == commits, (total, commits)
            conflicts = sum(db.conflicts for db in dbs)
            fallbacks = sum(db.locked_fallbacks for db in dbs)
            return commits / wall, conflicts / commits, fallbacks / commits
        finally:
            for db in dbs:
                db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--mutation-threads", type=int, default=4)
    args = parser.parse_args()
    print(
        f"{args.threads} callers x {args.per_thread} increments, "
        f"{args.mutation_threads} mutation threads per database, median of {args.rounds}"
    )
    for workload in ("hot", "spread", "hot, two databases"):
        results = [
            run(workload, args.threads, args.per_thread, args.mutation_threads)
            for _ in range(args.rounds)
        ]
        rate, conflicts, fallbacks = (statistics.median(r[i] for r in results) for i in range(3))
        print(
            f"  {workload:20s} {rate:8.0f} commits/s  {conflicts:5.2f} conflicts/commit  "
            f"{fallbacks:6.1%} ran under the lock"
        )


if __name__ == "__main__":
    main()
