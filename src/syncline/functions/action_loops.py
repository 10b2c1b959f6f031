"""Event loops of their own for actions, away from the loop that serves sockets.

An action is user code that may block: ``time.sleep``, a synchronous HTTP
client, a long computation. Run on the server's I/O loop, one such call would
stall every connection. So actions (and HTTP actions) run on a few event loops,
each on its own thread; the server's loop only awaits their results.

* A new action goes to the loop with the fewest actions in flight. An action
  that blocks its loop delays itself and the actions sharing that loop (at
  worst), never the server's sockets, queries or mutations.
* Everything an action reaches works from any loop: ``ctx.run_query`` /
  ``run_mutation`` hand their work to the database's threads and are woken
  with ``call_soon_threadsafe``; ``ctx.scheduler`` and ``ctx.storage`` go
  through the same database API.
* Cancelling the awaiting side (a client that went away) cancels the action.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_ACTION_LOOPS = 4


class _Loop:
    __slots__ = ("in_flight", "loop", "thread")

    def __init__(self, index: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.in_flight = 0
        self.thread = threading.Thread(
            target=self._run, name=f"syncline-actions-{index}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(self.loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()


class ActionLoops:
    """A small pool of event loop threads; started on first use."""

    def __init__(self, size: int = DEFAULT_ACTION_LOOPS) -> None:
        self.size = max(1, size)
        self._loops: list[_Loop] = []
        self._lock = threading.Lock()
        self._closed = False

    def current(self) -> bool:
        """True when called from one of these loops (nested calls run in place)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return any(entry.loop is running for entry in self._loops)

    def _pick(self) -> _Loop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the action loops are closed")
            if len(self._loops) < self.size and all(e.in_flight for e in self._loops):
                self._loops.append(_Loop(len(self._loops)))
            entry = min(self._loops, key=lambda e: e.in_flight)
            entry.in_flight += 1
            return entry

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on an action loop; await its result from the calling loop."""
        try:
            entry = self._pick()
        except BaseException:
            coro.close()
            raise
        try:
            future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
                coro, entry.loop
            )
            return await asyncio.wrap_future(future)
        finally:
            with self._lock:
                entry.in_flight -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs and stop the threads (an action stuck in C keeps its thread)."""
        with self._lock:
            self._closed = True
            loops, self._loops = self._loops, []
        for entry in loops:
            try:
                entry.loop.call_soon_threadsafe(entry.loop.stop)
            except RuntimeError:
                pass  # already closed
        deadline = time.monotonic() + timeout
        for entry in loops:
            if entry.thread is not threading.current_thread():
                entry.thread.join(max(deadline - time.monotonic(), 0.0))
