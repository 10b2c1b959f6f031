"""Read sets: what a transaction observed, as key intervals per index.

This is the one place reads are recorded (design §3.1). A read set is a map
from an index's full name (``"table.index"``) to half-open byte intervals
``[start, end)`` over that index's encoded keys:

* ``db.get(id)`` records the point ``[key, key + 0x00)`` on ``table.by_id``;
* an index scan records from the range start up to and including the last
  key it returned, or the whole range when the scan ran to its end. Filters
  do not narrow it: a row rejected by a filter was still read.

Index names, not ids, are used so that reading a table that does not exist
yet still conflicts with the insert that creates it.

Text searches are recorded apart, as what they asked for
(:class:`~syncline.database.search_reads.SearchRead`), and matched against
the search index entries of written revisions (``search_reads.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from syncline.database.search_reads import SearchRead, any_match
from syncline.database.writes import WriteSet


class Interval:
    """A half-open interval ``[start, end)``; mutable while its scan runs."""

    __slots__ = ("end", "start")

    def __init__(self, start: bytes, end: bytes) -> None:
        self.start = start
        self.end = end

    def contains(self, key: bytes) -> bool:
        return self.start <= key < self.end

    def is_empty(self) -> bool:
        return self.start >= self.end

    def __repr__(self) -> str:
        return f"Interval({self.start.hex()}, {self.end.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interval) and self.start == other.start and self.end == other.end

    def __hash__(self) -> int:
        return hash((self.start, self.end))


def point(key: bytes) -> Interval:
    """The interval holding exactly ``key`` (no valid key extends another key)."""
    return Interval(key, key + b"\x00")


class ReadSet:
    __slots__ = ("_intervals", "reads_auth", "reads_time", "searches")

    def __init__(self) -> None:
        self._intervals: dict[str, list[Interval]] = {}
        #: the function asked who the caller is (its result depends on identity)
        self.reads_auth = False
        #: the function read the clock (``ctx.now``): its result depends on more than data
        self.reads_time = False
        #: the text searches run
        self.searches: list[SearchRead] = []

    def add(self, index_name: str, interval: Interval) -> Interval:
        self._intervals.setdefault(index_name, []).append(interval)
        return interval

    def add_search(self, read: SearchRead) -> None:
        self.searches.append(read)

    def merge(self, other: ReadSet) -> None:
        for name, intervals in other._intervals.items():
            self._intervals.setdefault(name, []).extend(intervals)
        self.searches.extend(other.searches)
        self.reads_auth = self.reads_auth or other.reads_auth
        self.reads_time = self.reads_time or other.reads_time

    def items(self) -> Iterator[tuple[str, list[Interval]]]:
        return iter(self._intervals.items())

    def interval_count(self) -> int:
        return sum(len(v) for v in self._intervals.values())

    def is_empty(self) -> bool:
        """Nothing was read (no interval and no search): no write can conflict."""
        return not self._intervals and not self.searches

    def overlaps_writes(self, writes: WriteSet) -> bool:
        """Could ``writes`` change what was read (a key in an interval, or a search match)?"""
        if self.overlapping_index(writes.keys) is not None:
            return True
        return bool(self.searches) and any_match(self.searches, writes.search) is not None

    def overlaps(self, writes: Mapping[str, Iterable[bytes]]) -> bool:
        """Does any written key (old or new, of any index) fall in an interval read?"""
        return self.overlapping_index(writes) is not None

    def overlapping_index(self, writes: Mapping[str, Iterable[bytes]]) -> str | None:
        """The name of an index where a written key falls in an interval read, or None."""
        for name, keys in writes.items():
            intervals = self._intervals.get(name)
            if not intervals:
                continue
            for key in keys:
                for interval in intervals:
                    if interval.start <= key < interval.end:
                        return name
        return None

    def __repr__(self) -> str:
        if self.searches:
            return f"ReadSet({self._intervals!r}, searches={self.searches!r})"
        return f"ReadSet({self._intervals!r})"
