"""The log history's file: filters, order, following, and retention by age and by size."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.call_log.query import LogQuery
from syncline.call_log.store import MIN_MAX_BYTES, LogStore, query_log, store_path

DAY_MS = 86_400_000.0


def record(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": 1_000_000.0 + i,
        "path": "tasks:add",
        "kind": "mutation",
        "status": "success",
        "durationMs": 1.0,
        "requestId": f"req{i:04d}",
        "caller": None,
        "logLines": [],
        "error": None,
        "traceback": None,
        **fields,
    }


def open_store(tmp_path: Path, **options: Any) -> LogStore:
    return LogStore(
        store_path(tmp_path),
        max_bytes=options.get("max_bytes", 64 * 1024 * 1024),
        max_age_ms=options.get("max_age_ms", 7 * DAY_MS),
    )


def paths_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["path"] for r in records]


def test_filters_select_and_the_newest_come_in_written_order(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.append(
        [
            record(0, path="tasks:add"),
            record(1, path="tasks:list", kind="query"),
            record(2, path="tasks:add", status="failure", error="ValueError: boom"),
            record(3, path="users:get", kind="query"),
            record(4, path="tasks:add"),
        ]
    )
    path = store_path(tmp_path)

    def ids(**query: Any) -> list[str]:
        records, _last = query_log(path, LogQuery(**query))
        return [r["requestId"] for r in records]

    assert ids() == ["req0000", "req0001", "req0002", "req0003", "req0004"]
    assert ids(limit=2) == ["req0003", "req0004"]  # the newest two, oldest first
    assert ids(function="tasks:add") == ["req0000", "req0002", "req0004"]
    assert ids(function="tasks") == ["req0000", "req0001", "req0002", "req0004"]
    assert ids(function="task") == []  # a module name matches whole modules only
    assert ids(status="failure") == ["req0002"]
    assert ids(request_id="req0003") == ["req0003"]
    assert ids(since_ms=1_000_003.0) == ["req0003", "req0004"]
    assert ids(function="tasks:add", status="success", since_ms=1_000_001.0) == ["req0004"]
    records, last = query_log(path, LogQuery(after_id=2, limit=2))
    assert [r["id"] for r in records] == [3, 4] and last == 5
    assert records[1]["path"] == "users:get" and records[1]["kind"] == "query"
    store.close()


def test_a_missing_file_holds_no_records(tmp_path: Path) -> None:
    assert query_log(tmp_path / "nope.sqlite3", LogQuery()) == ([], 0)


def test_records_older_than_the_retention_go(tmp_path: Path) -> None:
    store = open_store(tmp_path, max_age_ms=DAY_MS)
    store.append([record(0, timestamp=0.0), record(1, timestamp=DAY_MS / 2)])
    store.append([record(2, timestamp=DAY_MS + 10)])
    assert store.prune(now_ms=DAY_MS + 20) == 1  # only the one older than a day
    records, last = query_log(store.path, LogQuery())
    assert [r["requestId"] for r in records] == ["req0001", "req0002"]
    assert last == 3
    assert store.prune(now_ms=3 * DAY_MS) == 2
    assert query_log(store.path, LogQuery()) == ([], 3)  # ids are never reused
    store.close()


def test_the_file_stays_under_its_size_bound_and_keeps_the_newest(tmp_path: Path) -> None:
    bound = 256 * 1024
    store = open_store(tmp_path, max_bytes=bound)
    line = "x" * 500
    written = 0
    for batch in range(40):
        store.append([record(batch * 50 + i, logLines=[line]) for i in range(50)])
        written += 50
        store.prune(now_ms=1_000_000.0 + written)
        # Between two prunes it grows by one batch (about 30 KiB) at most.
        assert store.used_bytes() <= bound
    size = os.path.getsize(store.path)
    assert size <= bound + 64 * 1024, size  # freed pages went back to the file system
    records, last = query_log(store.path, LogQuery(limit=1000))
    assert last == written
    assert records[-1]["requestId"] == f"req{written - 1:04d}"  # the newest are kept
    assert 100 < len(records) < written  # the oldest went
    ids = [r["id"] for r in records]
    assert ids == list(range(ids[0], written + 1))  # exactly the oldest went
    store.close()


def test_bounds_below_the_minimum_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        open_store(tmp_path, max_bytes=MIN_MAX_BYTES - 1)
    with pytest.raises(ValueError, match="positive"):
        open_store(tmp_path, max_age_ms=0)


def test_the_file_is_not_the_application_database(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.append([record(0)])
    tables = {
        row[0]
        for row in sqlite3.connect(store.path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert tables == {"calls", "sqlite_sequence"}
    store.close()


PATHS = ["a:f", "a:g", "b:f", "ab:f"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(PATHS),
            st.sampled_from(["success", "failure"]),
            st.integers(0, 50),
        ),
        max_size=30,
    ),
    function=st.none() | st.sampled_from([*PATHS, "a", "b", "ab"]),
    status=st.none() | st.sampled_from(["success", "failure"]),
    since=st.none() | st.integers(0, 50),
    after=st.none() | st.integers(0, 30),
    limit=st.integers(1, 10),
)
def test_queries_match_a_plain_filter(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str, int]],
    function: str | None,
    status: str | None,
    since: int | None,
    after: int | None,
    limit: int,
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    store = open_store(folder)
    if rows:
        store.append(
            [
                record(i, path=path, status=st_, timestamp=float(ts))
                for i, (path, st_, ts) in enumerate(rows)
            ]
        )
    query = LogQuery(
        since_ms=None if since is None else float(since),
        function=function,
        status=status,
        after_id=after,
        limit=limit,
    )
    got, last = query_log(store.path, query)
    store.close()

    def matches(row_id: int, path: str, st_: str, ts: int) -> bool:
        if function is not None and (
            path != function if ":" in function else path.split(":")[0] != function
        ):
            return False
        return (
            (status is None or st_ == status)
            and (since is None or ts >= since)
            and (after is None or row_id > after)
        )

    expected = [i + 1 for i, row in enumerate(rows) if matches(i + 1, *row)]
    expected = expected[:limit] if after is not None else expected[-limit:]
    assert [r["id"] for r in got] == expected
    assert last == len(rows)
