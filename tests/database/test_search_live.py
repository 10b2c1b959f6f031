"""Live search queries: re-run by the writes that match them, and by no others."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stores import open_store
from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.live_queries import LiveQuery

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({"body": v.string(), "channel": v.string()})
        .search_index("search_body", search_field="body", filter_fields=["channel"]),
})
"""

FUNCTIONS = """
from syncline import mutation, query, v


@query(args={"text": v.string(), "channel": v.string()})
def search(ctx, text, channel):
    return [
        m["body"]
        for m in ctx.db.query("messages")
        .with_search_index("search_body", lambda q: q.search("body", text).eq("channel", channel))
        .take(10)
    ]


@query(args={"text": v.string(), "paginationOpts": v.any()})
def page(ctx, text, paginationOpts):
    return (
        ctx.db.query("messages")
        .with_search_index("search_body", lambda q: q.search("body", text).eq("channel", "a"))
        .paginate(paginationOpts)
    )


@mutation(args={"body": v.string(), "channel": v.string()})
def send(ctx, body, channel):
    return ctx.db.insert("messages", {"body": body, "channel": channel})
"""


class Watcher:
    """A subscriber that queues each live query that changed."""

    def __init__(self) -> None:
        self.changed: asyncio.Queue[LiveQuery] = asyncio.Queue()

    def live_query_changed(self, query: LiveQuery) -> None:
        self.changed.put_nowait(query)

    def live_query_split(self, query: LiveQuery) -> None:
        raise AssertionError("not expected")

    async def next_value(self) -> Any:
        query = await asyncio.wait_for(self.changed.get(), 5)
        assert query.result is not None
        return orjson.loads(orjson.dumps(query.result.value))  # wire JSON


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "schema.py").write_text(SCHEMA)
    (functions / "chat.py").write_text(FUNCTIONS)
    database = Database(open_store(tmp_path / "db.sqlite3", durability="off"), clock=SystemClock())
    application = Application(database, functions, admin_key="test-admin-key")
    application.load()
    yield application
    application.close()


def _count_runs(app: Application) -> Counter[str]:
    """Count the executions of each query (live runs start through the executor)."""
    runs: Counter[str] = Counter()
    original = app.executor.start_query

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        runs[str(path)] += 1
        return original(path, *args, **kwargs)

    app.executor.start_query = counting  # type: ignore[method-assign]
    return runs


async def _settle(app: Application, ts: int) -> None:
    """Wait until the commit at ``ts`` is processed and any re-run it caused is over."""
    await app.live.caught_up(ts)
    for _ in range(50):
        if not any(q.running for q in app.live._queries.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a live query is still running")


def test_a_live_search_updates_on_a_matching_insert_and_not_on_others(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        runs = _count_runs(app)
        watcher = Watcher()
        app.live.subscribe(watcher, "chat:search", {"text": "hello wor", "channel": "a"})
        assert await watcher.next_value() == []
        assert runs["chat:search"] == 1
        for body, channel in [
            ("hello world", "b"),  # another channel
            ("goodbye", "a"),  # no matching term
            ("world hello", "c"),
            ("sword", "a"),  # "wor" is a prefix, not a substring
        ]:
            outcome = await app.executor.mutation("chat:send", {"body": body, "channel": channel})
            await _settle(app, outcome.ts)
        assert runs["chat:search"] == 1  # none of them re-ran it
        outcome = await app.executor.mutation("chat:send", {"body": "hello world", "channel": "a"})
        assert await watcher.next_value() == ["hello world"]
        assert runs["chat:search"] == 2
        outcome = await app.executor.mutation("chat:send", {"body": "worldly", "channel": "a"})
        assert sorted(await watcher.next_value()) == ["hello world", "worldly"]
        assert runs["chat:search"] == 3
        await app.stop()

    asyncio.run(scenario())


def test_of_many_live_searches_only_the_matching_ones_rerun(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        runs = _count_runs(app)
        watcher = Watcher()
        for i in range(50):
            app.live.subscribe(watcher, "chat:search", {"text": f"word{i}", "channel": "a"})
        for _ in range(50):
            await watcher.next_value()
        assert runs["chat:search"] == 50
        # word1 (prefix: word1, word10..word19) matches "word17"; word17 itself matches too.
        outcome = await app.executor.mutation("chat:send", {"body": "word17", "channel": "a"})
        await _settle(app, outcome.ts)
        assert runs["chat:search"] == 52
        await app.stop()

    asyncio.run(scenario())


def test_a_live_page_of_search_results_grows_with_a_matching_insert(app: Application) -> None:
    async def scenario() -> None:
        await app.start()
        for i in range(3):
            await app.executor.mutation("chat:send", {"body": f"item {i}", "channel": "a"})
        watcher = Watcher()
        opts = {"numItems": 2, "cursor": None}
        app.live.subscribe(watcher, "chat:page", {"text": "item", "paginationOpts": opts})
        first = await watcher.next_value()
        assert len(first["page"]) == 2 and not first["isDone"]
        await app.executor.mutation("chat:send", {"body": "item new", "channel": "a"})
        grown = await watcher.next_value()
        # The page keeps its extent (its end cursor): it holds the first results up to it.
        assert len(grown["page"]) == 2
        assert grown["continueCursor"] == first["continueCursor"]
        await app.stop()

    asyncio.run(scenario())
