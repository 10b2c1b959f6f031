"""Text search in read sets and write sets, and matching one against the other.

A search read is recorded as what it asked for, not as what it returned:
:class:`SearchRead` = (index, filter values, terms with the last one a prefix).
A written document revision (old or new) is recorded per search index of its
table as :class:`SearchWrite` = (its filter values, its set of terms). The
write *could change the read's result* exactly when every filter value of the
read equals the revision's and some term of the revision is a term of the read
(or, for the prefix term, starts with it): :func:`read_matches`. Any other
write cannot add, remove or reorder the read's results, so it neither
conflicts with a transaction nor re-runs a live query.

Recording the search alone suffices: a document a search returned matched
it, so any later change to that document has an old revision that matches.

Filter values are compared through :func:`filter_token`, a digest of the
field and the value's order-preserving key encoding (so ``1`` and
``Int64(1)`` differ, a missing field differs from ``None``), the same opaque
token the storage indexes.

:class:`SearchReadIndex` files many live queries' search reads so that a
commit touches only those whose filter values it carries and whose terms its
revisions contain: reads are bucketed per index by their filter values; a
bucket maps each exact term, and each prefix, to its readers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from syncline.database.search_terms import QueryTerms
from syncline.values.keys import encode_key

__all__ = [
    "SearchRead",
    "SearchReadIndex",
    "SearchWrite",
    "filter_token",
    "read_matches",
]

T = TypeVar("T", bound=Hashable)


def filter_token(field: str, value: Any) -> str:
    """An opaque token equal for two (field, value) pairs exactly when they are equal."""
    digest = hashlib.blake2b(field.encode() + b"\x00" + encode_key((value,)), digest_size=16)
    return "v" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SearchRead:
    """A text search a transaction ran: ``index`` is the full name (``"table.index"``)."""

    index: str
    #: (filter field, :func:`filter_token` of the value), sorted by field
    filters: tuple[tuple[str, str], ...]
    terms: QueryTerms


@dataclass(frozen=True, slots=True)
class SearchWrite:
    """One revision of a written document, as one search index sees it."""

    #: filter field -> :func:`filter_token` of the revision's value, for every filter field
    filters: Mapping[str, str]
    terms: frozenset[str]

    def to_json(self) -> list[Any]:
        return [dict(self.filters), sorted(self.terms)]

    @classmethod
    def from_json(cls, data: Any) -> SearchWrite:
        filters, terms = data
        return cls(dict(filters), frozenset(terms))


def read_matches(read: SearchRead, write: SearchWrite) -> bool:
    """Could a write of this revision change the result of ``read``?"""
    for field, token in read.filters:
        if write.filters.get(field) != token:
            return False
    prefix = read.terms.prefix
    if prefix is None:
        return False
    exact = read.terms.exact
    return any(term.startswith(prefix) or term in exact for term in write.terms)


def any_match(
    reads: Iterable[SearchRead], writes: Mapping[str, Iterable[SearchWrite]]
) -> str | None:
    """The index of a read that a written revision matches, or None."""
    for read in reads:
        for write in writes.get(read.index, ()):
            if read_matches(read, write):
                return read.index
    return None


class _Bucket(Generic[T]):
    """Readers of one index with the same filter values, by term."""

    __slots__ = ("exact", "prefix_lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, Counter[T]] = {}
        self.prefixes: dict[str, Counter[T]] = {}
        self.prefix_lengths: Counter[int] = Counter()

    def add(self, terms: QueryTerms, token: T) -> None:
        for term in terms.exact:
            self.exact.setdefault(term, Counter())[token] += 1
        if terms.prefix is not None:
            self.prefixes.setdefault(terms.prefix, Counter())[token] += 1
            self.prefix_lengths[len(terms.prefix)] += 1

    def remove(self, terms: QueryTerms, token: T) -> None:
        for term in terms.exact:
            _discard(self.exact, term, token)
        if terms.prefix is not None:
            _discard(self.prefixes, terms.prefix, token)
            length = len(terms.prefix)
            self.prefix_lengths[length] -= 1
            if not self.prefix_lengths[length]:
                del self.prefix_lengths[length]

    def is_empty(self) -> bool:
        return not self.exact and not self.prefixes

    def stab(self, terms: Iterable[str], out: set[T]) -> None:
        for term in terms:
            readers = self.exact.get(term)
            if readers:
                out.update(readers)
            for length in self.prefix_lengths:
                if length <= len(term):
                    readers = self.prefixes.get(term[:length])
                    if readers:
                        out.update(readers)


def _discard(table: dict[str, Counter[T]], term: str, token: T) -> None:
    readers = table.get(term)
    if readers is None:
        return
    readers[token] -= 1
    if readers[token] <= 0:
        del readers[token]
    if not readers:
        del table[term]


_BucketKey = tuple[tuple[str, str], ...]


class _PerIndex(Generic[T]):
    __slots__ = ("buckets", "shapes")

    def __init__(self) -> None:
        self.buckets: dict[_BucketKey, _Bucket[T]] = {}
        #: the sets of filter fields reads use (sorted field names), with their counts
        self.shapes: Counter[tuple[str, ...]] = Counter()


class SearchReadIndex(Generic[T]):
    """Search reads of many tokens (live queries), searchable by written revision."""

    def __init__(self) -> None:
        self._indexes: dict[str, _PerIndex[T]] = {}
        self._registered: dict[T, list[SearchRead]] = {}

    def __len__(self) -> int:
        return len(self._registered)

    def register(self, token: T, reads: Iterable[SearchRead]) -> None:
        """File ``token`` under each of ``reads`` (replacing what it had)."""
        self.unregister(token)
        kept = list(dict.fromkeys(reads))
        if not kept:
            return
        for read in kept:
            per_index = self._indexes.get(read.index)
            if per_index is None:
                per_index = self._indexes[read.index] = _PerIndex()
            bucket = per_index.buckets.get(read.filters)
            if bucket is None:
                bucket = per_index.buckets[read.filters] = _Bucket()
                per_index.shapes[tuple(field for field, _ in read.filters)] += 1
            bucket.add(read.terms, token)
        self._registered[token] = kept

    def unregister(self, token: T) -> None:
        reads = self._registered.pop(token, None)
        for read in reads or ():
            per_index = self._indexes[read.index]
            bucket = per_index.buckets[read.filters]
            bucket.remove(read.terms, token)
            if bucket.is_empty():
                del per_index.buckets[read.filters]
                shape = tuple(field for field, _ in read.filters)
                per_index.shapes[shape] -= 1
                if not per_index.shapes[shape]:
                    del per_index.shapes[shape]
            if not per_index.buckets:
                del self._indexes[read.index]

    def matches(self, writes: Mapping[str, Iterable[SearchWrite]], out: set[T]) -> None:
        """Add to ``out`` every token with a read that a written revision matches."""
        for index, revisions in writes.items():
            per_index = self._indexes.get(index)
            if per_index is None:
                continue
            for write in revisions:
                for shape in per_index.shapes:
                    key = _project(write.filters, shape)
                    if key is None:
                        continue
                    bucket = per_index.buckets.get(key)
                    if bucket is not None:
                        bucket.stab(write.terms, out)


def _project(filters: Mapping[str, str], shape: tuple[str, ...]) -> _BucketKey | None:
    out = []
    for field in shape:
        token = filters.get(field)
        if token is None:
            return None
        out.append((field, token))
    return tuple(out)
