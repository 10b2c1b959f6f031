"""Buffered writes over a snapshot answer every read as the writer's own transaction does.

A random sequence of inserts, patches, replaces and deletes, interleaved with gets,
index scans (both directions, random bounds, lazily batched) and counts, runs once
on the real writer's connection and once on a :class:`BufferedWrites` over a
snapshot of the same store; every answer must match, and so must the store after
the buffer is applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stores import open_store
from syncline import define_schema, define_table, v
from syncline.database.catalog import Catalog
from syncline.database.database import Database
from syncline.database.overlay import BufferedWrites, NeedsLock
from syncline.database.query import Query
from syncline.database.transaction import Transaction
from syncline.errors import SynclineError
from syncline.persistence.base import ReadConnection
from syncline.persistence.by_id import key_of_id
from syncline.values.ids import new_id
from syncline.values.keys import encode_key

TS = 1_800_000_000_000_000_000
INDEXES = ("by_id", "by_creation_time", "by_n")

_n = st.integers(0, 6).map(float)
_target = st.integers(0, 10_000)
_bound = st.integers(0, 10_000)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _n),
        st.tuples(st.just("patch"), _target, _n),
        st.tuples(st.just("replace"), _target, _n),
        st.tuples(st.just("delete"), _target),
        st.tuples(st.just("get"), _target),
        st.tuples(
            st.just("scan"),
            st.sampled_from(INDEXES),
            _bound,
            _bound,
            st.booleans(),
            st.integers(1, 40),
        ),
        st.tuples(st.just("count")),
    ),
    max_size=40,
)


class _Ids:
    """New ids on the first run; the same ones, in the same order, on the next."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self._replay: Iterator[str] | None = None

    def __call__(self, number: int) -> str:
        if self._replay is not None:
            return next(self._replay)
        doc_id = new_id(number)
        self.made.append(doc_id)
        return doc_id

    def replay(self) -> _Ids:
        self._replay = iter(self.made)
        return self


def _run(tx: Transaction, ops: list[tuple[Any, ...]], known: list[str]) -> list[Any]:
    """Apply ``ops`` in ``tx``; what each one answered (or the error it raised)."""
    known = list(known)
    bounds = sorted(
        {b"", b"\xff"}
        | {encode_key([float(n)]) for n in range(8)}
        | {key_of_id(doc_id) for doc_id in known}
    )
    answers: list[Any] = []
    for op in ops:
        try:
            answers.append(_one(tx, op, known, bounds))
        except SynclineError as exc:
            answers.append(type(exc).__name__)
    return answers


def _one(tx: Transaction, op: tuple[Any, ...], known: list[str], bounds: list[bytes]) -> Any:
    kind = op[0]
    if kind == "insert":
        doc_id = tx.insert("items", {"n": op[1]})
        known.append(doc_id)
        return doc_id
    if kind == "count":
        return tx.count("items")
    if kind == "scan":
        _, index, lo, hi, reverse, take = op
        start, end = sorted((bounds[lo % len(bounds)], bounds[hi % len(bounds)]))
        return list(itertools.islice(tx.scan("items", index, start, end, reverse=reverse), take))
    target = known[op[1] % len(known)]
    if kind == "patch":
        return tx.patch(target, {"n": op[2]})
    if kind == "replace":
        return tx.replace(target, {"n": op[2], "r": True})
    if kind == "delete":
        return tx.delete(target)
    assert kind == "get"
    return tx.get(target)


@pytest.fixture
def seeded(tmp_path: Path) -> Any:
    db = Database(open_store(tmp_path / "overlay.sqlite3", durability="off"))
    db.apply_schema(
        define_schema(
            {
                "items": define_table({"n": v.number(), "r": v.optional(v.boolean())}).index(
                    "by_n", ["n"]
                )
            }
        )
    )
    known = db.write_sync(
        lambda tx: [tx.insert("items", {"n": float(i % 5)}) for i in range(30)]
    ).value
    yield db, known
    db.close()


def _state(conn: ReadConnection, catalog: Catalog) -> list[Any]:
    info = catalog.table("items")
    assert info is not None
    return [
        (name, conn.count(index.id), conn.scan(index.id, b"", b"\xff", reverse=False, limit=999))
        for name, index in sorted(info.indexes.items())
    ]


def test_buffered_writes_answer_like_the_writer(seeded: Any) -> None:
    db, known = seeded
    persistence = db.persistence
    catalog = db.catalog

    @settings(max_examples=150, deadline=None)
    @given(ops=OPS)
    def check(ops: list[tuple[Any, ...]]) -> None:
        ids = _Ids()
        writer = persistence.begin_write()
        try:
            tx = Transaction(writer, catalog, ts=TS, schema=db.schema, id_source=ids)
            direct = _run(tx, ops, known)
            after_direct = _state(writer, catalog)
        finally:
            persistence.abort_write(writer)

        reader = persistence.reader()
        try:
            buffer = BufferedWrites(reader, catalog.by_id_tables())
            tx = Transaction(buffer, catalog, ts=TS, schema=db.schema, id_source=ids.replay())
            buffered = _run(tx, ops, known)
        finally:
            persistence.release_reader(reader)
        assert buffered == direct

        writer = persistence.begin_write()
        try:
            buffer.apply(writer, TS)
            assert _state(writer, catalog) == after_direct
        finally:
            persistence.abort_write(writer)

    check()


def test_work_on_the_catalog_needs_the_lock(seeded: Any) -> None:
    db, _known = seeded
    reader = db.persistence.reader()
    try:
        tx = Transaction(BufferedWrites(reader, db.catalog.by_id_tables()), db.catalog, ts=TS)
        with pytest.raises(NeedsLock):
            tx.insert("new_table", {})
        assert [d["n"] for d in Query(tx, "items").take(2)] == [0.0, 1.0]
    finally:
        db.persistence.release_reader(reader)
