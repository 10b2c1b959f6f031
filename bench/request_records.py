"""What a client mutation's request record costs a group commit, next to a row appended at the end.

    python bench/request_records.py [--sessions 64] [--batch 30] [--batches 3000] [--rounds 3]

Each WebSocket mutation stores a record keyed by (session id, request id), so
that a client resending it after a reconnect gets the first result. The
records of one session sit together in that B-tree: a group commit of
mutations from ``--batch`` different sessions changes about one page per
session, where rows appended in commit order (the commit log) share a page
or two. Each changed page is written to the WAL at COMMIT.

Runs ``--batches`` group commits of ``--batch`` records from ``--sessions``
sessions on a fresh SQLite store (``synchronous=NORMAL``), then the same
count of commit-log rows, and prints the writer's CPU per row (median over
rounds) and the database file's pages after each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from syncline.persistence.base import CommitRow, WriteConnection
from syncline.persistence.sqlite import SqlitePersistence


def run(
    path: Path, batches: int, batch: int, sessions: list[str], store: Callable[..., None]
) -> tuple[float, int]:
    """CPU seconds per row of ``batches`` group commits; the database's pages after."""
    persistence = SqlitePersistence(path, durability="normal")
    counters = dict.fromkeys(sessions, 0)
    ts = 0
    cpu = 0.0
    try:
        for _ in range(batches):
            rows = []
            for session in random.sample(sessions, batch):
                counters[session] += 1
                ts += 1
                rows.append((session, counters[session], ts))
            conn = persistence.begin_write()
            started = time.thread_time()
            try:
                store(conn, rows)
            except BaseException:
                persistence.abort_write(conn)
                raise
            persistence.commit_write(conn)
            cpu += time.thread_time() - started
    finally:
        persistence.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    return cpu / (batches * batch), int(pages)


def records(conn: WriteConnection, rows: list[tuple[str, int, int]]) -> None:
    conn.put_mutation_requests(
        [(s, r, ts, os.urandom(32), b'"%s"' % os.urandom(16).hex().encode()) for s, r, ts in rows]
    )


def commit_log(conn: WriteConnection, rows: list[tuple[str, int, int]]) -> None:
    conn.append_commits(
        [CommitRow(ts, 0, os.urandom(32) + os.urandom(16).hex().encode()) for _s, _r, ts in rows]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.batch > args.sessions:
        parser.error("--batch is at most --sessions (one mutation per session per batch)")
    sessions = [os.urandom(16).hex() for _ in range(args.sessions)]
    results: dict[str, list[tuple[float, int]]] = {"request records": [], "commit-log rows": []}
    root = Path(tempfile.mkdtemp(prefix="request-records-"))
    try:
        for round_ in range(args.rounds):
            for name, store in (("request records", records), ("commit-log rows", commit_log)):
                path = root / f"{round_}-{name.split()[0]}.sqlite3"
                results[name].append(run(path, args.batches, args.batch, sessions, store))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = args.batches * args.batch
    print(
        f"{rows:,} rows in group commits of {args.batch} (from {args.sessions} sessions), "
        f"median of {args.rounds}:"
    )
    for name, measured in results.items():
        cpu = statistics.median(c for c, _ in measured) * 1e6
        pages = statistics.median(p for _, p in measured)
        print(f"  {name:16s} {cpu:6.1f} us CPU per row, {pages:,.0f} pages")


if __name__ == "__main__":
    main()
