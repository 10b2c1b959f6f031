"""``ctx.vector_search`` through the official PyPI ``convex`` client, against real servers.

One ``syncline serve`` process, and ``serve --workers 2`` where each worker
keeps its own index current from the commit log: a write through one worker
is found by a search on the other right after the write is acknowledged.
"""

from __future__ import annotations

from typing import Any

import pytest
from convex import ConvexClient
from convex.http_client import ConvexHttpClient

from e2e.test_workers import serve_workers, worker_pids

pytestmark = pytest.mark.slow

VECTOR_FILES = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "notes": define_table({
                "text": v.string(),
                "topic": v.string(),
                "embedding": v.array(v.float64()),
            }).vector_index("by_embedding", vector_field="embedding", dimensions=4,
                            filter_fields=["topic"]),
        })
    """,
    "notes.py": """
        import os

        from syncline import action, internal_query, mutation, v


        @mutation(args={"text": v.string(), "topic": v.string(),
                        "embedding": v.array(v.float64())})
        def add(ctx, text, topic, embedding):
            return ctx.db.insert("notes", {"text": text, "topic": topic, "embedding": embedding})


        @mutation(args={"id": v.id("notes")})
        def remove(ctx, id):
            ctx.db.delete(id)


        @internal_query(args={"ids": v.array(v.id("notes"))})
        def texts(ctx, ids):
            return [ctx.db.get(i)["text"] for i in ids]


        @action(args={"embedding": v.array(v.float64()), "topic": v.optional(v.string()),
                      "limit": v.optional(v.number())})
        async def similar(ctx, embedding, topic=None, limit=10):
            results = await ctx.vector_search(
                "notes", "by_embedding", vector=embedding, limit=limit,
                filter=None if topic is None else (lambda q: q.eq("topic", topic)),
            )
            texts = await ctx.run_query("notes:texts", {"ids": [r["_id"] for r in results]})
            return {"texts": texts, "scores": [r["_score"] for r in results],
                    "worker": os.getpid()}
    """,
}


def _axis(i: int) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(4)]


def test_an_action_searches_through_the_official_client(project: Any, start_server: Any) -> None:
    server = start_server(project(VECTOR_FILES, auth=False))
    client = ConvexClient(server.url)
    first = client.mutation("notes:add", {"text": "cats", "topic": "pets", "embedding": _axis(0)})
    client.mutation("notes:add", {"text": "dogs", "topic": "pets", "embedding": [0.6, 0.8, 0, 0]})
    client.mutation("notes:add", {"text": "rust", "topic": "code", "embedding": [0.8, 0.6, 0, 0]})

    got = client.action("notes:similar", {"embedding": _axis(0)})
    assert got["texts"] == ["cats", "rust", "dogs"]
    assert got["scores"] == pytest.approx([1.0, 0.8, 0.6], abs=1e-6)

    got = client.action("notes:similar", {"embedding": _axis(0), "topic": "pets", "limit": 1})
    assert got["texts"] == ["cats"]

    client.mutation("notes:remove", {"id": first})
    assert client.action("notes:similar", {"embedding": _axis(0)})["texts"] == ["rust", "dogs"]

    with pytest.raises(Exception, match="expects a vector of 4 numbers"):
        client.action("notes:similar", {"embedding": [1.0, 0.0]})
    with pytest.raises(Exception, match="from 1 to 256"):
        client.action("notes:similar", {"embedding": _axis(0), "limit": 300})


def test_each_worker_sees_commits_made_through_the_other(project: Any) -> None:
    server = serve_workers(project(VECTOR_FILES, auth=False), 2)
    try:
        assert len(worker_pids(server)) == 2
        seen: set[int] = set()
        for i in range(60):
            if len(seen) == 2 and i >= 8:
                break
            # A fresh HTTP client per call: the kernel spreads the connections.
            writer, reader = ConvexHttpClient(server.url), ConvexHttpClient(server.url)
            text = f"note {i}"
            vector = [1.0, float(i + 1), 0.0, 0.0]
            writer.mutation("notes:add", {"text": text, "topic": "t", "embedding": vector})
            got = reader.action("notes:similar", {"embedding": vector, "limit": 1})
            assert got["texts"] == [text]
            seen.add(int(got["worker"]))
        assert len(seen) == 2, "every search went to one worker"
    finally:
        server.stop()
