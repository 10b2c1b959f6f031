"""Test helper: hold the committer, so that writes queue up into one batch."""

from __future__ import annotations

import time

from syncline.database.database import Database


def wait_for_committer(db: Database, count: int) -> None:
    """Wait until ``count`` writes have run and wait for the (blocked) committer."""
    deadline = time.monotonic() + 5
    while db.pending_commits < count:
        assert time.monotonic() < deadline, f"{db.pending_commits} of {count} writes ready"
        time.sleep(0.001)
