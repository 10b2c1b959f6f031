"""Per-connection limits of a sync session (``ConnectionLimits``), driven in-process.

The transport is scripted: frames are fed one by one (counting how many the
session has pulled, to see backpressure) and sends can be held, to play a
client that stops reading.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.functions.outcomes import Outcome
from syncline.persistence.sqlite import SqlitePersistence
from syncline.sync.limits import ConnectionLimits
from syncline.sync.protocol import ServerMessage, server_message_to_json
from syncline.sync.session import CloseConnection, SyncSession

FUNCTIONS = """
from syncline import query

@query
def one(ctx):
    return 1.0
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "app.py").write_text(FUNCTIONS)
    database = Database(
        SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"), clock=SystemClock()
    )
    application = Application(database, functions)
    application.load()
    yield application
    application.close()


class Client:
    """A session with a scripted inbox; ``reading`` False holds every send."""

    def __init__(self, app: Application, limits: ConnectionLimits) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.pulled = 0
        self.reading = asyncio.Event()
        self.reading.set()
        self.session = SyncSession(app, self._send, limits=limits)
        self.task: asyncio.Task[CloseConnection | None] = asyncio.create_task(
            self.session.run(self._incoming())
        )
        self.send(
            {
                "type": "Connect",
                "sessionId": "limits-test",
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
            }
        )

    async def _send(self, message: ServerMessage) -> None:
        await self.reading.wait()
        self.received.append(server_message_to_json(message))

    async def _incoming(self) -> AsyncIterator[str]:
        while True:
            frame = await self.inbox.get()
            if frame is None:
                return
            self.pulled += 1
            yield frame

    def send(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(json.dumps(message))

    def responses(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == kind]

    async def close(self) -> CloseConnection | None:
        self.inbox.put_nowait(None)
        return await asyncio.wait_for(self.task, 10)


def request(kind: str, request_id: int, path: str = "app:work") -> dict[str, Any]:
    return {"type": kind, "requestId": request_id, "udfPath": path, "args": [{}]}


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Let every ready task run until none is left runnable (no timers involved)."""
    for _ in range(50):
        await asyncio.sleep(0)


class Gate:
    """A stand-in for running functions: each call waits until released."""

    def __init__(self, result: Any = None) -> None:
        self.started = 0
        self.release = asyncio.Semaphore(0)
        self.result = result

    async def __call__(self, path: str, args: Any, **kwargs: Any) -> Outcome:
        self.started += 1
        await self.release.acquire()
        outcome = Outcome(path, None, value=self.result)
        outcome.ts = 0
        return outcome


# ---------------------------------------------------------------------- actions and mutations


def test_reader_stops_at_the_in_flight_action_cap(app: Application) -> None:
    async def scenario() -> None:
        gate = Gate("done")
        app.executor.action = gate  # type: ignore[method-assign]
        client = Client(app, ConnectionLimits(max_inflight_actions=2))
        for request_id in range(5):
            client.send(request("Action", request_id))
        await until(lambda: gate.started == 2)
        await settle()
        # Connect, two running actions, and the third waiting for a slot: nothing more read.
        assert client.pulled == 4
        assert gate.started == 2
        gate.release.release()
        await until(lambda: gate.started == 3)
        assert client.pulled == 5
        for _ in range(4):
            gate.release.release()
        await until(lambda: len(client.responses("ActionResponse")) == 5)
        assert await client.close() is None

    asyncio.run(scenario())


def test_reader_stops_at_the_mutation_queue_cap(app: Application) -> None:
    async def scenario() -> None:
        gate = Gate("done")
        app.session_mutation = gate  # type: ignore[method-assign]
        client = Client(app, ConnectionLimits(max_queued_mutations=3))
        for request_id in range(6):
            client.send(request("Mutation", request_id))
        await until(lambda: gate.started == 1)
        await settle()
        # One mutation runs, two wait in the queue, the fourth waits for a slot.
        assert client.pulled == 5
        gate.release.release()
        await until(lambda: client.pulled == 6)
        for _ in range(5):
            gate.release.release()
        await until(lambda: len(client.responses("MutationResponse")) == 6)
        ids = [m["requestId"] for m in client.responses("MutationResponse")]
        assert ids == list(range(6))  # still one at a time, in arrival order
        assert await client.close() is None

    asyncio.run(scenario())


def test_reader_stops_at_the_request_bytes_cap(app: Application) -> None:
    async def scenario() -> None:
        gate = Gate("done")
        app.executor.action = gate  # type: ignore[method-assign]
        client = Client(app, ConnectionLimits(max_request_bytes=1500))
        for request_id in range(4):
            action = request("Action", request_id)
            action["args"] = [{"blob": "x" * 600}]  # frames of about 700 bytes
            client.send(action)
        await until(lambda: gate.started == 2)
        await settle()
        # Two frames fit under 1500 bytes; the third waits for one to be answered.
        assert client.pulled == 4
        assert gate.started == 2
        gate.release.release()
        await until(lambda: gate.started == 3)
        for _ in range(3):
            gate.release.release()
        await until(lambda: len(client.responses("ActionResponse")) == 4)
        assert client.session._request_bytes.used == 0
        assert await client.close() is None

    asyncio.run(scenario())


# ---------------------------------------------------------------------- queries


def add(query_id: int) -> dict[str, Any]:
    return {"type": "Add", "queryId": query_id, "udfPath": "app:one", "args": [{}]}


def modify(base: int, *mods: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "ModifyQuerySet",
        "baseVersion": base,
        "newVersion": base + 1,
        "modifications": list(mods),
    }


def test_a_query_set_past_the_cap_is_refused_whole(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        client = Client(app, ConnectionLimits(max_queries=3))
        client.send(modify(0, add(0), add(1)))
        await until(lambda: client.responses("Transition"))
        client.send(modify(1, add(2), add(3)))
        close = await asyncio.wait_for(client.task, 5)
        assert close is not None and close.reason == "BadRequest"
        fatal = client.responses("FatalError")
        assert len(fatal) == 1
        error = fatal[0]["error"]
        assert error.startswith("TooManyQueries")
        assert "4 queries" in error and "limit is 3" in error
        # Nothing of the refused message was subscribed, and the session let go of the rest.
        assert len(app.live) == 0
        await app.stop()

    asyncio.run(scenario())


def test_removes_in_the_same_message_make_room(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        client = Client(app, ConnectionLimits(max_queries=2))
        client.send(modify(0, add(0), add(1)))
        await until(lambda: client.responses("Transition"))
        client.send(modify(1, {"type": "Remove", "queryId": 0}, add(2)))
        await until(lambda: client.responses("Transition")[-1]["endVersion"]["querySet"] == 2)
        assert not client.responses("FatalError")
        assert sorted(client.session.queries) == [1, 2]
        assert await client.close() is None
        await app.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- send queue


def test_a_client_that_stops_reading_is_dropped_with_a_close_reason(app: Application) -> None:
    async def scenario() -> None:
        app.executor.action = Gate("x" * 10_000)  # type: ignore[method-assign]
        gate = app.executor.action
        limits = ConnectionLimits(max_send_queue_bytes=50_000, send_stall_timeout_s=0.2)
        client = Client(app, limits)
        client.reading.clear()  # reads nothing from now on
        for request_id in range(20):
            client.send(request("Action", request_id))
        for _ in range(20):
            gate.release.release()  # type: ignore[attr-defined]
        close = await asyncio.wait_for(client.task, 5)
        assert close is not None
        assert close.code == 1013
        assert close.reason.startswith("ClientTooSlow")
        # The queue never held much more than the cap: finished actions waited for room.
        assert client.session._outbox_bytes == 0

    asyncio.run(scenario())


def test_a_slow_reader_is_never_dropped_for_a_burst(app: Application) -> None:
    async def scenario() -> None:
        gate = Gate("x" * 10_000)
        app.executor.action = gate  # type: ignore[method-assign]
        limits = ConnectionLimits(max_send_queue_bytes=25_000, send_stall_timeout_s=0.5)
        client = Client(app, limits)
        delivered: list[int] = []
        peak = 0

        async def slow_send(message: ServerMessage) -> None:
            nonlocal peak
            peak = max(peak, client.session._outbox_bytes)
            await asyncio.sleep(0.01)  # a slow link: every frame takes a while
            delivered.append(1)
            client.received.append(server_message_to_json(message))

        client.session._send = slow_send
        for request_id in range(30):
            client.send(request("Action", request_id))
        for _ in range(30):
            gate.release.release()
        await until(lambda: len(client.responses("ActionResponse")) == 30, timeout=10)
        # Three 10 kB answers fit under the cap: the rest waited instead of piling up.
        assert peak <= 25_000 + 10_100
        assert await client.close() is None

    asyncio.run(scenario())
