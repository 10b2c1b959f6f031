"""Guards and capture around user code: determinism and logs.

* Inside a query or mutation, network access and subprocesses raise
  :class:`DeterminismError` (they would make a transaction impossible to
  re-run). The check is a process-wide audit hook that looks at a context
  variable, so actions running at the same time on the event loop are not
  affected.
* ``print()`` and ``logging`` output produced while a function runs is
  captured as Convex log lines (``"[LOG] text"``, ``"[INFO] text"``, ...),
  attributed to that call even when calls run concurrently on threads.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from syncline.errors import DeterminismError

MAX_LOG_LINES = 256
MAX_LOG_LINE_CHARS = 4096

_deterministic: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "syncline_deterministic", default=None
)
_collector: contextvars.ContextVar[LogCollector | None] = contextvars.ContextVar(
    "syncline_log_collector", default=None
)

_BLOCKED_EVENTS = {
    "socket.connect": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "socket.gethostbyaddr": "network access",
    "socket.sendto": "network access",
    "urllib.Request": "network access",
    "subprocess.Popen": "subprocesses",
    "os.system": "subprocesses",
    "os.exec": "subprocesses",
    "os.posix_spawn": "subprocesses",
}

_install_lock = threading.Lock()
_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    what = _BLOCKED_EVENTS.get(event)
    if what is None:
        return
    kind = _deterministic.get()
    if kind is not None:
        raise DeterminismError(
            f"Can't use {what} ({event}) in a {kind}: queries and mutations must be "
            "deterministic. Please consider using an action."
        )


class LogCollector:
    """Log lines of one function call, capped at :data:`MAX_LOG_LINES`.

    ``lines`` is the whole state: once full, one overflow warning follows the
    last kept line. Clearing ``lines`` (a retried mutation starts its log
    afresh) therefore also re-arms the warning.
    """

    __slots__ = ("echo", "lines")

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self.echo = echo

    def add(self, level: str, message: str) -> None:
        if len(message) > MAX_LOG_LINE_CHARS:
            message = message[:MAX_LOG_LINE_CHARS] + " (truncated)"
        self.add_line(f"[{level}] {message}")

    def add_line(self, line: str) -> None:
        """Add an already formatted ``[LEVEL] text`` line (from a nested call, say)."""
        if self.echo is not None:
            self.echo(line)
        kept = len(self.lines)
        if kept < MAX_LOG_LINES:
            self.lines.append(line)
        elif kept == MAX_LOG_LINES:
            self.lines.append(
                f"[WARN] Log overflow (maximum {MAX_LOG_LINES}). Remaining log lines omitted."
            )


class _RoutingStdout(io.TextIOBase):
    """Replaces ``sys.stdout``: writes from inside a function go to its collector."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback
        self._buffers: dict[int, str] = {}

    def write(self, text: str) -> int:
        collector = _collector.get()
        if collector is None:
            return self._fallback.write(text)
        key = id(collector)
        pending = self._buffers.get(key, "") + text
        *lines, rest = pending.split("\n")
        for line in lines:
            collector.add("LOG", line)
        if rest:
            self._buffers[key] = rest
        else:
            self._buffers.pop(key, None)
        return len(text)

    def flush_collector(self, collector: LogCollector) -> None:
        rest = self._buffers.pop(id(collector), None)
        if rest:
            collector.add("LOG", rest)

    def flush(self) -> None:
        self._fallback.flush()

    def fileno(self) -> int:
        return self._fallback.fileno()

    def isatty(self) -> bool:
        return self._fallback.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._fallback, "encoding", "utf-8")


_LEVELS = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "ERROR",
}


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        collector = _collector.get()
        if collector is None:
            return
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        level = _LEVELS.get(record.levelno, "LOG" if record.levelno < logging.DEBUG else "INFO")
        collector.add(level, message)


def install() -> None:
    """Install the audit hook, stdout router and logging handler (once per process)."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        sys.addaudithook(_audit)
        if not isinstance(sys.stdout, _RoutingStdout):
            sys.stdout = _RoutingStdout(sys.stdout)
        logging.getLogger().addHandler(_CaptureHandler(level=logging.DEBUG))
        _installed = True


class running:  # lower case: used like the function it replaced, ``with running(...)``
    """Run user code as a function of ``kind`` ("query", "mutation", or None for actions).

    A plain context manager rather than a generator one: it runs on every call.
    """

    __slots__ = ("_col_token", "_collector", "_det_token", "_kind")

    def __init__(self, kind: str | None, collector: LogCollector) -> None:
        self._kind = kind
        self._collector = collector

    def __enter__(self) -> None:
        install()
        if not isinstance(sys.stdout, _RoutingStdout):
            # Something (a test runner's capture, say) replaced stdout since install().
            sys.stdout = _RoutingStdout(sys.stdout)
        self._det_token = _deterministic.set(self._kind)
        self._col_token = _collector.set(self._collector)

    def __exit__(self, *exc: object) -> None:
        stdout = sys.stdout
        if isinstance(stdout, _RoutingStdout):
            stdout.flush_collector(self._collector)
        _collector.reset(self._col_token)
        _deterministic.reset(self._det_token)


def current_collector() -> LogCollector | None:
    return _collector.get()
