"""The committer's own capacity: commits/s with execution taken out.

    python bench/committer.py [--rounds 3] [--durability full,normal] [--writes 16000]

Every write is run (optimistically, at a snapshot, its writes buffered) before
the clock starts; then all of them are handed to the committer at once, which
checks each read set against the commits after its snapshot, applies the
buffers, writes the commit log and makes each batch durable with one COMMIT.
This is the ceiling a many-core deployment could reach if executing
mutations were free. Two workloads: ``create`` (an insert: nothing read) and
``update`` (a get and a patch of one of 1,000 documents: a point read to check).

Writes are prepared in waves on a fresh snapshot each (the committer keeps
the last 8,192 commits for checks), and only the committing is timed.
Prints the median over rounds of commits/s (wall) and process CPU per commit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncline.database.committer import WriteJob
from syncline.database.database import Database
from syncline.database.transaction import Transaction
from syncline.persistence.sqlite import SqlitePersistence

WAVE = 4000


def _prepare(db: Database, fns: list[Callable[[Transaction], Any]]) -> list[WriteJob]:
    """Run each of ``fns`` optimistically at one snapshot, as a mutation thread would."""
    conn = db.persistence.reader()
    try:
        jobs = []
        for fn in fns:
            job = WriteJob(fn, concurrent.futures.Future(), started=True)
            db._committer._execute(job, conn)
            jobs.append(job)
        return jobs
    finally:
        db.persistence.release_reader(conn)


def _commit(db: Database, jobs: list[WriteJob]) -> tuple[float, float]:
    """(wall s, CPU s) for the committer to commit ``jobs``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for job in jobs:
        db._committer._queue.put(job)
    for job in jobs:
        job.future.result()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(durability: str, workload: str, writes: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(
            SqlitePersistence(Path(tmp) / "committer.sqlite3", durability=durability),  # type: ignore[arg-type]
        )
        try:
            docs = db.write_sync(
                lambda tx: [tx.insert("items", {"n": 0.0}) for _ in range(1000)]
            ).value

            def create(i: int) -> Callable[[Transaction], Any]:
                return lambda tx: tx.insert("items", {"n": float(i)})

            def update(i: int) -> Callable[[Transaction], Any]:
                doc_id = docs[i % len(docs)]

                def body(tx: Transaction) -> None:
                    doc = tx.get(doc_id)
                    assert doc is not None
                    tx.patch(doc_id, {"n": doc["n"] + 1})

                return body

            make = create if workload == "create" else update
            wall = cpu = 0.0
            for start in range(0, writes, WAVE):
                # Prepared at one snapshot, no two writes of a chunk may touch the same
                # document (the second would conflict): chunks of at most 1,000.
                count = min(WAVE, writes - start)
                fns = [make(start + i) for i in range(min(count, len(docs)))]
                for chunk in range(0, count, len(fns)):
                    jobs = _prepare(db, fns[: count - chunk])
                    w, c = _commit(db, jobs)
                    wall += w
                    cpu += c
            assert db.conflicts == 0, db.conflicts
            return writes / wall, cpu / writes * 1e6
        finally:
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", default="full,normal", help="comma-separated")
    parser.add_argument("--writes", type=int, default=16000)
    args = parser.parse_args()
    for durability in args.durability.split(","):
        for workload in ("create", "update"):
            results = [run(durability, workload, args.writes) for _ in range(args.rounds)]
            rate = statistics.median(r[0] for r in results)
            cpu = statistics.median(r[1] for r in results)
            print(
                f"committer (durability={durability}, {workload}, {args.writes} writes, "
                f"median of {args.rounds}): {rate:9.0f} commits/s  {cpu:6.1f} CPU us/commit"
            )


if __name__ == "__main__":
    main()
