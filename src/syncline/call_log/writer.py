"""Records off the hot path: the executor's observer queues, a thread writes in batches.

:meth:`CallLog.observe` (an executor observer: it runs on whatever thread
finished the call) keeps only what the record needs, fixes the call's request
id (so the record and the caller's error message agree) and appends to a
bounded queue; past ``max_pending`` queued calls it counts the call in
``syncline_log_records_dropped_total`` instead. A thread wakes every
``flush_interval_s``, turns the queued calls into records (tracebacks are
formatted there) and hands the batch to each sink: the :class:`LogStore`,
and the JSON-lines output of ``--log-format json``. Every ``prune_every_s``
it applies the store's retention.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from syncline import metrics
from syncline.call_log.records import call_record
from syncline.call_log.store import LogStore
from syncline.functions.outcomes import Outcome

__all__ = ["DEFAULT_MAX_PENDING", "CallLog", "stdout_lines"]

log = logging.getLogger("syncline.call_log")

#: calls queued for the writer at most (more are dropped and counted)
DEFAULT_MAX_PENDING = 10_000


def stdout_lines(line: bytes) -> None:
    """Write one JSON line to standard output in one ``write`` (lines of workers do not mix)."""
    os.write(1, line)


class CallLog:
    """Every finished call, written to the log history and/or as JSON lines."""

    def __init__(
        self,
        *,
        now_ms: Callable[[], float],
        store: LogStore | None = None,
        json_lines: Callable[[bytes], None] | None = None,
        flush_interval_s: float = 0.2,
        prune_every_s: float = 5.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._now_ms = now_ms
        self.store = store
        self._json_lines = json_lines
        self._flush_interval_s = flush_interval_s
        self._prune_every_s = prune_every_s
        self._max_pending = max_pending
        self._pending: deque[tuple[float, Outcome]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def observe(self, outcome: Outcome) -> None:
        """The executor observer: queue the call (never blocks, never raises)."""
        if len(self._pending) >= self._max_pending:
            metrics.LOG_RECORDS_DROPPED.inc()
            return
        kept = Outcome(
            outcome.path,
            outcome.kind,
            error=outcome.error,
            log_lines=outcome.log_lines,
            duration_ms=outcome.duration_ms,
            caller=outcome.caller,
            _request_id=outcome.request_id,
        )
        self._pending.append((self._now_ms(), kept))

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="syncline-call-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is queued, stop the thread, close the store."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self.flush()
        if self.store is not None:
            self.store.close()

    def flush(self) -> int:
        """Write every queued call now; how many."""
        with self._lock:
            batch: list[tuple[float, Outcome]] = []
            pending = self._pending
            while pending:
                batch.append(pending.popleft())
            if not batch:
                return 0
            records = [call_record(outcome, timestamp_ms=ts) for ts, outcome in batch]
            self._write(records)
            return len(records)

    def prune(self) -> int:
        """Apply the store's retention now; how many records went."""
        if self.store is None:
            return 0
        with self._lock:
            return self.store.prune(self._now_ms())

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self.store is not None:
            try:
                self.store.append(records)
            except Exception:
                metrics.LOG_RECORDS_DROPPED.inc(len(records))
                log.exception("could not write %d records to the log history", len(records))
        if self._json_lines is not None:
            for record in records:
                self._json_lines(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def _run(self) -> None:
        since_prune = 0.0
        while True:
            self._wake.wait(self._flush_interval_s)
            stopping = self._stopping
            try:
                self.flush()
                since_prune += self._flush_interval_s
                if since_prune >= self._prune_every_s:
                    since_prune = 0.0
                    self.prune()
            except Exception:
                log.exception("the log history writer failed")
            if stopping:
                return
