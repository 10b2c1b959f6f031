"""What a log-history query selects, and how its parameters are read and bounded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncline.call_log.records import STATUSES, parse_duration_ms
from syncline.errors import InvalidRequest

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_FILTER_CHARS",
    "MAX_LIMIT",
    "BadLogQuery",
    "LogQuery",
    "parse_log_query",
]

#: records a query answers by default, and at most
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
#: the longest ``function`` or ``requestId`` filter accepted
MAX_FILTER_CHARS = 256


class BadLogQuery(InvalidRequest):
    """A log-history query parameter out of its range or format."""

    code = "BadLogQuery"


@dataclass(frozen=True)
class LogQuery:
    """Which records to return (every given filter must match).

    ``function`` is a path (``tasks:add``), or a module (``tasks``: all of its
    functions). Without ``after_id`` the newest ``limit`` matches are returned;
    with it, the oldest ``limit`` matches after that record (to follow the
    history). Either way in the order they were written.
    """

    since_ms: float | None = None
    function: str | None = None
    status: str | None = None
    request_id: str | None = None
    after_id: int | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a call record passes the function, status and request id filters."""
        path = str(record.get("path") or "")
        if self.function is not None and not (
            path == self.function if ":" in self.function else path.startswith(self.function + ":")
        ):
            return False
        if self.status is not None and record.get("status") != self.status:
            return False
        return self.request_id is None or record.get("requestId") == self.request_id


def parse_log_query(params: Mapping[str, str], *, now_ms: float) -> LogQuery:
    """The query of ``since``, ``function``, ``status``, ``requestId``, ``after``, ``limit``.

    ``since`` is a duration back from ``now_ms`` (``90s``, ``15m``, ``1h``,
    ``7d``). Raises :class:`BadLogQuery` naming the parameter and what it got.
    """
    since = params.get("since") or None
    function = params.get("function") or None
    status = params.get("status") or None
    request_id = params.get("requestId") or None
    for name, value in (("function", function), ("requestId", request_id)):
        if value is not None and len(value) > MAX_FILTER_CHARS:
            raise BadLogQuery(
                f"{name} must be at most {MAX_FILTER_CHARS} characters, got {len(value)}"
            )
    if status is not None and status not in STATUSES:
        raise BadLogQuery(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    after = params.get("after") or None
    if after is not None and not after.isdigit():
        raise BadLogQuery(f"after must be a record id (a whole number), got {after!r}")
    raw_limit = params.get("limit") or str(DEFAULT_LIMIT)
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadLogQuery(f"limit must be an integer between 1 and {MAX_LIMIT}, got {raw_limit!r}")
    since_ms = None
    if since is not None:
        try:
            since_ms = now_ms - parse_duration_ms(since)
        except ValueError as exc:
            raise BadLogQuery(f"since: {exc}") from None
    return LogQuery(
        since_ms=since_ms,
        function=function,
        status=status,
        request_id=request_id,
        after_id=None if after is None else int(after),
        limit=limit,
    )
