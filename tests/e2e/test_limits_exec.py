"""Execution limits on a real ``syncline serve``: runaway functions, blocking actions, memory.

* Runaway queries (more than there are read threads) and a runaway mutation
  time out with ``FunctionTimeout``, and other calls are answered within 2 s.
* SIGTERM stops the server promptly while a runaway call is running.
* An action blocking in ``time.sleep`` does not delay ``/version``.
* A query crossing ``--max-memory`` fails with ``MemoryLimitExceeded``; the
  server goes on.
* A failing call is traceable: the request id the client sees names the
  server log's entry, with the function's file and line.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.conftest import ServerProcess

pytestmark = pytest.mark.slow

FILES = {
    "runaway.py": """
import time

from syncline import action, mutation, query, v


@query
def spin(ctx):
    while True:
        pass


@mutation
def spin_write(ctx):
    ctx.db.insert("items", {"n": 0})
    while True:
        pass


@query
def count(ctx):
    return len(ctx.db.query("items").collect())


@mutation
def add(ctx):
    ctx.db.insert("items", {"n": 1})
    return "added"


@action
async def block(ctx, seconds: float):
    time.sleep(seconds)
    return "woke"


@query(args={"mib": v.number()})
def hog(ctx, mib):
    chunks = []
    for _ in range(int(mib)):
        chunks.append(bytearray(1024 * 1024))
    return len(chunks)


@mutation
def broken(ctx):
    raise ValueError("the broken mutation")
""",
}


class LimitedServer(ServerProcess):
    """A server started with extra command-line flags."""

    def __init__(self, project: Path, *flags: str) -> None:
        super().__init__(project, mode="serve")
        self.flags = list(flags)

    @property
    def command(self) -> list[str]:
        return [*super().command, *self.flags]


@pytest.fixture
def limited(project: Callable[..., Path]) -> Iterator[Callable[..., LimitedServer]]:
    started: list[LimitedServer] = []

    def start(*flags: str) -> LimitedServer:
        server = LimitedServer(project(FILES, auth=False), *flags)
        started.append(server)
        server.start()
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def call(http: httpx.Client, url: str, kind: str, path: str, args: Any = None) -> dict[str, Any]:
    response = http.post(
        f"{url}/api/{kind}", json={"path": path, "args": args or {}, "format": "json"}
    )
    body: dict[str, Any] = response.json()
    return body


def test_runaway_queries_and_mutation_time_out_and_others_are_served(
    limited: Callable[..., LimitedServer],
) -> None:
    server = limited("--function-timeout", "0.5")
    with (
        httpx.Client(timeout=30) as http,
        concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool,
    ):
        runaways = [
            pool.submit(call, http, server.url, "query", "runaway:spin") for _ in range(6)
        ] + [pool.submit(call, http, server.url, "mutation", "runaway:spin_write")]
        time.sleep(0.2)  # every read thread and the writer are now looping
        started = time.monotonic()
        assert call(http, server.url, "mutation", "runaway:add")["value"] == "added"
        assert call(http, server.url, "query", "runaway:count")["value"] == 1
        served_after = time.monotonic() - started
        results = [f.result(timeout=30) for f in runaways]
    assert served_after < 2.0, served_after
    for body in results:
        assert body["status"] == "error", body
        assert "timed out" in body["errorMessage"] and "0.5 s" in body["errorMessage"], body
    # The timed-out mutation wrote nothing: only runaway:add's document exists.
    with httpx.Client(timeout=10) as http:
        assert call(http, server.url, "query", "runaway:count")["value"] == 1


def test_sigterm_stops_the_server_during_a_runaway_call(
    limited: Callable[..., LimitedServer],
) -> None:
    server = limited("--function-timeout", "30")
    with (
        httpx.Client(timeout=30) as http,
        concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool,
    ):
        pending = [
            pool.submit(call, http, server.url, "query", "runaway:spin"),
            pool.submit(call, http, server.url, "mutation", "runaway:spin_write"),
        ]
        time.sleep(0.3)
        started = time.monotonic()
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(15)
        stopped_after = time.monotonic() - started
        # The calls in flight were cut off (an error response or a closed connection).
        concurrent.futures.wait(pending, timeout=10)
    assert stopped_after < 8.0, stopped_after


def test_a_blocking_action_does_not_delay_the_server(
    limited: Callable[..., LimitedServer],
) -> None:
    server = limited()
    with (
        httpx.Client(timeout=30) as http,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
    ):
        action = pool.submit(call, http, server.url, "action", "runaway:block", {"seconds": 2})
        time.sleep(0.3)  # the action now sleeps on its loop
        started = time.monotonic()
        assert http.get(f"{server.url}/version").status_code == 200
        version_after = time.monotonic() - started
        assert call(http, server.url, "query", "runaway:count")["status"] == "success"
        served_after = time.monotonic() - started
        assert not action.done()
        assert action.result(timeout=30)["value"] == "woke"
    assert version_after < 0.5, version_after
    assert served_after < 0.5, served_after


def test_a_query_crossing_the_memory_ceiling_fails_alone(
    limited: Callable[..., LimitedServer],
) -> None:
    server = limited("--max-memory", "400MiB", "--function-timeout", "30")
    with httpx.Client(timeout=60) as http:
        body = call(http, server.url, "query", "runaway:hog", {"mib": 2048})
        assert body["status"] == "error", body
        assert "MemoryLimitExceeded" in server.log() or "memory" in body["errorMessage"]
        assert "400 MiB" in body["errorMessage"], body
        assert call(http, server.url, "mutation", "runaway:add")["value"] == "added"
        assert call(http, server.url, "query", "runaway:hog", {"mib": 10})["value"] == 10


def test_a_failing_call_is_in_the_server_log_under_the_request_id_the_client_saw(
    limited: Callable[..., LimitedServer],
) -> None:
    server = limited()
    with httpx.Client(timeout=30) as http:
        body = call(http, server.url, "mutation", "runaway:broken")
    assert body["status"] == "error"
    match = re.fullmatch(r"\[Request ID: ([0-9a-f]+)\] Server Error", body["errorMessage"])
    assert match, body  # production: the details stay on the server
    request_id = match.group(1)
    deadline = time.monotonic() + 5
    while f"[Request ID: {request_id}]" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    entry = server.log().split(f"[Request ID: {request_id}]", 1)[1]
    assert "mutation runaway:broken failed" in entry
    assert re.search(r'runaway\.py", line \d+, in broken', entry), entry
    assert "ValueError: the broken mutation" in entry
