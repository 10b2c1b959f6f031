"""HTTP queries answered from the query cache (``syncline.query_cache``), over the real API.

Every test asserts on what the caller receives and on whether the function
ran (``Outcome.cached`` as the executor's observers see it): a cached answer
must be exactly the answer a run would give at that moment.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from server.conftest import ADMIN_KEY, Keys, MakeServer, Server, auth_files
from syncline.application import Application
from syncline.database.database import Database
from syncline.functions.outcomes import Outcome
from syncline.persistence.sqlite import SqlitePersistence


def _files(keys: Keys) -> dict[str, str]:
    return {
        **auth_files(keys),
        "clocked.py": """
            from syncline import query


            @query
            def now(ctx):
                return ctx.now


            @query
            def lines(ctx):
                print("ran")
                return len(ctx.db.query("messages").collect())
        """,
    }


class Calls:
    """The query outcomes the executor reported: ran, or answered from the cache."""

    def __init__(self, server: Server) -> None:
        self.outcomes: list[Outcome] = []
        server.app.executor.observers.append(self._observe)

    def _observe(self, outcome: Outcome) -> None:
        if outcome.kind is not None and outcome.kind.value == "query":
            self.outcomes.append(outcome)

    def last_cached(self) -> bool:
        return self.outcomes[-1].cached


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def server(make_server: MakeServer, keys: Keys) -> Server:
    return make_server(_files(keys))


def query(server: Server, path: str, args: Any = None, **kwargs: Any) -> Any:
    body: dict[str, Any] = {"path": path, "format": kwargs.pop("fmt", "convex_encoded_json")}
    if args is not None:
        body["args"] = args
    response = server.client.post("/api/query", json=body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def mutation(server: Server, path: str, args: Any, **kwargs: Any) -> Any:
    body = {"path": path, "args": args, "format": "json"}
    response = server.client.post("/api/mutation", json=body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success", response.text
    return response.json()["value"]


def test_an_identical_query_is_answered_from_the_cache_until_a_commit_changes_its_reads(
    server: Server,
) -> None:
    calls = Calls(server)
    mutation(server, "messages:send", {"channel": "a", "body": "one"})
    first = query(server, "messages:list", {"channel": "a"})
    assert first["value"] == ["one"] and not calls.last_cached()
    assert query(server, "messages:list", {"channel": "a"}) == first
    assert calls.last_cached()

    # A write the query did not read leaves the answer in place ...
    mutation(server, "messages:send", {"channel": "b", "body": "elsewhere"})
    assert query(server, "messages:list", {"channel": "a"}) == first
    assert calls.last_cached()

    # ... one it read evicts it: the next call runs and sees the write.
    mutation(server, "messages:send", {"channel": "a", "body": "two"})
    assert query(server, "messages:list", {"channel": "a"})["value"] == ["one", "two"]
    assert not calls.last_cached()
    assert query(server, "messages:list", {"channel": "a"})["value"] == ["one", "two"]
    assert calls.last_cached()


def test_cached_answers_equal_fresh_ones_under_random_writes(make_server: MakeServer) -> None:
    server = make_server()
    calls = Calls(server)
    rng = random.Random(7)
    model: dict[str, list[str]] = {c: [] for c in "abc"}
    ids: list[tuple[str, str, int]] = []
    for step in range(300):
        channel = rng.choice("abc")
        roll = rng.random()
        if roll < 0.25:
            body = f"m{step}"
            doc_id = mutation(server, "messages:send", {"channel": channel, "body": body})
            ids.append((doc_id, channel, len(model[channel])))
            model[channel].append(body)
        elif roll < 0.35 and ids:
            doc_id, owner, position = rng.choice(ids)
            mutation(server, "messages:edit", {"id": doc_id, "body": f"e{step}"})
            model[owner][position] = f"e{step}"
        elif roll < 0.7:
            assert query(server, "messages:list", {"channel": channel})["value"] == model[channel]
        else:
            total = sum(len(v) for v in model.values())
            assert query(server, "messages:total")["value"] == total
    cached = sum(o.cached for o in calls.outcomes)
    assert 0 < cached < len(calls.outcomes)


def test_both_formats_are_served_from_one_entry(server: Server) -> None:
    calls = Calls(server)
    encoded = query(server, "messages:shapes", fmt="convex_encoded_json")
    clean = query(server, "messages:shapes", fmt="json")
    assert calls.outcomes[-1].cached
    assert query(server, "messages:shapes", fmt="convex_encoded_json") == encoded
    assert encoded["value"]["int64"] == {"$integer": "BwAAAAAAAAA="}
    assert clean["value"]["int64"] == "7"


def test_log_lines_are_replayed_to_the_caller_and_not_printed_again(server: Server) -> None:
    calls = Calls(server)
    first = query(server, "clocked:lines")
    assert first["logLines"] == ["[LOG] ran"]
    assert query(server, "clocked:lines") == first
    assert calls.outcomes[-1].cached and calls.outcomes[-1].log_lines == []


def test_failures_and_queries_reading_the_clock_always_run(server: Server) -> None:
    calls = Calls(server)
    for _ in range(2):
        assert query(server, "messages:boom")["status"] == "error"
        assert query(server, "clocked:now")["status"] == "success"
    assert not any(o.cached for o in calls.outcomes)


def test_a_query_reading_the_caller_is_cached_per_user(server: Server, keys: Keys) -> None:
    calls = Calls(server)

    def name(subject: str | None) -> Any:
        headers = {}
        if subject is not None:
            token = keys.token(subject, name=subject.upper())
            headers = {"Authorization": f"Bearer {token}"}
        return query(server, "whoami:name", headers=headers)["value"]

    assert [name("ann"), name("bob"), name(None)] == ["ANN", "BOB", None]
    assert not any(o.cached for o in calls.outcomes)
    assert [name("ann"), name("bob"), name(None)] == ["ANN", "BOB", None]
    assert all(o.cached for o in calls.outcomes[3:])


def test_an_admins_answer_is_never_given_to_other_callers(server: Server) -> None:
    admin = {"Authorization": f"Convex {ADMIN_KEY}"}
    assert query(server, "messages:secret", headers=admin)["value"] == "internal only"
    assert query(server, "messages:secret", headers=admin)["value"] == "internal only"
    refused = server.client.post("/api/query", json={"path": "messages:secret", "args": {}})
    assert refused.json()["status"] == "error"
    assert "internal only" not in refused.text


def test_new_code_clears_the_cache(server: Server) -> None:
    calls = Calls(server)
    query(server, "messages:total")
    server.app.live.rerun_all()  # what a reload or a deploy does
    query(server, "messages:total")
    assert not calls.outcomes[-1].cached


def test_on_a_shared_store_a_commit_of_another_process_is_never_missed(server: Server) -> None:
    """``--workers N``: before serving an answer, the store's head is read."""
    other_db = Database(SqlitePersistence(str(server.app.database.persistence.path)))
    other = Application(other_db, server.app.functions_dir)
    try:
        other.load()
        server.app.live.share_store()
        server.app.database.catch_up()  # what the tail of a worker does
        calls = Calls(server)
        assert query(server, "messages:total")["value"] == 0
        assert query(server, "messages:total")["value"] == 0 and calls.last_cached()
        # Committed by another process, and not followed here yet: never a stale answer.
        other.executor.mutation_sync("messages:send", {"channel": "a", "body": "x"}).unwrap()
        for _ in range(2):
            assert query(server, "messages:total")["value"] == 1
            assert not calls.last_cached()
        server.app.database.catch_up()
        query(server, "messages:total")
        assert query(server, "messages:total")["value"] == 1 and calls.last_cached()
    finally:
        other.close()


def test_a_store_that_cannot_read_its_head_cheaply_gets_no_cache(server: Server) -> None:
    calls = Calls(server)
    server.app.live.cache.shared_store = True  # several nodes on PostgreSQL
    for _ in range(2):
        query(server, "messages:total")
        assert not calls.outcomes[-1].cached


def test_off_keeps_nothing(server: Server) -> None:
    calls = Calls(server)
    server.app.live.cache.max_bytes = 0  # serve --query-cache off
    for _ in range(2):
        query(server, "messages:total")
    assert not any(o.cached for o in calls.outcomes) and len(server.app.live.cache) == 0


def test_the_log_history_marks_cached_calls(server: Server) -> None:
    from syncline.call_log.records import call_record

    calls = Calls(server)
    query(server, "messages:total")
    query(server, "messages:total")
    records = [call_record(o, timestamp_ms=0) for o in calls.outcomes]
    assert [r["cached"] for r in records] == [False, True]
