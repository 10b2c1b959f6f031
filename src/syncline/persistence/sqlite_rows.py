"""Many rows in few SQLite statements: multi-row ``INSERT ... VALUES (...), (...)``.

``executemany`` steps SQLite once per row, and each step lets go of the GIL:
on a busy server the event loop takes it every time, and the writing thread
waits to get it back. One statement for many rows steps once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any


def multi_row(head: str, columns: int, rows: int) -> str:
    """``head VALUES (?, ...), ...``: ``rows`` groups of ``columns`` parameters."""
    one = "(" + ", ".join("?" * columns) + ")"
    return head + " VALUES " + ", ".join([one] * rows)


class RowsInsert:
    """One INSERT, written for 32, 8, 2 and 1 rows: any number of rows in a few statements.

    A few fixed sizes keep every form in the connection's statement cache;
    32 rows of up to 31 columns stay under SQLite's parameter limit.
    """

    SIZES = (32, 8, 2, 1)

    def __init__(self, head: str, columns: int) -> None:
        self._sql = [(n, multi_row(head, columns, n)) for n in self.SIZES]

    def run(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` in order (as ``executemany`` would)."""
        start, total = 0, len(rows)
        for n, sql in self._sql:
            while total - start >= n:
                conn.execute(sql, [v for row in rows[start : start + n] for v in row])
                start += n
