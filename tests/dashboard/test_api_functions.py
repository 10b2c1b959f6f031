"""``_system/dashboard/functions:*``: the function list, and running any function."""

from __future__ import annotations

from pathlib import Path

from dashboard.conftest import PREFIX, Board
from syncline.server import dev as devserver


def test_list_describes_every_function_sorted_internal_included(board: Board) -> None:
    listed = board.query("functions:list")
    paths = [f["path"] for f in listed]
    assert paths == sorted(paths)
    assert not any(p.startswith("_system") for p in paths)
    add = next(f for f in listed if f["path"] == "tasks:add")
    assert add == {
        "path": "tasks:add",
        "module": "tasks",
        "name": "add",
        "kind": "mutation",
        "visibility": "public",
        "args": {
            "type": "object",
            "value": {"title": {"fieldType": {"type": "string"}, "optional": False}},
        },
        "returns": None,
    }
    secret = next(f for f in listed if f["path"] == "tasks:secret")
    assert (secret["kind"], secret["visibility"], secret["args"]) == ("query", "internal", None)
    assert next(f for f in listed if f["path"] == "tasks:sneaky")["kind"] == "action"


def test_list_follows_a_reload(board: Board) -> None:
    ws = board.admin_ws()
    ws.add(0, PREFIX + "functions:list")
    ws.until(lambda m: 0 in ws.state.results)
    assert "extra:ping" not in [f["path"] for f in ws.state.value(0)]
    functions_dir = board.server.app.functions_dir
    assert isinstance(functions_dir, Path)
    (functions_dir / "extra.py").write_text(
        "from syncline import query\n\n\n@query\ndef ping(ctx):\n    return 'pong'\n"
    )
    assert devserver.reload(board.server.app, echo=lambda line: None)
    board.server.client.portal.call(_rerun_all, board)  # what `syncline dev` does after a reload
    ws.until(lambda m: "extra:ping" in [f["path"] for f in ws.state.value(0)])


async def _rerun_all(board: Board) -> None:
    board.server.app.live.rerun_all()


def test_run_runs_queries_mutations_and_actions_internal_ones_too(board: Board) -> None:
    added = board.action("functions:run", {"path": "tasks:add", "args": {"title": "x"}})
    assert added["status"] == "success"
    assert added["logLines"] == ["[LOG] adding x"]
    assert added["durationMs"] >= 0
    assert board.query("data:get", {"id": added["value"]})["document"]["title"] == "x"
    counted = board.action("functions:run", {"path": "tasks:count"})
    assert (counted["status"], counted["value"]) == ("success", 1)
    secret = board.action("functions:run", {"path": "tasks:secret", "args": {}})
    assert secret["value"] == "internal only"
    scheduled = board.action("functions:run", {"path": "tasks:later", "args": {"delay": 1e9}})
    assert scheduled["status"] == "success"
    # Run by the admin, an action's own calls are the admin's (other callers: test_api_access).
    sneaky = board.action("functions:run", {"path": "tasks:sneaky"})
    assert (sneaky["status"], sneaky["value"]) == ("success", [])


def test_run_reports_errors_with_their_message(board: Board) -> None:
    broken = board.action("functions:run", {"path": "tasks:broken", "args": {}})
    assert broken["status"] == "error"
    assert "broken on purpose" in broken["error"]["message"]
    assert "data" not in broken["error"]
    bad_args = board.action("functions:run", {"path": "tasks:add", "args": {"title": 3}})
    assert bad_args["status"] == "error"
    assert "ArgumentValidationError" in bad_args["error"]["message"]
    refused = board.action("functions:run", {"path": "tasks:refuse"})
    assert refused["error"]["data"] == {"code": "NO", "message": "refused"}
    missing = board.error("action", "functions:run", {"path": "tasks:nope"})
    assert missing["code"] == "NotFound"
    assert "tasks:nope" in missing["message"]
