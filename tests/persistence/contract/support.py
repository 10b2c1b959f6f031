"""Helpers shared by the contract tests: provisioning a store, and writing as the engine does."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from syncline.persistence.base import (
    BY_ID_INDEX,
    TS_GLOBAL,
    Persistence,
    ReadConnection,
    WriteConnection,
)
from syncline.values.ids import new_id

from .backends import BACKENDS, BackendUnavailable, Opener

T = TypeVar("T")


@contextlib.contextmanager
def provision(name: str, folder: Path) -> Iterator[Opener]:
    """One fresh store of backend ``name`` (skipped, or failed under CI, if unavailable)."""
    with contextlib.ExitStack() as stack:
        try:
            opener = stack.enter_context(BACKENDS[name](folder))
        except BackendUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"backend {name!r} is unavailable under CI: {exc}")
            pytest.skip(f"backend {name!r} is unavailable: {exc}")
        yield opener


def write(store: Persistence, fn: Callable[[WriteConnection], T], *, ts: int | None = None) -> T:
    """Run ``fn`` in one write transaction and commit it (abort if ``fn`` raises).

    ``ts``: name the commit so (:func:`set_ts`), after ``fn``.
    """
    conn = store.begin_write()
    try:
        result = fn(conn)
        if ts is not None:
            set_ts(conn, ts)
    except BaseException:
        store.abort_write(conn)
        raise
    store.commit_write(conn)
    return result


@contextlib.contextmanager
def snapshot(store: Persistence) -> Iterator[ReadConnection]:
    conn = store.reader()
    try:
        yield conn
    finally:
        store.release_reader(conn)


def set_ts(conn: WriteConnection, ts: int) -> None:
    """Name this transaction's commit ``ts``, as the engine does at every commit.

    A snapshot's ``ts`` is the value of this global as of the snapshot.
    """
    conn.set_global(TS_GLOBAL, str(ts).encode())


@dataclass(frozen=True)
class Table:
    """A table with its ``by_id`` index and one index with stored entries."""

    number: int
    by_id: int
    by_value: int

    def new_id(self) -> str:
        return new_id(self.number)


def make_table(conn: WriteConnection, name: str, number: int) -> Table:
    conn.create_table(name, number)
    by_id = conn.create_index(number, BY_ID_INDEX, ())
    by_value = conn.create_index(number, "by_value", ("value",))
    return Table(number, by_id, by_value)


def put(
    conn: WriteConnection, table: Table, doc_id: str, value: bytes, *, key: bytes, ts: int = 1
) -> None:
    """Store a new document and its ``by_value`` entry (keys are unique per index)."""
    conn.put_document(doc_id, table.number, ts, value)
    conn.insert_index_entries([(table.by_value, key, doc_id)])
