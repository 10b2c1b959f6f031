"""Live queries: shared query subscriptions kept up to date as commits land.

One :class:`LiveQuery` exists per (path, args, journal, admin or not,
identity-if-it-matters): the identity is part of the key only when the query
read ``ctx.auth`` (design §3.2). Whether the caller holds the admin key is
always part of it: an admin may run internal and system functions, so an
admin's result (a secret) and a non-admin's (a "function not found" error)
of one path are never handed to the other. A paginated query's first run pins its page end; from then
on it is keyed by that journal, so a later first-page subscriber gets a fresh
page of its own. Each holds its latest result and the interval of timestamps
over which that result is known to be valid::

    valid_from = the snapshot ts the result was computed at
    valid_through = (first commit after valid_from that touched its read set) - 1,
                    or, if none has, the newest commit processed so far

Commits arrive from the writer thread (one callback per batch) and are matched
against read sets with an :class:`~syncline.database.subscriptions.IntervalIndex`.
A touched query keeps its old result (still valid up to the commit) and is
re-run once; the new result is pushed to every subscriber. A re-run's result is
checked against the commits that landed while it ran (kept in a short recent
log), so no invalidation is ever missed.

Subscribers (sync sessions) use the validity intervals to move all of their
queries to one timestamp at which every result is valid.

Everything here runs on the event loop; query execution happens on the
database's read threads.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from syncline import metrics
from syncline.database.database import Database
from syncline.database.reads import ReadSet
from syncline.database.subscriptions import IntervalIndex
from syncline.database.writes import Commit
from syncline.errors import NO_ERROR_DATA, InternalError
from syncline.functions.executor import Executor, normalize_args
from syncline.functions.outcomes import Outcome, client_log_lines, format_error
from syncline.functions.paths import canonicalize_path
from syncline.identity import ANONYMOUS, Identity, is_admin
from syncline.query_cache import DEFAULT_QUERY_CACHE_BYTES, QueryCache, identity_key
from syncline.values.json import to_json

log = logging.getLogger("syncline.live")

#: Recent commits are kept to validate re-runs that finish late and answers of
#: ``/api/query_at_ts``: those within this window of the newest commit ...
RECENT_COMMITS_WINDOW_NS = 30 * 1_000_000_000
#: ... and, under heavy writing, no more than this many index keys in all (a
#: commit weighs the keys it touched), so the memory they hold stays bounded
#: whatever the write rate. Checks older than what is kept assume a conflict:
#: the query runs again (or ``TimestampTooOld``), never a stale answer.
RECENT_COMMITS_MAX_KEYS = 100_000


def _weight(commit: Commit) -> int:
    """What a kept commit costs, in index keys and search terms (at least 1)."""
    # Once per commit on the event loop: plain loops, no generators.
    writes = commit.writes
    weight = 1
    for keys in writes.keys.values():
        weight += len(keys)
    if writes.search:
        for revisions in writes.search.values():
            for revision in revisions:
                weight += len(revision.terms)
    return weight


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A query's result as sent to clients: encoded once, shared by all subscribers."""

    ok: bool
    #: the encoded value (success) — an orjson.Fragment of convex JSON
    value: Any
    error_message: str | None
    error_data: Any
    log_lines: list[str]
    journal: str | None
    #: identifies the result (value or error, and log lines) for de-duplication
    digest: bytes

    @classmethod
    def from_outcome(cls, outcome: Outcome, *, dev: bool) -> QueryResult:
        log_lines = client_log_lines(outcome, dev=dev)
        if outcome.error is None:
            encoded = orjson.dumps(to_json(outcome.value))
            digest = hashlib.blake2b(encoded, digest_size=16)
            for line in log_lines:
                digest.update(line.encode())
            return cls(
                True,
                orjson.Fragment(encoded),
                None,
                NO_ERROR_DATA,
                log_lines,
                outcome.journal,
                digest.digest(),
            )
        message, data, is_convex = format_error(
            outcome.error, request_id=outcome.request_id, dev=dev
        )
        # The request id differs per run; leave it out of the digest so equal errors dedupe.
        stable = message.split("] ", 1)[-1]
        digest = hashlib.blake2b(b"error\0" + stable.encode(), digest_size=16)
        error_data: Any = NO_ERROR_DATA
        if is_convex:
            encoded = orjson.dumps(to_json(data))
            digest.update(encoded)
            error_data = orjson.Fragment(encoded)
        for line in log_lines:
            digest.update(line.encode())
        return cls(False, None, message, error_data, log_lines, outcome.journal, digest.digest())


class Subscriber(Protocol):
    """A sync session (or anything) that wants to hear about live query changes."""

    def live_query_changed(self, query: LiveQuery) -> None: ...

    def live_query_split(self, query: LiveQuery) -> None:
        """The query was retired: subscribe again, with its (possibly pinned) journal.

        This happens when it started depending on the caller's identity, or
        when its pinned page is served by another live query already.
        """
        ...


async def _raise(exc: Exception) -> Outcome:
    raise exc


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LiveQuery:
    """A query kept up to date for its subscribers."""

    __slots__ = (
        "args",
        "identity",
        "invalid_at",
        "journal",
        "key",
        "path",
        "read_set",
        "rerun_requested",
        "result",
        "running",
        "subscribers",
        "valid_from",
    )

    def __init__(
        self, key: tuple[Any, ...], path: str, args: Any, journal: str | None, identity: Identity
    ) -> None:
        self.key = key
        self.path = path
        self.args = args
        self.journal = journal
        self.identity = identity
        self.result: QueryResult | None = None
        self.valid_from = 0
        self.invalid_at: int | None = None
        self.read_set: ReadSet | None = None
        self.running = False
        self.rerun_requested = False
        #: subscriber -> how many of its subscriptions use this query
        self.subscribers: dict[Subscriber, int] = {}

    @property
    def shared(self) -> bool:
        """Shared by callers of any identity with the same rights (it did not read
        ``ctx.auth``)."""
        return self.key[4] is None

    def valid_through(self, processed_ts: int) -> int:
        return processed_ts if self.invalid_at is None else self.invalid_at - 1

    def __repr__(self) -> str:
        return f"<LiveQuery {self.path} from={self.valid_from} invalid_at={self.invalid_at}>"


class LiveQueryManager:
    """Owns every live query of one application."""

    def __init__(self, database: Database, executor: Executor, *, dev: bool = True) -> None:
        self.database = database
        self.executor = executor
        self.dev = dev
        self.processed_ts = database.last_ts
        self._queries: dict[tuple[Any, ...], LiveQuery] = {}
        self._index: IntervalIndex[LiveQuery] = IntervalIndex()
        self._recent: deque[Commit] = deque()
        #: each kept commit's weight (``_weight``), counted once as it is kept
        self._recent_weights: deque[int] = deque()
        self._recent_keys = 0
        self._recent_floor = database.last_ts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ts_waiters: set[Callable[[], None]] = set()
        self._closed = False
        #: answers of HTTP queries, evicted by the commits processed here
        self.cache = QueryCache(
            max_bytes=DEFAULT_QUERY_CACHE_BYTES,
            first_conflict=self._first_conflict,
            up_to_date=self._up_to_date,
        )
        #: the store's head, when other processes commit to it too (see share_store)
        self._store_head: Callable[[], int | None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin receiving commits (call on the event loop that serves subscribers)."""
        self._loop = asyncio.get_running_loop()
        self.processed_ts = max(self.processed_ts, self.database.last_ts)
        self._recent_floor = self.processed_ts
        self.database.add_commit_listener(self._on_commits_threadsafe)

    async def close(self) -> None:
        self._closed = True
        try:
            self.database.remove_commit_listener(self._on_commits_threadsafe)
        except ValueError:
            pass
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._queries)

    def share_store(self) -> None:
        """Other processes commit to this database too (workers, nodes).

        Their commits reach this process through its tail, a moment after a
        fresh snapshot would see them. The query cache then serves an answer
        only after checking that the store's head is no newer than what was
        processed here; a store that cannot read its head cheaply gets no cache.
        """
        persistence = self.database.persistence
        if persistence.head_ts() is None:
            self.cache.shared_store = True
        else:
            self._store_head = persistence.head_ts

    def _up_to_date(self) -> bool:
        """Every commit made so far, by any process, has been processed here."""
        processed = self.processed_ts
        if processed < self.database.last_ts:
            return False
        head = self._store_head
        if head is None:
            return True
        try:
            newest = head()
        except Exception:  # the store is unreachable: let the call run (and fail) as usual
            return False
        return newest is not None and processed >= newest

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        subscriber: Subscriber,
        path: str,
        args: Any,
        *,
        identity: Identity = ANONYMOUS,
        journal: str | None = None,
    ) -> LiveQuery:
        """The live query for this call, created (and first run) if needed."""
        try:
            canonical = canonicalize_path(path)
            normalized = normalize_args(args)
            args_key = orjson.dumps(to_json(normalized), option=orjson.OPT_SORT_KEYS)
        except Exception:
            # Bad paths or args fail like any query: a QueryFailed result, keyed apart.
            canonical, normalized, args_key = str(path), args, repr(args).encode()
        privileged = is_admin(identity)
        shared_key = (canonical, args_key, journal, privileged, None)
        query = self._queries.get(shared_key)
        if query is None:
            own_key = (canonical, args_key, journal, privileged, identity_key(identity))
            query = self._queries.get(own_key)
            if query is None:
                query = LiveQuery(own_key, canonical, normalized, journal, identity)
                self._queries[own_key] = query
                metrics.LIVE_QUERIES.set(len(self._queries))
                self._schedule_run(query)
        query.subscribers[subscriber] = query.subscribers.get(subscriber, 0) + 1
        return query

    def unsubscribe(self, subscriber: Subscriber, query: LiveQuery) -> None:
        remaining = query.subscribers.get(subscriber, 0) - 1
        if remaining > 0:
            query.subscribers[subscriber] = remaining
            return
        query.subscribers.pop(subscriber, None)
        if not query.subscribers:
            if self._queries.get(query.key) is query:
                del self._queries[query.key]
                metrics.LIVE_QUERIES.set(len(self._queries))
            self._index.unregister(query)

    def rerun_all(self) -> None:
        """Run every live query again (new code was loaded); results change only if they differ."""
        self.cache.clear()
        for query in list(self._queries.values()):
            self._schedule_run(query)

    def wait_for_ts(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after the next batch of commits is processed."""
        self._ts_waiters.add(callback)

    # ------------------------------------------------------------------ commits

    def _on_commits_threadsafe(self, commits: list[Commit]) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            loop.call_soon_threadsafe(self.process_commits, commits)
        except RuntimeError:
            pass  # the loop is closed: the server is shutting down

    def process_commits(self, commits: list[Commit]) -> None:
        """Invalidate the live queries each commit touched (in ts order)."""
        for commit in commits:
            if commit.ts <= self.processed_ts:
                continue
            if commit.changes_everything:
                touched: Iterable[LiveQuery] = list(self._queries.values())
                # Checks from before it cannot be made key by key: assume a conflict.
                self._recent.clear()
                self._recent_weights.clear()
                self._recent_keys = 0
                self._recent_floor = commit.ts
            else:
                touched = self._index.matches_writes(commit.writes)
                weight = _weight(commit)
                self._recent.append(commit)
                self._recent_weights.append(weight)
                self._recent_keys += weight
            self.cache.on_commit(commit)
            reruns = 0
            for query in touched:
                if commit.ts > query.valid_from and query.invalid_at is None:
                    query.invalid_at = commit.ts
                    self._schedule_run(query)
                    reruns += 1
            metrics.LIVE_QUERY_RERUNS.observe(reruns)
            self.processed_ts = commit.ts
        self._forget_old_commits()
        waiters, self._ts_waiters = self._ts_waiters, set()
        for callback in waiters:
            callback()

    def recent_commit_count(self) -> int:
        """How many commits are kept for late checks (bounded by window and key budget)."""
        return len(self._recent)

    def _forget_old_commits(self) -> None:
        """Drop commits past the window or the key budget; the floor marks what is lost."""
        oldest_kept = self.processed_ts - RECENT_COMMITS_WINDOW_NS
        recent = self._recent
        while recent and (
            recent[0].ts < oldest_kept or self._recent_keys > RECENT_COMMITS_MAX_KEYS
        ):
            dropped = recent.popleft()
            self._recent_keys -= self._recent_weights.popleft()
            self._recent_floor = dropped.ts

    async def caught_up(self, ts: int) -> None:
        """Return once commits up to ``ts`` have been processed."""
        while self.processed_ts < ts and not self._closed:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.wait_for_ts(functools.partial(_set_done, done))
            await done

    def first_conflict(self, read_set: ReadSet, since_ts: int) -> int | None:
        """The first processed commit after ``since_ts`` that overlaps ``read_set``."""
        return self._first_conflict(read_set, since_ts)

    def _first_conflict(self, read_set: ReadSet, since_ts: int) -> int | None:
        """The first processed commit after ``since_ts`` that overlaps ``read_set``."""
        if since_ts < self._recent_floor:
            # The commits in between were forgotten: assume the worst, run again.
            return self._recent_floor
        newer: list[Commit] = []
        for commit in reversed(self._recent):
            if commit.ts <= since_ts:
                break
            newer.append(commit)
        for commit in reversed(newer):
            if read_set.overlaps_writes(commit.writes):
                return commit.ts
        return None

    # ------------------------------------------------------------------ running

    def _schedule_run(self, query: LiveQuery) -> None:
        if query.running:
            query.rerun_requested = True
            return
        if self._closed:
            return
        query.running = True
        task = asyncio.get_running_loop().create_task(self._run(query, self._start(query)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, query: LiveQuery) -> Awaitable[Outcome]:
        """Hand a run of ``query`` to the read threads now (``_run`` awaits it)."""
        query.rerun_requested = False
        try:
            return self.executor.start_query(
                query.path, query.args, identity=query.identity, journal=query.journal
            )
        except Exception as exc:
            return _raise(exc)  # _run reports it like a failed run

    async def _run(self, query: LiveQuery, started: Awaitable[Outcome]) -> None:
        try:
            while True:
                outcome = await started
                if self._closed:
                    return
                self._apply(query, outcome)
                if not query.rerun_requested and query.invalid_at is None:
                    return
                started = self._start(query)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never leave subscribers waiting for a result that will not come.
            log.exception("live query %s failed to run", query.path)
            failed = Outcome(query.path, None, error=InternalError(f"Query failed to run: {exc}"))
            failed.ts = self.processed_ts
            query.running = False
            self._apply(query, failed)
        finally:
            query.running = False

    def _apply(self, query: LiveQuery, outcome: Outcome) -> None:
        snapshot = outcome.ts if outcome.ts is not None else self.processed_ts
        read_set = outcome.read_set or ReadSet()
        query.read_set = read_set
        query.valid_from = snapshot
        query.invalid_at = self._first_conflict(read_set, snapshot)
        journal = outcome.journal
        if query.journal is None and journal is not None and not self._pin_journal(query, journal):
            self._retire(query)  # the same page is live already: its subscribers join that
            return
        if query.subscribers:
            self._index.register(query, read_set)
        query.result = QueryResult.from_outcome(outcome, dev=self.dev)
        if read_set.reads_auth and query.shared:
            self._retire(query)  # its subscribers come back, each under its own identity
            return
        if not read_set.reads_auth and not query.shared:
            self._share(query)
        for subscriber in list(query.subscribers):
            subscriber.live_query_changed(query)
        metrics.flush_fanout()  # the sessions written just now: one histogram update

    def _pin_journal(self, query: LiveQuery, journal: str) -> bool:
        """A paginated query's first run fixed its page end: re-runs keep that page.

        The query is keyed by the journal it now runs with, so a later caller
        asking for the first page (no journal) gets a fresh first page rather
        than this one, which may have grown since. Returns False if a live
        query with that key exists already (its subscribers should join it).
        """
        query.journal = journal
        pinned_key = (query.key[0], query.key[1], journal, *query.key[3:])
        if pinned_key in self._queries or (*pinned_key[:4], None) in self._queries:
            return False
        if self._queries.get(query.key) is query:
            del self._queries[query.key]
        query.key = pinned_key
        self._queries[pinned_key] = query
        return True

    def _share(self, query: LiveQuery) -> None:
        """The query does not depend on identity: let every caller use it."""
        shared_key = (*query.key[:4], None)
        if shared_key in self._queries or self._queries.get(query.key) is not query:
            return
        del self._queries[query.key]
        query.key = shared_key
        self._queries[shared_key] = query

    def _retire(self, query: LiveQuery) -> None:
        """Drop ``query``; every subscriber subscribes again (to a query with the right key).

        Used when a shared query started reading ``ctx.auth``, and when a
        paginated query's pinned page turned out to be served already.
        """
        if self._queries.get(query.key) is query:
            del self._queries[query.key]
            metrics.LIVE_QUERIES.set(len(self._queries))
        self._index.unregister(query)
        subscribers = list(query.subscribers)
        query.subscribers.clear()
        for subscriber in subscribers:
            subscriber.live_query_split(query)
