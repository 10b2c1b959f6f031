"""What the health page shows: this process's calls, commits and connections.

:class:`HealthStats` watches the executor's finished calls (the dashboard's
own are not reported to it, see :mod:`syncline.functions.system`) and the
database's commits from the moment :meth:`HealthStats.attach` is called.
Latency percentiles are of the last :data:`LATENCY_WINDOW` calls of each kind.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from syncline import metrics
from syncline.__about__ import __version__
from syncline.persistence import is_postgres_url

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.database.writes import Commit
    from syncline.functions.outcomes import Outcome

__all__ = ["COMMIT_RATE_WINDOW_S", "LATENCY_WINDOW", "HealthStats"]

#: calls of each kind whose durations give the percentiles
LATENCY_WINDOW = 1000
#: seconds over which commits per second are averaged
COMMIT_RATE_WINDOW_S = 10
_KINDS = ("query", "mutation", "action")


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return round(ordered[index], 3)


class HealthStats:
    """Counters for ``GET /api/admin/dashboard/health``."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.started_at_ms = time.time() * 1000
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._calls = dict.fromkeys(_KINDS, 0)
        self._durations: dict[str, deque[float]] = {
            kind: deque(maxlen=LATENCY_WINDOW) for kind in _KINDS
        }
        #: [second, commits in it], the last COMMIT_RATE_WINDOW_S seconds
        self._commits: deque[list[int]] = deque()

    def attach(self) -> None:
        self.app.executor.observers.append(self.observe_call)
        self.app.database.add_commit_listener(self.observe_commits)

    def detach(self) -> None:
        if self.observe_call in self.app.executor.observers:
            self.app.executor.observers.remove(self.observe_call)
        try:
            self.app.database.remove_commit_listener(self.observe_commits)
        except ValueError:
            pass

    def observe_call(self, outcome: Outcome) -> None:
        kind = outcome.kind.value if outcome.kind is not None else None
        if kind not in self._calls:
            return
        with self._lock:
            self._calls[kind] += 1
            self._durations[kind].append(outcome.duration_ms)

    def observe_commits(self, commits: list[Commit]) -> None:
        # On the publishing thread: count, nothing more.
        second = int(time.monotonic())
        with self._lock:
            buckets = self._commits
            if buckets and buckets[-1][0] == second:
                buckets[-1][1] += len(commits)
            else:
                buckets.append([second, len(commits)])
            while buckets and buckets[0][0] <= second - COMMIT_RATE_WINDOW_S:
                buckets.popleft()

    def _commits_per_second(self, now: float) -> float:
        second = int(now)
        recent = sum(n for s, n in self._commits if s > second - COMMIT_RATE_WINDOW_S)
        span = min(float(COMMIT_RATE_WINDOW_S), max(now - self._started, 1.0))
        return round(recent / span, 3)

    def snapshot(self) -> dict[str, Any]:
        """The health page's figures (see docs/reference/http-api.md)."""
        app = self.app
        now = time.monotonic()
        url = app.paths.database_url if app.paths is not None else ""
        sessions = metrics.REGISTRY.get_sample_value("syncline_sync_sessions")
        with self._lock:
            functions = {}
            for kind in _KINDS:
                ordered = sorted(self._durations[kind])
                functions[kind] = {
                    "calls": self._calls[kind],
                    "p50Ms": _percentile(ordered, 0.5),
                    "p95Ms": _percentile(ordered, 0.95),
                }
            commits = self._commits_per_second(now)
        return {
            "version": __version__,
            "startedAt": round(self.started_at_ms),
            "uptimeS": round(now - self._started, 3),
            "database": "postgresql" if is_postgres_url(url) else "sqlite",
            "connectedClients": int(sessions or 0),
            "liveQueries": len(app.live),
            "commitsPerSecond": commits,
            "functions": functions,
        }
