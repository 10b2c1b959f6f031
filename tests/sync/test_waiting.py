"""Signal and Mailbox keep asyncio.Event's and asyncio.Queue's contracts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from syncline.sync.waiting import Mailbox, Signal


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_a_set_signal_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    async def main() -> None:
        signal = Signal()
        assert not signal.is_set()
        waiters = [asyncio.ensure_future(signal.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        signal.set()
        assert await asyncio.gather(*waiters) == [True, True, True]
        assert signal.is_set()
        assert await signal.wait() is True  # at once while set
        signal.clear()
        late = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        assert not late.done()
        signal.set()
        assert await late is True

    run(main())


def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    async def main() -> None:
        signal = Signal()
        waiter = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not signal._waiters
        signal.set()  # nobody to wake: no error

    run(main())


def test_a_mailbox_hands_items_out_in_order_and_makes_getters_wait() -> None:
    async def main() -> None:
        box: Mailbox[int] = Mailbox()
        assert box.empty() and box.qsize() == 0
        first = asyncio.ensure_future(box.get())
        second = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        assert not first.done()
        for n in (1, 2, 3):
            box.put_nowait(n)
        assert await first == 1
        assert await second == 2
        assert box.qsize() == 1 and not box.empty()
        assert await box.get() == 3
        assert box.empty()
        assert not box._getters

    run(main())


def test_an_item_for_a_getter_cancelled_after_waking_goes_to_the_next_getter() -> None:
    async def main() -> None:
        box: Mailbox[str] = Mailbox()
        first = asyncio.ensure_future(box.get())
        second = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        box.put_nowait("item")  # wakes the first getter ...
        first.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1) == "item"

    run(main())
