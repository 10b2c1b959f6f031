"""Two Database objects over one SQLite file behave like two processes sharing a store.

State lives in the store: each committer reads the last ts and the catalog under the
write lock, a snapshot carries its catalog version, and commits reach the other
process's listeners from the commit log (``Database.catch_up``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stores import open_store
from syncline import define_schema, define_table, v
from syncline.database import committer
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import RequestKey, Transaction
from syncline.database.writes import Commit
from syncline.errors import SchemaValidationError


def _open(path: Path) -> Database:
    return Database(open_store(path, durability="off"))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    path = tmp_path / "shared.sqlite3"
    a = _open(path)
    b = _open(path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _docs(db: Database, table: str) -> list[dict[str, Any]]:
    return db.run_read(lambda tx: Query(tx, table).collect()).value


def test_a_commit_through_one_is_read_and_outdated_by_the_other(
    pair: tuple[Database, Database],
) -> None:
    a, b = pair
    b.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))  # the table exists for both
    first = a.write_sync(lambda tx: tx.insert("t", {"n": 1.0}))
    assert [d["n"] for d in _docs(b, "t")] == [0.0, 1.0]
    second = b.write_sync(lambda tx: tx.insert("t", {"n": 2.0}))
    assert second.ts > first.ts
    third = a.write_sync(lambda tx: tx.insert("t", {"n": 3.0}))
    assert third.ts > second.ts
    assert [d["n"] for d in _docs(a, "t")] == [0.0, 1.0, 2.0, 3.0]


def test_catch_up_publishes_the_other_ones_commits_once_in_order(
    pair: tuple[Database, Database],
) -> None:
    a, b = pair
    seen: list[Commit] = []
    b.add_commit_listener(seen.extend)
    results = [a.write_sync(lambda tx, i=i: tx.insert("t", {"n": float(i)})) for i in range(5)]
    assert b.catch_up() == 5
    assert b.catch_up() == 0
    assert [c.ts for c in seen] == [r.ts for r in results]
    assert not any(c.local for c in seen)
    assert [c.writes.doc_ids for c in seen] == [{r.value} for r in results]
    assert seen[0].writes.keys == results[0].writes.keys  # old and new keys, from the log
    assert b.last_ts == results[-1].ts
    # B's own commit is local; A's commits before it reach B's listeners first.
    a.write_sync(lambda tx: tx.insert("t", {"n": 5.0}))
    own = b.write_sync(lambda tx: tx.insert("t", {"n": 6.0}))
    assert [(c.local, c.ts) for c in seen[5:]][-1] == (True, own.ts)
    assert [c.local for c in seen[5:]] == [False, True]


def test_catch_up_racing_with_the_committer_publishes_each_commit_once(
    pair: tuple[Database, Database],
) -> None:
    a, b = pair
    seen: list[Commit] = []
    a.add_commit_listener(seen.extend)
    stop = threading.Event()

    def tail() -> None:
        while not stop.is_set():
            a.catch_up()

    tailer = threading.Thread(target=tail)
    tailer.start()
    try:
        own: set[int] = set()
        foreign: set[int] = set()
        for i in range(60):
            writer, mine = (a, own) if i % 2 else (b, foreign)
            futures = [writer.submit_write(lambda tx: tx.insert("t", {})) for _ in range(3)]
            mine.update(f.result(5).ts for f in futures)
    finally:
        stop.set()
        tailer.join()
    a.catch_up()
    tss = [c.ts for c in seen]
    assert tss == sorted(tss) and len(set(tss)) == len(tss)
    assert {c.ts for c in seen if c.local} == own
    assert {c.ts for c in seen if not c.local} >= foreign


def test_a_table_and_a_schema_made_through_one_are_used_through_the_other(
    pair: tuple[Database, Database],
) -> None:
    a, b = pair
    a.write_sync(lambda tx: tx.insert("made_by_a", {"x": 1.0}))
    assert [d["x"] for d in _docs(b, "made_by_a")] == [1.0]
    b.write_sync(lambda tx: tx.insert("made_by_a", {"x": 2.0}))
    assert b.catalog.table("made_by_a") == a.catalog.table("made_by_a")
    schema = define_schema({"items": define_table({"n": v.number()}).index("by_n", ["n"])})
    a.apply_schema(schema)
    b.write_sync(lambda tx: tx.insert("items", {"n": 3.0}))
    with pytest.raises(SchemaValidationError):
        b.write_sync(lambda tx: tx.insert("items", {"n": "three"}))
    assert b.schema is not None and "items" in b.schema.tables
    found = b.run_read(
        lambda tx: Query(tx, "items").with_index("by_n", lambda r: r.eq("n", 3.0)).collect()
    ).value
    assert [d["n"] for d in found] == [3.0]


def test_a_search_through_one_is_outdated_by_a_matching_commit_through_the_other(
    pair: tuple[Database, Database],
) -> None:
    a, b = pair
    a.apply_schema(
        define_schema(
            {
                "messages": define_table({"body": v.string(), "channel": v.string()}).search_index(
                    "search_body", search_field="body", filter_fields=["channel"]
                )
            }
        )
    )

    def search(tx: Transaction) -> list[str]:
        query = Query(tx, "messages").with_search_index(
            "search_body", lambda q: q.search("body", "hel").eq("channel", "a")
        )
        return [d["body"] for d in query.collect()]

    b.catch_up()
    first = b.run_read(search)
    assert first.value == []
    seen: list[Commit] = []
    b.add_commit_listener(seen.extend)
    a.write_sync(lambda tx: tx.insert("messages", {"body": "goodbye", "channel": "a"}))
    a.write_sync(lambda tx: tx.insert("messages", {"body": "hello", "channel": "b"}))
    matching = a.write_sync(lambda tx: tx.insert("messages", {"body": "hello", "channel": "a"}))
    assert b.catch_up() == 3
    # Only the matching commit outdates B's search (a subscription would re-run once).
    assert [c.ts for c in seen if first.read_set.overlaps_writes(c.writes)] == [matching.ts]
    assert b.run_read(search).value == ["hello"]


def test_bootstrap_from_both_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "boot.sqlite3"
    with _open(path) as a, _open(path) as b:
        tables = {t.name: t for t in a.catalog.tables()}
        assert {t.name: t for t in b.catalog.tables()} == tables
    with _open(path) as again:
        assert {t.name: t for t in again.catalog.tables()} == tables
        with again.storage_snapshot() as (conn, _catalog):
            assert len(conn.indexes()) == sum(len(t.indexes) for t in tables.values())


def _transfer(src: str, dst: str, amount: float) -> Any:
    def body(tx: Transaction) -> None:
        a, b = tx.get(src), tx.get(dst)
        assert a is not None and b is not None
        if a["balance"] < amount:
            return
        tx.patch(src, {"balance": a["balance"] - amount})
        tx.patch(dst, {"balance": b["balance"] + amount})

    return body


def test_bank_total_holds_across_two_databases(pair: tuple[Database, Database]) -> None:
    a, b = pair
    accounts = a.write_sync(
        lambda tx: [tx.insert("accounts", {"balance": 100.0}) for _ in range(4)]
    ).value
    errors: list[BaseException] = []

    def worker(db: Database, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(60):
                src, dst = rng.sample(accounts, 2)
                db.write_sync(_transfer(src, dst, float(rng.randint(1, 40))))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(db, i)) for i, db in enumerate([a, b] * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for db in (a, b):
        balances = [d["balance"] for d in _docs(db, "accounts")]
        assert sum(balances) == 400.0 and min(balances) >= 0


def test_increments_through_two_databases_are_all_kept(pair: tuple[Database, Database]) -> None:
    a, b = pair
    counter = a.write_sync(lambda tx: tx.insert("counters", {"n": 0.0})).value

    def increment(tx: Transaction) -> None:
        doc = tx.get(counter)
        assert doc is not None
        tx.patch(counter, {"n": doc["n"] + 1})

    def worker(db: Database) -> None:
        for _ in range(100):
            db.write_sync(increment)

    threads = [threading.Thread(target=worker, args=(db,)) for db in (a, b, a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert b.run_read(lambda tx: tx.get(counter)).value["n"] == 400.0


def test_a_process_behind_the_log_retention_gets_one_commit_that_changes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared.sqlite3"
    # Pruning keeps only the newest commit.
    a = Database(open_store(path, durability="off"), log_retention_ns=1)
    b, c = _open(path), _open(path)
    try:
        seen_b: list[Commit] = []
        seen_c: list[Commit] = []
        b.add_commit_listener(seen_b.extend)
        c.add_commit_listener(seen_c.extend)
        a.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
        b.catch_up()
        c.catch_up()
        assert not any(commit.changes_everything for commit in seen_b + seen_c)
        read = b.run_read(lambda tx: Query(tx, "t").collect())
        monkeypatch.setattr(committer, "PRUNE_EVERY", 1)  # from now on, at every batch
        last = [a.write_sync(lambda tx: tx.insert("t", {"n": 1.0})) for _ in range(3)][-1]

        # Through catch_up: one commit, at the store's last ts, for all the lost ones.
        assert b.catch_up() == 1
        (everything,) = seen_b[-1:]
        assert everything.changes_everything and not everything.local
        assert everything.ts == last.ts == b.last_ts
        assert {"t", "_scheduled_functions"} <= everything.writes.tables
        # A transaction at a snapshot before it cannot be checked: it conflicts.
        assert b._publisher.conflict(read.read_set, read.ts) is not None

        # Through the committer: before the lagging process's own commit.
        own = c.write_sync(lambda tx: tx.insert("t", {"n": 2.0}))
        assert [(x.changes_everything, x.local) for x in seen_c[-2:]] == [
            (True, False),
            (False, True),
        ]
        assert seen_c[-2].ts == last.ts < own.ts
        assert b.catch_up() == 1 and not seen_b[-1].changes_everything  # caught up again
    finally:
        a.close()
        b.close()
        c.close()


def test_a_resend_through_the_other_database_at_an_older_snapshot_is_answered_from_the_record(
    pair: tuple[Database, Database],
) -> None:
    """A worker killed after its commit: the resend reaches another, whose snapshot is older.

    The resend's attempt on ``b`` finds no record, at a snapshot taken before ``a``
    commits the request; at commit ``b`` must see ``a``'s record (a foreign commit
    writing the request's pseudo-key), run the resend again and answer it from there.
    """
    a, b = pair
    b.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
    key = RequestKey("session", 7, b"call")
    looked, committed = threading.Event(), threading.Event()
    resends: list[tuple[int, bool]] = []

    def send(tx: Transaction, attempts: list[tuple[int, bool]] | None = None) -> Any:
        done = tx.recorded_request(key)
        if attempts is not None:
            attempts.append((tx.ts, done is not None))
            if len(attempts) == 1:
                looked.set()
                assert committed.wait(5)
        if done is not None:
            return ("replayed", done[0], done[1])
        doc_id = tx.insert("t", {"n": 1.0})
        tx.record_request(key, doc_id)
        return doc_id

    resend = b.submit_write(lambda tx: send(tx, resends))
    assert looked.wait(5)
    first = a.write_sync(send)  # the original, committed while the resend waits
    committed.set()
    answer = resend.result(10).value
    assert answer == ("replayed", first.value, first.ts)
    assert [found for _, found in resends] == [False, True]
    assert resends[0][0] < first.ts <= resends[1][0]
    assert [d["n"] for d in _docs(b, "t")] == [0.0, 1.0]
    assert [d["n"] for d in _docs(a, "t")] == [0.0, 1.0]
