"""Only admin callers reach the dashboard's system functions; anyone else gets the error of
a missing function, over the sync WebSocket and the HTTP API. Admins may call and subscribe
to internal functions; live queries of admins and of others are never shared."""

from __future__ import annotations

import json

import pytest

from dashboard.conftest import ADMIN_HEADERS, PREFIX, Board
from server.conftest import ADMIN_KEY, WsClient

NAMES = [
    ("query", "data:tables"),
    ("query", "data:page"),
    ("mutation", "data:insert"),
    ("mutation", "data:clear"),
    ("query", "functions:list"),
    ("action", "functions:run"),
    ("query", "schedules:list"),
    ("mutation", "schedules:cancel"),
    ("query", "schedules:crons"),
    ("query", "files:list"),
    ("mutation", "files:generateUploadUrl"),
    ("mutation", "files:remove"),
    ("query", "env:list"),
    ("mutation", "env:set"),
    ("mutation", "env:remove"),
]


def not_found(path: str) -> str:
    return f"Could not find public function for '{path}'"


@pytest.mark.parametrize(("kind", "name"), NAMES)
def test_http_callers_without_the_admin_key_get_the_missing_function_error(
    board: Board, kind: str, name: str
) -> None:
    body = board.call(kind, name, {}, key=False)
    assert body["status"] == "error"
    assert body["errorMessage"].endswith(not_found(PREFIX + name))
    assert "errorData" not in body
    # Exactly what a function that does not exist answers.
    missing = board.call(kind, "data:doesNotExist", {}, key=False)
    assert missing["errorMessage"].split("\n")[1:] == [not_found(PREFIX + "data:doesNotExist")]
    # Nothing was done: env:set by an anonymous caller wrote nothing, say.
    assert board.query("env:list") == []
    # The /api/run route too.
    module, _, function = (PREFIX + name).rpartition(":")
    run = board.server.client.post(f"/api/run/{module}/{function}", json={"args": {}})
    assert run.status_code == 404
    assert run.json() == {"code": "FunctionNotFound", "message": not_found(PREFIX + name)}


def test_sync_callers_without_the_admin_key_get_the_missing_function_error(board: Board) -> None:
    ws = board.server.ws()
    ws.connect()
    ws.add(0, PREFIX + "env:list")
    ws.add(1, PREFIX + "env:nothing")
    ws.until(lambda m: {0, 1} <= ws.state.results.keys())
    for query_id, path in ((0, PREFIX + "env:list"), (1, PREFIX + "env:nothing")):
        state, message, _data = ws.state.results[query_id]
        assert state == "error"
        assert message.endswith(not_found(path))
    request_id = ws.mutation(PREFIX + "env:set", {"name": "A", "value": "x"})
    response = ws.until(lambda m: m.get("requestId") == request_id)[-1]
    assert response["success"] is False
    assert response["result"].endswith(not_found(PREFIX + "env:set"))
    assert board.query("env:list") == []


def test_user_code_cannot_reach_system_functions(board: Board) -> None:
    # An action may call internal functions (as its caller), never system ones.
    body = board.server.client.post("/api/action", json={"path": "tasks:sneaky"}).json()
    assert body["status"] == "error"
    assert not_found(PREFIX + "env:list") in body["errorMessage"]
    scheduled = board.server.client.post("/api/mutation", json={"path": "tasks:schedule_system"})
    assert scheduled.json()["status"] == "error"
    assert (
        board.query("schedules:list", {"paginationOpts": {"numItems": 5, "cursor": None}})["page"]
        == []
    )


def test_admins_call_and_subscribe_to_internal_functions(board: Board) -> None:
    ws = board.admin_ws()
    ws.add(0, "tasks:secret")
    ws.until(lambda m: 0 in ws.state.results)
    assert ws.state.value(0) == "internal only"
    request_id = ws.mutation("tasks:later", {"delay": 1e9})
    response = ws.until(lambda m: m.get("requestId") == request_id)[-1]
    assert response["success"] is True
    http = board.server.client.post(
        "/api/query", content=json.dumps({"path": "tasks:secret"}), headers=ADMIN_HEADERS
    )
    assert http.json()["value"] == "internal only"


def subscribe(ws: WsClient, query_id: int, path: str) -> tuple[str, object]:
    ws.add(query_id, path)
    ws.until(lambda m: query_id in ws.state.results)
    result = ws.state.results[query_id]
    return result[0], result[1]


@pytest.mark.parametrize("path", ["tasks:secret", PREFIX + "env:list"])
@pytest.mark.parametrize("admin_first", [True, False])
def test_live_queries_are_not_shared_between_admins_and_others(
    board: Board, path: str, admin_first: bool
) -> None:
    board.mutation("env:set", {"name": "TOKEN", "value": "s3cret"})
    admin, anonymous = board.admin_ws(), board.server.ws()
    anonymous.connect()
    order = [(admin, True), (anonymous, False)]
    if not admin_first:
        order.reverse()
    seen = {is_admin: subscribe(ws, 0, path) for ws, is_admin in order}
    assert seen[True][0] == "ok"
    assert seen[False][0] == "error"
    assert str(seen[False][1]).endswith(not_found(path))
    # A change reaches the admin's query; the other one still fails.
    if path.endswith("env:list"):
        board.mutation("env:set", {"name": "OTHER", "value": "x"})
        admin.until(lambda m: len(admin.state.value(0)) == 2)
    assert anonymous.state.results[0][0] == "error"


def test_an_admin_acting_as_a_user_is_still_an_admin(board: Board) -> None:
    ws = board.server.ws()
    ws.connect()
    ws.authenticate(
        "Admin", ADMIN_KEY, impersonating={"issuer": "https://issuer.test", "subject": "u1"}
    )
    ws.add(0, PREFIX + "env:list")
    ws.until(lambda m: 0 in ws.state.results)
    assert ws.state.value(0) == []
