"""Commit publication: every commit reaches the listeners once, in ts order.

Commits reach a process two ways: its own committer makes them, and other
processes sharing the store make them (read back from the commit log, by the
committer under the write lock or by ``Database.catch_up``). Both paths publish
through one :class:`CommitPublisher`, under its lock, and only commits above
the last published ts get through, so racing paths never publish one twice or
out of order.

The publisher also keeps the most recent commits' write sets: the committer
checks an optimistic transaction against every commit after its snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from syncline import metrics
from syncline.database.reads import ReadSet
from syncline.database.recent_writes import RecentWrites
from syncline.database.writes import Commit

__all__ = ["CommitListener", "CommitPublisher"]

log = logging.getLogger("syncline.database")

CommitListener = Callable[[list[Commit]], None]

#: published commits kept for conflict checks; a transaction whose snapshot is older
#: than the oldest kept is retried rather than checked
RECENT_COMMITS = 8192


class CommitPublisher:
    """The last published ts, the listeners, and a window of recent commits."""

    def __init__(self, published_ts: int, *, window: int = RECENT_COMMITS) -> None:
        #: held while publishing; reentrant, so a listener may call ``catch_up``
        self.lock = threading.RLock()
        self.published_ts = published_ts
        #: while the committer's own commits from this ts on are being made durable,
        #: nobody else may publish them (or anything after them) as foreign
        self.committing_from: int | None = None
        self._listeners: list[CommitListener] = []
        self._recent = RecentWrites()
        self._window = window
        #: every published commit above this ts is in ``_recent``
        self._floor = published_ts

    def add_listener(self, listener: CommitListener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        with self.lock:
            self._listeners.remove(listener)

    def publish(self, commits: list[Commit]) -> int:
        """Hand the commits above the last published ts to every listener; how many.

        ``commits`` must be in ts order with no commit of the store missing
        between the last published one and them.
        """
        with self.lock:
            fresh = [c for c in commits if c.ts > self.published_ts]
            if not fresh:
                return 0
            self.published_ts = fresh[-1].ts
            metrics.note_published(self.published_ts)
            for commit in fresh:
                if commit.changes_everything:
                    # Nothing before it can be checked key by key any more.
                    self._recent = RecentWrites()
                    self._floor = commit.ts
                    continue
                self._recent.add(commit)
            while len(self._recent) > self._window:
                self._floor = self._recent.pop_oldest().ts
            for listener in list(self._listeners):
                try:
                    listener(fresh)
                except Exception:
                    log.exception("commit listener failed")
            return len(fresh)

    def conflict(self, read_set: ReadSet, after: int) -> str | None:
        """An index where a commit published above ``after`` wrote what ``read_set`` read.

        When commits above ``after`` are no longer kept, the whole catalog is
        taken to conflict (the transaction just runs again).
        """
        with self.lock:
            if after < self._floor:
                return "(older commits)"
            return self._recent.conflict(read_set, after)
