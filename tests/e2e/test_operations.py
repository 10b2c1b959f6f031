"""Operations end to end: ``/metrics``, the log history and ``--log-format json`` on a real server.

* After real calls (a query, mutations that conflict and retry, an action, an
  HTTP action, a scheduled job, a file upload and download, a subscribed sync
  session), every metric family carries them, on ``--metrics-port`` and on
  ``/metrics`` with the admin key, and ``promtool check metrics`` (Debian's
  ``prometheus`` package; required with CI=true) accepts the exposition.
* A failing call's traceback, with file and line, reaches ``syncline logs``,
  found by its request id, its function and its status, over ``--url`` too.
* ``--log-format json`` writes one parseable record per call to stdout.
* With ``--workers 2`` the metrics and the log history hold the calls served
  by both workers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from harness import require_or_skip
from syncline._devtools import ServerProcess, add_query_message, connect_frame, free_port, launch

from .conftest import MakeProject

pytestmark = pytest.mark.slow

FILES = {
    "ops.py": """
        import os

        from syncline import action, internal, internal_mutation, mutation, query, v


        @query
        def items(ctx):
            return [d["n"] for d in ctx.db.query("items").collect()]


        @mutation(args={"n": v.number()})
        def put(ctx, n):
            return ctx.db.insert("items", {"n": n})


        @mutation
        def bump(ctx):
            # Read, take a while, write: concurrent bumps read the same snapshot and conflict.
            doc = ctx.db.query("counter").first()
            sum(range(200_000))
            if doc is None:
                ctx.db.insert("counter", {"n": 1})
            else:
                ctx.db.patch(doc["_id"], {"n": doc["n"] + 1})


        @mutation(args={"title": v.string()})
        def fail(ctx, title):
            print("about to fail on", title)
            return explode(title)


        def explode(title):
            raise ValueError(f"cannot take {title}")


        @action(args={"x": v.number()})
        async def double(ctx, x):
            return x * 2


        @mutation
        def schedule(ctx):
            ctx.scheduler.run_after(0, internal.ops.job, {})


        @internal_mutation
        def job(ctx):
            ctx.db.insert("items", {"n": -1})


        @mutation
        def upload_url(ctx):
            return ctx.storage.generate_upload_url()


        @mutation
        def where(ctx):
            return float(os.getpid())
    """,
    "http.py": """
        from syncline import HttpResponse, HttpRouter

        http = HttpRouter()


        @http.route(path="/hook", method="GET")
        async def hook(ctx, request):
            return HttpResponse("hooked")
    """,
}


def scrape(url: str, **headers: str) -> dict[str, Any]:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for name in (family, sample.removesuffix("_bucket")):
        if name in families:
            return sum(
                s.value
                for s in families[name].samples
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
            )
    return 0.0


def call(server: ServerProcess, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{server.url}/api/{kind}", json={"path": path, "args": args or {}}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_or_skip("`promtool` is not on PATH: apt-get install prometheus (.ci/run does)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    # Lint findings (exit 3) are style advice; a malformed exposition fails with 1.
    assert checked.returncode in (0, 3), checked.stderr.decode() + checked.stdout.decode()
    assert b"error" not in checked.stderr.lower(), checked.stderr.decode()


def serve(project: Path, *args: str) -> ServerProcess:
    return launch(project, mode="serve", args=args)


# ----------------------------------------------------------------------------- metrics


def test_every_family_counts_real_calls(project: MakeProject) -> None:
    port = free_port()
    server = serve(project(FILES), "--metrics-port", str(port))
    try:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        before = scrape(metrics_url)
        with connect(f"{server.ws_url}", open_timeout=10) as ws:
            ws.send(connect_frame())
            ws.send(json.dumps(add_query_message("ops:items", {}, query_id=0, version=1)))
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "Transition"
            call(server, "mutation", "ops:put", {"n": 1})
            update = json.loads(ws.recv(timeout=10))
            assert update["type"] == "Transition"
            assert update["modifications"][0]["value"] == [1]

            assert call(server, "query", "ops:items")["value"] == [1]
            assert call(server, "action", "ops:double", {"x": 2})["value"] == 4
            assert httpx.get(f"{server.site_url}/hook").text == "hooked"
            call(server, "mutation", "ops:schedule")
            upload = call(server, "mutation", "ops:upload_url")["value"]
            stored = httpx.post(upload, content=b"x" * 1000, headers={"Content-Type": "text/plain"})
            storage_id = stored.json()["storageId"]
            assert httpx.get(f"{server.url}/api/storage/{storage_id}").content == b"x" * 1000

            def conflicted() -> bool:
                threads = [
                    threading.Thread(target=call, args=(server, "mutation", "ops:bump"))
                    for _ in range(12)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                return value(scrape(metrics_url), "syncline_occ_retries_total") > value(
                    before, "syncline_occ_retries_total"
                )

            eventually(conflicted, "a conflict and its retry", timeout=60)
            eventually(
                lambda: (
                    value(
                        scrape(metrics_url),
                        "syncline_scheduled_jobs_total",
                        kind="mutation",
                        outcome="success",
                    )
                    > value(
                        before, "syncline_scheduled_jobs_total", kind="mutation", outcome="success"
                    )
                ),
                "the scheduled job",
            )
            after = scrape(metrics_url)
            text = httpx.get(metrics_url).text

            def grew(sample: str, by: float = 1.0, **labels: str) -> None:
                delta = value(after, sample, **labels) - value(before, sample, **labels)
                assert delta >= by, (sample, labels, delta)

            for kind, function in (
                ("query", "ops:items"),
                ("mutation", "ops:put"),
                ("mutation", "ops:bump"),
                ("action", "ops:double"),
                ("httpAction", "GET /hook"),
                ("mutation", "ops:job"),
            ):
                grew(
                    "syncline_function_calls_total", kind=kind, function=function, status="success"
                )
                grew(
                    "syncline_function_duration_seconds_count",
                    kind=kind,
                    function=function,
                    status="success",
                )
            grew("syncline_occ_conflicts_total")
            grew("syncline_occ_retries_total")
            grew("syncline_commit_batch_size_count")
            grew("syncline_commit_batch_seconds_count")
            grew("syncline_commit_durable_seconds_count")
            grew("syncline_live_query_reruns_per_commit_sum")
            grew("syncline_fanout_latency_seconds_count")
            grew("syncline_scheduler_lag_seconds_count")
            grew("syncline_storage_bytes_total", by=1000, direction="in")
            grew("syncline_storage_bytes_total", by=1000, direction="out")
            # The session is open: the gauges show it.
            assert value(after, "syncline_sync_sessions") == 1
            assert value(after, "syncline_sync_subscriptions") == 1
            assert value(after, "syncline_live_queries") >= 1
            assert "syncline_committer_queue_depth" in after
            assert value(after, "process_resident_memory_bytes") > 1_000_000
            assert value(after, "process_cpu_seconds_total") > 0
            # Labels: function paths, never arguments.
            assert "ops:put" in text and '"n"' not in text

        def closed() -> bool:
            families = scrape(metrics_url)
            return value(families, "syncline_sync_sessions") == 0 and (
                value(families, "syncline_sync_subscriptions") == 0
            )

        eventually(closed, "the session's end")

        # The API port: the same exposition, behind the admin key.
        assert httpx.get(f"{server.url}/metrics").status_code == 403
        assert (
            httpx.get(f"{server.url}/metrics", headers={"Authorization": "Convex no"}).status_code
            == 401
        )
        keyed = scrape(f"{server.url}/metrics", Authorization=f"Convex {server.admin_key}")
        assert value(keyed, "syncline_function_calls_total", function="ops:put") >= 1
        promtool_check(text)
    finally:
        server.stop()


def test_a_metrics_port_in_use_is_one_clear_error(project: MakeProject) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncline",
                "serve",
                "--dir",
                str(project(FILES)),
                "--port",
                str(free_port()),
                "--site-port",
                str(free_port()),
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert proc.returncode == 1
    assert f"Port {port} is not available for metrics" in proc.stderr.decode()


# ----------------------------------------------------------------------------- logs


def syncline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncline", *args], capture_output=True, text=True, timeout=60
    )


def test_a_failing_calls_traceback_reaches_syncline_logs(project: MakeProject) -> None:
    folder = project(FILES)
    server = serve(folder)
    try:
        call(server, "mutation", "ops:put", {"n": 5})
        failed = call(server, "mutation", "ops:fail", {"title": "tea"})
        request_id = re.search(r"Request ID: (\w+)", failed["errorMessage"]).group(1)
        ops_py = folder / "functions" / "ops.py"
        lines = ops_py.read_text().splitlines()
        raise_line = lines.index('    raise ValueError(f"cannot take {title}")') + 1

        def shown(*args: str) -> str:
            result = syncline("logs", "--dir", str(folder), *args)
            assert result.returncode == 0, result.stderr
            return result.stdout

        eventually(lambda: "ops:fail" in shown("--since", "1h"), "the failure in the history")
        output = shown("--request-id", request_id)
        assert "ops:fail" in output and "ValueError: cannot take tea" in output
        assert f'File "{ops_py}", line {raise_line}, in explode' in output
        assert f"[Request ID: {request_id}]" in output and "about to fail on tea" in output
        errors = shown("--status", "error", "--function", "ops:fail")
        assert "ops:put" not in errors and "ops:fail" in errors
        oks = shown("--status", "success", "--function", "ops")
        assert "ops:put" in oks and "ops:fail" not in oks
        # Over --url with the admin key, as JSON lines.
        remote = syncline(
            "logs",
            "--url",
            server.url,
            "--admin-key",
            server.admin_key,
            "--request-id",
            request_id,
            "--jsonl",
        )
        assert remote.returncode == 0, remote.stderr
        [record] = [json.loads(line) for line in remote.stdout.splitlines()]
        assert record["requestId"] == request_id and record["caller"] is None
        assert f"line {raise_line}, in explode" in record["traceback"]
        bad = syncline("logs", "--url", server.url, "--admin-key", server.admin_key, "--since", "x")
        assert bad.returncode == 1 and "since: 'x' is not a duration" in bad.stderr
        assert bad.stderr.rstrip().endswith("(BadLogQuery)")
        assert httpx.get(f"{server.url}/api/admin/log_history").status_code == 403
    finally:
        server.stop()
    # The history outlives the server: read from the file.
    assert "ops:fail" in syncline("logs", "--dir", str(folder), "--limit", "5").stdout


def follow(folder: Path, *args: str) -> subprocess.Popen[str]:
    """``syncline logs --follow --jsonl``, once it says it follows the live stream."""
    command = [sys.executable, "-m", "syncline", "logs", "--dir", str(folder), "--jsonl"]
    follower = subprocess.Popen(
        [*command, "--follow", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert follower.stderr is not None
    while "Following the function calls of http://" not in (line := follower.stderr.readline()):
        assert line, f"syncline logs --follow ended: exit {follower.wait()}"
    return follower


def followed(follower: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    """The first ``count`` records the follower prints; then it is stopped."""
    assert follower.stdout is not None
    try:
        return [json.loads(follower.stdout.readline()) for _ in range(count)]
    finally:
        follower.terminate()
        follower.communicate(timeout=10)


def test_follow_prints_calls_as_they_happen(project: MakeProject) -> None:
    folder = project(FILES)
    server = serve(folder)
    call(server, "mutation", "ops:put", {"n": -1})  # history: not printed without filters
    try:
        follower = follow(folder, "--function", "ops:put", "--limit", "1")
        for n in range(3):
            call(server, "mutation", "ops:put", {"n": n})
            call(server, "query", "ops:items")
        seen = followed(follower, 4)
    finally:
        server.stop()
    assert [r["path"] for r in seen] == ["ops:put"] * 4  # the newest of the history, then 3
    assert [r["timestamp"] for r in seen] == sorted(r["timestamp"] for r in seen)


def test_no_log_history_keeps_none_and_follow_still_shows_calls(project: MakeProject) -> None:
    folder = project(FILES)
    server = serve(folder, "--no-log-history")
    try:
        call(server, "mutation", "ops:put", {"n": 1})
        history = syncline("logs", "--dir", str(folder), "--status", "error")
        assert history.returncode == 1
        assert "keeps no log history" in history.stderr
        follower = follow(folder)
        call(server, "mutation", "ops:put", {"n": 2})
        call(server, "query", "ops:items")
        seen = followed(follower, 2)
        assert not (folder / ".syncline" / "logs.sqlite3").exists()
    finally:
        server.stop()
    assert [r["path"] for r in seen] == ["ops:put", "ops:items"]


def test_log_format_json_writes_one_record_per_call(project: MakeProject) -> None:
    server = serve(project(FILES), "--log-format", "json")
    try:
        call(server, "mutation", "ops:put", {"n": 1})
        call(server, "mutation", "ops:fail", {"title": "x"})
        call(server, "action", "ops:double", {"x": 1})

        def records() -> list[dict[str, Any]]:
            return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]

        eventually(lambda: len(records()) >= 3, "three JSON lines")
    finally:
        server.stop()
    by_path = {r["path"]: r for r in records()}
    fields = {
        "timestamp",
        "path",
        "kind",
        "status",
        "durationMs",
        "requestId",
        "caller",
        "logLines",
        "cached",
        "error",
        "traceback",
    }
    assert all(set(r) == fields for r in by_path.values())
    assert by_path["ops:put"]["status"] == "success" and by_path["ops:put"]["kind"] == "mutation"
    assert by_path["ops:double"]["kind"] == "action"
    failed = by_path["ops:fail"]
    assert failed["status"] == "failure" and "in explode" in failed["traceback"]
    assert failed["logLines"] == ["[LOG] about to fail on x"]


# ----------------------------------------------------------------------------- workers


def test_with_two_workers_metrics_and_logs_count_both(project: MakeProject) -> None:
    port = free_port()
    folder = project(FILES)
    server = serve(folder, "--workers", "2", "--metrics-port", str(port))
    try:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        before = value(scrape(metrics_url), "syncline_function_calls_total", function="ops:where")
        pids: set[float] = set()
        calls = 0
        deadline = time.monotonic() + 60
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            # A fresh connection per call: the kernel hands each to either worker.
            pids.add(call(server, "mutation", "ops:where")["value"])
            calls += 1
        families = scrape(metrics_url)
        assert (
            value(families, "syncline_function_calls_total", function="ops:where") - before == calls
        )
        # Process metrics per worker.
        rss = {s.labels["pid"] for s in families["process_resident_memory_bytes"].samples}
        assert {str(int(pid)) for pid in pids} <= rss
        # The API port's /metrics answers for both workers too, whichever serves it.
        keyed = scrape(f"{server.url}/metrics", Authorization=f"Convex {server.admin_key}")
        assert value(keyed, "syncline_function_calls_total", function="ops:where") - before == calls
        promtool_check(httpx.get(metrics_url).text)

        # Both workers append to the one log history.
        def logged() -> int:
            result = syncline(
                "logs",
                "--dir",
                str(folder),
                "--function",
                "ops:where",
                "--limit",
                "1000",
                "--jsonl",
            )
            return len(result.stdout.splitlines())

        eventually(lambda: logged() == calls, f"{calls} records of ops:where")
    finally:
        server.stop()
