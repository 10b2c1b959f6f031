"""Live query sharing and subscription bookkeeping, driven through in-process sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stores import open_store
from syncline._devtools import connect_frame
from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.database.reads import ReadSet
from syncline.database.writes import EVERYTHING_CHANGED, Commit, WriteSet
from syncline.live_queries import RECENT_COMMITS_MAX_KEYS, RECENT_COMMITS_WINDOW_NS
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
        open_store(str(tmp_path / "db.sqlite3"), durability="off"), clock=SystemClock()
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
        conn = await connect(app, "s")
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
        conn = await connect(app, "s")
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
    conn.inbox.put_nowait(connect_frame(session_id))
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


# ---------------------------------------------------------------- recent commits

SECOND_NS = 1_000_000_000


def commit_writing(ts: int, keys: int = 1) -> Commit:
    writes = WriteSet()
    for i in range(keys):
        writes.add_key("items.by_id", i.to_bytes(4, "big"))
    writes.doc_ids.add(f"doc-{ts}")
    writes.tables.add("items")
    return Commit(ts, writes)


def test_commits_older_than_the_window_are_forgotten_and_checks_past_them_assume_a_conflict(
    app: Application,
) -> None:
    live = app.live
    start = live.processed_ts + 1
    window_s = RECENT_COMMITS_WINDOW_NS // SECOND_NS
    # Twice the window of steady writing, one commit a second.
    live.process_commits([commit_writing(start + i * SECOND_NS) for i in range(2 * window_s)])
    reads_nothing = ReadSet()

    # Before the window: forgotten, so the check cannot vouch for the answer.
    assert live.first_conflict(reads_nothing, start) is not None
    # Inside the window: still known, and nothing read was written.
    assert live.first_conflict(reads_nothing, live.processed_ts - 5 * SECOND_NS) is None
    assert live.recent_commit_count() <= window_s + 1


def test_recent_commits_stay_within_the_key_budget_however_fast_the_writes(
    app: Application,
) -> None:
    live = app.live
    start = live.processed_ts + 1
    per_commit = RECENT_COMMITS_MAX_KEYS // 4
    # All within one millisecond: only the key budget can bound them.
    live.process_commits([commit_writing(start + i, keys=per_commit) for i in range(12)])

    assert live.recent_commit_count() <= 4
    assert live.first_conflict(ReadSet(), start) is not None
    assert live.first_conflict(ReadSet(), live.processed_ts - 1) is None


def test_a_commit_that_changes_everything_reruns_every_live_query(app: Application) -> None:
    # What a process that fell behind the commit log's retention publishes.
    rerun: list[str] = []

    async def scenario() -> None:
        await app.start()
        conn = await connect(app, "s")
        conn.modify(add(1))
        await conn.transition()
        live = app.live
        live._schedule_run = lambda query: rerun.append(query.key[0])  # type: ignore[method-assign]
        before = live.processed_ts
        everything = Commit(before + 10, WriteSet(tables={"items"}), local=False)
        live.process_commits([commit_writing(before + 5, keys=1)])
        assert rerun == []  # the query read nothing that commit wrote
        live.process_commits([Commit(before + 10, WriteSet(), False, EVERYTHING_CHANGED)])
        assert len(rerun) == 1
        # Nothing from before it can be checked key by key any more.
        assert live.first_conflict(ReadSet(), before + 5) == everything.ts
        assert live.first_conflict(ReadSet(), everything.ts) is None
        await conn.close()
        await app.stop()

    asyncio.run(scenario())


def test_a_re_run_is_handed_to_the_read_threads_while_its_commit_is_processed(
    app: Application,
) -> None:
    """The re-run is submitted inside process_commits, before the loop runs anything
    else (a read thread wakes while the loop finishes its work), and its result
    still reaches the subscriber."""
    submitted: list[str] = []

    async def scenario() -> None:
        await app.start()
        conn = await connect(app, "s")
        conn.modify(add(1))
        await conn.transition()
        database = app.database
        start_read = database.start_read

        def recorded(fn: Any) -> Any:
            submitted.append("read")
            return start_read(fn)

        database.start_read = recorded  # type: ignore[method-assign]
        live = app.live
        process_commits = live.process_commits
        during: list[list[str]] = []

        def processing(commits: list[Commit]) -> None:
            process_commits(commits)
            during.append(list(submitted))

        live.process_commits = processing  # type: ignore[method-assign]
        await app.executor.mutation("app:add", {})
        update = await conn.transition()
        assert [m.query_id for m in update.modifications] == [1]
        assert during and during[0] == ["read"]
        await conn.close()
        await app.stop()

    asyncio.run(scenario())
