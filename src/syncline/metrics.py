"""Prometheus metrics of a Syncline process: the families, their hooks, the exposition.

Every layer counts into the families below through one-line hooks
(``metrics.OCC_CONFLICTS.inc()``, :func:`observe_call`, ...), so this module
sits at the bottom of the import layering and imports nothing of Syncline.
The families live in one process-wide registry, :data:`REGISTRY` (not
``prometheus_client``'s default one, which user code may fill): a process is
what Prometheus scrapes, and one application runs per serving process.

Label values are bounded: function paths come from the loaded registry (a
path that names no loaded function is counted as ``unknown``), HTTP actions
by their route, kinds and statuses from fixed sets; never arguments, ids or
users.

``serve --workers N`` runs N processes. There, every worker is started with
:data:`MULTIPROC_ENV` naming a folder the parent emptied, and
``prometheus_client`` (in its multiprocess mode) keeps each value in a
memory-mapped file there; :func:`exposition` merges the files of every worker
(counters and histograms summed, live gauges summed over the running
workers), so any worker, or the parent's ``--metrics-port``, answers for the
whole server. Process CPU and memory are then reported per worker, labelled
by ``pid``.
"""

from __future__ import annotations

import bisect
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

__all__ = [
    "CALLS",
    "CALL_DURATION",
    "COMMITTER_QUEUE",
    "COMMIT_BATCH_SECONDS",
    "COMMIT_BATCH_SIZE",
    "COMMIT_DURABLE_SECONDS",
    "CONTENT_TYPE",
    "FANOUT_SECONDS",
    "LIVE_QUERIES",
    "LIVE_QUERY_RERUNS",
    "LOG_RECORDS_DROPPED",
    "MULTIPROC_ENV",
    "OCC_CONFLICTS",
    "OCC_LOCKED_FALLBACKS",
    "OCC_RETRIES",
    "POSTGRES_NOTIFY_QUEUE_USAGE",
    "POSTGRES_WRITE_LOCK_HOLD_SECONDS",
    "POSTGRES_WRITE_LOCK_WAIT_SECONDS",
    "QUERY_CACHE_LOOKUPS",
    "REGISTRY",
    "SCHEDULED_JOBS",
    "SCHEDULER_LAG",
    "STORAGE_BYTES",
    "SYNC_SESSIONS",
    "SYNC_SUBSCRIPTIONS",
    "UNKNOWN_FUNCTION",
    "BatchedHistogram",
    "exposition",
    "flush_fanout",
    "forget_process",
    "multiprocess_dir",
    "note_published",
    "observe_call",
    "observe_fanout",
    "prepare_multiprocess_dir",
    "scrape_registry",
]

#: the environment variable that puts ``prometheus_client`` in multiprocess mode
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: the ``function`` label of calls to a path that names no loaded function
UNKNOWN_FUNCTION = "unknown"
CONTENT_TYPE = CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

# ---------------------------------------------------------------- functions

CALLS = Counter(
    "syncline_function_calls",
    "Function calls finished, by kind, function path and status "
    "(success, user_error: the caller's or the function's own error, system_error).",
    ["kind", "function", "status"],
    registry=REGISTRY,
)
CALL_DURATION = Histogram(
    "syncline_function_duration_seconds",
    "Time from a call's start to its outcome (a mutation's includes its commit).",
    ["kind", "function", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# ---------------------------------------------------------------- commits

OCC_CONFLICTS = Counter(
    "syncline_occ_conflicts",
    "Optimistic mutation attempts that read something another commit changed.",
    registry=REGISTRY,
)
OCC_RETRIES = Counter(
    "syncline_occ_retries",
    "Conflicted mutation attempts run again at a newer snapshot.",
    registry=REGISTRY,
)
OCC_LOCKED_FALLBACKS = Counter(
    "syncline_occ_locked_fallbacks",
    "Mutations that conflicted on every optimistic attempt and then ran under the write lock.",
    registry=REGISTRY,
)
COMMIT_BATCH_SIZE = Histogram(
    "syncline_commit_batch_size",
    "Commits made durable by one storage transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
COMMIT_BATCH_SECONDS = Histogram(
    "syncline_commit_batch_seconds",
    "Time the committer held the write lock for one batch (checks, writes, COMMIT).",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
COMMIT_DURABLE_SECONDS = Histogram(
    "syncline_commit_durable_seconds",
    "Time of a batch's storage COMMIT (with full durability, its fsync).",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
COMMITTER_QUEUE = Gauge(
    "syncline_committer_queue_depth",
    "Write jobs waiting for the committer when it last started a batch.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

# ---------------------------------------------------------------- PostgreSQL nodes

POSTGRES_WRITE_LOCK_WAIT_SECONDS = Histogram(
    "syncline_postgres_write_lock_wait_seconds",
    "Time a commit batch waited for PostgreSQL's write lock (held by other nodes' commits), "
    "from BEGIN to holding it.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
POSTGRES_WRITE_LOCK_HOLD_SECONDS = Histogram(
    "syncline_postgres_write_lock_hold_seconds",
    "Time this node held PostgreSQL's write lock for one commit batch (writes, NOTIFY, COMMIT): "
    "every node's commits wait this long for each other.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
POSTGRES_NOTIFY_QUEUE_USAGE = Gauge(
    "syncline_postgres_notify_queue_usage",
    "Fraction of PostgreSQL's notification queue in use (pg_notification_queue_usage), "
    "checked every 10 s; at 1 every commit fails.",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)

# ---------------------------------------------------------------- sync and live queries

SYNC_SESSIONS = Gauge(
    "syncline_sync_sessions",
    "Open sync WebSocket sessions.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
SYNC_SUBSCRIPTIONS = Gauge(
    "syncline_sync_subscriptions",
    "Queries subscribed by the open sync sessions.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
LIVE_QUERIES = Gauge(
    "syncline_live_queries",
    "Distinct live queries (subscriptions to the same query and arguments share one).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
LIVE_QUERY_RERUNS = Histogram(
    "syncline_live_query_reruns_per_commit",
    "Live queries one commit invalidated (each runs again).",
    buckets=(0, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000),
    registry=REGISTRY,
)
QUERY_CACHE_LOOKUPS = Counter(
    "syncline_query_cache_lookups",
    "HTTP queries looked up in the query cache, by result (hit: answered without running).",
    ["result"],
    registry=REGISTRY,
)


class BatchedHistogram(Histogram):
    """A histogram that also takes many observations at once (:meth:`observe_many`).

    One commit reaches thousands of sessions in one pass of the event loop;
    :meth:`Histogram.observe` per session takes two locked increments and a
    walk of the buckets each. Here a pass adds one increment per bucket it
    touched and one to the sum, for the same counts.
    """

    def observe_many(self, amounts: list[float]) -> None:
        if not amounts:
            return
        self._raise_if_not_observable()
        counts = [0] * len(self._upper_bounds)
        for amount in amounts:
            counts[bisect.bisect_left(self._upper_bounds, amount)] += 1
        self._sum.inc(sum(amounts))
        for i, count in enumerate(counts):
            if count:
                self._buckets[i].inc(count)


FANOUT_SECONDS = BatchedHistogram(
    "syncline_fanout_latency_seconds",
    "Time from a commit's publication in this process to a Transition carrying its "
    "results being sent to a session.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# ---------------------------------------------------------------- scheduler and files

SCHEDULER_LAG = Histogram(
    "syncline_scheduler_lag_seconds",
    "Time from a scheduled job's scheduledTime to the start of its run.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCHEDULED_JOBS = Counter(
    "syncline_scheduled_jobs",
    "Scheduled jobs (and cron runs) finished, by function kind and outcome (success, failed).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
STORAGE_BYTES = Counter(
    "syncline_storage_bytes",
    "Bytes of stored files written (direction=in) and opened for reading (direction=out).",
    ["direction"],
    registry=REGISTRY,
)
LOG_RECORDS_DROPPED = Counter(
    "syncline_log_records_dropped",
    "Call records not kept in the log history because its writer fell behind.",
    registry=REGISTRY,
)

if MULTIPROC_ENV not in os.environ:
    # In multiprocess mode :class:`_WorkerProcesses` reports every worker's instead.
    ProcessCollector(registry=REGISTRY)

# ---------------------------------------------------------------- hooks


_call_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def observe_call(kind: str, function: str, status: str, seconds: float) -> None:
    """Count one finished call (``function`` must come from a bounded set: see the module doc)."""
    key = (kind, function, status)
    children = _call_children.get(key)
    if children is None:
        children = _call_children.setdefault(key, (CALLS.labels(*key), CALL_DURATION.labels(*key)))
    children[0].inc()
    children[1].observe(seconds)


#: how many recent commit timestamps are remembered for the fan-out latency
_PUBLISHED_KEPT = 512
_published: OrderedDict[int, float] = OrderedDict()
_published_lock = threading.Lock()
#: fan-out latencies not yet in the histogram (:func:`observe_fanout`)
_fanout_pending: list[float] = []
_fanout_lock = threading.Lock()
#: a flush at the latest after this many (one commit reaching more sessions)
_FANOUT_PENDING_MAX = 4096


def note_published(ts: int) -> None:
    """A commit at ``ts`` was published in this process now (the fan-out clock starts)."""
    with _published_lock:
        _published[ts] = time.perf_counter()
        while len(_published) > _PUBLISHED_KEPT:
            _published.popitem(last=False)


def observe_fanout(ts: int) -> None:
    """A Transition up to the commit at ``ts`` is being sent (ignored if ``ts`` is no recent one).

    Kept until :func:`flush_fanout`, which the event loop calls when it has
    handed a commit to its sessions: a fan-out to thousands of sessions
    updates the histogram once.
    """
    started = _published.get(ts)
    if started is not None:
        with _fanout_lock:
            _fanout_pending.append(time.perf_counter() - started)
            full = len(_fanout_pending) >= _FANOUT_PENDING_MAX
        if full:
            flush_fanout()


def flush_fanout() -> None:
    """Add the fan-out latencies observed since the last flush to :data:`FANOUT_SECONDS`."""
    global _fanout_pending
    if not _fanout_pending:
        return
    with _fanout_lock:
        pending, _fanout_pending = _fanout_pending, []
    FANOUT_SECONDS.observe_many(pending)


# ---------------------------------------------------------------- exposition


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, if this process runs in it."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` empty (files of an earlier run would be added to this one's)."""
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink()
    return path


def forget_process(pid: int, path: Path) -> None:
    """A worker ended: drop its live gauges (its counters stay in the totals)."""
    multiprocess.mark_process_dead(pid, str(path))


class _WorkerProcesses:
    """``process_*`` (CPU, memory, open files) of every running worker, labelled by ``pid``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _pids(self) -> list[int]:
        # Every worker writes its live gauges from import on; an exited worker's file
        # is removed (forget_process).
        return sorted(
            int(tail)
            for file in self.path.glob("gauge_livesum_*.db")
            if (tail := file.stem.rpartition("_")[2]).isdigit()
        )

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self._pids():
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()


def scrape_registry(path: Path | None = None) -> CollectorRegistry:
    """What a scrape reads: :data:`REGISTRY`, or the merged workers of ``path`` (multiprocess)."""
    if path is None:
        path = multiprocess_dir()
        if path is None:
            return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))
    registry.register(_WorkerProcesses(path))
    return registry


def exposition(path: Path | None = None) -> bytes:
    """The Prometheus text exposition of this process (or of every worker: see the module doc)."""
    flush_fanout()
    return generate_latest(scrape_registry(path))
