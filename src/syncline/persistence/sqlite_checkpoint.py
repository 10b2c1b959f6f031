"""WAL checkpoints on a thread of their own, so that commits do not wait for them
(``--durability normal``).

In WAL mode every commit appends pages to the ``-wal`` file, and a
*checkpoint* copies them back into the database file (with an fsync of
each file). SQLite runs one by itself inside the COMMIT that takes the WAL
past ``wal_autocheckpoint`` pages (1,000 by default): that commit, and every
mutation batched behind it, then waits for megabytes of writes and two
fsyncs. Here the writer's automatic checkpoint is moved out to
:data:`BACKSTOP_PAGES`, and this thread runs a PASSIVE checkpoint (it never
blocks a reader or the writer, and copies what no reader still needs) a
short while after commits, on its own connection. SQLite releases the GIL
while it works, so the copy overlaps the next commits instead of delaying
them (the side-by-side harness: about an eighth more creates per second at
64 clients, over HTTP and over the WebSocket).

Only where commits do not fsync: with ``--durability full`` every commit
already waits for an fsync of the WAL, and a checkpoint's fsyncs running
beside it lengthen those waits (``python bench/engine.py --durability full``:
a tenth fewer mutations per second from one caller), so there SQLite's own
checkpoint inside the COMMIT stays.

The backstop: if this thread falls far behind (a reader holding an old
snapshot stops every checkpoint from finishing), the writer's own automatic
checkpoint takes over at :data:`BACKSTOP_PAGES`, as SQLite would have done.
Idle, the thread sleeps until the next commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

__all__ = ["BACKSTOP_PAGES", "DELAY_S", "Checkpointer"]

log = logging.getLogger("syncline.persistence")

#: how long after a commit the checkpoint runs (commits meanwhile join it)
DELAY_S = 0.05
#: the writer's own automatic checkpoint, should this thread fall behind (~40 MiB of WAL)
BACKSTOP_PAGES = 10_000


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``connect()``'s connection after commits."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str) -> None:
        self._connect = connect
        self._name = name
        self._committed = threading.Event()
        self._stop = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: checkpoints run so far (tests, benchmarks)
        self.runs = 0

    def note_commit(self) -> None:
        """A commit landed: checkpoint soon (starts the thread on first use)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
        self._committed.set()

    def close(self) -> None:
        """Stop the thread; the writer's connection checkpoints when it closes."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._stop.set()
        self._committed.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        committed = self._committed
        try:
            while True:
                committed.wait()
                if self._stopping:
                    return
                # Let the commits of the next moment join this checkpoint.
                if self._stop.wait(DELAY_S):
                    return
                committed.clear()
                if self._stop.is_set():  # close() ran between the wait and the clear
                    return
                try:
                    conn = self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.runs += 1
                except sqlite3.Error as exc:
                    # The writer's backstop checkpoint still bounds the WAL.
                    log.warning("WAL checkpoint failed: %s", exc)
                finally:
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
