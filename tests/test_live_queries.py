"""Live query sharing and subscription bookkeeping, driven through in-process sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.sync.protocol import ServerMessage, Transition, server_message_to_json
from syncline.sync.session import SyncSession

FUNCTIONS = """
from syncline import query, mutation, v

@query
def count(ctx):
    return len(ctx.db.query("items").collect())

@mutation
def add(ctx):
    ctx.db.insert("items", {})
"""

AUTH_CONFIG = """
providers = []
"""


class Conn:
    """A session with a scripted inbox and a recorded outbox."""

    def __init__(self, app: Application) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session = SyncSession(app, self._send)
        self.task = asyncio.create_task(self.session.run(self._incoming()))
        self.query_set = 0

    async def _send(self, message: ServerMessage) -> None:
        await self.outbox.put(server_message_to_json(message) | {"_obj": message})

    async def _incoming(self) -> AsyncIterator[str]:
        while True:
            frame = await self.inbox.get()
            if frame is None:
                return
            yield frame

    def send(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(json.dumps(message))

    def modify(self, *mods: dict[str, Any]) -> None:
        self.send(
            {
                "type": "ModifyQuerySet",
                "baseVersion": self.query_set,
                "newVersion": self.query_set + 1,
                "modifications": list(mods),
            }
        )
        self.query_set += 1

    async def transition(self) -> Transition:
        while True:
            message = await asyncio.wait_for(self.outbox.get(), timeout=5)
            if message["type"] == "Transition":
                return message["_obj"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.inbox.put_nowait(None)
        await self.task


@pytest.fixture
def app(tmp_path: Path) -> Any:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "app.py").write_text(FUNCTIONS)
    (functions / "auth_config.py").write_text(AUTH_CONFIG)
    database = Database(
        SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"), clock=SystemClock()
    )
    application = Application(database, functions, admin_key="test-admin-key")
    application.load()
    yield application
    application.close()


def add(query_id: int) -> dict[str, Any]:
    return {"type": "Add", "queryId": query_id, "udfPath": "app:count", "args": [{}]}


def test_removing_one_of_two_identical_queries_keeps_the_other_live(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        conn = Conn(app)
        conn.send(
            {
                "type": "Connect",
                "sessionId": "s",
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
            }
        )
        conn.modify(add(1), add(2))
        await conn.transition()
        assert len(app.live) == 1  # one shared live query serves both ids
        conn.modify({"type": "Remove", "queryId": 1})
        await conn.transition()
        await app.executor.mutation("app:add", {})
        update = await conn.transition()
        assert [m.query_id for m in update.modifications] == [2]
        await conn.close()
        await app.stop()

    asyncio.run(scenario())


def test_authenticating_keeps_a_shared_query_subscribed(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        conn = Conn(app)
        conn.send(
            {
                "type": "Connect",
                "sessionId": "s",
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
            }
        )
        conn.modify(add(1))
        await conn.transition()
        conn.send(
            {
                "type": "Authenticate",
                "baseVersion": 0,
                "tokenType": "Admin",
                "value": "test-admin-key",
            }
        )
        bumped = await conn.transition()
        assert bumped.end_version.identity == 1
        # The query does not read auth: it is the same live query, still subscribed.
        await app.executor.mutation("app:add", {})
        update = await conn.transition()
        assert [m.query_id for m in update.modifications] == [1]
        await conn.close()
        await app.stop()

    asyncio.run(scenario())
