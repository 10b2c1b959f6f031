"""The read threads: snapshot reads run off the event loop, results handed back cheaply.

``loop.run_in_executor`` wraps every call in a concurrent future chained to an
asyncio future (callbacks on both sides, a state copy on the loop). Here a job
is just (function, asyncio future) on a queue, and the thread that ran it
resolves the future with one ``call_soon_threadsafe``: about half the CPU per
hand-off with one caller, and far less when many reads are in flight
(``bench/engine.py`` prints CPU per point read).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ReadThreads"]

A = TypeVar("A")
R = TypeVar("R")


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():
        return  # the caller gave up (cancelled) while it ran
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class ReadThreads(Generic[A, R]):
    """``threads`` threads calling ``run(arg)`` for each submitted ``arg``.

    Threads start with the first job. A job whose future is cancelled before a
    thread takes it is skipped.
    """

    def __init__(self, run: Callable[[A], R], *, threads: int, name: str) -> None:
        self._run = run
        self._count = threads
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[A, asyncio.Future[R]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, arg: A, future: asyncio.Future[R]) -> None:
        """Run ``run(arg)`` on a read thread and resolve ``future`` (on its loop) with it."""
        if not self._threads:
            self._start()
        self._jobs.put((arg, future))

    def _start(self) -> None:
        with self._start_lock:
            if self._threads or self._closed:
                return
            threads = [
                threading.Thread(target=self._work, name=f"{self._name}_{n}", daemon=True)
                for n in range(self._count)
            ]
            for thread in threads:
                thread.start()
            self._threads = threads

    def _work(self) -> None:
        run = self._run
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            arg, future = job
            if future.cancelled():
                continue
            try:
                outcome: Any = run(arg)
                failed = False
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome, failed = exc, True
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:
                pass  # the caller's loop is closed: nobody is waiting any more
            del job, arg, future, outcome

    def close(self) -> None:
        """Stop the threads once the jobs queued so far are done, and wait for them."""
        with self._start_lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()
