"""Atomicity under a crash: a writer killed with SIGKILL loses nothing it reported as
committed, and no commit is half-applied.

This tests atomicity and the engine's own bookkeeping only. A SIGKILL leaves the
kernel's page cache intact, so a missing fsync goes unnoticed here; the fsync
itself is checked by ``test_durability.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stores import sqlite_only
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.persistence.sqlite import SqlitePersistence

pytestmark = sqlite_only

CHILD = r"""
import sys
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence

db = Database(SqlitePersistence(sys.argv[1], durability="full"))
counter = db.write_sync(lambda tx: tx.insert("state", {"seq": 0})).value
print("counter", counter, flush=True)

def step(seq):
    def body(tx):
        # Two writes that must land together: a log row and the counter.
        tx.insert("events", {"seq": float(seq)})
        tx.patch(counter, {"seq": float(seq)})
    return body

seq = 0
while True:
    seq += 1
    futures = [db.submit_write(step(seq + i)) for i in range(4)]  # group commit
    for i, future in enumerate(futures):
        result = future.result()
        print("done", seq + i, result.ts, flush=True)
    seq += 3
"""


def test_sigkill_loses_no_reported_commit(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    counter_line = child.stdout.readline().split()
    assert counter_line[0] == "counter", counter_line
    counter_id = counter_line[1]
    reported: dict[int, int] = {}
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        _, seq, ts = line.split()
        reported[int(seq)] = int(ts)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert len(reported) > 20, "the child should have committed for a while"

    with Database(SqlitePersistence(str(path), durability="full")) as db:
        events = db.run_read(lambda tx: [doc["seq"] for doc in Query(tx, "events")]).value
        state = db.run_read(lambda tx: tx.get(counter_id)).value
        seqs = {int(s) for s in events}
        # Every reported commit is present...
        assert set(reported) <= seqs
        # ...and no commit is half-applied: the counter matches the event of the last
        # commit. The four concurrent steps all patch the counter, so each one's final
        # (committed) attempt ran after every earlier commit: the last to commit made
        # the newest event (events come in creation order).
        assert state is not None
        assert state["seq"] == events[-1]
        assert seqs <= set(range(1, int(max(events)) + 1))
        # New timestamps are larger than every one handed out before the crash.
        new_ts = db.write_sync(lambda tx: tx.insert("events", {"seq": -1.0})).ts
        assert new_ts > max(reported.values())
        assert db.last_ts >= max(reported.values())
