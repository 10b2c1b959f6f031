"""Execution limits: time limits on queries, mutations and actions; the memory ceiling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from conftest import write_functions
from syncline.application import Application
from syncline.database.database import Database
from syncline.errors import (
    ActionTimeout,
    FunctionTimeout,
    MemoryLimitExceeded,
)
from syncline.functions import limits as limits_module
from syncline.functions.limits import ExecutionLimits, Watchdog, resident_bytes
from syncline.persistence.sqlite import SqlitePersistence

LOOPS = """
import asyncio
import time

from syncline import action, mutation, query, v


@query
def spin(ctx):
    while True:
        pass


@query
def stubborn(ctx):
    # Swallows every interruption it can: the call must fail all the same.
    n = 0
    while n < 3 * 10**6:
        try:
            while True:
                n += 1
        except BaseException:
            pass
    return n


@query
def count(ctx):
    return len(ctx.db.query("items").collect())


@mutation
def spin_after_write(ctx):
    ctx.db.insert("items", {"n": 1})
    while True:
        pass


@mutation
def add(ctx):
    return ctx.db.insert("items", {"n": 2})


@action
async def spin_action(ctx):
    while True:
        pass


@action
async def wait_action(ctx):
    await asyncio.sleep(60)


@action
async def blocking_action(ctx):
    time.sleep(0.5)
    return "slept"


@action
async def calls_back(ctx):
    await ctx.run_mutation("loops:add")
    return await ctx.run_query("loops:count")


@query(args={"mib": v.number()})
def hog(ctx, mib):
    chunks = []
    for _ in range(int(mib)):
        chunks.append(bytearray(1024 * 1024))
    return len(chunks)


@query
def small(ctx):
    return sum(range(1000))
"""

Make = Callable[..., Application]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Make]:
    made: list[Application] = []

    def make(**limits: float | int | None) -> Application:
        functions = write_functions(tmp_path / f"p{len(made)}" / "functions", {"loops.py": LOOPS})
        persistence = SqlitePersistence(str(tmp_path / f"db{len(made)}.sqlite3"), durability="off")
        database = Database(persistence)
        app = Application(database, functions, limits=ExecutionLimits(**limits))  # type: ignore[arg-type]
        app.load()
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_a_looping_query_times_out_with_the_function_and_limit_named(make_app: Make) -> None:
    app = make_app(function_timeout_s=0.2)
    started = time.monotonic()
    outcome = asyncio.run(app.executor.query("loops:spin", {}))
    elapsed = time.monotonic() - started
    assert isinstance(outcome.error, FunctionTimeout)
    assert outcome.error.code == "FunctionTimeout"
    assert "loops:spin" in str(outcome.error) and "0.2 s" in str(outcome.error)
    assert elapsed < 1.5
    # The read thread is free again.
    assert asyncio.run(app.executor.query("loops:count", {})).value == 0


def test_a_query_that_swallows_the_interruption_still_fails(make_app: Make) -> None:
    app = make_app(function_timeout_s=0.2)
    started = time.monotonic()
    outcome = asyncio.run(app.executor.query("loops:stubborn", {}))
    assert isinstance(outcome.error, FunctionTimeout)
    assert time.monotonic() - started > 0.2


def test_storage_calls_are_never_interrupted_and_the_limit_is_checked_after() -> None:
    watchdog = Watchdog()
    run = watchdog.start("query", "t:shielded", 0.05)
    finished: list[bool] = []

    def body() -> None:
        with watchdog.shield:  # as around a SQLite call made from user code
            until = time.monotonic() + 0.3
            while time.monotonic() < until:
                pass
            finished.append(True)
        finished.append(False)  # not reached: leaving the shield past the limit fails

    try:
        with pytest.raises(FunctionTimeout):
            watchdog.call(run, body)
    finally:
        watchdog.close()
    assert finished == [True]


def test_a_timed_out_mutation_writes_nothing_and_the_writer_goes_on(make_app: Make) -> None:
    app = make_app(function_timeout_s=0.2)

    async def scenario() -> tuple[object, object, object]:
        runaway = asyncio.create_task(app.executor.mutation("loops:spin_after_write", {}))
        await asyncio.sleep(0.05)
        later = await app.executor.mutation("loops:add", {})
        return await runaway, later, await app.executor.query("loops:count", {})

    runaway, later, count = asyncio.run(scenario())
    assert isinstance(runaway.error, FunctionTimeout)  # type: ignore[attr-defined]
    assert later.ok  # type: ignore[attr-defined]
    assert count.value == 1  # type: ignore[attr-defined]  # only the later insert


def test_runaway_queries_on_every_read_thread_do_not_stop_the_server(make_app: Make) -> None:
    app = make_app(function_timeout_s=0.3)

    async def scenario() -> tuple[list[object], float]:
        runaways = [asyncio.create_task(app.executor.query("loops:spin", {})) for _ in range(6)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        ok = await app.executor.query("loops:count", {})
        assert ok.ok
        return await asyncio.gather(*runaways), time.monotonic() - started

    outcomes, waited = asyncio.run(scenario())
    assert all(isinstance(o.error, FunctionTimeout) for o in outcomes)  # type: ignore[attr-defined]
    assert waited < 2


def test_an_action_computing_forever_is_interrupted(make_app: Make) -> None:
    app = make_app(action_timeout_s=0.3)
    outcome = asyncio.run(app.executor.action("loops:spin_action", {}))
    assert isinstance(outcome.error, ActionTimeout)
    assert outcome.error.code == "ActionTimeout"
    assert "loops:spin_action" in str(outcome.error)


def test_an_action_waiting_forever_is_cancelled(make_app: Make) -> None:
    app = make_app(action_timeout_s=0.2)
    outcome = asyncio.run(app.executor.action("loops:wait_action", {}))
    assert isinstance(outcome.error, ActionTimeout)


def test_a_blocking_action_does_not_block_the_calling_loop(make_app: Make) -> None:
    app = make_app()

    async def scenario() -> tuple[object, float]:
        action = asyncio.create_task(app.executor.action("loops:blocking_action", {}))
        await asyncio.sleep(0.05)  # the action is now asleep on its own loop
        started = time.monotonic()
        await asyncio.sleep(0.01)
        ticked = time.monotonic() - started
        return await action, ticked

    outcome, ticked = asyncio.run(scenario())
    assert outcome.value == "slept"  # type: ignore[attr-defined]
    assert ticked < 0.2


def test_actions_call_queries_and_mutations_from_their_own_loop(make_app: Make) -> None:
    app = make_app()
    outcome = asyncio.run(app.executor.action("loops:calls_back", {}))
    assert outcome.value == 1


@pytest.mark.skipif(resident_bytes() == 0, reason="needs /proc/self/statm")
def test_a_query_crossing_the_memory_ceiling_fails_and_others_go_on(make_app: Make) -> None:
    ceiling = resident_bytes() + 150 * 1024**2
    app = make_app(max_memory_bytes=ceiling, function_timeout_s=20)
    outcome = asyncio.run(app.executor.query("loops:hog", {"mib": 1000}))
    assert isinstance(outcome.error, MemoryLimitExceeded)
    assert outcome.error.code == "MemoryLimitExceeded"
    assert "loops:hog" in str(outcome.error)
    assert resident_bytes() < ceiling
    assert asyncio.run(app.executor.query("loops:small", {})).value == 499500


def test_http_action_bodies_stream_across_loops(make_app: Make) -> None:
    """A request body that arrives on the server's loop is read from the action loop,
    and a response body produced on the action loop is read from the server's loop."""
    from syncline.functions.http.request import HttpRequest
    from syncline.functions.http.response import HttpResponse

    app = make_app()

    async def on(loop: asyncio.AbstractEventLoop, value: bytes) -> bytes:
        # A future of ``loop``: awaiting it from another loop would fail.
        future = loop.create_future()
        loop.call_soon(future.set_result, value)
        return await future

    async def scenario() -> list[bytes]:
        server_loop = asyncio.get_running_loop()

        async def body() -> AsyncIterator[bytes]:
            for part in (b"a", b"b", b"c"):
                yield await on(server_loop, part)

        request = HttpRequest("POST", "http://host/echo", body=body())

        async def handler(ctx: object, req: HttpRequest) -> HttpResponse:
            received = await req.body()
            action_loop = asyncio.get_running_loop()
            assert action_loop is not server_loop

            async def produce() -> AsyncIterator[bytes]:
                for part in received:
                    yield await on(action_loop, bytes([part]))

            return HttpResponse(produce())

        outcome = await app.executor.http_action(handler, request, path="POST /echo")
        assert outcome.error is None, outcome.error
        response: HttpResponse = outcome.value
        return [chunk async for chunk in response.chunks()]

    assert b"".join(asyncio.run(scenario())) == b"abc"


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_the_watchdog_sleeps_when_idle_and_the_next_call_still_times_out(
    make_app: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits_module, "IDLE_TICKS", 2)
    app = make_app(function_timeout_s=0.2, max_memory_bytes=64 * 1024**3)
    watchdog = app.executor._watchdog
    assert asyncio.run(app.executor.query("loops:small", {})).value == sum(range(1000))
    _wait_until(lambda: watchdog._sleeping)  # after a few samples with no call inside
    outcome = asyncio.run(app.executor.query("loops:spin", {}))
    assert isinstance(outcome.error, FunctionTimeout)
    _wait_until(lambda: watchdog._sleeping)
    outcome = asyncio.run(app.executor.mutation("loops:spin_after_write", {}))
    assert isinstance(outcome.error, FunctionTimeout)
    assert asyncio.run(app.executor.query("loops:count", {})).value == 0


def test_while_calls_come_the_watchdog_stays_awake_and_calls_do_not_wake_it(
    make_app: Make,
) -> None:
    app = make_app(function_timeout_s=0.2)
    watchdog = app.executor._watchdog
    asyncio.run(app.executor.query("loops:small", {}))
    assert not watchdog._sleeping  # ticking: the next call enters without a notify
    woken: list[int] = []
    notify = watchdog._wake.notify

    def counting_notify(n: int = 1) -> None:
        woken.append(n)
        notify(n)

    watchdog._wake.notify = counting_notify  # type: ignore[method-assign]
    for _ in range(20):
        asyncio.run(app.executor.query("loops:small", {}))
    assert woken == []
    outcome = asyncio.run(app.executor.query("loops:spin", {}))
    assert isinstance(outcome.error, FunctionTimeout)
