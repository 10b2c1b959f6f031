"""``_system/dashboard/env:*``: environment variables, live, checked."""

from __future__ import annotations

from dashboard.conftest import PREFIX, Board


def test_set_list_and_remove(board: Board) -> None:
    assert board.query("env:list") == []
    assert board.mutation("env:set", {"name": "B_KEY", "value": "2"}) is None
    board.mutation("env:set", {"name": "A_KEY", "value": "1"})
    board.mutation("env:set", {"name": "B_KEY", "value": "two"})
    assert board.query("env:list") == [
        {"name": "A_KEY", "value": "1"},
        {"name": "B_KEY", "value": "two"},
    ]
    assert board.mutation("env:remove", {"name": "A_KEY"}) is None
    assert board.mutation("env:remove", {"name": "A_KEY"}) is None
    assert board.query("env:list") == [{"name": "B_KEY", "value": "two"}]


def test_bad_names_and_values_write_nothing(board: Board) -> None:
    for args in (
        {"name": "1BAD", "value": "x"},
        {"name": "has space", "value": "x"},
        {"name": "X" * 300, "value": "x"},
        {"name": "BIG", "value": "v" * (8 * 1024 + 1)},
    ):
        error = board.error("mutation", "env:set", args)
        assert error["code"] == "BadEnvVar", args
        assert error["message"]
    assert board.query("env:list") == []


def test_setting_a_variable_reruns_a_live_query_that_reads_it(board: Board) -> None:
    user = board.server.ws()
    user.connect()
    user.add(0, "tasks:greeting")
    user.until(lambda m: 0 in user.state.results)
    assert user.state.value(0) == "hello nobody"
    admin = board.admin_ws()
    admin.add(0, PREFIX + "env:list")
    admin.until(lambda m: 0 in admin.state.results)

    board.mutation("env:set", {"name": "WHO", "value": "Ada"})
    user.until(lambda m: user.state.value(0) == "hello Ada")
    admin.until(lambda m: admin.state.value(0) == [{"name": "WHO", "value": "Ada"}])
    board.mutation("env:remove", {"name": "WHO"})
    user.until(lambda m: user.state.value(0) == "hello nobody")
