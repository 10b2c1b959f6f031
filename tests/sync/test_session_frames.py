"""Sessions that write Transitions at once (``write_frame_now``), many on one live query.

A parked session writes a changed query's Transition from the live query's
callback instead of waking its sender; when the socket cannot take it, the
sender sends it. Either way each client must see one valid version chain and
the right results, in the right order relative to its MutationResponses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.sync.protocol import decode_ts
from syncline.sync.session import CloseConnection, SyncSession

FUNCTIONS = """
from syncline import mutation, query, v

@query
def bodies(ctx):
    return [d["body"] for d in ctx.db.query("items").collect()]

@mutation(args={"body": v.string()})
def add(ctx, body):
    ctx.db.insert("items", {"body": body})
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


class FrameClient:
    """A session on encoded frames; ``refuse`` says which immediate writes the socket refuses."""

    def __init__(
        self,
        app: Application,
        query_set_version: int,
        refuse: Iterator[bool],
        *,
        subscribe: bool = True,
    ) -> None:
        self.frames: list[dict[str, Any]] = []
        #: the message types of each call of send_frame (one transport write each)
        self.writes: list[list[str]] = []
        self.written_now = 0
        self.refused = 0
        self.refuse = refuse
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.session = SyncSession(
            app, None, send_frame=self._send_frame, write_frame_now=self._write_now
        )
        self.task: asyncio.Task[CloseConnection | None] = asyncio.create_task(
            self.session.run(self._incoming())
        )
        self.version = query_set_version
        self.send({"type": "Connect", "sessionId": "s", "connectionCount": 0, "clientTs": 0})
        if not subscribe:
            return
        self.send(
            {
                "type": "ModifyQuerySet",
                "baseVersion": 0,
                "newVersion": query_set_version,
                "modifications": [
                    {"type": "Add", "queryId": 7, "udfPath": "app:bodies", "args": [{}]}
                ],
            }
        )

    async def _send_frame(self, *frames: bytes) -> None:
        decoded = [orjson.loads(frame) for frame in frames]
        self.frames.extend(decoded)
        self.writes.append([message["type"] for message in decoded])

    def _write_now(self, *frames: bytes) -> bool:
        if next(self.refuse):
            self.refused += 1
            return False
        self.written_now += 1
        decoded = [orjson.loads(frame) for frame in frames]
        self.frames.extend(decoded)
        self.writes.append([message["type"] for message in decoded])
        return True

    async def _incoming(self) -> AsyncIterator[str]:
        while True:
            frame = await self.inbox.get()
            if frame is None:
                return
            yield frame

    def send(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(json.dumps(message))

    def frames_types(self) -> list[str]:
        return [frame["type"] for frame in self.frames]

    def state(self) -> tuple[Any, dict[str, Any] | None]:
        """The result of query 7 after replaying the chain (checked link by link)."""
        result: Any = None
        end: dict[str, Any] | None = None
        for frame in self.frames:
            if frame["type"] != "Transition":
                continue
            expected_start = end or {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
            assert frame["startVersion"] == expected_start
            for mod in frame["modifications"]:
                assert mod["type"] == "QueryUpdated" and mod["queryId"] == 7
                result = mod["value"]
            end = frame["endVersion"]
        return result, end

    async def close(self) -> None:
        self.inbox.put_nowait(None)
        await asyncio.wait_for(self.task, 10)


async def until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_many_sessions_on_one_query_each_get_their_own_exact_chain(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        clients = [
            FrameClient(
                app,
                query_set_version=1 + i % 3,
                refuse=itertools.cycle([i % 4 == 0, False]),  # some sockets refuse now and then
            )
            for i in range(1000)
        ]
        await until(lambda: all(c.state()[0] == [] for c in clients))
        expected: list[str] = []
        for n in range(4):
            body = f"b{n}"
            expected.append(body)
            await app.executor.mutation("app:add", {"body": body})
            await until(lambda: all(c.state()[0] == expected for c in clients))
        # A subscriber joining now starts from the current result.
        late = FrameClient(app, query_set_version=5, refuse=itertools.repeat(False))
        await until(lambda: late.state()[0] == expected)
        for i, client in enumerate([*clients, late]):
            _, end = client.state()
            assert end is not None
            assert end["querySet"] == (5 if client is late else 1 + i % 3)
            assert end["identity"] == 0
        assert sum(c.written_now for c in clients) > 0, "the immediate path was not taken"
        assert sum(c.refused for c in clients) > 0, "no refused write went through the sender"
        await asyncio.gather(*(c.close() for c in [*clients, late]))
        await app.stop()

    asyncio.run(scenario())


def test_mutation_response_precedes_the_transition_that_reflects_it(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        client = FrameClient(app, 1, itertools.repeat(False))
        await until(lambda: client.state()[0] == [])
        for n in range(10):
            client.send(
                {
                    "type": "Mutation",
                    "requestId": n,
                    "udfPath": "app:add",
                    "args": [{"body": f"m{n}"}],
                }
            )
            await until(
                lambda n=n: any(
                    f["type"] == "MutationResponse" and f["requestId"] == n for f in client.frames
                )
            )
            index = next(
                i
                for i, f in enumerate(client.frames)
                if f["type"] == "MutationResponse" and f["requestId"] == n
            )
            await until(lambda index=index: len(client.frames) > index + 1)
            response, after = client.frames[index], client.frames[index + 1]
            assert after["type"] == "Transition"
            assert decode_ts(after["endVersion"]["ts"]) >= decode_ts(response["ts"])
        assert client.state()[0] == [f"m{n}" for n in range(10)]
        await client.close()
        await app.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("socket_takes_it_now", [True, False])
def test_a_mutation_response_and_its_transition_leave_in_one_write(
    app: Application, socket_takes_it_now: bool
) -> None:
    """Written at once by the mutation's task, or (the socket busy) queued and sent together."""

    async def scenario() -> None:
        await app.start()
        client = FrameClient(app, 1, itertools.repeat(not socket_takes_it_now), subscribe=False)
        for n in range(5):
            client.send(
                {"type": "Mutation", "requestId": n, "udfPath": "app:add", "args": [{"body": "x"}]}
            )
            await until(lambda n=n: sum(t == "MutationResponse" for t in client.frames_types()) > n)
            await until(lambda: client.frames[-1]["type"] == "Transition")
        with_response = [w for w in client.writes if "MutationResponse" in w]
        assert with_response == [["MutationResponse", "Transition"]] * 5, client.writes
        if socket_takes_it_now:
            assert client.written_now >= 5
        else:
            assert client.refused >= 5 and client.written_now == 0
        # ... and the Transition reaches the mutation's ts.
        for index, frame in enumerate(client.frames):
            if frame["type"] == "MutationResponse":
                after = client.frames[index + 1]
                assert decode_ts(after["endVersion"]["ts"]) >= decode_ts(frame["ts"])
        await client.close()
        await app.stop()

    asyncio.run(scenario())
