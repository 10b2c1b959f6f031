"""Call records, the writer that takes them off the hot path, and the query parameters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import write_functions
from syncline import metrics
from syncline.call_log.query import MAX_FILTER_CHARS, MAX_LIMIT, BadLogQuery, parse_log_query
from syncline.call_log.records import call_record, caller_name, parse_duration_ms
from syncline.call_log.store import LogStore, query_log, store_path
from syncline.call_log.writer import CallLog
from syncline.functions.outcomes import Outcome
from syncline.functions.registration import FunctionKind
from syncline.identity import ANONYMOUS, SYSTEM, Admin, User, UserIdentity
from syncline.testing import TestBackend

FILES = {
    "tasks.py": """
        from syncline import mutation, query, v


        @query
        def hello(ctx):
            print("hello from a query")
            return "hi"


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            print("adding", title)
            return check(title)


        def check(title):
            if title == "bad":
                raise ValueError("a bad title")
            return title
    """,
}


class Lines:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append(line)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[TestBackend]:
    functions = write_functions(tmp_path / "functions", FILES)
    with TestBackend(functions, data_dir=tmp_path / "data") as backend:
        yield backend


def attach(backend: TestBackend, tmp_path: Path, **options: Any) -> tuple[CallLog, Lines]:
    lines = Lines()
    store = LogStore(store_path(tmp_path), max_bytes=1 << 20, max_age_ms=60_000.0)
    log = CallLog(now_ms=backend.clock.now_ms, store=store, json_lines=lines, **options)
    backend.app.executor.observers.append(log.observe)
    return log, lines


def test_every_call_is_recorded_with_a_traceback_for_failures(
    backend: TestBackend, tmp_path: Path
) -> None:
    log, lines = attach(backend, tmp_path)
    assert backend.query("tasks:hello") == "hi"
    outcome = backend.app.executor.mutation_sync("tasks:add", {"title": "bad"})
    assert outcome.error is not None
    missing = backend.app.executor.query_sync("tasks:nope", {})
    assert log.flush() == 3
    records, last = query_log(store_path(tmp_path), parse_log_query({}, now_ms=0))
    assert last == 3
    hello, failed, unknown = records
    assert (hello["path"], hello["kind"], hello["status"]) == ("tasks:hello", "query", "success")
    assert hello["logLines"] == ["[LOG] hello from a query"]
    assert hello["traceback"] is None and hello["error"] is None
    assert hello["timestamp"] == backend.clock.now_ms()
    assert failed["status"] == "failure" and failed["error"] == "ValueError: a bad title"
    # The id the caller's error message shows, and where in user code it failed.
    assert failed["requestId"] == outcome.request_id
    tasks_py = backend.app.functions_dir / "tasks.py"
    source = tasks_py.read_text().splitlines()
    call_line = source.index("    return check(title)") + 1
    raise_line = source.index('        raise ValueError("a bad title")') + 1
    assert f'File "{tasks_py}", line {call_line}, in add' in failed["traceback"]
    assert f'File "{tasks_py}", line {raise_line}, in check' in failed["traceback"]
    assert "site-packages" not in failed["traceback"]
    assert "syncline/functions" not in failed["traceback"]
    assert failed["logLines"] == ["[LOG] adding bad"]
    # A caller's mistake needs no traceback.
    assert unknown["requestId"] == missing.request_id and unknown["traceback"] is None
    # --log-format json: the same records, one JSON line each.
    json_records = [orjson.loads(line) for line in lines.lines]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines.lines)
    assert json_records == [{k: v for k, v in r.items() if k != "id"} for r in records]
    log.close()


def test_the_thread_writes_batches_and_close_writes_the_rest(
    backend: TestBackend, tmp_path: Path
) -> None:
    log, lines = attach(backend, tmp_path, flush_interval_s=30.0)
    log.start()
    for _ in range(5):
        backend.query("tasks:hello")
    assert lines.lines == []  # not on the calling thread
    log.close()
    assert len(lines.lines) == 5
    records, _last = query_log(store_path(tmp_path), parse_log_query({}, now_ms=0))
    assert len(records) == 5


def test_a_full_queue_drops_and_counts(backend: TestBackend, tmp_path: Path) -> None:
    dropped = metrics.REGISTRY.get_sample_value("syncline_log_records_dropped_total") or 0.0
    log, _lines = attach(backend, tmp_path, max_pending=3)
    for _ in range(5):
        backend.query("tasks:hello")
    assert log.flush() == 3
    assert metrics.REGISTRY.get_sample_value("syncline_log_records_dropped_total") == dropped + 2
    log.close()


def test_callers_are_named_without_tokens() -> None:
    user = UserIdentity.from_attributes({"issuer": "https://issuer.test", "subject": "u1"})
    assert caller_name(ANONYMOUS) is None
    assert caller_name(User(user, None, "secret-token")) == "u1"
    assert caller_name(Admin()) == "admin"
    assert caller_name(Admin(acting_as=user)) == "admin as u1"
    assert caller_name(SYSTEM) == "system"
    record = call_record(
        Outcome("tasks:add", FunctionKind.MUTATION, caller=User(user, None, "secret-token")),
        timestamp_ms=1.0,
    )
    assert "secret-token" not in orjson.dumps(record).decode()


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("250ms", 250.0),
        ("90s", 90_000.0),
        ("90", 90_000.0),
        ("15m", 900_000.0),
        ("1h", 3_600_000.0),
        ("1.5d", 129_600_000.0),
    ],
)
def test_durations(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"status": "error"}, "status must be one of success, failure"),
        ({"limit": "0"}, f"between 1 and {MAX_LIMIT}"),
        ({"limit": str(MAX_LIMIT + 1)}, f"between 1 and {MAX_LIMIT}"),
        ({"limit": "x"}, f"between 1 and {MAX_LIMIT}"),
        ({"since": "yesterday"}, "since: 'yesterday' is not a duration"),
        ({"after": "-1"}, "after must be a record id"),
        ({"function": "f" * (MAX_FILTER_CHARS + 1)}, f"at most {MAX_FILTER_CHARS} characters"),
        ({"requestId": "r" * (MAX_FILTER_CHARS + 1)}, f"at most {MAX_FILTER_CHARS} characters"),
    ],
)
def test_bad_query_parameters_are_refused(params: dict[str, str], needle: str) -> None:
    with pytest.raises(BadLogQuery, match=needle) as caught:
        parse_log_query(params, now_ms=0)
    assert caught.value.code == "BadLogQuery" and caught.value.http_status == 400


def test_query_parameters() -> None:
    query = parse_log_query(
        {"since": "1h", "function": "tasks:add", "status": "failure", "after": "7", "limit": "5"},
        now_ms=10_000_000.0,
    )
    assert query.since_ms == 10_000_000.0 - 3_600_000.0
    assert (query.function, query.status, query.after_id, query.limit) == (
        "tasks:add",
        "failure",
        7,
        5,
    )
    assert parse_log_query({"function": "f" * MAX_FILTER_CHARS}, now_ms=0).function
