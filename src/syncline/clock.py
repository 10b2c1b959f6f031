"""Time and sleep, injected so that the scheduler and sync tests need no real sleeps.

Everything in Syncline that asks "what time is it" or "wake me later" goes
through a :class:`Clock`. :class:`SystemClock` is real time; :class:`ManualClock`
only moves when a test calls :meth:`ManualClock.advance`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> float:
        """Wall-clock milliseconds since the Unix epoch (fractional)."""
        ...

    def now_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until_ms(self, wall_ms: float) -> None:
        """Sleep until ``now_ms() >= wall_ms``."""
        ...


class SystemClock:
    def now_ms(self) -> float:
        return time.time_ns() / 1_000_000

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until_ms(self, wall_ms: float) -> None:
        # Re-check after waking: the wall clock may have been adjusted meanwhile.
        while True:
            remaining = (wall_ms - self.now_ms()) / 1000
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 60.0))


class ManualClock:
    """A clock that only advances when told to.

    Sleepers are woken by :meth:`advance` (or :meth:`set`) in deadline order.
    Sleepers may live on any event loop; they are woken thread-safely.
    """

    def __init__(self, start_ms: float = 1_700_000_000_000.0) -> None:
        self._now_ns = int(start_ms * 1_000_000)
        self._seq = itertools.count()
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []

    def now_ms(self) -> float:
        return self._now_ns / 1_000_000

    def now_ns(self) -> int:
        return self._now_ns

    def monotonic(self) -> float:
        return self._now_ns / 1e9

    async def sleep(self, seconds: float) -> None:
        await self._sleep_until_ns(self._now_ns + int(max(0.0, seconds) * 1e9))

    async def sleep_until_ms(self, wall_ms: float) -> None:
        await self._sleep_until_ns(int(wall_ms * 1_000_000))

    async def _sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._seq), fut))
        await fut

    def advance(self, ms: float) -> None:
        """Move time forward by ``ms`` milliseconds and wake due sleepers."""
        self.set(self.now_ms() + ms)

    def set(self, wall_ms: float) -> None:
        new_ns = int(wall_ms * 1_000_000)
        if new_ns < self._now_ns:
            raise ValueError("ManualClock cannot go backwards")
        self._now_ns = new_ns
        while self._sleepers and self._sleepers[0][0] <= self._now_ns:
            _, _, fut = heapq.heappop(self._sleepers)
            loop = fut.get_loop()
            loop.call_soon_threadsafe(_wake, fut)

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
