"""One scheduler among several processes: a lock that dies with its holder.

With ``syncline serve --workers N`` every worker could run scheduled
functions and crons; exactly one does. It holds an exclusive ``flock`` on a
file in the database folder (``scheduler.lock``). The kernel releases that
lock when the holder's process ends, however it ends (SIGKILL included), so
a dead leader never blocks the others; each of them tries again every
``retry_s`` and the first to succeed starts the scheduler. Starting it
marks the actions the previous leader left ``inProgress`` as failed (they
were cut off with it), exactly as after a restart.

Nodes on one PostgreSQL database (on several machines) share no file
system: there the lease is the store's (a session-level advisory lock, see
:meth:`Persistence.exclusive_lease`), freed when the holder's connection
ends. The leader checks its lease every ``retry_s``; one that lost it (its
connection broke) stops its scheduler and campaigns again.

Job-level guarantees do not depend on the lock (a scheduled mutation checks
and completes its row in its own transaction); the lock keeps the dispatch
loops, crons and retention from running N times over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from syncline.clock import Clock
from syncline.persistence.base import Lease

if TYPE_CHECKING:
    from syncline.scheduling.job_runner import ScheduledJobExecutor

__all__ = ["DEFAULT_RETRY_S", "SCHEDULER_LOCK_FILE", "FileLease", "SchedulerLeadership"]

log = logging.getLogger("syncline.scheduler")

SCHEDULER_LOCK_FILE = "scheduler.lock"
#: how often a worker that does not lead tries to take the lock
DEFAULT_RETRY_S = 0.5


class FileLease:
    """An exclusive, non-blocking ``flock`` on ``path``; the kernel frees it when we die."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def try_acquire(self) -> bool:
        """True if the lease is ours now (it may already have been)."""
        if self._fd >= 0:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who holds it, for a person looking (the lock is the flock, not this text).
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class SchedulerLeadership:
    """Runs ``scheduler`` while this process holds the lease, trying for it until then."""

    def __init__(
        self,
        scheduler: ScheduledJobExecutor,
        lease: Lease,
        *,
        clock: Clock,
        retry_s: float = DEFAULT_RETRY_S,
        name: str = "",
    ) -> None:
        self.scheduler = scheduler
        self.lease = lease
        self.clock = clock
        self.retry_s = retry_s
        #: how this process is named in the log ("worker 2")
        self.name = name or f"pid {os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._leading = False

    @property
    def leading(self) -> bool:
        """True while this process runs the scheduler."""
        return self._leading

    async def start(self) -> None:
        """Lead now if the lease is free; otherwise keep trying in the background."""
        loop = asyncio.get_running_loop()
        if await self._try_lead():
            self._task = loop.create_task(self._hold(), name="syncline-scheduler-lease")
            return
        self._task = loop.create_task(self._campaign(), name="syncline-scheduler-leadership")

    async def _try_lead(self) -> bool:
        # In a thread: a lease in the database may wait on the network.
        if not await asyncio.to_thread(self.lease.try_acquire):
            return False
        try:
            await self.scheduler.start()
        except BaseException:
            self.lease.release()
            raise
        self._leading = True
        log.info("%s runs the scheduler and crons", self.name)
        return True

    async def _campaign(self) -> None:
        while True:
            await self.clock.sleep(self.retry_s)
            try:
                if await self._try_lead():
                    self._task = asyncio.get_running_loop().create_task(
                        self._hold(), name="syncline-scheduler-lease"
                    )
                    return
            except Exception:
                log.exception("could not start the scheduler; trying again")

    async def _hold(self) -> None:
        """While leading: check the lease every ``retry_s``; if lost, stop and campaign again."""
        while await asyncio.to_thread(self.lease.try_acquire):
            await self.clock.sleep(self.retry_s)
        log.warning("%s lost the scheduler lease: it stops running the scheduler", self.name)
        self._leading = False
        try:
            await self.scheduler.stop()
        finally:
            self.lease.release()
        self._task = asyncio.get_running_loop().create_task(
            self._campaign(), name="syncline-scheduler-leadership"
        )

    async def stop(self) -> None:
        """Stop trying; if leading, stop the scheduler, then free the lease for another."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._leading:
            try:
                await self.scheduler.stop()
            finally:
                self._leading = False
                self.lease.release()
