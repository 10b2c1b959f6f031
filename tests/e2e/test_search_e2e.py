"""Convex's search demo, in Python, against a real server and the official PyPI client.

The functions are those of the search example of Convex's demo apps
(``messages:list``, ``messages:search``, ``messages:send``), translated to
Python: a live subscription to a search query receives a matching insert, and
is not disturbed by one that does not match.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from convex import ConvexClient

from conftest import trace_env
from syncline._devtools import ServerProcess, launch

pytestmark = pytest.mark.slow

SEARCH_DEMO = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "messages": define_table({
                "author": v.string(),
                "body": v.string(),
            }).search_index("search_body", search_field="body"),
        })
    """,
    "messages.py": """
        from syncline import mutation, query, v


        @query
        def list(ctx):
            return ctx.db.query("messages").collect()


        @query(args={"query": v.string()})
        def search(ctx, query):
            return (
                ctx.db.query("messages")
                .with_search_index("search_body", lambda q: q.search("body", query))
                .take(10)
            )


        @mutation(args={"body": v.string(), "author": v.string()})
        def send(ctx, body, author):
            message = {"body": body, "author": author}
            ctx.db.insert("messages", message)
    """,
}


@pytest.fixture(scope="module")
def search_server(project: Any) -> Iterator[ServerProcess]:
    proc = launch(project(SEARCH_DEMO), mode="serve", env=trace_env())
    try:
        yield proc
        assert proc.alive(), f"the server died during the tests:\n{proc.log()}"
    finally:
        proc.stop()


def test_the_search_demo_runs_and_a_live_search_receives_a_matching_insert(
    search_server: ServerProcess, unique: str
) -> None:
    _live_search(search_server.url, unique)


def test_on_postgres_a_live_search_on_one_node_receives_an_insert_made_on_another(
    project: Any, start_server: Any, database_url: str, unique: str
) -> None:
    # Two nodes, each with its own project folder (and data folder), on one database.
    a, b = (start_server(project(SEARCH_DEMO), args=["--db", database_url]) for _ in range(2))
    _live_search(a.url, unique, writer_url=b.url)


def _live_search(url: str, unique: str, *, writer_url: str | None = None) -> None:
    client = ConvexClient(url)
    writer = ConvexClient(writer_url or url)
    word = f"zebra{unique}"
    client.mutation("messages:send", {"body": f"a {word} crossing", "author": "ann"})
    found = client.query("messages:search", {"query": word[:-3]})  # a prefix of the word
    assert [m["body"] for m in found] == [f"a {word} crossing"]
    assert any(m["body"] == f"a {word} crossing" for m in client.query("messages:list"))

    async def main() -> tuple[list[Any], float]:
        sub = client.subscribe("messages:search", {"query": f"{word} stripes"})
        first = await asyncio.wait_for(sub.__anext__(), 5)
        assert [m["author"] for m in first] == ["ann"]
        await asyncio.to_thread(
            writer.mutation, "messages:send", {"body": "nothing to see", "author": "bob"}
        )
        await asyncio.to_thread(
            writer.mutation, "messages:send", {"body": f"{word} stripes", "author": "cy"}
        )
        sent_at = time.time()
        update = await asyncio.wait_for(sub.__anext__(), 5)
        received_at = time.time()
        sub.unsubscribe()
        return update, received_at - sent_at

    update, delay = asyncio.run(main())
    # Both terms match the new message, one the old: relevance puts it first.
    assert [m["author"] for m in update] == ["cy", "ann"]
    assert delay < 1.0
