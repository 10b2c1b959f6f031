"""Document operations (semantics §1.3, §3.1), directly on Transaction and through ctx.db."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from blocked_writer import wait_for_committer

from stores import open_store
from syncline import UNDEFINED, ConvexError, Int64
from syncline.clock import ManualClock
from syncline.database.catalog import FIRST_USER_TABLE_NUMBER
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.database.writes import Commit
from syncline.errors import (
    InternalError,
    InvalidId,
    InvalidValue,
    NonexistentDocument,
    SystemTableError,
)
from syncline.values.ids import is_id, new_id, table_number_of


def write(db: Database, fn: Callable[[Transaction], Any]) -> Any:
    return db.write_sync(fn).value


def read(db: Database, fn: Callable[[Transaction], Any]) -> Any:
    return db.run_read(fn).value


def all_docs(db: Database, table: str) -> list[dict[str, Any]]:
    return read(db, lambda tx: Query(tx, table).collect())


# ---------------------------------------------------------------------- insert


def test_insert_adds_system_fields_and_returns_the_id(db: Database, clock: ManualClock) -> None:
    doc_id = write(db, lambda tx: tx.insert("users", {"name": "ada"}))
    assert is_id(doc_id)
    assert table_number_of(doc_id) == db.catalog.table("users").number
    doc = read(db, lambda tx: tx.get(doc_id))
    assert set(doc) == {"_id", "_creationTime", "name"}
    assert doc["_id"] == doc_id
    assert type(doc["_creationTime"]) is float
    assert doc["_creationTime"] == pytest.approx(clock.now_ms(), abs=1.0)


def test_creation_time_follows_the_clock(db: Database, clock: ManualClock) -> None:
    clock.advance(60_000)
    doc_id = write(db, lambda tx: tx.insert("t", {}))
    assert read(db, lambda tx: tx.get(doc_id))["_creationTime"] == pytest.approx(
        clock.now_ms(), abs=1.0
    )


def test_creation_time_strictly_increases_within_one_mutation(db: Database) -> None:
    ids = write(db, lambda tx: [tx.insert("t", {"i": float(i)}) for i in range(50)])
    times = [read(db, lambda tx, i=i: tx.get(i))["_creationTime"] for i in ids]
    assert all(a < b for a, b in itertools.pairwise(times))


def test_creation_time_strictly_increases_across_mutations(db: Database) -> None:
    # The clock does not move: consecutive commit timestamps differ by 1 ns, which
    # a float64 millisecond count cannot represent. Creation times must still grow.
    ids = [write(db, lambda tx: tx.insert("t", {})) for _ in range(20)]
    futures = [db.submit_write(lambda tx: tx.insert("t", {})) for _ in range(20)]
    ids += [f.result().value for f in futures]
    times = [d["_creationTime"] for d in all_docs(db, "t")]
    assert len(times) == 40
    assert all(a < b for a, b in itertools.pairwise(times))
    # Sequential writes: creation order is their order. Concurrent ones run in parallel
    # (optimistically): each gets its creation time when it runs.
    in_order = [d["_id"] for d in all_docs(db, "t")]
    assert in_order[:20] == ids[:20]
    assert set(in_order) == set(ids)


def test_creation_time_keeps_increasing_after_reopen(tmp_path: Any) -> None:
    clock = ManualClock()
    path = str(tmp_path / "reopen.sqlite3")
    with Database(open_store(path, durability="off"), clock=clock) as db:
        first = write(db, lambda tx: [tx.insert("t", {}) for _ in range(3)])
        last_time = read(db, lambda tx: tx.get(first[-1]))["_creationTime"]
    with Database(open_store(path, durability="off"), clock=clock) as db:
        again = write(db, lambda tx: tx.insert("t", {}))
        assert read(db, lambda tx: tx.get(again))["_creationTime"] > last_time


def test_insert_creates_the_table_implicitly(db: Database) -> None:
    assert db.catalog.table("fresh") is None
    assert all_docs(db, "fresh") == []
    doc_id = write(db, lambda tx: tx.insert("fresh", {"a": 1.0}))
    info = db.catalog.table("fresh")
    assert info is not None
    assert info.number >= FIRST_USER_TABLE_NUMBER
    assert set(info.indexes) == {"by_id", "by_creation_time"}
    assert [d["_id"] for d in all_docs(db, "fresh")] == [doc_id]


def test_tables_get_distinct_numbers(db: Database) -> None:
    a = write(db, lambda tx: tx.insert("a", {}))
    b = write(db, lambda tx: tx.insert("b", {}))
    assert table_number_of(a) != table_number_of(b)
    assert read(db, lambda tx: tx.table_name_of_id(a)) == "a"
    assert read(db, lambda tx: tx.table_name_of_id(b)) == "b"


@pytest.mark.parametrize("name", ["", "1abc", "has-dash", "x" * 65, "_private", "sp ace"])
def test_insert_rejects_invalid_table_names(db: Database, name: str) -> None:
    with pytest.raises(InvalidValue):
        write(db, lambda tx: tx.insert(name, {}))
    assert db.catalog.table(name) is None


def test_insert_with_id_field_is_rejected(db: Database) -> None:
    other = write(db, lambda tx: tx.insert("t", {}))
    with pytest.raises(InvalidValue) as info:
        write(db, lambda tx: tx.insert("t", {"_id": other, "a": 1.0}))
    assert info.value.code == "InvalidIdError"
    assert len(all_docs(db, "t")) == 1


def test_insert_with_creation_time_field_is_rejected(db: Database) -> None:
    with pytest.raises(InvalidValue) as info:
        write(db, lambda tx: tx.insert("t", {"_creationTime": 5.0}))
    assert info.value.code == "InvalidCreationTimeError"
    assert all_docs(db, "t") == []


def test_insert_with_underscore_field_is_rejected(db: Database) -> None:
    with pytest.raises(InvalidValue, match="_foo"):
        write(db, lambda tx: tx.insert("t", {"_foo": 1.0}))
    assert all_docs(db, "t") == []


def test_insert_drops_undefined_fields(db: Database) -> None:
    doc_id = write(db, lambda tx: tx.insert("t", {"a": UNDEFINED, "b": 1.0, "c": {"d": UNDEFINED}}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert "a" not in doc
    assert doc["b"] == 1.0
    assert doc["c"] == {}


def test_insert_turns_python_ints_into_floats(db: Database) -> None:
    doc_id = write(db, lambda tx: tx.insert("t", {"n": 3, "nested": [1, {"x": 2}]}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert doc["n"] == 3.0 and type(doc["n"]) is float
    assert type(doc["nested"][0]) is float
    assert type(doc["nested"][1]["x"]) is float


def test_insert_keeps_int64(db: Database) -> None:
    big = Int64(2**62)
    doc_id = write(db, lambda tx: tx.insert("t", {"n": big, "small": Int64(1)}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert type(doc["n"]) is Int64 and doc["n"] == 2**62
    assert type(doc["small"]) is Int64


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**70])
def test_insert_rejects_ints_beyond_float_precision(db: Database, value: int) -> None:
    with pytest.raises(InvalidValue, match="Int64"):
        write(db, lambda tx: tx.insert("t", {"n": value}))
    assert all_docs(db, "t") == []


def test_insert_accepts_two_to_the_53(db: Database) -> None:
    doc_id = write(db, lambda tx: tx.insert("t", {"n": 2**53}))
    assert read(db, lambda tx: tx.get(doc_id))["n"] == float(2**53)


@pytest.mark.parametrize("value", [[1, 2], "doc", None, 5])
def test_insert_needs_a_dict(db: Database, value: Any) -> None:
    with pytest.raises(InvalidValue):
        write(db, lambda tx: tx.insert("t", value))


@pytest.mark.parametrize("bad", [{"a": (1, 2)}, {"a": {1, 2}}, {"a": object()}, {"a-b": 1.0}])
def test_insert_rejects_non_values(db: Database, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        write(db, lambda tx: tx.insert("t", bad))
    assert all_docs(db, "t") == []


def test_stored_document_is_a_copy(db: Database) -> None:
    value: dict[str, Any] = {"list": [1.0]}

    def body(tx: Transaction) -> str:
        doc_id = tx.insert("t", value)
        value["list"].append(2.0)
        return doc_id

    doc_id = write(db, body)
    assert read(db, lambda tx: tx.get(doc_id))["list"] == [1.0]


# ---------------------------------------------------------------------- get


def test_get_missing_deleted_and_unknown_table_ids(db: Database) -> None:
    doc_id = write(db, lambda tx: tx.insert("t", {}))
    never = new_id(db.catalog.table("t").number)
    unknown_table = new_id(54321)
    assert read(db, lambda tx: tx.get(never)) is None
    assert read(db, lambda tx: tx.get(unknown_table)) is None
    write(db, lambda tx: tx.delete(doc_id))
    assert read(db, lambda tx: tx.get(doc_id)) is None


@pytest.mark.parametrize("bad", ["not-an-id", "", "j575cvxjghpnn8wh4aea9mgxhegpqf9b", 42, None])
def test_get_malformed_id_is_invalid_id(db: Database, bad: Any) -> None:
    with pytest.raises(InvalidId):
        read(db, lambda tx: tx.get(bad))


def test_get_sees_own_writes(db: Database) -> None:
    def body(tx: Transaction) -> tuple[Any, ...]:
        doc_id = tx.insert("t", {"v": 1.0})
        first = tx.get(doc_id)
        tx.patch(doc_id, {"v": 2.0})
        second = tx.get(doc_id)
        tx.delete(doc_id)
        return first, second, tx.get(doc_id), Query(tx, "t").collect()

    first, second, third, listed = write(db, body)
    assert first["v"] == 1.0
    assert second["v"] == 2.0
    assert third is None
    assert listed == []


# ---------------------------------------------------------------------- patch


@pytest.fixture
def doc_id(db: Database) -> str:
    return write(
        db,
        lambda tx: tx.insert(
            "t", {"a": 1.0, "b": "keep", "nested": {"x": 1.0, "y": 2.0}, "tags": ["p"]}
        ),
    )


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def test_patch_is_a_shallow_merge(db: Database, doc_id: str) -> None:
    before = read(db, lambda tx: tx.get(doc_id))
    write(db, lambda tx: tx.patch(doc_id, {"a": 2, "nested": {"z": 3.0}, "new": True}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert user_fields(doc) == {
        "a": 2.0,
        "b": "keep",
        "nested": {"z": 3.0},  # replaced wholesale, not merged
        "tags": ["p"],
        "new": True,
    }
    assert doc["_id"] == before["_id"]
    assert doc["_creationTime"] == before["_creationTime"]


def test_patch_undefined_removes_a_field(db: Database, doc_id: str) -> None:
    write(db, lambda tx: tx.patch(doc_id, {"a": UNDEFINED, "missing": UNDEFINED}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert "a" not in doc
    assert user_fields(doc) == {"b": "keep", "nested": {"x": 1.0, "y": 2.0}, "tags": ["p"]}


def test_patch_with_none_sets_null(db: Database, doc_id: str) -> None:
    write(db, lambda tx: tx.patch(doc_id, {"a": None}))
    assert read(db, lambda tx: tx.get(doc_id))["a"] is None


def test_empty_patch_is_a_noop(db: Database, doc_id: str) -> None:
    before = read(db, lambda tx: tx.get(doc_id))
    result = db.write_sync(lambda tx: tx.patch(doc_id, {}))
    assert read(db, lambda tx: tx.get(doc_id)) == before
    assert result.writes.is_empty()
    # An unchanged value is not a write either.
    assert db.write_sync(lambda tx: tx.patch(doc_id, {"a": 1.0})).writes.is_empty()


def test_patch_with_equal_system_fields_is_allowed(db: Database, doc_id: str) -> None:
    before = read(db, lambda tx: tx.get(doc_id))
    write(
        db,
        lambda tx: tx.patch(
            doc_id, {"_id": doc_id, "_creationTime": before["_creationTime"], "a": 5.0}
        ),
    )
    assert read(db, lambda tx: tx.get(doc_id))["a"] == 5.0


def test_patch_with_a_different_id_is_rejected(db: Database, doc_id: str) -> None:
    other = write(db, lambda tx: tx.insert("t", {}))
    with pytest.raises(InvalidValue) as info:
        write(db, lambda tx: tx.patch(doc_id, {"_id": other, "a": 5.0}))
    assert info.value.code == "InvalidIdError"
    assert read(db, lambda tx: tx.get(doc_id))["a"] == 1.0


def test_patch_with_a_different_creation_time_is_rejected(db: Database, doc_id: str) -> None:
    with pytest.raises(InvalidValue) as info:
        write(db, lambda tx: tx.patch(doc_id, {"_creationTime": 1.0}))
    assert info.value.code == "InvalidCreationTimeError"


def test_patch_with_underscore_field_is_rejected(db: Database, doc_id: str) -> None:
    with pytest.raises(InvalidValue, match="_secret"):
        write(db, lambda tx: tx.patch(doc_id, {"_secret": 1.0}))


def test_patch_nonexistent_document(db: Database, doc_id: str) -> None:
    write(db, lambda tx: tx.delete(doc_id))
    with pytest.raises(NonexistentDocument) as info:
        write(db, lambda tx: tx.patch(doc_id, {"a": 1.0}))
    assert info.value.message == f"Update on nonexistent document ID {doc_id}"
    assert info.value.code == "NonexistentDocument"


def test_patch_id_of_table_that_does_not_exist(db: Database) -> None:
    ghost = new_id(77777)
    with pytest.raises(NonexistentDocument, match=f"Update on nonexistent document ID {ghost}"):
        write(db, lambda tx: tx.patch(ghost, {"a": 1.0}))


def test_patch_malformed_id(db: Database) -> None:
    with pytest.raises(InvalidId):
        write(db, lambda tx: tx.patch("nope", {"a": 1.0}))


# ---------------------------------------------------------------------- replace


def test_replace_replaces_every_user_field(db: Database, doc_id: str) -> None:
    before = read(db, lambda tx: tx.get(doc_id))
    write(db, lambda tx: tx.replace(doc_id, {"only": 1, "gone": UNDEFINED}))
    doc = read(db, lambda tx: tx.get(doc_id))
    assert user_fields(doc) == {"only": 1.0}
    assert doc["_id"] == doc_id
    assert doc["_creationTime"] == before["_creationTime"]


def test_replace_with_equal_system_fields(db: Database, doc_id: str) -> None:
    before = read(db, lambda tx: tx.get(doc_id))
    write(db, lambda tx: tx.replace(doc_id, {**before, "a": 9.0}))
    assert read(db, lambda tx: tx.get(doc_id)) == {**before, "a": 9.0}
    with pytest.raises(InvalidValue):
        write(db, lambda tx: tx.replace(doc_id, {**before, "_creationTime": 2.0}))


def test_replace_nonexistent(db: Database, doc_id: str) -> None:
    write(db, lambda tx: tx.delete(doc_id))
    with pytest.raises(NonexistentDocument) as info:
        write(db, lambda tx: tx.replace(doc_id, {}))
    assert info.value.message == f"Replace on nonexistent document ID {doc_id}"


def test_replace_needs_a_dict(db: Database, doc_id: str) -> None:
    with pytest.raises(InvalidValue):
        write(db, lambda tx: tx.replace(doc_id, ["x"]))


# ---------------------------------------------------------------------- delete


def test_delete_then_get_in_the_same_mutation(db: Database, doc_id: str) -> None:
    def body(tx: Transaction) -> Any:
        tx.delete(doc_id)
        return tx.get(doc_id)

    assert write(db, body) is None
    assert read(db, lambda tx: tx.get(doc_id)) is None
    assert all_docs(db, "t") == []


def test_delete_nonexistent(db: Database, doc_id: str) -> None:
    write(db, lambda tx: tx.delete(doc_id))
    with pytest.raises(NonexistentDocument) as info:
        write(db, lambda tx: tx.delete(doc_id))
    assert info.value.message == f"Delete on nonexistent document ID {doc_id}"


def test_insert_then_delete_in_one_mutation_leaves_nothing(db: Database) -> None:
    def body(tx: Transaction) -> str:
        doc_id = tx.insert("t", {})
        tx.delete(doc_id)
        return doc_id

    doc_id = write(db, body)
    assert read(db, lambda tx: tx.get(doc_id)) is None
    assert all_docs(db, "t") == []


# ---------------------------------------------------------------------- read-only and atomicity


def test_read_transactions_cannot_write(db: Database, doc_id: str) -> None:
    for op in (
        lambda tx: tx.insert("t", {}),
        lambda tx: tx.patch(doc_id, {"a": 2.0}),
        lambda tx: tx.replace(doc_id, {}),
        lambda tx: tx.delete(doc_id),
    ):
        with pytest.raises(SystemTableError, match="read-only"):
            read(db, op)
    assert read(db, lambda tx: tx.get(doc_id))["a"] == 1.0


def test_a_failing_mutation_writes_nothing(db: Database, doc_id: str) -> None:
    def body(tx: Transaction) -> None:
        tx.insert("t", {"n": 1.0})
        tx.insert("brand_new", {})
        tx.patch(doc_id, {"a": 100.0})
        raise ConvexError("nope")

    with pytest.raises(ConvexError):
        write(db, body)
    assert len(all_docs(db, "t")) == 1
    assert read(db, lambda tx: tx.get(doc_id))["a"] == 1.0
    assert db.catalog.table("brand_new") is None


def test_snapshot_reads_do_not_see_later_commits(db: Database) -> None:
    write(db, lambda tx: tx.insert("t", {"n": 1.0}))
    started = threading.Event()
    resume = threading.Event()

    def slow_read(tx: Transaction) -> tuple[int, int]:
        first = len(Query(tx, "t").collect())
        started.set()
        assert resume.wait(5)
        return first, len(Query(tx, "t").collect())

    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(db.run_read(slow_read)))
    reader.start()
    assert started.wait(5)
    write(db, lambda tx: tx.insert("t", {"n": 2.0}))
    resume.set()
    reader.join(5)
    outcome = result[0]
    assert outcome.value == (1, 1)
    assert outcome.ts < db.last_ts


# ---------------------------------------------------------------------- commits and timestamps


def test_commit_timestamps_strictly_increase_and_are_reported(db: Database) -> None:
    commits: list[Commit] = []
    db.add_commit_listener(commits.extend)
    results = [db.write_sync(lambda tx: tx.insert("t", {})) for _ in range(5)]
    ts = [r.ts for r in results]
    assert all(a < b for a, b in itertools.pairwise(ts))
    assert [c.ts for c in commits] == ts
    assert db.last_ts == ts[-1]
    assert db.run_read(lambda tx: None).ts == ts[-1]


def test_a_closed_database_refuses_writes(tmp_path: Any) -> None:
    database = Database(open_store(str(tmp_path / "x.sqlite3"), durability="off"))
    database.close()
    with pytest.raises(InternalError, match="closed"):
        database.submit_write(lambda tx: None)


# ---------------------------------------------------------------------- group commit and savepoints


def test_group_commit_rolls_back_a_failing_mutation_alone(db: Database) -> None:
    gate = threading.Event()
    entered = threading.Event()

    def blocker(tx: Transaction) -> None:
        entered.set()
        assert gate.wait(5)

    blocked = db.submit_write(blocker, exclusive=True)
    assert entered.wait(5)
    batches: list[list[int]] = []
    db.add_commit_listener(lambda commits: batches.append([c.ts for c in commits]))

    futures: dict[str, Any] = {}
    lock = threading.Lock()

    def submit(name: str, fn: Callable[[Transaction], Any]) -> None:
        future = db.submit_write(fn)
        with lock:
            futures[name] = future

    def ok(i: int) -> Callable[[Transaction], str]:
        return lambda tx: tx.insert("t", {"i": float(i)})

    def bad(tx: Transaction) -> None:
        tx.insert("ghost", {"x": 1.0})
        tx.insert("t", {"i": -1.0})
        raise ConvexError({"why": "bad"})

    threads = [threading.Thread(target=submit, args=(f"ok{i}", ok(i))) for i in range(6)]
    threads.insert(3, threading.Thread(target=submit, args=("bad", bad)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    futures["after"] = db.submit_write(lambda tx: tx.table("ghost") is None)
    wait_for_committer(db, 8)
    gate.set()
    blocked.result(5)

    with pytest.raises(ConvexError) as info:
        futures["bad"].result(5)
    assert info.value.data == {"why": "bad"}
    results = {name: f.result(5) for name, f in futures.items() if name != "bad"}
    assert results["after"].value is True  # the failed mutation's new table is not visible
    # The six inserts queued behind the blocker went out in one batch (one commit), in ts
    # order. "after" ran at a snapshot older than that batch's new table, so it runs again
    # (a catalog change conflicts with every older snapshot) and may commit in the next.
    assert len(batches[1]) >= 6
    batch = [ts for commits in batches[1:] for ts in commits]
    assert len(batch) == 7
    assert batch == sorted(batch) and len(set(batch)) == 7
    assert sorted(r.ts for r in results.values()) == batch
    docs = all_docs(db, "t")
    assert sorted(d["i"] for d in docs) == [float(i) for i in range(6)]
    assert db.catalog.table("ghost") is None
    assert all_docs(db, "ghost") == []


def test_savepoints_isolate_neighbours_that_touch_the_same_document(db: Database) -> None:
    doc = write(db, lambda tx: tx.insert("t", {"n": 0.0}))
    gate = threading.Event()
    blocked = db.submit_write(lambda tx: gate.wait(5), exclusive=True)

    def increment(tx: Transaction) -> float:
        n = tx.get(doc)["n"] + 1
        tx.patch(doc, {"n": n})
        return n

    def increment_then_fail(tx: Transaction) -> None:
        increment(tx)
        increment(tx)
        raise RuntimeError("boom")

    jobs = [increment, increment_then_fail, increment, increment_then_fail, increment]
    futures = [db.submit_write(job) for job in jobs]
    gate.set()
    blocked.result(5)
    values_seen = []
    for job, future in zip(jobs, futures):
        if job is increment:
            values_seen.append(future.result(5).value)
        else:
            with pytest.raises(RuntimeError):
                future.result(5)
    # Serializable: each increment saw the one before (in whichever order they committed).
    assert sorted(values_seen) == [1.0, 2.0, 3.0]
    assert read(db, lambda tx: tx.get(doc))["n"] == 3.0


def test_failed_table_creation_does_not_leak_its_table_number(db: Database) -> None:
    gate = threading.Event()
    blocked = db.submit_write(lambda tx: gate.wait(5), exclusive=True)

    def failing(tx: Transaction) -> None:
        tx.insert("first", {})
        raise ValueError("no")

    bad = db.submit_write(failing)
    good = db.submit_write(lambda tx: tx.insert("second", {}))
    gate.set()
    blocked.result(5)
    with pytest.raises(ValueError):
        bad.result(5)
    doc_id = good.result(5).value
    assert db.catalog.table("first") is None
    assert db.catalog.table("second").number == table_number_of(doc_id)
    assert read(db, lambda tx: tx.get(doc_id)) is not None
    # The table can still be created later.
    later = write(db, lambda tx: tx.insert("first", {}))
    assert table_number_of(later) != table_number_of(doc_id)
