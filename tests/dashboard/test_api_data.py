"""``_system/dashboard/data:*``: tables, schema, pages over indexes, and writes that the
schema checks (a refused write changes nothing)."""

from __future__ import annotations

from typing import Any

from dashboard.conftest import PREFIX, Board
from syncline.dashboard.data import MAX_CLEAR_BATCH, MAX_PAGE_ITEMS, MAX_REMOVE_IDS

FIRST = {"numItems": 10, "cursor": None}


def seed(board: Board, n: int) -> None:
    body = board.server.client.post(
        "/api/mutation",
        json={"path": "tasks:seed", "args": {"n": n}},
        headers={"Authorization": "Convex test-admin-key"},
    ).json()
    assert body["status"] == "success", body


def count(board: Board, table: str = "tasks") -> float:
    (row,) = [t for t in board.query("data:tables") if t["name"] == table]
    return float(row["count"])


def test_tables_lists_schema_tables_with_counts_and_new_tables(board: Board) -> None:
    assert board.query("data:tables") == [
        {"name": "empty", "count": 0, "hasSchema": True},
        {"name": "tasks", "count": 0, "hasSchema": True},
    ]
    seed(board, 3)
    board.mutation("data:insert", {"table": "notes", "document": {"text": "free form"}})
    assert board.query("data:tables") == [
        {"name": "empty", "count": 0, "hasSchema": True},
        {"name": "notes", "count": 1, "hasSchema": False},
        {"name": "tasks", "count": 3, "hasSchema": True},
    ]


def test_tables_is_live_for_a_table_created_later(board: Board) -> None:
    ws = board.admin_ws()
    ws.add(0, PREFIX + "data:tables")
    ws.until(lambda m: 0 in ws.state.results)
    assert [t["name"] for t in ws.state.value(0)] == ["empty", "tasks"]
    board.mutation("data:insert", {"table": "notes", "document": {"text": "x"}})
    ws.until(lambda m: len(ws.state.value(0)) == 3)
    assert ws.state.value(0)[1] == {"name": "notes", "count": 1, "hasSchema": False}


def test_schema_describes_tables_and_indexes(board: Board) -> None:
    schema = board.query("data:schema")
    assert schema["schemaValidation"] is True
    tasks = next(t for t in schema["tables"] if t["name"] == "tasks")
    assert tasks["indexes"] == [{"name": "by_done_rank", "fields": ["done", "rank"]}]
    assert tasks["searchIndexes"] == [] and tasks["vectorIndexes"] == []
    assert tasks["document"]["type"] == "object"
    assert tasks["document"]["value"]["title"] == {
        "fieldType": {"type": "string"},
        "optional": False,
    }


def page(board: Board, **args: Any) -> dict[str, Any]:
    result: dict[str, Any] = board.query(
        "data:page", {"table": "tasks", "paginationOpts": FIRST, **args}
    )
    return result


def every_page(board: Board, size: int, **args: Any) -> list[dict[str, Any]]:
    """The documents of every page of ``size``, following the cursors to the end."""
    documents: list[dict[str, Any]] = []
    cursor = None
    while True:
        result = page(board, paginationOpts={"numItems": size, "cursor": cursor}, **args)
        documents += result["page"]
        if result["isDone"]:
            return documents
        cursor = result["continueCursor"]


def test_page_defaults_to_newest_first_and_pages_to_the_end(board: Board) -> None:
    seed(board, 25)
    titles = [d["title"] for d in every_page(board, 10)]
    assert titles == [f"t{i}" for i in reversed(range(25))]


def test_page_over_an_index_with_equality_a_range_and_filters(board: Board) -> None:
    seed(board, 40)
    board.mutation(
        "data:insert",
        {
            "table": "tasks",
            "document": {"title": "owned", "done": True, "rank": 7.5, "meta": {"owner": "ada"}},
        },
    )
    result = page(
        board,
        index="by_done_rank",
        order="asc",
        eq=[["done", True]],
        lower={"value": 10, "inclusive": True},
        upper={"value": 20, "inclusive": False},
    )
    assert [d["rank"] for d in result["page"]] == [10, 12, 14, 16, 18]
    assert result["isDone"] is True
    # Pages of 2 along the same range, to its end.
    ranks = [
        d["rank"]
        for d in every_page(
            board,
            2,
            index="by_done_rank",
            order="desc",
            eq=[["done", True]],
            lower={"value": 10, "inclusive": False},
        )
    ]
    assert ranks == [38, 36, 34, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12]
    # A filter on a nested field, on any index.
    owned = page(board, filters=[["meta.owner", "ada"]])
    assert [d["title"] for d in owned["page"]] == ["owned"]
    both = page(board, index="by_done_rank", eq=[["done", False]], filters=[["rank", 3]])
    assert [d["title"] for d in both["page"]] == ["t3"]


def test_page_refuses_bad_indexes_fields_and_sizes(board: Board) -> None:
    bad = [
        {"index": "by_nothing"},
        {"index": "by_done_rank", "eq": [["rank", 1]]},
        {"index": "by_done_rank", "eq": [["done", True], ["rank", 1], ["x", 2]]},
        {"eq": [["done"]]},
        {"paginationOpts": {"numItems": 0, "cursor": None}},
        {"paginationOpts": {"numItems": MAX_PAGE_ITEMS + 1, "cursor": None}},
        {"paginationOpts": {"numItems": 10, "cursor": "not a cursor"}},
    ]
    for args in bad:
        error = board.error(
            "query", "data:page", {"table": "tasks", "paginationOpts": FIRST, **args}
        )
        assert error["code"] == "BadQuery", (args, error)
        assert error["message"]
    missing = board.error("query", "data:page", {"table": "nope", "paginationOpts": FIRST})
    assert missing["code"] == "TableNotFound"


def test_page_is_live(board: Board) -> None:
    ws = board.admin_ws()
    ws.add(0, PREFIX + "data:page", {"table": "tasks", "paginationOpts": FIRST})
    ws.until(lambda m: 0 in ws.state.results)
    assert ws.state.value(0)["page"] == []
    board.mutation(
        "data:insert", {"table": "tasks", "document": {"title": "new", "done": False, "rank": 1}}
    )
    ws.until(lambda m: len(ws.state.value(0)["page"]) == 1)
    assert ws.state.value(0)["page"][0]["title"] == "new"


def test_get_returns_the_document_and_its_table(board: Board) -> None:
    doc_id = board.mutation(
        "data:insert", {"table": "tasks", "document": {"title": "a", "done": False, "rank": 1}}
    )
    found = board.query("data:get", {"id": doc_id})
    assert found["table"] == "tasks"
    assert found["document"]["_id"] == doc_id and found["document"]["title"] == "a"
    board.mutation("data:remove", {"ids": [doc_id]})
    assert board.query("data:get", {"id": doc_id}) is None


def test_insert_that_violates_the_schema_writes_nothing(board: Board) -> None:
    error = board.error(
        "mutation",
        "data:insert",
        {"table": "tasks", "document": {"title": 3, "done": False, "rank": 1}},
    )
    assert error["code"] == "SchemaValidationError"
    assert ".title" in error["message"] and "v.string()" in error["message"]
    assert count(board) == 0
    system = board.error("mutation", "data:insert", {"table": "_storage", "document": {}})
    assert system["code"] == "BadArgument"


def test_replace_keeps_system_fields_and_refuses_a_bad_document(board: Board) -> None:
    doc_id = board.mutation(
        "data:insert", {"table": "tasks", "document": {"title": "a", "done": False, "rank": 1}}
    )
    before = board.query("data:get", {"id": doc_id})["document"]
    edited = {**before, "title": "b", "_creationTime": 1.0}
    assert board.mutation("data:replace", {"id": doc_id, "document": edited}) is None
    after = board.query("data:get", {"id": doc_id})["document"]
    assert after == {**before, "title": "b"}
    error = board.error(
        "mutation", "data:replace", {"id": doc_id, "document": {"title": "c", "done": "no"}}
    )
    assert error["code"] == "SchemaValidationError"
    assert board.query("data:get", {"id": doc_id})["document"] == after


def test_remove_deletes_the_given_ids_and_bounds_them(board: Board) -> None:
    seed(board, 5)
    ids = [d["_id"] for d in page(board)["page"]]
    assert board.mutation("data:remove", {"ids": [*ids[:2], ids[0]]}) == 2
    assert board.mutation("data:remove", {"ids": ids[:2]}) == 0
    assert count(board) == 3
    error = board.error("mutation", "data:remove", {"ids": [ids[2]] * (MAX_REMOVE_IDS + 1)})
    assert error["code"] == "BadArgument"
    assert count(board) == 3


def test_clear_deletes_in_batches_until_done(board: Board) -> None:
    seed(board, 2 * MAX_CLEAR_BATCH + 5)
    calls = []
    while True:
        result = board.mutation("data:clear", {"table": "tasks"})
        calls.append(result)
        if result["done"]:
            break
    assert calls == [
        {"deleted": MAX_CLEAR_BATCH, "done": False},
        {"deleted": MAX_CLEAR_BATCH, "done": False},
        {"deleted": 5, "done": True},
    ]
    assert count(board) == 0
    assert board.mutation("data:clear", {"table": "tasks"}) == {"deleted": 0, "done": True}
