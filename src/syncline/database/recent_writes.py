"""Recent commits' written keys, indexed for the optimistic conflict check.

The committer checks each optimistic transaction's read set against every
commit after its snapshot. Scanning those commits one by one costs a batch's
size per transaction (quadratic per batch); here each written key maps to the
ts of its latest write, so a point read (every ``get``, every mutation record)
is one dictionary lookup. Range reads walk only the commits after the snapshot.

Keys are indexed lazily, at the first check after new commits: a workload
whose transactions read nothing (inserts) never pays for the index.

Text search reads are checked against the search revisions of the commits
after the snapshot (``search_reads.read_matches``).
"""

from __future__ import annotations

from collections import deque

from syncline.database.reads import ReadSet
from syncline.database.search_reads import any_match
from syncline.database.writes import Commit

__all__ = ["RecentWrites"]


class RecentWrites:
    """A window of commits, oldest first, and the latest ts each key was written at."""

    __slots__ = ("_commits", "_latest", "_unindexed")

    def __init__(self) -> None:
        self._commits: deque[Commit] = deque()
        #: index full name -> key -> ts of the latest indexed commit writing it
        self._latest: dict[str, dict[bytes, int]] = {}
        #: how many of the newest commits are not in ``_latest`` yet
        self._unindexed = 0

    def __len__(self) -> int:
        return len(self._commits)

    def add(self, commit: Commit) -> None:
        """Add the newest commit (its ts above every one held)."""
        self._commits.append(commit)
        self._unindexed += 1

    def _index(self) -> None:
        fresh: list[Commit] = []
        for commit in reversed(self._commits):
            if len(fresh) == self._unindexed:
                break
            fresh.append(commit)
        for commit in reversed(fresh):
            ts = commit.ts
            for name, keys in commit.writes.keys.items():
                latest = self._latest.get(name)
                if latest is None:
                    latest = self._latest[name] = {}
                for key in keys:
                    latest[key] = ts
        self._unindexed = 0

    def pop_oldest(self) -> Commit:
        commit = self._commits.popleft()
        if len(self._commits) < self._unindexed:
            self._unindexed -= 1  # it was never indexed
            return commit
        for name, keys in commit.writes.keys.items():
            latest = self._latest[name]
            for key in keys:
                if latest.get(key) == commit.ts:
                    del latest[key]
            if not latest:
                del self._latest[name]
        return commit

    def conflict(self, read_set: ReadSet, after: int) -> str | None:
        """An index where a commit above ``after`` wrote a key ``read_set`` read; else None."""
        if self._unindexed:
            self._index()
        for name, intervals in read_set.items():
            latest = self._latest.get(name)
            if not latest:
                continue
            for interval in intervals:
                start, end = interval.start, interval.end
                if end == start + b"\x00":  # a point: one lookup
                    written = latest.get(start)
                    if written is not None and written > after:
                        return name
                    continue
                for commit in reversed(self._commits):
                    if commit.ts <= after:
                        break
                    for key in commit.writes.keys.get(name, ()):
                        if start <= key < end:
                            return name
        if read_set.searches:
            for commit in reversed(self._commits):
                if commit.ts <= after:
                    break
                if commit.writes.search:
                    index = any_match(read_set.searches, commit.writes.search)
                    if index is not None:
                        return index
        return None
