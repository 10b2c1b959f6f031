"""What a function call did, and how a failed one is reported.

* :class:`Outcome` is what every call through the executor (``executor.py``)
  yields: the value or the error, the log lines, the ts, the read or write set.
* To the caller (sync protocol, HTTP, CLI): :func:`format_error` gives the
  message with its request id and the ``errorData``; :func:`client_log_lines`
  what the caller may see of the function's logs.
* To the server's ``syncline.functions`` log: :func:`log_failure`, with the
  request id the caller is shown and the traceback of user code
  (:func:`error_traceback`).
"""

from __future__ import annotations

import logging
import os
import sysconfig
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncline.errors import ConvexError, DatabaseUnavailable, LimitExceeded, SynclineError
from syncline.randomness import random_bytes
from syncline.values.json import from_python

if TYPE_CHECKING:
    from syncline.database.reads import ReadSet
    from syncline.database.writes import WriteSet
    from syncline.functions.registration import FunctionKind
    from syncline.identity import Identity

log = logging.getLogger("syncline.functions")


#: request ids hold the millisecond modulo this (it wraps every ~35 years)
_MS_MASK = (1 << 40) - 1


def new_request_id() -> str:
    """16 hex digits: the millisecond it was made (modulo 2**40) and 24 random bits.

    Time first: the log history indexes calls by request id, and ids that grow
    with time add to the end of that index instead of to a random page each. Two
    calls in one millisecond share an id once in about 16 million pairs; a lookup
    by request id then shows both (with their functions and times).
    """
    ms = (time.time_ns() // 1_000_000) & _MS_MASK
    return (ms.to_bytes(5, "big") + random_bytes(3)).hex()


@dataclass
class Outcome:
    """What one function call did."""

    path: str
    kind: FunctionKind | None
    value: Any = None
    error: BaseException | None = None
    log_lines: list[str] = field(default_factory=list)
    #: snapshot ts (query) or commit ts (mutation)
    ts: int | None = None
    read_set: ReadSet | None = None
    writes: WriteSet | None = None
    #: a paginated query's end cursor, to replay the same page extent on re-runs
    journal: str | None = None
    duration_ms: float = 0.0
    #: who called (for the log history's caller subject)
    caller: Identity | None = None
    #: answered from the query cache: no code ran (``query_cache.py``)
    cached: bool = False
    _request_id: str | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = new_request_id()
        return self._request_id

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def client_log_lines(outcome: Outcome, *, dev: bool) -> list[str]:
    """The log lines a caller may see: all of them in dev, none in production.

    As in Convex, production redacts function logs to clients (they stay in the
    server's own log stream); what a function prints can be private.
    """
    return outcome.log_lines if dev else []


def convex_error_data(exc: ConvexError) -> Any:
    """A ``ConvexError``'s data as a Convex value, converted like a return value.

    A plain ``int`` becomes a float64, nested or not; ``Int64`` stays. Data
    that is no value at all raises ``InvalidValue`` naming where.
    """
    return from_python(exc.data, path="errorData")


def format_error(exc: BaseException, *, request_id: str, dev: bool) -> tuple[str, Any, bool]:
    """(message, errorData, is_convex_error) for reporting a failed call to a client.

    ``errorData`` is a Convex value: a ``ConvexError``'s data is converted like
    a return value (a plain ``int`` becomes a float); data that cannot be
    converted turns the error into an ``InvalidValue`` naming the problem.
    """
    if isinstance(exc, ConvexError):
        try:
            data = convex_error_data(exc)
        except SynclineError as bad:
            return (
                f"[Request ID: {request_id}] Server Error\nUncaught {bad.code}: "
                f"the data of a ConvexError must be a Convex value: {bad}",
                None,
                False,
            )
        message = f"[Request ID: {request_id}] Server Error\nUncaught ConvexError: {exc.message}"
        return message, data, True
    if isinstance(exc, SynclineError) and exc.http_status < 500:
        # Errors of the caller's own making, and limits: safe and useful to show in full.
        return f"[Request ID: {request_id}] Server Error\n{exc.message}", None, False
    if isinstance(exc, DatabaseUnavailable) and not dev:
        # Say what happened (a caller may retry, or go to another node), not where.
        return (
            f"[Request ID: {request_id}] Server Error\n{exc.code}: the database cannot be "
            "reached or did not answer in time; try again",
            None,
            False,
        )
    if not dev:
        return f"[Request ID: {request_id}] Server Error", None, False
    name = type(exc).__name__
    frames = _user_frames(exc)
    message = f"[Request ID: {request_id}] Server Error\nUncaught {name}: {exc}"
    if frames:
        message += "\n" + frames
    return message, None, False


_SYSTEM_DIRS = tuple(
    {
        str(Path(__file__).resolve().parents[1]) + os.sep,  # the syncline package
        *(
            str(Path(p).resolve()) + os.sep
            for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
        ),
    }
)


def _is_syncline_frame(filename: str) -> bool:
    """A frame of Syncline, the standard library or an installed package: not user code."""
    return filename.startswith(_SYSTEM_DIRS) or filename.startswith("<frozen ")


def user_frames(exc: BaseException) -> str:
    """``    at name (file:line)`` for the frames of user code in ``exc``'s traceback."""
    return _user_frames(exc)


def _user_frames(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    lines = [
        f"    at {frame.name} ({frame.filename}:{frame.lineno})"
        for frame in tb
        if not _is_syncline_frame(frame.filename)
    ]
    return "\n".join(lines[-10:])


def error_traceback(exc: BaseException) -> str:
    """The error with the frames of user code (``file:line``), or every frame if none is.

    For server logs: an error raised in a function shows where in the
    function; an error of Syncline itself shows where in Syncline.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not _is_syncline_frame(f.filename)]
    shown = traceback.StackSummary.from_list(user or frames)
    lines = ["Traceback (most recent call last):\n", *shown.format()]
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines).rstrip("\n")


def describe_error(exc: BaseException) -> str:
    """``"<ErrorType>: <message>"`` for logs and consoles, the type named once.

    Some messages start with their type already (``ArgumentValidationError: ...``
    is the text Convex clients show), so the prefix is not added twice.
    """
    name = type(exc).__name__
    text = str(exc)
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def expected_failure(exc: BaseException) -> bool:
    """A failure the caller caused or the function meant (a ConvexError, a bad argument)."""
    if isinstance(exc, LimitExceeded):
        return False
    return isinstance(exc, SynclineError) and exc.http_status < 500


def log_failure(outcome: Outcome) -> None:
    """Write a failed call to the ``syncline.functions`` log, keyed by its request id."""
    exc = outcome.error
    assert exc is not None
    kind = outcome.kind.value if outcome.kind is not None else "function"
    head = f"[Request ID: {outcome.request_id}] {kind} {outcome.path} failed"
    if expected_failure(exc):
        log.info("%s: %s", head, describe_error(exc))
    else:
        log.error("%s\n%s", head, error_traceback(exc))
