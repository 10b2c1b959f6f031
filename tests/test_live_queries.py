"""Live query sharing and subscription bookkeeping, driven through in-process sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
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

@query(args={"paginationOpts": v.any()})
def page(ctx, paginationOpts):
    return ctx.db.query("items").order("desc").paginate(paginationOpts)
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


PAGE_ARGS = {"paginationOpts": {"numItems": 3.0, "cursor": None}}


def add_page(query_id: int) -> dict[str, Any]:
    return {"type": "Add", "queryId": query_id, "udfPath": "app:page", "args": [PAGE_ARGS]}


async def connect(app: Application, session_id: str) -> Conn:
    conn = Conn(app)
    conn.send(
        {
            "type": "Connect",
            "sessionId": session_id,
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": 0,
        }
    )
    return conn


async def page_of(conn: Conn, query_id: int) -> dict[str, Any]:
    """The next page result the connection receives for ``query_id``."""
    while True:
        transition = await conn.transition()
        for mod in transition.modifications:
            if getattr(mod, "query_id", None) == query_id:
                assert hasattr(mod, "value"), mod
                return orjson.loads(orjson.dumps(mod.value))  # type: ignore[no-any-return]


def test_a_first_page_subscribed_later_is_fresh_not_another_clients_grown_page(
    app: Application,
) -> None:
    async def scenario() -> None:
        await app.start()
        for _ in range(5):
            await app.executor.mutation("app:add", {})
        first = await connect(app, "tab-1")
        first.modify(add_page(0))
        assert len((await page_of(first, 0))["page"]) == 3
        # Newer items land inside the first tab's page: its page end is pinned.
        for _ in range(2):
            await app.executor.mutation("app:add", {})
        while len((await page_of(first, 0))["page"]) != 5:
            pass
        second = await connect(app, "tab-2")
        second.modify(add_page(0))
        fresh = await page_of(second, 0)
        assert len(fresh["page"]) == 3
        assert fresh["isDone"] is False
        await first.close()
        await second.close()
        await app.stop()

    asyncio.run(scenario())


def test_equal_pinned_pages_share_one_live_query(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        for _ in range(5):
            await app.executor.mutation("app:add", {})
        first = await connect(app, "tab-1")
        first.modify(add_page(0))
        page = await page_of(first, 0)
        second = await connect(app, "tab-2")
        second.modify(add_page(0))
        assert await page_of(second, 0) == page
        # Nothing changed in between: both pinned the same page end, one live query serves both.
        assert len(app.live) == 1
        await app.executor.mutation("app:add", {})
        grown_first = await page_of(first, 0)
        grown_second = await page_of(second, 0)
        assert len(grown_first["page"]) == len(grown_second["page"]) == 4
        await first.close()
        await second.close()
        await app.stop()

    asyncio.run(scenario())
