"""Optimistic concurrency: writes run in parallel at snapshots; the committer checks them.

The interleavings are forced with barriers: both transactions read before either
commits, so the second one's reads are stale at commit and it must run again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blocked_writer import wait_for_committer

from stores import open_store
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import RequestKey, Transaction
from syncline.database.writes import Commit
from syncline.errors import DatabaseUnavailable, OptimisticConcurrencyControlFailure
from syncline.testing import TestBackend


def _open(path: Path, **options: Any) -> Database:
    return Database(open_store(path, durability="off"), mutation_threads=4, **options)


@pytest.fixture
def pdb(tmp_path: Path) -> Iterator[Database]:
    with _open(tmp_path / "occ.sqlite3") as database:
        yield database


def _counter(db: Database) -> str:
    doc_id: str = db.write_sync(lambda tx: tx.insert("counters", {"n": 0.0})).value
    return doc_id


def _value(db: Database, doc_id: str, field: str = "n") -> float:
    doc = db.run_read(lambda tx: tx.get(doc_id)).value
    assert doc is not None
    return float(doc[field])


class _Racer:
    """An increment whose first attempt waits, after reading, until its rival has read too."""

    def __init__(self, doc_id: str, barrier: threading.Barrier) -> None:
        self.doc_id = doc_id
        self.barrier = barrier
        #: the snapshot ts of every attempt
        self.snapshots: list[int] = []

    def __call__(self, tx: Transaction) -> float:
        doc = tx.get(self.doc_id)
        assert doc is not None
        self.snapshots.append(tx.ts)
        if len(self.snapshots) == 1:
            self.barrier.wait()
        n = float(doc["n"]) + 1
        tx.patch(self.doc_id, {"n": n})
        return n


def _race(db: Database, doc_id: str) -> tuple[list[_Racer], list[Any]]:
    barrier = threading.Barrier(2, timeout=5)
    racers = [_Racer(doc_id, barrier), _Racer(doc_id, barrier)]
    futures = [db.submit_write(racer) for racer in racers]
    outcomes: list[Any] = []
    for future in futures:
        try:
            outcomes.append(future.result(10))
        except Exception as exc:
            outcomes.append(exc)
    return racers, outcomes


def test_two_read_modify_writes_from_one_snapshot_never_both_commit(pdb: Database) -> None:
    counter = _counter(pdb)
    racers, results = _race(pdb, counter)
    # Both first attempts read the same snapshot...
    assert racers[0].snapshots[0] == racers[1].snapshots[0]
    # ...so exactly one of them ran again, at a newer snapshot, and saw the other's write.
    assert sorted(len(r.snapshots) for r in racers) == [1, 2]
    retried = next(r for r in racers if len(r.snapshots) == 2)
    assert retried.snapshots[1] > retried.snapshots[0]
    assert sorted(r.value for r in results) == [1.0, 2.0]
    assert results[racers.index(retried)].value == 2.0  # the final attempt's result
    assert results[0].ts != results[1].ts
    assert _value(pdb, counter) == 2.0
    assert pdb.conflicts == 1


def test_after_its_attempts_a_conflicting_mutation_runs_under_the_lock(tmp_path: Path) -> None:
    with _open(tmp_path / "locked.sqlite3", optimistic_attempts=1) as db:
        counter = _counter(db)
        racers, results = _race(db, counter)
        assert sorted(r.value for r in results) == [1.0, 2.0]
        # The loser's second run was on the committer: at its commit ts, under the lock.
        loser = next(i for i, r in enumerate(racers) if len(r.snapshots) == 2)
        assert racers[loser].snapshots[1] == results[loser].ts
        assert _value(db, counter) == 2.0


def test_without_the_locked_fallback_a_conflict_fails_naming_the_table(tmp_path: Path) -> None:
    with _open(tmp_path / "fail.sqlite3", optimistic_attempts=1, locked_fallback=False) as db:
        counter = _counter(db)
        _racers, results = _race(db, counter)
        failures = [r for r in results if isinstance(r, OptimisticConcurrencyControlFailure)]
        assert len(failures) == 1
        assert failures[0].code == "OptimisticConcurrencyControlFailure"
        assert "'counters'" in failures[0].message
        assert _value(db, counter) == 1.0


@pytest.mark.parametrize("mutation_threads", [0, 1, 4])
def test_threads_times_increments_of_one_counter_are_all_kept(
    tmp_path: Path, mutation_threads: int
) -> None:
    with Database(
        open_store(tmp_path / "counter.sqlite3", durability="off"),
        mutation_threads=mutation_threads,
    ) as pdb:
        _increment_concurrently(pdb)


def _increment_concurrently(pdb: Database) -> None:
    counter = _counter(pdb)

    def increment(tx: Transaction) -> None:
        doc = tx.get(counter)
        assert doc is not None
        tx.patch(counter, {"n": doc["n"] + 1})

    def worker() -> None:
        futures = [pdb.submit_write(increment) for _ in range(50)]
        for future in futures:
            future.result(30)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _value(pdb, counter) == 400.0


def test_bank_total_holds_under_concurrent_transfers(pdb: Database) -> None:
    accounts = pdb.write_sync(
        lambda tx: [tx.insert("accounts", {"balance": 100.0}) for _ in range(5)]
    ).value

    def transfer(src: str, dst: str, amount: float) -> Callable[[Transaction], bool]:
        def body(tx: Transaction) -> bool:
            a, b = tx.get(src), tx.get(dst)
            assert a is not None and b is not None
            if a["balance"] < amount:
                return False
            tx.patch(src, {"balance": a["balance"] - amount})
            tx.patch(dst, {"balance": b["balance"] + amount})
            return True

        return body

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        futures = []
        for _ in range(60):
            src, dst = rng.sample(accounts, 2)
            futures.append(pdb.submit_write(transfer(src, dst, float(rng.randint(1, 60)))))
        for future in futures:
            future.result(30)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    balances = [d["balance"] for d in pdb.run_read(lambda tx: Query(tx, "accounts")).value]
    assert sum(balances) == 500.0 and min(balances) >= 0


def test_mutations_that_do_not_conflict_commit_from_one_snapshot_in_one_batch(
    pdb: Database,
) -> None:
    first, second = pdb.write_sync(
        lambda tx: [tx.insert("counters", {"n": 0.0}) for _ in range(2)]
    ).value
    batches: list[list[Commit]] = []
    pdb.add_commit_listener(batches.append)
    snapshots: list[int] = []

    def increment(doc_id: str) -> Callable[[Transaction], None]:
        def body(tx: Transaction) -> None:
            doc = tx.get(doc_id)
            assert doc is not None
            snapshots.append(tx.ts)
            tx.patch(doc_id, {"n": doc["n"] + 1})

        return body

    gate = threading.Event()
    blocked = pdb.submit_write(lambda tx: gate.wait(5), exclusive=True)
    futures = [pdb.submit_write(increment(first)), pdb.submit_write(increment(second))]
    wait_for_committer(pdb, 2)
    gate.set()
    blocked.result(5)
    for future in futures:
        future.result(5)
    assert len(snapshots) == 2 and snapshots[0] == snapshots[1]
    assert [len(batch) for batch in batches] == [1, 2]  # the blocker, then both at once
    assert pdb.conflicts == 0
    assert _value(pdb, first) == _value(pdb, second) == 1.0


def test_two_concurrent_resends_of_one_request_commit_once(pdb: Database) -> None:
    pdb.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
    key = RequestKey("session", 1, b"call")
    barrier = threading.Barrier(2, timeout=5)
    attempts: list[int] = []

    def send(tx: Transaction) -> Any:
        done = tx.recorded_request(key)
        attempts.append(tx.ts)
        if len(attempts) <= 2:
            barrier.wait()  # both found no record
        if done is not None:
            return ("replayed", done[0])
        doc_id = tx.insert("t", {"n": 1.0})
        tx.record_request(key, doc_id)
        return doc_id

    first, second = pdb.submit_write(send), pdb.submit_write(send)
    values = [first.result(10).value, second.result(10).value]
    replayed = [v for v in values if isinstance(v, tuple)]
    stored = [v for v in values if not isinstance(v, tuple)]
    assert len(replayed) == 1 and len(stored) == 1
    assert replayed[0][1] == stored[0]
    assert len(attempts) == 3
    docs = pdb.run_read(lambda tx: Query(tx, "t").collect()).value
    assert [d["n"] for d in docs] == [0.0, 1.0]


def test_two_concurrent_uses_of_one_upload_token_store_once(pdb: Database) -> None:
    barrier = threading.Barrier(2, timeout=5)
    attempts: list[int] = []

    def use(tx: Transaction) -> str:
        used = tx.upload_token_used(b"nonce")
        attempts.append(tx.ts)
        if len(attempts) <= 2:
            barrier.wait()
        if used:
            return "refused"
        tx.record_upload_token(b"nonce", "storage-id")
        return "stored"

    futures = [pdb.submit_write(use), pdb.submit_write(use)]
    assert sorted(f.result(10).value for f in futures) == ["refused", "stored"]


def test_at_low_load_the_thread_that_ran_a_mutation_commits_it(tmp_path: Path) -> None:
    with Database(open_store(tmp_path / "idle.sqlite3", durability="off")) as db:
        publishers: list[str] = []
        db.add_commit_listener(lambda commits: publishers.append(threading.current_thread().name))
        for n in range(3):
            db.write_sync(lambda tx, n=n: tx.insert("t", {"n": float(n)}))
        # No hand-off to the committer's thread and back: the mutation thread committed.
        assert publishers == ["syncline-mutation-0"] * 3
        assert _sequence(db) == [0.0, 1.0, 2.0]


def test_writes_submitted_in_a_row_commit_in_that_order_at_any_load(tmp_path: Path) -> None:
    with Database(open_store(tmp_path / "order.sqlite3", durability="off")) as db:
        rng = random.Random(7)
        futures = []
        for n in range(300):
            if rng.random() < 0.2:
                time.sleep(rng.random() / 1000)  # idle moments: some commit on the mutation thread
            futures.append(db.submit_write(lambda tx, n=n: tx.insert("t", {"n": float(n)})))
        stamps = [future.result(10).ts for future in futures]
        assert stamps == sorted(stamps)
        assert _sequence(db) == [float(n) for n in range(300)]


def test_creation_time_order_is_commit_order_when_attempts_finish_out_of_order(
    pdb: Database,
) -> None:
    pdb.write_sync(lambda tx: tx.insert("t", {"n": -1.0}))  # the table exists: no catalog retry
    second_committed = threading.Event()
    pdb.add_commit_listener(lambda commits: second_committed.set())
    attempts: list[float] = []

    def first(tx: Transaction) -> None:
        tx.insert("t", {"n": 0.0})  # its _creationTime is issued now...
        attempts.append(tx.ts)
        if len(attempts) == 1:
            assert second_committed.wait(5)  # ...but a later insert commits first

    started = pdb.submit_write(first)
    while not attempts:
        time.sleep(0.001)
    second = pdb.submit_write(lambda tx: tx.insert("t", {"n": 1.0}))
    first_ts = started.result(10).ts
    assert second.result(10).ts < first_ts
    # Committed second, it ran again (under the lock, in its place): _creationTime, a
    # table's default order, follows commits.
    assert len(attempts) == 2
    assert pdb.creation_reruns == 1
    assert _sequence(pdb) == [-1.0, 1.0, 0.0]


def _sequence(db: Database) -> list[float]:
    docs = db.run_read(lambda tx: Query(tx, "t").collect()).value
    return [d["n"] for d in docs]


def test_a_failure_seen_at_a_stale_snapshot_is_retried(pdb: Database) -> None:
    account = pdb.write_sync(lambda tx: tx.insert("accounts", {"balance": 0.0})).value
    barrier = threading.Barrier(2, timeout=5)
    committed = threading.Event()
    pdb.add_commit_listener(lambda commits: committed.set())
    attempts: list[int] = []

    def withdraw(tx: Transaction) -> None:
        doc = tx.get(account)
        assert doc is not None
        attempts.append(tx.ts)
        if len(attempts) == 1:
            barrier.wait()  # the deposit has read too...
            assert committed.wait(5)  # ...and committed
        if doc["balance"] < 10:
            raise ValueError("insufficient funds")
        tx.patch(account, {"balance": doc["balance"] - 10})

    def deposit(tx: Transaction) -> None:
        doc = tx.get(account)
        assert doc is not None
        barrier.wait()
        tx.patch(account, {"balance": doc["balance"] + 10})

    # The deposit's commit lands after the withdrawal read: the withdrawal's failure
    # came from a stale snapshot, and running it again makes it succeed.
    withdrawn = pdb.submit_write(withdraw)
    deposited = pdb.submit_write(deposit)
    deposited.result(10)
    withdrawn.result(10)
    assert len(attempts) == 2
    assert _value(pdb, account, "balance") == 0.0


BUMP = """
from syncline import mutation, v

@mutation
def init(ctx):
    return ctx.db.insert("counters", {"n": 0})

@mutation(args={"id": v.id("counters")})
def bump(ctx, id):
    n = ctx.db.get(id)["n"]
    print("saw", n)
    ctx.db.patch(id, {"n": n + 1})
    return n + 1
"""


def test_a_retried_mutation_answers_and_logs_as_its_final_attempt(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "app.py").write_text(BUMP)
    with TestBackend(functions) as t:
        counter = t.mutation("app:init")
        database = t.app.database
        attempts: list[Any] = []

        def meddle(tx: Transaction, value: Any) -> None:
            attempts.append(value)
            if len(attempts) == 1:  # another write commits after this attempt read
                database.submit_write(
                    lambda other: other.patch(counter, {"n": 10.0}), exclusive=True
                ).result(5)

        outcome = t.app.executor.mutation_sync("app:bump", {"id": counter}, extra=meddle)
        assert attempts == [1.0, 11.0]
        assert outcome.error is None and outcome.value == 11.0
        assert outcome.log_lines == ["[LOG] saw 10.0"]
        assert _value(database, counter) == 11.0


def test_a_snapshot_that_cannot_be_ended_does_not_stop_later_mutations(pdb: Database) -> None:
    store = pdb.persistence
    release = store.release_reader
    failures = [DatabaseUnavailable("the connection went away")]

    def failing_once(conn: Any) -> None:
        release(conn)
        if failures:
            raise failures.pop()

    def read_then_insert(tx: Transaction, n: int) -> None:
        Query(tx, "t").collect()  # a read: the attempt opens a snapshot
        tx.insert("t", {"n": float(n)})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "release_reader", failing_once)
        for n in range(3):
            pdb.submit_write(lambda tx, n=n: read_then_insert(tx, n)).result(5)
    assert not failures
    assert _sequence(pdb) == [0.0, 1.0, 2.0]
