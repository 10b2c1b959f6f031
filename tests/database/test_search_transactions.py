"""Text search is transactional: own writes, optimistic conflicts, index upkeep, schema changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stores import open_store
from syncline import v
from syncline.database import search_schema
from syncline.database.bulk import BulkWriter
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.errors import InternalError
from syncline.persistence.base import ReadConnection, SearchRequest
from syncline.schema import Schema, define_schema, define_table


def _schema(search_field: str = "body", filter_fields: tuple[str, ...] = ("channel",)) -> Schema:
    return define_schema(
        {
            "messages": define_table(
                {"body": v.string(), "title": v.optional(v.string()), "channel": v.string()}
            ).search_index("search_body", search_field=search_field, filter_fields=filter_fields),
            "log": define_table({"n": v.number()}),
        }
    )


def _open(path: Path) -> Database:
    return Database(open_store(path, durability="off"), mutation_threads=4)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with _open(tmp_path / "tx.sqlite3") as database:
        database.apply_schema(_schema())
        yield database


def _search(tx: Transaction, text: str, channel: str = "a") -> list[dict[str, Any]]:
    return (
        Query(tx, "messages")
        .with_search_index("search_body", lambda q: q.search("body", text).eq("channel", channel))
        .collect()
    )


def _found(db: Database, text: str, channel: str = "a") -> list[str]:
    return [d["body"] for d in db.run_read(lambda tx: _search(tx, text, channel)).value]


def test_a_mutation_searches_its_own_earlier_writes(db: Database) -> None:
    db.write_sync(lambda tx: tx.insert("messages", {"body": "stored hello", "channel": "a"}))
    stored_id = db.run_read(lambda tx: _search(tx, "stored")).value[0]["_id"]

    runs: list[int] = []

    def write_then_search(tx: Transaction) -> list[str]:
        runs.append(tx.ts)
        tx.insert("messages", {"body": "fresh hello", "channel": "a"})
        tx.patch(stored_id, {"body": "stored goodbye"})
        return sorted(d["body"] for d in _search(tx, "hello"))

    result = db.write_sync(write_then_search)
    assert result.value == ["fresh hello"]
    # The optimistic run stopped at the search; the second ran under the lock, at its ts.
    assert len(runs) == 2 and runs[1] == result.ts
    assert _found(db, "goodbye") == ["stored goodbye"]
    assert _found(db, "hello") == ["fresh hello"]


def test_a_mutation_that_wrote_another_index_searches_optimistically(db: Database) -> None:
    db.write_sync(lambda tx: tx.insert("messages", {"body": "hello", "channel": "a"}))
    runs: list[int] = []

    def write_log_then_search(tx: Transaction) -> int:
        runs.append(tx.ts)
        tx.insert("log", {"n": 1})
        return len(_search(tx, "hello"))

    result = db.write_sync(write_log_then_search)
    assert result.value == 1
    assert len(runs) == 1  # not run again under the lock
    assert runs[0] < result.ts


def test_updates_and_deletes_keep_the_index_current(db: Database) -> None:
    doc_id = db.write_sync(
        lambda tx: tx.insert("messages", {"body": "alpha", "channel": "a"})
    ).value
    db.write_sync(lambda tx: tx.patch(doc_id, {"body": "beta"}))
    assert _found(db, "alpha") == []
    assert _found(db, "beta") == ["beta"]
    db.write_sync(lambda tx: tx.patch(doc_id, {"channel": "b"}))
    assert _found(db, "beta") == []
    assert _found(db, "beta", channel="b") == ["beta"]
    db.write_sync(lambda tx: tx.replace(doc_id, {"body": "gamma", "channel": "a"}))
    assert _found(db, "gamma") == ["gamma"]
    db.write_sync(lambda tx: tx.delete(doc_id))
    assert _found(db, "gamma") == []


class _Searcher:
    """A mutation that searches, then waits (first attempt only) for a rival write."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.searched = threading.Event()
        self.proceed = threading.Event()
        self.counts: list[int] = []

    def __call__(self, tx: Transaction) -> int:
        count = len(_search(tx, self.text))
        self.counts.append(count)
        if len(self.counts) == 1:
            self.searched.set()
            assert self.proceed.wait(5)
        tx.insert("log", {"n": float(count)})
        return count


def _race(db: Database, text: str, rival: dict[str, Any]) -> _Searcher:
    searcher = _Searcher(text)
    future = db.submit_write(searcher)
    assert searcher.searched.wait(5)
    db.write_sync(lambda tx: tx.insert("messages", rival))
    searcher.proceed.set()
    future.result(10)
    return searcher


def test_a_search_conflicts_with_a_concurrent_matching_insert(db: Database) -> None:
    db.write_sync(lambda tx: tx.insert("messages", {"body": "hello there", "channel": "a"}))
    searcher = _race(db, "hel", {"body": "help me", "channel": "a"})
    assert searcher.counts == [1, 2]  # ran again, and saw the insert
    assert db.conflicts == 1


@pytest.mark.parametrize(
    "rival",
    [
        {"body": "help me", "channel": "b"},  # another filter value
        {"body": "goodbye", "channel": "a"},  # no matching term
        {"body": "ahelp", "channel": "a"},  # the prefix is not a substring match
    ],
)
def test_a_search_does_not_conflict_with_a_non_matching_insert(
    db: Database, rival: dict[str, Any]
) -> None:
    db.write_sync(lambda tx: tx.insert("messages", {"body": "hello there", "channel": "a"}))
    searcher = _race(db, "hel", rival)
    assert searcher.counts == [1]
    assert db.conflicts == 0


def test_a_change_to_a_found_document_conflicts_even_outside_the_searched_field(
    db: Database,
) -> None:
    doc_id = db.write_sync(
        lambda tx: tx.insert("messages", {"body": "hello", "channel": "a"})
    ).value
    searcher = _Searcher("hello")
    future = db.submit_write(searcher)
    assert searcher.searched.wait(5)
    db.write_sync(lambda tx: tx.patch(doc_id, {"title": "changed"}))
    searcher.proceed.set()
    future.result(10)
    assert len(searcher.counts) == 2


def test_adding_an_index_to_a_table_with_data_backfills_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_schema, "PROGRESS_EVERY", 100)
    monkeypatch.setattr(search_schema, "BACKFILL_BATCH", 64)
    with _open(tmp_path / "backfill.sqlite3") as db:
        db.write_sync(
            lambda tx: [
                tx.insert("messages", {"body": f"old {i}", "channel": "a"}) for i in range(250)
            ]
        )
        with caplog.at_level(logging.INFO, logger="syncline.database"):
            change = db.apply_schema(_schema())
        assert "messages.search_body" in change.added_indexes
        assert len(_found(db, "old")) == 250
        progress = [r.getMessage() for r in caplog.records if "search index" in r.getMessage()]
        assert progress[0] == "search index messages.search_body: indexing 250 documents"
        # A line for each batch that crosses a multiple of PROGRESS_EVERY.
        assert [m.rpartition(": ")[2] for m in progress[1:-1]] == [
            "128 of 250 documents indexed",
            "250 of 250 documents indexed",
        ]
        assert progress[-1] == "search index messages.search_body: built (250 documents)"


def _stage_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build indexes beside the live ones from 40 documents, 16 per transaction."""
    monkeypatch.setattr(search_schema, "STAGED_BACKFILL_MIN", 40)
    monkeypatch.setattr(search_schema, "BACKFILL_BATCH", 16)


def test_a_large_table_s_index_is_built_in_short_transactions_while_others_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage_small(monkeypatch)
    with _open(tmp_path / "staged.sqlite3") as db:
        ids = db.write_sync(
            lambda tx: [
                tx.insert("messages", {"body": f"old {i}", "channel": "a"}) for i in range(100)
            ]
        ).value
        # Between the build's transactions, other commits change documents already
        # indexed, documents not indexed yet, and add new ones.
        commits: list[Any] = []
        fill = search_schema._fill

        def fill_then_write(conn: Any, index: Any) -> None:
            fill(conn, index)
            n = len(commits)
            if n < 5:

                def write(tx: Transaction) -> None:
                    tx.patch(ids[n], {"body": f"renamed {n}"})
                    tx.delete(ids[99 - n])
                    tx.insert("messages", {"body": f"old new {n}", "channel": "a"})

                commits.append(db.submit_write(write))

        monkeypatch.setattr(search_schema, "_fill", fill_then_write)
        change = db.apply_schema(_schema())
        assert change.added_indexes == ["messages.search_body"]
        assert len(commits) == 5
        assert all(c.done() for c in commits)  # they committed during the build
        expected = {f"old {i}" for i in range(5, 95)} | {f"old new {n}" for n in range(5)}
        assert set(_found(db, "old")) == expected
        assert sorted(_found(db, "renamed")) == [f"renamed {n}" for n in range(5)]
        with db.storage_snapshot() as (conn, _catalog):
            assert [row.name for row in conn.search_indexes()] == ["search_body"]


def test_a_changed_definition_on_a_large_table_switches_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage_small(monkeypatch)
    with _open(tmp_path / "switch.sqlite3") as db:
        db.apply_schema(_schema())
        db.write_sync(
            lambda tx: [
                tx.insert("messages", {"body": f"b{i}", "title": f"t{i}", "channel": "a"})
                for i in range(60)
            ]
        )
        # While the new index is built, searches still use the old one.
        before = sorted(_found(db, "b1"))
        assert len(before) == 11  # b1 and b10 to b19: the last term is a prefix
        during: list[list[str]] = []
        fill = search_schema._fill

        def fill_and_search(conn: Any, index: Any) -> None:
            fill(conn, index)
            during.append(sorted(_found(db, "b1")))

        monkeypatch.setattr(search_schema, "_fill", fill_and_search)
        change = db.apply_schema(_schema(search_field="title"))
        assert change.added_indexes == ["messages.search_body"]
        assert during and all(found == before for found in during)
        found = db.run_read(
            lambda tx: (
                Query(tx, "messages")
                .with_search_index("search_body", lambda q: q.search("title", "t59"))
                .collect()
            )
        ).value
        assert [d["title"] for d in found] == ["t59"]


def test_a_staged_build_that_lost_part_of_the_log_is_rebuilt_in_the_schema_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from syncline.persistence.base import LOG_PRUNED_GLOBAL

    _stage_small(monkeypatch)
    with _open(tmp_path / "pruned.sqlite3") as db:
        ids = db.write_sync(
            lambda tx: [
                tx.insert("messages", {"body": f"old {i}", "channel": "a"}) for i in range(60)
            ]
        ).value
        fill = search_schema._fill
        pruned: list[Any] = []

        def fill_then_prune(conn: Any, index: Any) -> None:
            fill(conn, index)
            if not pruned:
                # A commit the build will not find in the log (it was pruned).
                conn.set_global(LOG_PRUNED_GLOBAL, str(2**62).encode())
                pruned.append(db.submit_write(lambda tx: tx.delete(ids[0])))

        monkeypatch.setattr(search_schema, "_fill", fill_then_prune)
        with caplog.at_level(logging.WARNING, logger="syncline.database"):
            db.apply_schema(_schema())
        assert "document log was pruned" in caplog.text
        # The deletion may commit before the schema's transaction or after it: the
        # index holds 59 either way once it has.
        pruned[0].result(5)
        assert len(_found(db, "old")) == 59


def test_an_index_staged_for_a_schema_that_fails_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncline.errors import SchemaDefinitionError

    _stage_small(monkeypatch)
    with _open(tmp_path / "failed.sqlite3") as db:
        db.write_sync(
            lambda tx: [tx.insert("messages", {"body": 1, "channel": "a"}) for _ in range(50)]
        )
        with pytest.raises(SchemaDefinitionError):
            db.apply_schema(_schema())  # the bodies are not strings
        with db.storage_snapshot() as (conn, _catalog):
            assert conn.search_indexes() == []


def test_a_changed_definition_rebuilds_and_a_removed_one_is_dropped(db: Database) -> None:
    db.write_sync(lambda tx: tx.insert("messages", {"body": "x", "title": "t", "channel": "a"}))
    change = db.apply_schema(_schema(search_field="title"))
    assert change.removed_indexes == ["messages.search_body"]
    assert change.added_indexes == ["messages.search_body"]
    found = db.run_read(
        lambda tx: (
            Query(tx, "messages")
            .with_search_index("search_body", lambda q: q.search("title", "t"))
            .collect()
        )
    ).value
    assert [d["body"] for d in found] == ["x"]
    change = db.apply_schema(define_schema({"messages": define_table(v.any())}))
    assert change.removed_indexes == ["messages.search_body"]
    with db.storage_snapshot() as (conn, _catalog):
        assert conn.search_indexes() == []


def test_a_search_index_in_the_stored_schema_but_not_the_storage_is_created(
    db: Database,
) -> None:
    """A data folder whose schema declared search indexes before they existed gets them."""
    db.write_sync(lambda tx: tx.insert("messages", {"body": "kept", "channel": "a"}))

    def forget(tx: Transaction) -> None:
        tx._require_writable().drop_search_index(tx.catalog.table("messages").number, "search_body")  # type: ignore[union-attr]

    db.submit_write(forget, exclusive=True).result()
    change = db.apply_schema(_schema())
    assert change.added_indexes == ["messages.search_body"]
    assert _found(db, "kept") == ["kept"]


def test_imported_and_cleared_documents_are_indexed_and_unindexed(db: Database) -> None:
    def bulk(tx: Transaction) -> None:
        writer = BulkWriter(tx, batch_size=3)
        info = tx.ensure_table("messages")
        for i in range(7):
            writer.insert(info, {"body": f"imported {i}", "channel": "a"})
        writer.flush()

    result = db.submit_write(bulk, exclusive=True).result()
    assert len(result.writes.search["messages.search_body"]) == 7
    assert len(_found(db, "imported")) == 7

    def clear(tx: Transaction) -> int:
        info = tx.table("messages")
        assert info is not None
        return BulkWriter(tx).clear(info)

    cleared = db.submit_write(clear, exclusive=True).result()
    assert cleared.value == 7
    assert len(cleared.writes.search["messages.search_body"]) == 7
    assert _found(db, "imported") == []


def test_a_backend_without_search_says_so() -> None:
    request = SearchRequest((), "x", (), 10)
    with pytest.raises(InternalError) as info:
        ReadConnection.search(None, 1, "s", request)  # type: ignore[arg-type]
    assert info.value.code == "SearchNotSupported"
    assert ReadConnection.search_indexes(None) == []  # type: ignore[arg-type]


def test_on_a_backend_without_search_indexes_stay_declarations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from syncline.persistence import postgres, sqlite

    monkeypatch.setattr(sqlite._SqliteReader, "supports_search", False)
    monkeypatch.setattr(postgres._PgReader, "supports_search", False)
    monkeypatch.setattr(sqlite.SqlitePersistence, "supports_search", False)
    monkeypatch.setattr(postgres.PostgresPersistence, "supports_search", False)
    with _open(tmp_path / "nosearch.sqlite3") as db:
        with caplog.at_level(logging.WARNING, logger="syncline.database"):
            change = db.apply_schema(_schema())
        assert change.added_indexes == []
        assert "does not support text search" in caplog.text
        # Writes work (and keep no entries); a search says what is missing.
        db.write_sync(lambda tx: tx.insert("messages", {"body": "hello", "channel": "a"}))

        def bulk(tx: Transaction) -> None:
            writer = BulkWriter(tx)
            writer.insert(tx.ensure_table("messages"), {"body": "imported", "channel": "a"})
            writer.flush()

        db.submit_write(bulk, exclusive=True).result()
        with pytest.raises(InternalError) as info:
            db.run_read(lambda tx: _search(tx, "hello"))
        assert info.value.code == "SearchNotSupported"
