"""The query cache: a query's answer served again while nothing it read has changed.

As in Convex (semantics §2.5), an HTTP query (``POST /api/query``) that
another caller ran with the same arguments is answered from the cache instead
of running again, as long as no commit since that run touched what it read.
An entry is kept under the same key as a live query: the canonical path, the
arguments, whether the caller holds the admin key, and the caller's identity
only when the query read ``ctx.auth``.

Validity. An entry computed at snapshot ``ts`` is stored only if no commit
processed since ``ts`` overlaps its read set (the live query manager's recent
commits answer that), and from then on every commit the manager processes
evicts the entries it overlaps. So an entry present in the cache is the
answer at the newest processed commit. It is served only while this process
has processed every commit made so far (else the call runs: a miss, never a
stale answer), so a caller always sees at least the commits acknowledged to
it. When other processes commit to the same store (``--workers N``), their
commits reach this process through its tail a moment after a fresh snapshot
would see them, so "every commit made so far" is checked against the store's
head, read for each hit (a few microseconds on SQLite).

Not cached:

* failed calls (their error may carry a request id, and they are rare);
* queries that read ``ctx.now``: their answer depends on more than their
  reads (Convex keeps those up to 17 s; here they always run);
* the server's own functions (``_system/...``): some read state outside the
  database (the log history, metrics);
* any call on a store that cannot read its head cheaply while other
  processes commit to it (several nodes on PostgreSQL: a round trip per
  hit would cost what it saves).

The cache is bounded by the bytes of the answers it holds (least recently
used entries go first): ``serve --query-cache SIZE`` (default 64 MiB; ``off``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from syncline import metrics
from syncline.database.reads import ReadSet
from syncline.database.subscriptions import IntervalIndex
from syncline.database.writes import Commit
from syncline.functions.outcomes import Outcome
from syncline.functions.paths import canonicalize_path
from syncline.functions.system import is_system_path
from syncline.identity import Admin, Identity, System, User, is_admin

__all__ = ["DEFAULT_QUERY_CACHE_BYTES", "CachedQuery", "QueryCache", "args_key", "identity_key"]

#: the default bound on the answers kept (``serve --query-cache``)
DEFAULT_QUERY_CACHE_BYTES = 64 * 1024 * 1024
#: what an entry costs beyond its answers' bytes (key, read set, bookkeeping)
_ENTRY_OVERHEAD = 512
_HITS = metrics.QUERY_CACHE_LOOKUPS.labels("hit")
_MISSES = metrics.QUERY_CACHE_LOOKUPS.labels("miss")
#: canonical paths remembered (a client's typos must not grow this without bound)
_MAX_PATHS = 4096


def identity_key(identity: Identity) -> Any:
    """The part of a cache or live-query key that tells callers apart, when it matters."""
    if isinstance(identity, User):
        return ("user", identity.user.cache_key())
    if isinstance(identity, Admin):
        return ("admin", identity.acting_as.cache_key() if identity.acting_as else None)
    if isinstance(identity, System):
        return ("system",)
    return ("anonymous",)


def args_key(args: Any) -> bytes:
    """The arguments as wire JSON with sorted keys: equal arguments, equal keys."""
    return orjson.dumps(args, option=orjson.OPT_SORT_KEYS)


class CachedQuery:
    """One cached answer: the outcome it came from and its encodings by format."""

    __slots__ = ("answers", "key", "outcome", "size", "valid_from")

    def __init__(self, key: tuple[Any, ...], outcome: Outcome, valid_from: int) -> None:
        self.key = key
        self.outcome = outcome
        self.valid_from = valid_from
        #: output format -> the JSON answer (``HttpApi`` fills it)
        self.answers: dict[str, bytes] = {}
        self.size = _ENTRY_OVERHEAD

    def __repr__(self) -> str:
        return f"<CachedQuery {self.key[0]} from={self.valid_from}>"


class QueryCache:
    """Answers of queries, evicted by the commits that change what they read.

    Everything here runs on the event loop. ``first_conflict(read_set, ts)``
    names the first commit processed after ``ts`` that overlaps ``read_set``
    (the live query manager's), and ``up_to_date()`` says whether every
    commit published so far has been processed.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_QUERY_CACHE_BYTES,
        first_conflict: Callable[[ReadSet, int], int | None],
        up_to_date: Callable[[], bool],
    ) -> None:
        self.max_bytes = max_bytes
        #: set when other processes commit to a store whose head is not cheap to read:
        #: nothing is served then
        self.shared_store = False
        self._first_conflict = first_conflict
        self._up_to_date = up_to_date
        self._entries: OrderedDict[tuple[Any, ...], CachedQuery] = OrderedDict()
        self._index: IntervalIndex[CachedQuery] = IntervalIndex()
        self._bytes = 0
        self._paths: dict[str, str | None] = {}

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and not self.shared_store

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def canonical_path(self, path: str) -> str | None:
        """``path`` as a cache key (None: never cached: a system function or a bad path)."""
        canonical = self._paths.get(path, "")
        if canonical == "":
            try:
                canonical = canonicalize_path(path)
            except Exception:
                canonical = None
            if canonical is not None and is_system_path(canonical):
                canonical = None
            if len(self._paths) >= _MAX_PATHS:
                self._paths.clear()
            self._paths[path] = canonical
        return canonical

    # ------------------------------------------------------------------ serving

    def lookup(self, path: str, args: bytes, identity: Identity) -> CachedQuery | None:
        """The valid entry for this call, or None (then run it, and :meth:`store` it)."""
        if not self.enabled:
            return None
        entries = self._entries
        entry = None
        if entries and self._up_to_date():
            privileged = is_admin(identity)
            entry = entries.get((path, args, privileged, None))
            if entry is None:
                entry = entries.get((path, args, privileged, identity_key(identity)))
        if entry is None:
            _MISSES.inc()
            return None
        entries.move_to_end(entry.key)
        _HITS.inc()
        return entry

    def store(
        self, path: str, args: bytes, outcome: Outcome, identity: Identity
    ) -> CachedQuery | None:
        """Keep ``outcome`` of ``identity``'s call for later calls, if it may be (see the
        module docstring).

        Returns the new entry (the caller adds its encoded answer with
        :meth:`add_answer`), or None when it is not kept.
        """
        read_set, ts = outcome.read_set, outcome.ts
        if (
            not self.enabled
            or outcome.error is not None
            or read_set is None
            or ts is None
            or read_set.reads_time
        ):
            return None
        if self._first_conflict(read_set, ts) is not None:
            return None  # changed already: the next call runs again
        who = identity_key(identity) if read_set.reads_auth else None
        key = (path, args, is_admin(identity), who)
        self._drop(self._entries.get(key))
        entry = CachedQuery(key, outcome, ts)
        self._entries[key] = entry
        self._bytes += entry.size
        self._index.register(entry, read_set)
        return entry

    def add_answer(self, entry: CachedQuery, fmt: str, answer: bytes) -> None:
        """Keep ``answer`` (the query's answer in format ``fmt``) with ``entry``."""
        if self._entries.get(entry.key) is not entry or fmt in entry.answers:
            return  # evicted meanwhile, or known already
        entry.answers[fmt] = answer
        entry.size += len(answer)
        self._bytes += len(answer)
        self._shrink()

    # ------------------------------------------------------------------ invalidation

    def on_commit(self, commit: Commit) -> None:
        """Evict the entries ``commit`` may have changed (call in ts order)."""
        if not self._entries:
            return
        if commit.changes_everything:
            self.clear()
            return
        for entry in self._index.matches_writes(commit.writes):
            if commit.ts > entry.valid_from:
                self._drop(entry)

    def clear(self) -> None:
        """Forget every entry (new code was loaded, or the commits in between are unknown)."""
        self._entries.clear()
        self._index = IntervalIndex()
        self._bytes = 0
        self._paths.clear()

    def _drop(self, entry: CachedQuery | None) -> None:
        if entry is None or self._entries.get(entry.key) is not entry:
            return
        del self._entries[entry.key]
        self._index.unregister(entry)
        self._bytes -= entry.size

    def _shrink(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            _key, oldest = next(iter(self._entries.items()))
            self._drop(oldest)
