"""Cron jobs: functions that run on a schedule (times are UTC)."""

from syncline import CronJobs, internal

DAY_MS = 24 * 60 * 60 * 1000

crons = CronJobs()

# Every hour, delete the tasks that were done and are more than a day old.
crons.interval(
    "clear old done tasks", internal.tasks.clear_done, {"older_than_ms": DAY_MS}, hours=1
)
