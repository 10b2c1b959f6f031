"""``syncline run|data|logs|admin-key`` against a real server process, and the admin endpoints.

One ``python -m syncline serve`` process per module serves :data:`FILES`; the
commands find it through the project's data folder (locked by the server,
``server.json`` names its URL) or are pointed at it with ``--url``. Commands
that stream (``run --watch``, ``logs``) run as subprocesses whose output lines
are read with a timeout.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from click.testing import CliRunner, Result

from syncline._devtools import READY_TIMEOUT_S, ServerProcess, free_port, launch, server_env
from syncline.cli import main

LINE_TIMEOUT_S = 15.0

FILES: dict[str, str] = {
    "tasks.py": """
        from syncline import ConvexError, Int64, action, internal_query, mutation, query, v


        @query
        def list(ctx):
            return ctx.db.query("tasks").order("desc").take(50)


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            print("adding", title)
            if title == "bad":
                raise ConvexError({"why": "bad"})
            return ctx.db.insert("tasks", {"title": title})


        @internal_query
        def count(ctx):
            return Int64(len(ctx.db.query("tasks").collect()))


        @action(args={"x": v.number()})
        async def double(ctx, x):
            return x * 2
    """,
}


def write_project(root: Path, files: Mapping[str, str] = FILES) -> Path:
    for rel, source in files.items():
        path = root / "functions" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return root


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The module's server, once it also recorded its URL in the data folder."""
    proc = launch(write_project(tmp_path_factory.mktemp("served")))
    try:
        record = proc.project / ".syncline" / "server.json"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not record.exists():
            assert time.monotonic() < deadline, f"no {record.name} written:\n{proc.log()}"
            time.sleep(0.05)
        yield proc
    finally:
        proc.stop()


def cli(*args: str) -> Result:
    """``syncline ARGS`` in-process, without SYNCLINE_URL / SYNCLINE_ADMIN_KEY from the outside."""
    return CliRunner().invoke(
        main, list(args), env={"SYNCLINE_URL": None, "SYNCLINE_ADMIN_KEY": None}
    )


class Lines:
    """A subprocess whose stdout and stderr lines are read in background threads."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncline", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(),
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            threading.Thread(target=self._pump, args=(pipe, sink), daemon=True)
            for pipe, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(pipe: IO[str], sink: queue.Queue[str]) -> None:
        for line in pipe:
            sink.put(line.rstrip("\n"))

    def wait_for(self, sink: queue.Queue[str], predicate: Any, what: str) -> str:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {LINE_TIMEOUT_S} s; got {seen!r}")
            try:
                line = sink.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(line)
            if predicate(line):
                return line

    def stop(self) -> None:
        _stop(self.proc)
        for pump in self._pumps:
            pump.join(timeout=5)  # the pipes reach EOF once the process is gone
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def spawn() -> Iterator[Any]:
    started: list[Lines] = []

    def start(*args: str) -> Lines:
        lines = Lines(list(args))
        started.append(lines)
        return lines

    yield start
    for lines in started:
        lines.stop()


# ----------------------------------------------------------------------------- run


def test_run_one_shot_query_mutation_internal_and_action(server: ServerProcess) -> None:
    added = cli("run", "tasks:add", '{"title": "from run"}', "--dir", str(server.project))
    assert added.exit_code == 0, added.output
    task_id = json.loads(added.stdout)
    assert isinstance(task_id, str)
    assert "adding from run" in added.stderr  # the function's log line

    listed = cli("run", "tasks:list", "--dir", str(server.project))
    assert listed.exit_code == 0, listed.output
    assert {"_id": task_id, "title": "from run"}.items() <= json.loads(listed.stdout)[-1].items()

    counted = cli("run", "tasks:count", "--dir", str(server.project))  # internal
    assert counted.exit_code == 0, counted.output
    assert set(json.loads(counted.stdout)) == {"$integer"}

    doubled = cli("run", "tasks:double", '{"x": 21}', "--dir", str(server.project))
    assert doubled.exit_code == 0, doubled.output
    assert json.loads(doubled.stdout) == 42


def test_run_with_url_from_anywhere(server: ServerProcess, tmp_path: Path) -> None:
    ok = cli(
        "run", "tasks:count", "--dir", str(tmp_path), "--url", server.url,
        "--admin-key", server.admin_key,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output

    no_key = cli("run", "tasks:count", "--dir", str(tmp_path), "--url", server.url)
    assert no_key.exit_code == 1
    assert "No admin key" in no_key.stderr and "--admin-key" in no_key.stderr


def test_run_reports_function_errors(server: ServerProcess) -> None:
    failed = cli("run", "tasks:add", '{"title": "bad"}', "--dir", str(server.project))
    assert failed.exit_code == 1
    assert "ConvexError" in failed.stderr
    assert 'errorData: {"why":"bad"}' in failed.stderr

    missing = cli("run", "tasks:nope", "--dir", str(server.project))
    assert missing.exit_code == 1
    assert "Could not find function for 'tasks:nope'" in missing.stderr

    bad_args = cli("run", "tasks:add", '{"title": 1}', "--dir", str(server.project))
    assert bad_args.exit_code == 1
    assert "ArgumentValidationError" in bad_args.stderr

    not_json = cli("run", "tasks:add", "[1]", "--dir", str(server.project))
    assert not_json.exit_code == 2
    assert "ARGS must be a JSON object" in not_json.output


def test_wrong_admin_key_is_a_clear_error(server: ServerProcess) -> None:
    for args in (
        ("run", "tasks:list"),
        ("data",),
        ("data", "tasks"),
        ("logs",),
        ("run", "tasks:list", "--watch"),
    ):
        result = cli(*args, "--dir", str(server.project), "--admin-key", "syncline-admin:nope")
        assert result.exit_code == 1, (args, result.output)
        assert "rejected the admin key" in result.stderr, (args, result.stderr)
        assert "--admin-key" in result.stderr


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("data", "--dir", str(tmp_path), "--url", url, "--admin-key", "k")
    assert result.exit_code == 1
    assert f"Could not reach a Syncline server at {url}" in result.stderr


def test_run_watch_prints_each_new_result(server: ServerProcess, spawn: Any) -> None:
    watcher = spawn("run", "tasks:list", "--watch", "--dir", str(server.project))
    first = watcher.wait_for(watcher.stdout, lambda line: line.startswith("["), "first result")
    assert "watched title" not in first

    added = cli("run", "tasks:add", '{"title": "watched title"}', "--dir", str(server.project))
    assert added.exit_code == 0, added.output
    update = watcher.wait_for(watcher.stdout, lambda line: "watched title" in line, "update")
    assert json.loads(update)[0]["title"] == "watched title"  # newest first


def test_run_watch_needs_a_query(server: ServerProcess) -> None:
    result = cli("run", "tasks:add", '{"title": "x"}', "--watch", "--dir", str(server.project))
    assert result.exit_code == 1
    assert "--watch needs a query; tasks:add is a mutation" in result.stderr


# ----------------------------------------------------------------------------- data


def test_data_lists_tables_and_prints_rows(server: ServerProcess) -> None:
    for title in ("data one", "data two"):
        added = cli("run", "tasks:add", json.dumps({"title": title}), "--dir", str(server.project))
        assert added.exit_code == 0, added.output
    tables = cli("data", "--dir", str(server.project), "--format", "json")
    assert tables.exit_code == 0, tables.output
    counts = {t["name"]: t["documents"] for t in json.loads(tables.stdout)}
    assert counts["tasks"] >= 2

    pretty = cli("data", "--dir", str(server.project))
    assert pretty.exit_code == 0
    assert pretty.stdout.splitlines()[0].split() == ["Table", "Documents"]
    assert any(
        line.split() == ["tasks", str(counts["tasks"])] for line in pretty.stdout.splitlines()
    )

    newest = cli("data", "tasks", "--dir", str(server.project), "--limit", "1")
    assert newest.exit_code == 0, newest.output
    [doc] = json.loads(newest.stdout)
    assert doc["title"] == "data two" and set(doc) == {"_id", "_creationTime", "title"}
    assert "of tasks, newest first" in newest.stderr  # says that more documents exist

    rows = cli("data", "tasks", "--dir", str(server.project), "--order", "asc", "--format", "jsonl")
    assert rows.exit_code == 0
    docs = [json.loads(line) for line in rows.stdout.splitlines()]
    assert len(docs) == counts["tasks"]
    times = [d["_creationTime"] for d in docs]
    assert times == sorted(times)

    missing = cli("data", "nope", "--dir", str(server.project))
    assert missing.exit_code == 1
    assert "There is no table 'nope' (tables: tasks)" in missing.stderr


# ----------------------------------------------------------------------------- logs


def test_logs_streams_function_calls(server: ServerProcess, spawn: Any) -> None:
    follower = spawn("logs", "--dir", str(server.project), "--jsonl")
    follower.wait_for(follower.stderr, lambda line: "Following the function calls" in line, "hello")

    added = cli("run", "tasks:add", '{"title": "logged"}', "--dir", str(server.project))
    assert added.exit_code == 0, added.output
    line = follower.wait_for(follower.stdout, lambda line: "tasks:add" in line, "tasks:add")
    entry = json.loads(line)
    assert entry["kind"] == "mutation" and entry["status"] == "success"
    assert entry["durationMs"] >= 0 and entry["error"] is None
    assert any("adding logged" in log_line for log_line in entry["logLines"])

    cli("run", "tasks:add", '{"title": "bad"}', "--dir", str(server.project))
    line = follower.wait_for(follower.stdout, lambda line: '"failure"' in line, "a failure")
    entry = json.loads(line)
    assert entry["error"].startswith("ConvexError") and entry["requestId"]


def test_logs_human_format(server: ServerProcess, spawn: Any) -> None:
    follower = spawn("logs", "--dir", str(server.project))
    follower.wait_for(follower.stderr, lambda line: "Following the function calls" in line, "hello")
    assert cli("run", "tasks:count", "--dir", str(server.project)).exit_code == 0
    line = follower.wait_for(follower.stdout, lambda line: "tasks:count" in line, "tasks:count")
    assert line.split()[1:3] == ["query", "tasks:count"]
    # `syncline run` calls with the admin key: the caller is shown after the outcome.
    assert line.split()[5:] == ["ok", "(admin)"]


# ----------------------------------------------------------------------------- admin-key


def test_admin_key_prints_the_servers_key(server: ServerProcess) -> None:
    result = cli("admin-key", "--dir", str(server.project))
    assert result.exit_code == 0
    assert result.stdout.strip() == server.admin_key


def test_admin_key_is_created_when_missing(tmp_path: Path) -> None:
    first = cli("admin-key", "--dir", str(tmp_path))
    assert first.exit_code == 0
    key = first.stdout.strip()
    assert key.startswith("syncline-admin:")
    stored = tmp_path / ".syncline" / "admin_key"
    assert stored.read_text().strip() == key
    assert stored.stat().st_mode & 0o077 == 0
    assert cli("admin-key", "--dir", str(tmp_path)).stdout.strip() == key


# ----------------------------------------------------------------------------- no server


def test_run_and_data_without_a_server_use_the_data_folder(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    empty = cli("data", "--dir", str(project))
    assert empty.exit_code == 1
    assert "has no data yet" in empty.stderr

    added = cli("run", "tasks:add", '{"title": "local"}', "--dir", str(project))
    assert added.exit_code == 0, added.output
    assert json.loads(cli("run", "tasks:double", '{"x": 2}', "--dir", str(project)).stdout) == 4
    rows = cli("data", "tasks", "--dir", str(project), "--format", "json")
    assert rows.exit_code == 0, rows.output
    assert [d["title"] for d in json.loads(rows.stdout)] == ["local"]

    logs = cli("logs", "--dir", str(project))
    assert logs.exit_code == 1
    assert "No Syncline server runs on" in logs.stderr and "--url" in logs.stderr

    watch = cli("run", "tasks:list", "--watch", "--dir", str(project))
    assert watch.exit_code == 1
    assert "--watch needs a running server" in watch.stderr


# ----------------------------------------------------------------------------- endpoints


def test_admin_endpoints_require_the_admin_key(server: ServerProcess) -> None:
    for path in ("/api/admin/tables", "/api/admin/data?table=tasks", "/api/admin/functions"):
        anonymous = httpx.get(server.url + path)
        assert anonymous.status_code == 403
        assert anonymous.json()["code"] == "Forbidden"
        wrong = httpx.get(server.url + path, headers={"Authorization": "Convex nope"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "BadAdminKey"
    logs = httpx.get(server.url + "/api/admin/logs")
    assert logs.status_code == 403


def test_admin_endpoints_validate_parameters(server: ServerProcess) -> None:
    headers = {"Authorization": f"Convex {server.admin_key}"}
    for query, status, code in (
        ("table=tasks&limit=0", 400, "BadLimit"),
        ("table=tasks&limit=x", 400, "BadLimit"),
        ("table=tasks&order=up", 400, "BadOrder"),
        ("limit=3", 400, "BadTable"),
        ("table=nope", 404, "TableNotFound"),
    ):
        response = httpx.get(f"{server.url}/api/admin/data?{query}", headers=headers)
        assert response.status_code == status, query
        assert response.json()["code"] == code
    # ?adminKey= works like the header (for EventSource, which cannot set headers).
    listing = httpx.get(f"{server.url}/api/admin/functions", params={"adminKey": server.admin_key})
    assert listing.status_code == 200
    by_path = {f["path"]: f for f in listing.json()["functions"]}
    assert by_path["tasks:count"]["visibility"] == "internal"
    assert by_path["tasks:add"]["args"]["type"] == "object"


def test_logs_endpoint_speaks_server_sent_events(server: ServerProcess) -> None:
    headers = {"Authorization": f"Convex {server.admin_key}", "Accept": "text/event-stream"}
    with httpx.stream("GET", f"{server.url}/api/admin/logs", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == 'data: {"type":"connected"}'
        cli("run", "tasks:count", "--dir", str(server.project))
        for line in lines:
            if line.startswith("data: ") and "tasks:count" in line:
                assert json.loads(line[len("data: ") :])["kind"] == "query"
                break


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["run", "data", "logs", "admin-key", "codegen"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"syncline {command}" in result.output


# ----------------------------------------------------------------------------- units


def test_log_stream_buffers_and_counts_what_it_drops() -> None:
    import asyncio

    from syncline.functions.outcomes import Outcome
    from syncline.functions.registration import FunctionKind
    from syncline.server.admin import LogStream

    class FakeExecutor:
        observers: list[Any]

        def __init__(self) -> None:
            self.observers = []

    async def scenario() -> list[Any]:
        executor = FakeExecutor()
        stream = LogStream(executor, asyncio.get_running_loop(), buffer=2)  # type: ignore[arg-type]
        stream.open()
        assert len(executor.observers) == 1
        for i in range(5):
            outcome = Outcome(f"tasks:f{i}", FunctionKind.QUERY, log_lines=[f"line {i}"])
            executor.observers[0](outcome)
        failed = Outcome("tasks:bad", FunctionKind.MUTATION, error=ValueError("boom"))
        await asyncio.sleep(0)  # deliveries are scheduled on the loop
        got = [await stream.next(1.0) for _ in range(3)]
        executor.observers[0](failed)
        got.append(await stream.next(1.0))
        got.append(await stream.next(0.01))  # nothing left: a timeout
        stream.close()
        stream.close()
        assert executor.observers == []
        return got

    first, second, dropped, failure, idle = asyncio.run(scenario())
    assert (first["path"], first["logLines"], first["status"]) == (
        "tasks:f0",
        ["line 0"],
        "success",
    )
    assert second["path"] == "tasks:f1"
    assert dropped == {"type": "dropped", "count": 3}
    assert failure["status"] == "failure" and failure["error"] == "ValueError: boom"
    assert failure["kind"] == "mutation" and failure["requestId"]
    assert idle is None


def test_format_log_entry() -> None:
    from syncline.commands.logs import format_log_entry

    ok = {
        "type": "call",
        "timestamp": 0,
        "path": "tasks:list",
        "kind": "query",
        "durationMs": 1.25,
        "status": "success",
        "error": None,
        "logLines": ["[LOG] hello"],
    }
    summary, log_line = (click_unstyle(line) for line in format_log_entry(ok))
    assert summary.split()[1:] == ["query", "tasks:list", "1.2", "ms", "ok"]
    assert log_line == "    [LOG] hello"
    failed = {**ok, "status": "failure", "error": "ValueError: boom", "logLines": []}
    [line] = format_log_entry(failed)
    assert click_unstyle(line).endswith("ms  ValueError: boom")
    traced = {
        **failed,
        "requestId": "0123abcd",
        "traceback": 'Traceback (most recent call last):\n  File "tasks.py", line 7, in add\n'
        "ValueError: boom",
    }
    lines = [click_unstyle(line) for line in format_log_entry(traced)]
    assert lines[1] == "    [Request ID: 0123abcd]"
    assert '      File "tasks.py", line 7, in add' in lines


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)
