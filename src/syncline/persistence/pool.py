"""A bounded pool of snapshot connections, opened as they are first needed.

Shared by the backends: up to ``limit`` connections exist; :meth:`ReaderPool.take`
hands out an idle one, opens another while fewer than ``limit`` exist, and
otherwise waits for one to come back. A connection returned as broken is
forgotten, which makes room for a new one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ReaderPool"]

R = TypeVar("R")


class ReaderPool(Generic[R]):
    def __init__(self, open_one: Callable[[], R], limit: int) -> None:
        self._open_one = open_one
        self._idle: queue.SimpleQueue[R] = queue.SimpleQueue()
        self._unopened = limit
        self._lock = threading.Lock()
        self._open: list[R] = []

    def take(self) -> R:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            opening = self._unopened > 0
            if opening:
                self._unopened -= 1
        if not opening:
            return self._idle.get()
        try:
            reader = self._open_one()
        except BaseException:
            with self._lock:
                self._unopened += 1
            raise
        with self._lock:
            self._open.append(reader)
        return reader

    def give(self, reader: R) -> None:
        """Return ``reader`` for reuse."""
        self._idle.put(reader)

    def forget(self, reader: R) -> None:
        """``reader`` is closed (broken): a new one may be opened in its place."""
        with self._lock:
            self._open.remove(reader)
            self._unopened += 1

    def opened(self) -> list[R]:
        """Every connection opened and not forgotten (to close them all)."""
        with self._lock:
            return list(self._open)
