"""Text search: query latency, write cost of an index, backfill, invalidation cost.

    python bench/search.py [--db sqlite|postgres] [--docs 100000] [--queries 400]
                           [--inserts 3000] [--live 1000] [--maintenance-url postgresql://...]

``--db postgres`` runs on a fresh database of the server at ``--maintenance-url``
(dropped afterwards), vacuumed after the load as autovacuum would; the default
is a SQLite file in a temporary folder.

* loads ``--docs`` messages (5 to 40 words each from a 20,000-word vocabulary
  with Zipf-like frequencies, one of 20 channels) with the import path, and
  builds the search index over them;
* query latency: ``--queries`` searches of 1 to 3 words (the last one cut to a
  prefix), half with a channel filter, ``take(10)``, each in its own snapshot;
  p50 and p99;
* insert throughput: ``--inserts`` one-document mutations (several in flight,
  as clients send them) into a table with the search index and into one
  without; the slowdown is the cost of the index;
* backfill: the same number of documents loaded into a table without a search
  index, then a schema adding one applied (built beside the live indexes in
  short transactions); meanwhile one-document inserts into another table
  measure how long a commit waits (the write lock is not held throughout);
* invalidation: ``--live`` live search reads (random terms and channels) are
  registered in the live-query index, and each commit of the insert run is
  matched against them; the time per commit and the live queries it touched.

Prints medians (and p99 for queries). Keep runs short on a shared machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syncline import v
from syncline.database.bulk import BulkWriter
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.reads import ReadSet
from syncline.database.search_query import SearchPlan
from syncline.database.subscriptions import IntervalIndex
from syncline.database.transaction import Transaction
from syncline.database.writes import WriteSet
from syncline.persistence.base import Persistence
from syncline.persistence.sqlite import SqlitePersistence
from syncline.schema import Schema, define_schema, define_table

VOCABULARY = 20_000
CHANNELS = 20


def _words(rng: random.Random) -> list[str]:
    # Zipf-like: word k is drawn with weight 1/k.
    weights = [1 / k for k in range(1, VOCABULARY + 1)]
    return rng.choices([f"w{k}x" for k in range(VOCABULARY)], weights, k=200_000)


def _body(rng: random.Random, pool: list[str]) -> str:
    start = rng.randrange(len(pool) - 40)
    return " ".join(pool[start : start + rng.randint(5, 40)])


def _schema(*, backfilled: bool = False) -> Schema:
    fields = {"body": v.string(), "channel": v.string()}
    later = define_table(fields)
    if backfilled:
        later = later.search_index("search_body", search_field="body", filter_fields=["channel"])
    return define_schema(
        {
            "messages": define_table(fields).search_index(
                "search_body", search_field="body", filter_fields=["channel"]
            ),
            "plain": define_table(fields),
            "later": later,
        }
    )


@contextlib.contextmanager
def open_store(args: argparse.Namespace) -> Iterator[Persistence]:
    if args.db == "postgres":
        from postgres import fresh_database  # bench/postgres.py

        from syncline.persistence.postgres import PostgresPersistence

        with fresh_database(args.maintenance_url) as conninfo:
            store = PostgresPersistence(conninfo, durability=args.durability)
            try:
                yield store
            finally:
                store.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield SqlitePersistence(Path(tmp) / "search.sqlite3", durability=args.durability)


def vacuum(persistence: Persistence) -> None:
    """On PostgreSQL, what autovacuum does soon after a bulk load (statistics, visibility
    map: a search then reads its postings from the index alone)."""
    from syncline.persistence.postgres import PostgresPersistence

    if isinstance(persistence, PostgresPersistence):
        session = persistence.session("setup")
        try:
            session.run("VACUUM ANALYZE", what="vacuuming")
        finally:
            session.close()


def load(
    db: Database, docs: int, rng: random.Random, pool: list[str], table: str = "messages"
) -> float:
    started = time.perf_counter()

    def bulk(tx: Transaction) -> None:
        writer = BulkWriter(tx)
        info = tx.ensure_table(table)
        for _ in range(docs):
            writer.insert(
                info, {"body": _body(rng, pool), "channel": f"c{rng.randrange(CHANNELS)}"}
            )
        writer.flush()

    db.submit_write(bulk, exclusive=True).result()
    return time.perf_counter() - started


def _search_text(rng: random.Random) -> str:
    # Mostly mid-frequency words: the head of the vocabulary matches most documents.
    words = [f"w{rng.randrange(20, 2000)}x" for _ in range(rng.randint(1, 3))]
    words[-1] = words[-1][: max(2, len(words[-1]) - 1)]
    return " ".join(words)


def queries(db: Database, count: int, rng: random.Random) -> list[float]:
    timings = []
    for i in range(count):
        text = _search_text(rng)
        channel = f"c{rng.randrange(CHANNELS)}" if i % 2 else None

        def search(tx: Transaction, text: str = text, channel: str | None = channel) -> Any:
            def build(q: Any) -> Any:
                expression = q.search("body", text)
                return expression if channel is None else expression.eq("channel", channel)

            return Query(tx, "messages").with_search_index("search_body", build).take(10)

        started = time.perf_counter()
        db.run_read(search)
        timings.append(time.perf_counter() - started)
    return timings


def inserts(
    db: Database, table: str, count: int, rng: random.Random, pool: list[str]
) -> tuple[float, list[WriteSet]]:
    docs = [
        {"body": _body(rng, pool), "channel": f"c{rng.randrange(CHANNELS)}"} for _ in range(count)
    ]
    started = time.perf_counter()
    futures: list[concurrent.futures.Future[Any]] = []
    for doc in docs:
        futures.append(db.submit_write(lambda tx, doc=doc: tx.insert(table, doc)))
        if len(futures) >= 64:  # clients in flight
            futures.pop(0).result()
    writes = [f.result().writes for f in futures]
    elapsed = time.perf_counter() - started
    return count / elapsed, writes


def backfill(db: Database, docs: int, rng: random.Random, pool: list[str]) -> tuple[float, float]:
    """Seconds to apply a schema adding a search index to ``docs`` documents, and the
    longest a one-document commit waited meanwhile (ms)."""
    load(db, docs, rng, pool, table="later")
    done = threading.Event()
    waits: list[float] = []

    def write_meanwhile() -> None:
        while not done.is_set():
            started = time.perf_counter()
            db.write_sync(lambda tx: tx.insert("plain", {"body": "x", "channel": "c0"}))
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    started = time.perf_counter()
    try:
        db.apply_schema(_schema(backfilled=True))
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        writer.join()
    return elapsed, max(waits) * 1000


def invalidation(
    db: Database, live: int, commits: list[WriteSet], rng: random.Random
) -> tuple[float, float]:
    index: IntervalIndex[int] = IntervalIndex()

    def plan(tx: Transaction, text: str, channel: str) -> SearchPlan:
        return SearchPlan.build(
            tx, "messages", "search_body", lambda q: q.search("body", text).eq("channel", channel)
        )

    plans = db.run_read(
        lambda tx: [plan(tx, _search_text(rng), f"c{rng.randrange(CHANNELS)}") for _ in range(live)]
    ).value
    for token, p in enumerate(plans):
        read_set = ReadSet()
        read_set.add_search(p.read)
        index.register(token, read_set)
    timings, touched = [], []
    for writes in commits:
        started = time.perf_counter()
        found = index.matches_writes(writes)
        timings.append(time.perf_counter() - started)
        touched.append(len(found))
    return statistics.median(timings), statistics.mean(touched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--inserts", type=int, default=3000)
    parser.add_argument("--live", type=int, default=1000)
    parser.add_argument("--durability", default="normal")
    parser.add_argument("--rounds", type=int, default=3, help="insert runs per table")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--maintenance-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="with --db postgres: a database of the server where the user may create databases",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    pool = _words(rng)
    print(f"storage: {args.db}", flush=True)
    with open_store(args) as persistence, Database(persistence) as db:
        db.apply_schema(_schema())
        loaded = load(db, args.docs, rng, pool)
        print(f"load {args.docs} documents with the search index: {loaded:.1f} s", flush=True)
        vacuum(persistence)
        timings = sorted(queries(db, args.queries, rng))
        p50 = statistics.median(timings) * 1000
        p99 = timings[int(len(timings) * 0.99) - 1] * 1000
        print(f"query take(10) over {args.docs}: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
        rates: dict[str, list[float]] = {"messages": [], "plain": []}
        commits: list[WriteSet] = []
        for _ in range(args.rounds):  # alternated, so that load changes hit both alike
            for table in ("messages", "plain"):
                rate, writes = inserts(db, table, args.inserts, rng, pool)
                rates[table].append(rate)
                if table == "messages":
                    commits = writes
        indexed = statistics.median(rates["messages"])
        plain = statistics.median(rates["plain"])
        print(
            f"inserts/s (durability={args.durability}, median of {args.rounds}): {plain:.0f} "
            f"without a search index, {indexed:.0f} with one "
            f"({(plain / indexed - 1) * 100:.0f}% slower)",
            flush=True,
        )
        built, longest = backfill(db, args.docs, rng, pool)
        print(
            f"backfill of a new search index over {args.docs} documents: {built:.1f} s; "
            f"longest one-document commit meanwhile: {longest:.0f} ms",
            flush=True,
        )
        per_commit, touched = invalidation(db, args.live, commits, rng)
        print(
            f"invalidation with {args.live} live searches: median {per_commit * 1e6:.1f} us "
            f"per commit, {touched:.2f} live queries touched per commit on average"
        )


if __name__ == "__main__":
    main()
