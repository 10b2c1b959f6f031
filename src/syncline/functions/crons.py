"""Cron job definitions: what a project's ``functions/crons.py`` declares.

::

    from syncline import CronJobs, internal

    crons = CronJobs()
    crons.interval("clear presence", internal.presence.clear, minutes=5)
    crons.cron("digest", "0 8 * * 1-5", internal.mail.send_digest, {"kind": "daily"})
    crons.daily("cleanup", internal.files.cleanup, hour_utc=3, minute_utc=30)
    crons.weekly("report", internal.reports.weekly, day_of_week="monday", hour_utc=9)
    crons.monthly("invoice", internal.billing.invoice, day=1, hour_utc=6)

This module only *describes* schedules (and computes their next run times);
running them is the job of :mod:`syncline.scheduling.cron_runner`, which syncs these
definitions into the database on every load. It imports nothing heavy
(croniter is imported when a cron expression is first parsed), so
``from syncline import CronJobs`` stays cheap.

All times are UTC. Cron expressions have the classic five fields
(``minute hour day-of-month month day-of-week``, day-of-week 0 = Sunday) and
are parsed by croniter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncline.errors import FunctionDefinitionError, InvalidValue
from syncline.functions.paths import function_path
from syncline.values.json import object_from_python

__all__ = ["CronJob", "CronJobs", "CronSchedule"]

DAYS_OF_WEEK = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
#: how many skipped occurrences are counted (for the log line) before giving up counting
_MAX_COUNTED_SKIPS = 10_000


def _cron_next_ms(expression: str, after_ms: float) -> float:
    """The first occurrence of ``expression`` strictly after ``after_ms`` (UTC), in ms."""
    from croniter import croniter

    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    return float(croniter(expression, start).get_next(float)) * 1000


def _check_cron_expression(expression: object) -> str:
    if not isinstance(expression, str):
        raise FunctionDefinitionError(
            f"A cron expression is a string like '*/5 * * * *', got {expression!r}"
        )
    from croniter import croniter

    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise FunctionDefinitionError(
            f"Invalid cron expression {expression!r}: expected five fields "
            "'minute hour day-of-month month day-of-week' (UTC), e.g. '*/5 * * * *'"
        )
    return " ".join(fields)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """When a cron job runs: every ``interval_ms``, or at the times of a cron ``expression``.

    ``kind`` and ``detail`` remember how it was declared (``"daily"`` with
    ``{"hourUTC": 3, "minuteUTC": 30}``, ...) for display; every calendar
    schedule is stored as the equivalent cron expression.
    """

    kind: str
    interval_ms: float | None = None
    expression: str | None = None
    detail: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, **dict(self.detail)}
        if self.interval_ms is not None:
            out["intervalMs"] = float(self.interval_ms)
        if self.expression is not None:
            out["cron"] = self.expression
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CronSchedule:
        interval = data.get("intervalMs")
        detail = tuple((k, v) for k, v in data.items() if k not in ("type", "intervalMs", "cron"))
        return cls(
            str(data["type"]),
            float(interval) if interval is not None else None,
            data.get("cron"),
            detail,
        )

    def first_run(self, now_ms: float) -> float:
        """When a newly deployed job first runs: at once (interval), or at the next occurrence."""
        if self.interval_ms is not None:
            return now_ms
        assert self.expression is not None
        # An occurrence falling on this very millisecond counts as the next one.
        return _cron_next_ms(self.expression, now_ms - 1)

    def next_run(self, previous_ms: float, now_ms: float) -> tuple[float, int]:
        """The run after the one scheduled at ``previous_ms``, and how many runs were skipped.

        Occurrences that are already in the past when the previous run
        finished (it ran long, or the server was down) are skipped, never
        back-filled: the next run is the first occurrence at or after now.
        """
        if self.interval_ms is not None:
            nxt = previous_ms + self.interval_ms
            if nxt >= now_ms:
                return nxt, 0
            steps = math.ceil((now_ms - previous_ms) / self.interval_ms)
            return previous_ms + steps * self.interval_ms, steps - 1
        assert self.expression is not None
        nxt = _cron_next_ms(self.expression, previous_ms)
        if nxt >= now_ms:
            return nxt, 0
        skipped = 0
        while nxt < now_ms and skipped < _MAX_COUNTED_SKIPS:
            skipped += 1
            nxt = _cron_next_ms(self.expression, nxt)
        if nxt < now_ms:
            nxt = _cron_next_ms(self.expression, now_ms - 1)
        return nxt, skipped

    def describe(self) -> str:
        if self.interval_ms is not None:
            return f"every {self.interval_ms / 1000:g} s"
        return f"cron '{self.expression}' (UTC)"


@dataclass(frozen=True, slots=True)
class CronJob:
    """One registered cron job. ``ref`` is resolved to a path only when the job is synced,
    because a function imported into ``crons.py`` gets its path when the loader reaches its
    own module."""

    name: str
    ref: Any
    args: dict[str, Any]
    schedule: CronSchedule

    @property
    def path(self) -> str:
        return function_path(self.ref)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise FunctionDefinitionError(f"A cron job's name is a non-empty string, got {name!r}")
    if not all(" " <= c <= "~" for c in name):
        raise FunctionDefinitionError(
            f"Cron job name {name!r} must contain only printable ASCII characters"
        )
    return name


def _check_args(name: str, args: object) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise FunctionDefinitionError(
            f"Cron job {name!r}: args must be a dict of arguments, got {type(args).__name__}"
        )
    try:
        return object_from_python(dict(args))
    except InvalidValue as exc:
        raise FunctionDefinitionError(f"Cron job {name!r}: invalid args: {exc}") from None


def _check_int(name: str, what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FunctionDefinitionError(
            f"Cron job {name!r}: {what} must be an integer from {low} to {high}, got {value!r}"
        )
    return value


class CronJobs:
    """The cron jobs of a project: ``crons = CronJobs()`` in ``functions/crons.py``.

    Each job calls a mutation or action (public or internal) with fixed
    ``args`` on a schedule. Runs are scheduled functions (visible in
    ``_scheduled_functions``): mutations run exactly once per run, actions at
    most once, with no user identity. One run of a job at a time: the next run
    is scheduled when the current one completes, and runs missed meanwhile
    (or while the server was down) are skipped.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, CronJob] = {}

    def _add(self, name: object, ref: Any, args: object, schedule: CronSchedule) -> None:
        checked = _check_name(name)
        if checked in self.jobs:
            raise FunctionDefinitionError(f"Cron identifier registered twice: {checked!r}")
        if ref is None:
            raise FunctionDefinitionError(f"Cron job {checked!r} names no function")
        self.jobs[checked] = CronJob(checked, ref, _check_args(checked, args), schedule)

    def interval(
        self,
        name: str,
        ref: Any,
        args: Mapping[str, Any] | None = None,
        *,
        seconds: float | None = None,
        minutes: float | None = None,
        hours: float | None = None,
    ) -> None:
        """Run every ``seconds``, ``minutes`` or ``hours`` (exactly one of them).

        The first run is when the job is first deployed; later runs follow
        the previous run's scheduled time by the interval.
        """
        given = {
            unit: value
            for unit, value in (("seconds", seconds), ("minutes", minutes), ("hours", hours))
            if value is not None
        }
        if len(given) != 1:
            raise FunctionDefinitionError(
                f"Cron job {name!r}: interval() takes exactly one of seconds=, minutes=, hours="
            )
        ((unit, value),) = given.items()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise FunctionDefinitionError(
                f"Cron job {name!r}: the interval must be a positive number of {unit}, "
                f"got {value!r}"
            )
        scale = {"seconds": 1000, "minutes": 60_000, "hours": 3_600_000}[unit]
        schedule = CronSchedule(
            "interval", interval_ms=float(value) * scale, detail=((unit, value),)
        )
        self._add(name, ref, args, schedule)

    def cron(
        self, name: str, expression: str, ref: Any, args: Mapping[str, Any] | None = None
    ) -> None:
        """Run at the times of a five-field cron ``expression`` (UTC), e.g. ``"*/5 * * * *"``."""
        schedule = CronSchedule("cron", expression=_check_cron_expression(expression))
        self._add(name, ref, args, schedule)

    def hourly(
        self, name: str, ref: Any, args: Mapping[str, Any] | None = None, *, minute_utc: int = 0
    ) -> None:
        """Run every hour at ``minute_utc``."""
        minute = _check_int(name, "minute_utc", minute_utc, 0, 59)
        schedule = CronSchedule(
            "hourly", expression=f"{minute} * * * *", detail=(("minuteUTC", minute),)
        )
        self._add(name, ref, args, schedule)

    def daily(
        self,
        name: str,
        ref: Any,
        args: Mapping[str, Any] | None = None,
        *,
        hour_utc: int,
        minute_utc: int = 0,
    ) -> None:
        """Run every day at ``hour_utc:minute_utc``."""
        hour = _check_int(name, "hour_utc", hour_utc, 0, 23)
        minute = _check_int(name, "minute_utc", minute_utc, 0, 59)
        schedule = CronSchedule(
            "daily",
            expression=f"{minute} {hour} * * *",
            detail=(("hourUTC", hour), ("minuteUTC", minute)),
        )
        self._add(name, ref, args, schedule)

    def weekly(
        self,
        name: str,
        ref: Any,
        args: Mapping[str, Any] | None = None,
        *,
        day_of_week: str = "monday",
        hour_utc: int,
        minute_utc: int = 0,
    ) -> None:
        """Run every week on ``day_of_week`` (``"sunday"`` ... ``"saturday"``) at the given time."""
        day = day_of_week.lower() if isinstance(day_of_week, str) else day_of_week
        if day not in DAYS_OF_WEEK:
            raise FunctionDefinitionError(
                f"Cron job {name!r}: day_of_week must be one of {', '.join(DAYS_OF_WEEK)}, "
                f"got {day_of_week!r}"
            )
        hour = _check_int(name, "hour_utc", hour_utc, 0, 23)
        minute = _check_int(name, "minute_utc", minute_utc, 0, 59)
        schedule = CronSchedule(
            "weekly",
            expression=f"{minute} {hour} * * {DAYS_OF_WEEK.index(day)}",
            detail=(("dayOfWeek", day), ("hourUTC", hour), ("minuteUTC", minute)),
        )
        self._add(name, ref, args, schedule)

    def monthly(
        self,
        name: str,
        ref: Any,
        args: Mapping[str, Any] | None = None,
        *,
        day: int,
        hour_utc: int,
        minute_utc: int = 0,
    ) -> None:
        """Run every month on ``day`` (1-31; months without that day are skipped)."""
        day_of_month = _check_int(name, "day", day, 1, 31)
        hour = _check_int(name, "hour_utc", hour_utc, 0, 23)
        minute = _check_int(name, "minute_utc", minute_utc, 0, 59)
        schedule = CronSchedule(
            "monthly",
            expression=f"{minute} {hour} {day_of_month} * *",
            detail=(("day", day_of_month), ("hourUTC", hour), ("minuteUTC", minute)),
        )
        self._add(name, ref, args, schedule)

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        return f"<CronJobs {sorted(self.jobs)}>"
