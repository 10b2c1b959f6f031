"""A flag and a queue to wait on, sized for one (or two) per connection.

``asyncio.Event`` allocates a ``deque`` of waiters (760 bytes) when built, and
``asyncio.Queue`` three and an event: a sync connection held thirteen such
deques (its session's four events and mutation queue, uvicorn's receive queue
and ``writable`` event), about 10 KiB of its 39. These keep the same
contracts for the calls the server makes; their waiters go in a list made by
the first wait.

* :class:`Signal`: ``set``, ``clear``, ``is_set`` and ``wait`` as on
  ``asyncio.Event`` (every waiter wakes on ``set``).
* :class:`Mailbox`: ``put_nowait``, ``get``, ``empty`` and ``qsize`` as on an
  unbounded ``asyncio.Queue`` (FIFO; each item wakes one getter). Items are
  kept in a list: meant for short queues (a connection's unread frames, its
  queued mutations), which the server bounds.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Mailbox", "Signal"]


class Signal:
    """``asyncio.Event``'s contract without its per-instance deque."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        """Return (True) once the flag is set; at once if it is set now."""
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters.remove(waiter)


class Mailbox(Generic[T]):
    """An unbounded FIFO queue with ``asyncio.Queue``'s ``put_nowait``/``get``, kept small."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._getters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake_one()

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none."""
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            getters = self._getters
            if getters is None:
                getters = self._getters = []
            getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case it was not woken
                if getter in getters:
                    getters.remove(getter)
                if self._items and not getter.cancelled():
                    # Woken for an item, then cancelled: the item is for the next getter.
                    self._wake_one()
                raise
        return self._items.pop(0)

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return
