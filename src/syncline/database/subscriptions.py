"""Matching commits to the live queries they invalidate, without scanning them all.

:class:`IntervalIndex` maps read-set intervals (per index name) to the tokens
(live queries) that read them, and answers "which tokens read this key?".

How a lookup stays cheap: every interval ``[start, end)`` is filed under the
longest common prefix of ``start`` and ``end``. A key inside the interval
necessarily begins with that prefix (any byte string between two strings that
share a prefix shares it too). So a lookup checks only the buckets named by
prefixes of the key, and only for the prefix lengths that occur in the index
— typically a handful: one per shape of query (``eq`` on one field, on two
fields, a point ``get``, a full scan...). Queries on different ``eq`` values
land in different buckets, so a write touches the few queries that read near
it, not every subscription.

Text search reads are filed alongside, in a
:class:`~syncline.database.search_reads.SearchReadIndex` (by filter values,
then by term): a commit re-runs only the searches its revisions match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from syncline.database.reads import ReadSet
from syncline.database.search_reads import SearchReadIndex
from syncline.database.writes import WriteSet

T = TypeVar("T", bound=Hashable)


def _common_prefix(a: bytes, b: bytes) -> bytes:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return a[:i]


class _PerIndex(Generic[T]):
    __slots__ = ("buckets", "lengths")

    def __init__(self) -> None:
        #: common prefix -> list of (start, end, token)
        self.buckets: dict[bytes, list[tuple[bytes, bytes, T]]] = {}
        #: how many intervals are filed under prefixes of each length
        self.lengths: Counter[int] = Counter()

    def add(self, start: bytes, end: bytes, token: T) -> None:
        prefix = _common_prefix(start, end)
        self.buckets.setdefault(prefix, []).append((start, end, token))
        self.lengths[len(prefix)] += 1

    def remove(self, start: bytes, end: bytes, token: T) -> None:
        prefix = _common_prefix(start, end)
        bucket = self.buckets.get(prefix)
        if not bucket:
            return
        for i, entry in enumerate(bucket):
            if entry[2] == token and entry[0] == start and entry[1] == end:
                bucket.pop(i)
                break
        else:
            return
        if not bucket:
            del self.buckets[prefix]
        self.lengths[len(prefix)] -= 1
        if not self.lengths[len(prefix)]:
            del self.lengths[len(prefix)]

    def stab(self, key: bytes, out: set[T]) -> None:
        size = len(key)
        for length in self.lengths:
            if length > size:
                continue
            bucket = self.buckets.get(key[:length])
            if bucket is None:
                continue
            for start, end, token in bucket:
                if start <= key < end:
                    out.add(token)


class IntervalIndex(Generic[T]):
    """Read-set intervals of many tokens, searchable by written key."""

    def __init__(self) -> None:
        self._indexes: dict[str, _PerIndex[T]] = {}
        self._registered: dict[T, list[tuple[str, bytes, bytes]]] = {}
        self._searches: SearchReadIndex[T] = SearchReadIndex()

    def __len__(self) -> int:
        return len(self._registered)

    def __contains__(self, token: object) -> bool:
        return token in self._registered

    def register(self, token: T, read_set: ReadSet) -> None:
        """File ``token`` under every interval of ``read_set`` (replacing earlier ones)."""
        self.unregister(token)
        entries: list[tuple[str, bytes, bytes]] = []
        for index_name, intervals in read_set.items():
            per_index = self._indexes.get(index_name)
            if per_index is None:
                per_index = self._indexes[index_name] = _PerIndex()
            seen: set[tuple[bytes, bytes]] = set()
            for interval in intervals:
                if interval.start >= interval.end:
                    continue
                bounds = (interval.start, interval.end)
                if bounds in seen:
                    continue
                seen.add(bounds)
                per_index.add(interval.start, interval.end, token)
                entries.append((index_name, interval.start, interval.end))
        self._registered[token] = entries
        self._searches.register(token, read_set.searches)

    def unregister(self, token: T) -> None:
        self._searches.unregister(token)
        entries = self._registered.pop(token, None)
        if not entries:
            return
        for index_name, start, end in entries:
            per_index = self._indexes.get(index_name)
            if per_index is None:
                continue
            per_index.remove(start, end, token)
            if not per_index.lengths:
                del self._indexes[index_name]

    def matches(self, writes: Mapping[str, Iterable[bytes]]) -> set[T]:
        """Tokens with an interval containing any written key."""
        out: set[T] = set()
        for index_name, keys in writes.items():
            per_index = self._indexes.get(index_name)
            if per_index is None:
                continue
            for key in keys:
                per_index.stab(key, out)
        return out

    def matches_writes(self, writes: WriteSet) -> set[T]:
        """Tokens whose reads ``writes`` may change: keys in intervals, or search matches."""
        out = self.matches(writes.keys)
        if writes.search:
            self._searches.matches(writes.search, out)
        return out
