"""The commit log with write sets, and the head (last ts, catalog version) a transaction sees.

Several processes share one store: each learns what the others committed from
the commit log (:meth:`ReadConnection.commits_since`), and each commit's
writer reads the last ts and catalog version under the store's write lock.
"""

from __future__ import annotations

import threading

from syncline.persistence.base import (
    CATALOG_VERSION_GLOBAL,
    CommitRow,
    LogEntry,
    Persistence,
    WriteConnection,
)
from syncline.values.ids import new_id

from .backends import Opener
from .support import set_ts, snapshot, write

ROWS = [
    CommitRow(10, 0, b"write set 10"),
    CommitRow(11, 1, b""),
    CommitRow(15, 3, bytes(range(256))),
    CommitRow(20, 0, b"\x00" * 1000),
]


def test_commits_since_returns_later_rows_in_ts_order(store: Persistence) -> None:
    write(store, lambda conn: conn.append_commits(ROWS[2:]))
    write(store, lambda conn: conn.append_commits(ROWS[:2]))
    with snapshot(store) as conn:
        for since in (0, 9, 10, 11, 14, 15, 20, 99):
            assert conn.commits_since(since, limit=100) == [r for r in ROWS if r.ts > since]
        assert conn.commits_since(0, limit=2) == ROWS[:2]
        assert conn.commits_since(10, limit=1) == [ROWS[1]]


def test_the_writer_reads_its_own_commit_rows_and_they_roll_back(store: Persistence) -> None:
    def body(conn: WriteConnection) -> None:
        conn.append_commits([ROWS[0]])
        conn.savepoint()
        conn.append_commits([ROWS[1]])
        assert conn.commits_since(0, limit=10) == ROWS[:2]
        conn.rollback_to()
        assert conn.commits_since(0, limit=10) == ROWS[:1]

    write(store, body)
    conn = store.begin_write()
    conn.append_commits([ROWS[2]])
    store.abort_write(conn)
    with snapshot(store) as reader:
        assert reader.commits_since(0, limit=10) == ROWS[:1]


def test_a_snapshot_never_sees_later_commit_rows(store: Persistence) -> None:
    write(store, lambda conn: conn.append_commits([ROWS[0]]), ts=10)
    before = store.reader()
    try:
        write(store, lambda conn: conn.append_commits(ROWS[1:]), ts=20)
        assert before.ts == 10
        assert before.commits_since(0, limit=10) == ROWS[:1]
        with snapshot(store) as after:
            assert after.ts == 20
            assert after.commits_since(before.ts, limit=10) == ROWS[1:]
    finally:
        store.release_reader(before)


def test_prune_log_forgets_commit_rows_and_log_entries_before_a_ts(store: Persistence) -> None:
    doc_id = new_id(10001)

    def body(conn: WriteConnection) -> None:
        conn.append_commits(ROWS)
        conn.append_log([LogEntry(r.ts, doc_id, 10001, b"v") for r in ROWS])

    write(store, body)
    # Two commit rows and two log entries are older than 15.
    assert write(store, lambda conn: conn.prune_log(15)) == 4
    with snapshot(store) as conn:
        assert conn.commits_since(0, limit=10) == ROWS[2:]
        assert [e.ts for e in conn.log_since(0, limit=10)] == [15, 20]


def test_catalog_version_is_read_with_the_snapshot(store: Persistence) -> None:
    with snapshot(store) as conn:
        assert conn.catalog_version == 0
    write(store, lambda conn: conn.set_global(CATALOG_VERSION_GLOBAL, b"3"))
    before = store.reader()
    try:
        assert before.catalog_version == 3
        write(store, lambda conn: conn.set_global(CATALOG_VERSION_GLOBAL, b"4"))
        assert before.catalog_version == 3
        with snapshot(store) as after:
            assert after.catalog_version == 4
    finally:
        store.release_reader(before)


def test_the_writer_begins_at_the_other_handles_last_commit(open_store: Opener) -> None:
    """The last ts and catalog version are read under the write lock, not remembered."""
    first, second = open_store(), open_store()
    # second's writer has been used (and may cache), then first commits.
    write(second, lambda conn: conn.set_global(CATALOG_VERSION_GLOBAL, b"1"), ts=1)
    write(first, lambda conn: conn.set_global(CATALOG_VERSION_GLOBAL, b"2"), ts=7)
    conn = second.begin_write()
    try:
        assert (conn.ts, conn.catalog_version) == (7, 2)
    finally:
        second.abort_write(conn)


def test_restart_rereads_the_head(store: Persistence) -> None:
    write(store, lambda conn: conn.set_global(CATALOG_VERSION_GLOBAL, b"2"), ts=5)
    conn = store.begin_write()
    try:
        assert (conn.ts, conn.catalog_version) == (5, 2)
        set_ts(conn, 6)
        conn.restart()
        assert (conn.ts, conn.catalog_version) == (5, 2)
    finally:
        store.abort_write(conn)


def _commit_row(store: Persistence, ts: int) -> None:
    write(store, lambda conn: conn.append_commits([CommitRow(ts, 0, b"%d" % ts)]), ts=ts)


def test_a_tail_on_another_handle_sees_every_commit_once_in_order(open_store: Opener) -> None:
    """A writer commits rows while another handle tails ``commits_since(last seen)``."""
    writer_store, tail_store = open_store(), open_store()
    commits = 80
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def tail() -> None:
        last = 0
        try:
            while True:
                finished = done.is_set()
                with snapshot(tail_store) as conn:
                    rows = conn.commits_since(last, limit=7)
                    assert all(r.ts <= conn.ts for r in rows)
                seen.extend(r.ts for r in rows)
                if rows:
                    last = rows[-1].ts
                elif finished:
                    return
                if len(seen) > commits:
                    return  # a row came back twice: the assertion below says which
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=tail)
    thread.start()
    try:
        for ts in range(1, commits + 1):
            _commit_row(writer_store, ts)
    finally:
        done.set()
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert seen == list(range(1, commits + 1))
