"""Reads on the read threads: results, errors and cancellation reach the caller's loop,
and every read is one snapshot named by the last commit it sees."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from syncline.database.database import Database
from syncline.database.read_threads import ReadThreads
from syncline.database.transaction import Transaction


def test_results_and_errors_reach_the_awaiting_caller() -> None:
    def run(arg: int) -> int:
        if arg < 0:
            raise ValueError(f"negative: {arg}")
        return arg * 2

    threads: ReadThreads[int, int] = ReadThreads(run, threads=3, name="test-read")

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = []
        for arg in (1, -1, 5, 7, -2):
            future: asyncio.Future[int] = loop.create_future()
            threads.submit(arg, future)
            futures.append(future)
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        threads.close()
    assert results[0] == 2 and results[2] == 10 and results[3] == 14
    assert isinstance(results[1], ValueError) and str(results[1]) == "negative: -1"
    assert isinstance(results[4], ValueError)


def test_a_job_cancelled_before_it_runs_is_skipped() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def run(arg: str) -> str:
        if arg == "block":
            assert gate.wait(5)
        ran.append(arg)
        return arg

    threads: ReadThreads[str, str] = ReadThreads(run, threads=1, name="test-read")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blocking: asyncio.Future[str] = loop.create_future()
        skipped: asyncio.Future[str] = loop.create_future()
        threads.submit("block", blocking)
        threads.submit("skipped", skipped)
        skipped.cancel()
        gate.set()
        assert await blocking == "block"

    try:
        asyncio.run(main())
    finally:
        threads.close()
    assert ran == ["block"]


def test_close_finishes_queued_jobs_and_stops_the_threads() -> None:
    threads: ReadThreads[int, int] = ReadThreads(lambda n: n, threads=2, name="test-read-close")

    async def main() -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        threads.submit(3, future)
        return await future

    assert asyncio.run(main()) == 3
    threads.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("test-read-close")]


def test_each_read_sees_exactly_the_commit_its_ts_names(db: Database) -> None:
    doc = db.write_sync(lambda tx: tx.insert("counter", {"n": 0.0})).value
    value_at: dict[int, float] = {}

    def increment(tx: Transaction) -> float:
        n = tx.get(doc)["n"] + 1
        tx.patch(doc, {"n": n})
        return float(n)

    async def main() -> list[tuple[int, float]]:
        async def writer() -> None:
            for _ in range(200):
                result = await db.write(increment)
                value_at[result.ts] = result.value

        async def reader() -> list[tuple[int, float]]:
            seen = []
            for _ in range(200):
                result = await db.read(lambda tx: tx.get(doc)["n"])
                seen.append((result.ts, result.value))
            return seen

        outcomes = await asyncio.gather(writer(), *(reader() for _ in range(6)))
        return [pair for seen in outcomes[1:] for pair in seen]

    reads = asyncio.run(main())
    assert len(reads) == 1200
    for ts, n in reads:
        if n > 0:
            assert value_at[ts] == n, (ts, n)
        else:
            assert ts < min(value_at)


def test_a_failing_read_raises_in_the_caller(db: Database) -> None:
    def bad(tx: Transaction) -> None:
        raise KeyError("missing")

    async def main() -> None:
        with pytest.raises(KeyError):
            await db.read(bad)
        assert (await db.read(lambda tx: 42)).value == 42

    asyncio.run(main())
