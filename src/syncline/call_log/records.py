"""A finished call as a log-history record (a JSON object).

Fields: ``timestamp`` (ms since the epoch, when the call finished), ``path``,
``kind`` (query, mutation, action, httpAction), ``status`` (``success`` or
``failure``), ``durationMs``, ``requestId``, ``caller`` (the user's subject,
``admin``, ``admin as <subject>``, ``system`` for scheduled work, or null for
anonymous callers), ``logLines``, ``error`` (``"<ErrorType>: <message>"``) and
``cached`` (true for a query answered from the query cache: no code ran, no
log lines) and ``traceback`` (failures: the frames of user code with file and line, see
:func:`~syncline.functions.outcomes.error_traceback`; none for a caller's
mistake such as a missing function or a bad argument). Records hold what a
function printed and where it failed: they are for admins only.
"""

from __future__ import annotations

import re
from typing import Any

from syncline.functions.outcomes import (
    Outcome,
    describe_error,
    error_traceback,
    expected_failure,
    user_frames,
)
from syncline.identity import Admin, Anonymous, Identity, System, User

__all__ = ["STATUSES", "call_record", "caller_name", "parse_duration_ms"]

#: the values of a record's ``status``
STATUSES = ("success", "failure")

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration_ms(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` (a bare number is seconds) in milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 15m, 1h or 7d")
    number, unit = match.groups()
    return float(number) * _UNITS_MS[unit or "s"]


def caller_name(identity: Identity | None) -> str | None:
    """Who called, for the record: a user's subject, ``admin``, ``system``; None if anonymous."""
    if identity is None or isinstance(identity, Anonymous):
        return None
    if isinstance(identity, User):
        return identity.user.subject
    if isinstance(identity, Admin):
        acting = identity.acting_as
        return "admin" if acting is None else f"admin as {acting.subject}"
    if isinstance(identity, System):
        return "system"
    return None


def call_record(outcome: Outcome, *, timestamp_ms: float) -> dict[str, Any]:
    """The record of one finished call (see the module docstring)."""
    error = outcome.error
    return {
        "timestamp": timestamp_ms,
        "path": outcome.path,
        "kind": outcome.kind.value if outcome.kind is not None else None,
        "status": "success" if error is None else "failure",
        "durationMs": round(outcome.duration_ms, 3),
        "requestId": outcome.request_id,
        "caller": caller_name(outcome.caller),
        "logLines": list(outcome.log_lines),
        "cached": outcome.cached,
        "error": None if error is None else describe_error(error),
        "traceback": None if error is None else _traceback(error),
    }


def _traceback(error: BaseException) -> str | None:
    """Where a call failed: user code's frames; Syncline's only for errors of its own.

    A caller's mistake (a missing function, a bad argument) has no traceback.
    """
    if expected_failure(error) and not user_frames(error):
        return None
    return error_traceback(error)
