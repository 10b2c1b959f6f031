"""Group commit: one storage transaction per batch, each function isolated in it.

The first function of a batch runs without a savepoint (nothing is kept yet, so
its failure rolls the whole transaction back); client mutation records are
stored once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from blocked_writer import wait_for_committer

from syncline.database.database import Database, WriteResult
from syncline.database.query import Query
from syncline.database.transaction import RequestKey, Transaction
from syncline.errors import DatabaseUnavailable, InvalidRequest
from syncline.persistence.base import WriteConnection


def _batch(
    db: Database, jobs: list[Callable[[Transaction], Any]]
) -> list[Future[WriteResult[Any]]]:
    """Submit ``jobs`` so that they run as one batch (queued behind a blocked writer)."""
    gate = threading.Event()
    entered = threading.Event()

    def blocker(tx: Transaction) -> None:
        entered.set()
        assert gate.wait(5)

    blocked = db.submit_write(blocker, exclusive=True)
    assert entered.wait(5)
    futures = []
    for job in jobs:  # one at a time: they reach the committer in this order
        futures.append(db.submit_write(job))
        wait_for_committer(db, len(futures))
    gate.set()
    blocked.result(5)
    return futures


def _values(db: Database, table: str) -> list[float]:
    return [d["n"] for d in db.run_read(lambda tx: Query(tx, table).collect()).value]


def _fail_after_writing(tx: Transaction) -> None:
    tx.insert("t", {"n": -1.0})
    tx.insert("other", {"n": -1.0})
    raise RuntimeError("boom")


def test_a_failing_first_function_leaves_nothing_and_the_batch_goes_on(db: Database) -> None:
    batches: list[int] = []
    db.add_commit_listener(lambda commits: batches.append(len(commits)))
    jobs: list[Callable[[Transaction], Any]] = [
        _fail_after_writing,
        _fail_after_writing,
        lambda tx: tx.insert("t", {"n": 1.0}),
        _fail_after_writing,
        lambda tx: tx.insert("t", {"n": 2.0}),
    ]
    futures = _batch(db, jobs)
    for i in (0, 1, 3):
        with pytest.raises(RuntimeError, match="boom"):
            futures[i].result(5)
    assert futures[2].result(5).ts < futures[4].result(5).ts
    assert batches[-1] == 2  # one commit holding both successes
    assert _values(db, "t") == [1.0, 2.0]
    assert db.catalog.table("other") is None
    assert _values(db, "other") == []
    # The writer still works, with and without a savepoint.
    assert db.write_sync(lambda tx: tx.insert("t", {"n": 3.0})).value
    assert _values(db, "t") == [1.0, 2.0, 3.0]


def _recording(key: RequestKey, n: float) -> Callable[[Transaction], Any]:
    def body(tx: Transaction) -> Any:
        done = tx.recorded_request(key)
        if done is not None:
            return ("replayed", done)
        result = tx.insert("t", {"n": n})
        tx.record_request(key, result)
        return result

    return body


def test_a_resend_in_the_same_batch_is_answered_from_the_first_record(db: Database) -> None:
    key = RequestKey("session", 1, b"call")
    first, resent = _batch(db, [_recording(key, 1.0), _recording(key, 1.0)])
    doc_id = first.result(5).value
    assert resent.result(5).value == ("replayed", (doc_id, first.result(5).ts))
    assert _values(db, "t") == [1.0]
    # Stored with the batch: a later resend finds it too.
    later = db.write_sync(_recording(key, 1.0))
    assert later.value == ("replayed", (doc_id, first.result(5).ts))


def test_a_resend_for_another_call_in_the_same_batch_is_refused(db: Database) -> None:
    first, other = _batch(
        db,
        [_recording(RequestKey("s", 1, b"call"), 1.0), _recording(RequestKey("s", 1, b"x"), 2.0)],
    )
    assert first.result(5).value
    with pytest.raises(InvalidRequest) as info:
        other.result(5)
    assert info.value.code == "RequestIdReused"


def test_a_failed_mutation_leaves_no_record(db: Database) -> None:
    key = RequestKey("session", 7, b"call")

    def record_then_fail(tx: Transaction) -> None:
        _recording(key, 1.0)(tx)
        raise RuntimeError("boom")

    failed, retried = _batch(
        db, [lambda tx: tx.insert("t", {"n": 0.0}), record_then_fail, _recording(key, 2.0)]
    )[1:]
    with pytest.raises(RuntimeError):
        failed.result(5)
    assert retried.result(5).value != "replayed"
    assert _values(db, "t") == [0.0, 2.0]
    assert db.run_read(lambda tx: tx.recorded_request(key)).value == (
        retried.result(5).value,
        retried.result(5).ts,
    )


def test_a_failed_commit_fails_its_mutations_and_the_next_one_commits(db: Database) -> None:
    store = db.persistence
    commit = store.commit_write
    failures = [DatabaseUnavailable("the disk went away")]

    def failing_once(conn: WriteConnection) -> None:
        if failures:
            store.abort_write(conn)  # a failed COMMIT ends the transaction and its lock
            raise failures.pop()
        commit(conn)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "commit_write", failing_once)
        lost = db.submit_write(lambda tx: tx.insert("t", {"n": 1.0}))
        with pytest.raises(DatabaseUnavailable, match="the disk went away"):
            lost.result(10)
        # The write lock was given back once, not twice: the next batch commits.
        kept = db.write_sync(lambda tx: tx.insert("t", {"n": 2.0}))
    assert kept.ts > 0
    assert [d["n"] for d in db.run_read(lambda tx: Query(tx, "t").collect()).value] == [2.0]


def test_puts_written_together_are_in_place_for_deletes_locked_runs_and_reads(
    db: Database,
) -> None:
    """Inserts of a batch are written together (in few statements), yet a deletion,
    a run on the writer itself and the final state all see them where they belong."""
    gone = db.write_sync(lambda tx: tx.insert("t", {"n": 1.0})).value
    db.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
    batches: list[int] = []
    db.add_commit_listener(lambda commits: batches.append(len(commits)))

    def on_the_writer(tx: Transaction) -> list[float]:
        seen = [d["n"] for d in Query(tx, "t").collect()]
        tx.insert("new_table", {"n": 9.0})  # a new table: run under the lock, in the batch
        return seen

    futures = _batch(
        db,
        [
            lambda tx: tx.insert("t", {"n": 2.0}),
            lambda tx: tx.delete(gone),
            lambda tx: tx.insert("t", {"n": 3.0}),
            on_the_writer,
            lambda tx: tx.insert("t", {"n": 4.0}),
        ],
    )
    results = [f.result(5) for f in futures]
    assert batches[-1] == 5  # one group commit
    assert results[3].value == [0.0, 2.0, 3.0]
    assert _values(db, "t") == [0.0, 2.0, 3.0, 4.0]
    assert db.run_read(lambda tx: tx.get(results[4].value)) is not None
    assert _values(db, "new_table") == [9.0]


class _OtherProcess:
    """Another process holds the store's write lock until :meth:`release`."""

    def __init__(self, db: Database) -> None:
        self.free, self.waiting = threading.Event(), threading.Event()
        begin_write = db.persistence.begin_write

        def begin_write_after_it() -> WriteConnection:
            if threading.current_thread().name == "syncline-writer" and not self.free.is_set():
                self.waiting.set()
                assert self.free.wait(5)
            return begin_write()

        db.persistence.begin_write = begin_write_after_it  # type: ignore[method-assign]

    def release(self) -> None:
        self.free.set()


def _committer_waits_for_the_lock(db: Database) -> tuple[_OtherProcess, Future[Any]]:
    """A write the committer took, waiting for the lock another process holds."""
    # The committer is busy: the write is queued for it, not committed by the thread
    # that ran it.
    gate, entered = threading.Event(), threading.Event()
    busy = db.submit_write(lambda tx: entered.set() or gate.wait(5), exclusive=True)
    assert entered.wait(5)
    first = db.submit_write(lambda tx: tx.insert("t", {"n": 1.0}))
    wait_for_committer(db, 1)
    other = _OtherProcess(db)
    gate.set()
    busy.result(5)
    assert other.waiting.wait(5)
    return other, first


def test_a_batch_that_waited_for_the_write_lock_takes_the_writes_ready_by_then(
    db: Database,
) -> None:
    """What finishes its run while the committer waits for another process's write
    lock joins the waiting batch (one COMMIT, in submission order), not the next one."""
    db.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
    batches: list[list[int]] = []
    db.add_commit_listener(lambda commits: batches.append([c.ts for c in commits]))
    other, first = _committer_waits_for_the_lock(db)
    more = [db.submit_write(lambda tx, n=n: tx.insert("t", {"n": n})) for n in (2.0, 3.0)]
    wait_for_committer(db, 2)
    other.release()
    results = [f.result(5) for f in (first, *more)]
    assert batches[-1] == [r.ts for r in results]
    assert _values(db, "t") == [0.0, 1.0, 2.0, 3.0]


def test_writes_behind_an_exclusive_one_wait_for_it_whoever_is_ready(db: Database) -> None:
    """The waiting batch takes no exclusive write, nor anything queued behind one."""
    db.write_sync(lambda tx: tx.insert("t", {"n": 0.0}))
    batches: list[list[int]] = []
    db.add_commit_listener(lambda commits: batches.append([c.ts for c in commits]))
    other, first = _committer_waits_for_the_lock(db)
    exclusive = db.submit_write(
        lambda tx: [d["n"] for d in Query(tx, "t").collect()], exclusive=True
    )
    wait_for_committer(db, 1)
    after = db.submit_write(lambda tx: tx.insert("t", {"n": 2.0}))
    wait_for_committer(db, 2)
    other.release()
    results = [f.result(5) for f in (first, exclusive, after)]
    assert batches[-3:] == [[r.ts] for r in results]  # three batches, in this order
    assert results[1].value == [0.0, 1.0]
    assert _values(db, "t") == [0.0, 1.0, 2.0]
