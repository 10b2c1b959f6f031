"""Two persistence objects on one store, as two processes hold it: they take turns writing.

Each handle has its own writer and readers; the store's write lock (not a
lock in the process) serialises their transactions, and each transaction
begins at the latest commit of either.
"""

from __future__ import annotations

import threading

from syncline.persistence.base import Persistence, WriteConnection

from .backends import Opener
from .support import snapshot, write


def _increment(store: Persistence) -> None:
    """Read-modify-write of one global: lost updates show as a short count."""

    def body(conn: WriteConnection) -> None:
        raw = conn.get_global("counter")
        conn.set_global("counter", b"%d" % (int(raw or b"0") + 1))

    write(store, body)


def test_each_handle_sees_the_others_commits(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    write(first, lambda conn: conn.set_global("from", b"first"))
    with snapshot(second) as conn:
        assert conn.get_global("from") == b"first"
    conn = second.begin_write()
    try:
        assert conn.get_global("from") == b"first"
        conn.set_global("from", b"second")
    finally:
        second.commit_write(conn)
    with snapshot(first) as reader:
        assert reader.get_global("from") == b"second"


def test_a_second_writer_waits_for_the_first_to_finish(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    conn = first.begin_write()
    conn.set_global("counter", b"1")
    done = threading.Event()

    def other() -> None:
        _increment(second)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        # While the first writer holds the lock, the second cannot have committed.
        assert not done.wait(timeout=0.5)
    finally:
        first.commit_write(conn)
    thread.join(timeout=60)
    assert done.is_set()
    with snapshot(first) as reader:
        # The second writer began after the first committed, and built on its value.
        assert reader.get_global("counter") == b"2"


def test_writers_on_two_handles_never_lose_an_update(open_store: Opener) -> None:
    stores = [open_store(), open_store()]
    per_thread = 40
    errors: list[BaseException] = []

    def run(store: Persistence) -> None:
        try:
            for _ in range(per_thread):
                _increment(store)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    for store in stores:
        with snapshot(store) as conn:
            assert conn.get_global("counter") == b"%d" % (per_thread * len(threads))


def test_a_snapshot_ts_includes_the_other_handles_commits(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    for ts, store in enumerate([first, second, first, second], start=1):
        write(store, lambda conn: None, ts=ts)
        for reader_store in (first, second):
            with snapshot(reader_store) as conn:
                assert conn.ts == ts
