"""Multi-row INSERTs: every row, in order, in few statements of a few fixed sizes."""

from __future__ import annotations

import sqlite3

import pytest

from syncline.persistence.sqlite_rows import RowsInsert, multi_row


def test_multi_row_writes_one_group_of_parameters_per_row() -> None:
    assert (
        multi_row("INSERT INTO t (a, b)", 2, 3)
        == "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)"
    )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 9, 32, 33, 75])
def test_rows_go_in_order_in_few_statements(n: int) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER, b TEXT)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows = [(i, f"row {i}") for i in range(n)]
    RowsInsert("INSERT INTO t (a, b)", 2).run(conn, rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT id, a, b FROM t ORDER BY id").fetchall() == [
        (i + 1, i, f"row {i}") for i in range(n)
    ]
    sizes = [s.count("'row ") for s in statements]  # traced with the values bound
    assert sum(sizes) == n
    assert set(sizes) <= set(RowsInsert.SIZES)
    assert len(statements) <= n // 32 + 3 + 1  # the rest: at most 3 of 8, 3 of 2, 1 of 1


def test_a_failing_row_stops_the_insert_there() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    with pytest.raises(sqlite3.IntegrityError):
        RowsInsert("INSERT INTO t (a)", 1).run(conn, [(1,), (2,), (2,)])
