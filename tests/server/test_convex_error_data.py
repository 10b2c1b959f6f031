"""ConvexError data holding plain ints reaches callers as Convex values, on every path.

A plain ``int`` becomes a float64, nested or not; an ``Int64`` stays an int64:
the same conversion as arguments and return values get.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.conftest import MakeServer, Server
from syncline.values.json import to_json

FILES = {
    "errors.py": """
        from syncline import ConvexError, Int64, action, internal_mutation, mutation, query


        def data():
            items = [1, 2, 3]
            data = {"code": "X", "length": len(items), "nested": {"ints": [1, {"n": 2}]}}
            return {**data, "big": Int64(7)}


        @query
        def failing_query(ctx):
            raise ConvexError(data())


        @mutation
        def failing_mutation(ctx):
            raise ConvexError(data())


        @action
        async def failing_action(ctx):
            raise ConvexError(data())


        @internal_mutation
        def scheduled_failure(ctx):
            raise ConvexError(data())


        @mutation
        def schedule(ctx):
            ctx.scheduler.run_after(0, "errors:scheduled_failure", {})


        @query
        def jobs(ctx):
            return [j["state"] for j in ctx.db.system.query("_scheduled_functions").collect()]
    """,
    "http.py": """
        from syncline import ConvexError, HttpRouter, Int64

        http = HttpRouter()


        @http.route(path="/fail", method="POST")
        async def fail(ctx, request):
            items = [1, 2, 3]
            data = {"code": "X", "length": len(items), "nested": {"ints": [1, {"n": 2}]}}
            raise ConvexError({**data, "big": Int64(7)})
    """,
}

EXPECTED = {
    "code": "X",
    "length": 3.0,
    "nested": {"ints": [1.0, {"n": 2.0}]},
    "big": {"$integer": "BwAAAAAAAAA="},
}


@pytest.fixture
def server(make_server: MakeServer) -> Server:
    return make_server(FILES)


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("/api/query", "errors:failing_query"),
        ("/api/mutation", "errors:failing_mutation"),
        ("/api/action", "errors:failing_action"),
    ],
)
def test_http_api(server: Server, endpoint: str, path: str) -> None:
    body = server.client.post(
        endpoint,
        content=json.dumps({"path": path, "args": {}, "format": "convex_encoded_json"}),
        headers={"Content-Type": "application/json"},
    ).json()
    assert body["status"] == "error", body
    assert body["errorData"] == EXPECTED
    assert "InternalError" not in body["errorMessage"]


def test_http_action(server: Server) -> None:
    response = server.client.post("/http/fail")
    assert response.status_code == 500
    assert response.json()["data"] == {
        "code": "X",
        "length": 3.0,
        "nested": {"ints": [1.0, {"n": 2.0}]},
        "big": "7",
    }


def test_sync_protocol_mutation_and_action(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.mutation("errors:failing_mutation")
    response = ws.expect("MutationResponse")
    assert response["success"] is False and response["errorData"] == EXPECTED
    ws.action("errors:failing_action")
    response = ws.until(lambda m: m["type"] == "ActionResponse")[-1]
    assert response["success"] is False and response["errorData"] == EXPECTED


def test_live_query_result(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "errors:failing_query")
    modification = ws.transition()["modifications"][0]
    assert modification["type"] == "QueryFailed", modification
    assert modification["errorData"] == EXPECTED


def test_scheduled_job_failure(server: Server) -> None:
    import asyncio

    asyncio.run(server.app.executor.mutation("errors:schedule", {}))
    states: list[Any] = []
    for _ in range(200):
        states = asyncio.run(server.app.executor.query("errors:jobs", {})).value
        if states and states[0]["kind"] == "failed":
            break
        asyncio.run(asyncio.sleep(0.01))
    [state] = states
    assert state["kind"] == "failed"
    # The data as JSON (its Convex form), not a Python repr of the raw dict.
    assert state["error"].startswith("Uncaught ConvexError: {")
    assert '"length":3' in state["error"] and "'length'" not in state["error"]
    assert json.loads(state["error"].removeprefix("Uncaught ConvexError: "))["nested"] == {
        "ints": [1, {"n": 2}]
    }
    to_json(state)
