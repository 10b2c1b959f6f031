"""Dashboard API fixtures: a served project, and an admin calling the system functions.

``board`` is a :class:`Board`: the project of :data:`DASHBOARD_FILES` served in
process (``server/conftest.py``'s ``make_server``); ``board.query(name, args)``
and friends call ``_system/dashboard/<name>`` over the HTTP API with the admin
key and return the value, ``board.error(...)`` the ``ConvexError`` data of a
call that must fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from server.conftest import ADMIN_KEY, MakeServer, Server, WsClient, make_server  # noqa: F401

PREFIX = "_system/dashboard/"
ADMIN_HEADERS = {"Authorization": f"Convex {ADMIN_KEY}", "Content-Type": "application/json"}

DASHBOARD_FILES: dict[str, str] = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "tasks": define_table({
                "title": v.string(),
                "done": v.boolean(),
                "rank": v.float64(),
                "meta": v.optional(v.object({"owner": v.string()})),
            }).index("by_done_rank", ["done", "rank"]),
            "empty": define_table({"n": v.float64()}),
        })
    """,
    "tasks.py": """
        from syncline import ConvexError, action, internal_mutation, internal_query, mutation, query, v


        @query
        def count(ctx):
            return len(ctx.db.query("tasks").collect())


        @query
        def greeting(ctx):
            return "hello " + ctx.env.get("WHO", "nobody")


        @internal_query
        def secret(ctx):
            return "internal only"


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            print(f"adding {title}")
            return ctx.db.insert("tasks", {"title": title, "done": False, "rank": 0.0})


        @internal_mutation(args={"delay": v.float64()})
        def later(ctx, delay):
            return ctx.scheduler.run_after(delay, "tasks:add", {"title": "later"})


        @query
        def broken(ctx):
            raise ValueError("broken on purpose")


        @mutation
        def refuse(ctx):
            raise ConvexError({"code": "NO", "message": "refused"})


        @action
        async def sneaky(ctx):
            # A user's action may run internal functions: never the dashboard's.
            return await ctx.run_query("_system/dashboard/env:list")


        @mutation
        def schedule_system(ctx):
            return ctx.scheduler.run_after(0, "_system/dashboard/data:clear", {"table": "tasks"})


        @internal_mutation(args={"n": v.float64()})
        def seed(ctx, n):
            for i in range(int(n)):
                ctx.db.insert("tasks", {"title": f"t{i}", "done": i % 2 == 0, "rank": float(i)})
    """,
}


@dataclass
class Board:
    server: Server

    def call(
        self, kind: str, name: str, args: Mapping[str, Any] | None = None, *, key: bool = True
    ) -> dict[str, Any]:
        """The HTTP API's answer to ``_system/dashboard/<name>`` (admin key unless ``key=False``)."""
        headers = ADMIN_HEADERS if key else {"Content-Type": "application/json"}
        response = self.server.client.post(
            f"/api/{kind}",
            content=json.dumps({"path": PREFIX + name, "args": dict(args or {})}),
            headers=headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def _value(self, kind: str, name: str, args: Mapping[str, Any] | None) -> Any:
        body = self.call(kind, name, args)
        assert body["status"] == "success", body
        return body["value"]

    def query(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        return self._value("query", name, args)

    def mutation(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        return self._value("mutation", name, args)

    def action(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        return self._value("action", name, args)

    def error(self, kind: str, name: str, args: Mapping[str, Any] | None = None) -> Any:
        """The ``{"code", "message"}`` of a call that fails with a ConvexError."""
        body = self.call(kind, name, args)
        assert body["status"] == "error", body
        assert "errorData" in body, body
        return body["errorData"]

    def admin_ws(self) -> WsClient:
        ws = self.server.ws()
        ws.connect()
        ws.authenticate("Admin", ADMIN_KEY)
        return ws


@pytest.fixture
def board(make_server: MakeServer) -> Board:  # noqa: F811 (the fixture imported above)
    return Board(make_server(DASHBOARD_FILES))
