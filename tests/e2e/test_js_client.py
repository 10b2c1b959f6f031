"""The official npm ``convex`` client (1.48.0, pinned in js/package.json) against a real server.

Each scenario is a script in ``tests/e2e/js`` run with ``node``. It gets the
server URL (and a JWT where needed) from the environment, prints one JSON line
``{scenario, ok, checks: {label: {ok, detail?}}, results, error?}`` and exits
0 when every check passed. Install the client with ``npm ci`` in
``tests/e2e/js`` (``.ci/run`` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_node_package

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
SCRIPT_TIMEOUT_S = 40

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def _official_npm_client() -> None:
    """Before the module's server starts: skip without the npm client (fail in CI)."""
    require_node_package(JS_DIR, "convex")


def scenario_env(server: Any, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "SYNCLINE_URL": server.url,
        "SYNCLINE_ADMIN_KEY": server.admin_key,
        **extra,
    }


def parse_result(
    script: str, returncode: int | None, stdout: str, stderr: str, elapsed: float
) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, f"{script} printed nothing (exit {returncode}); stderr:\n{stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    failed = {label: c.get("detail") for label, c in result["checks"].items() if not c["ok"]}
    assert returncode == 0 and result["ok"] and not failed, (
        f"{script} failed after {elapsed:.1f} s (exit {returncode})\n"
        f"error: {result.get('error')}\n"
        f"failed checks: {json.dumps(failed, indent=2)}\n"
        f"stderr:\n{stderr}"
    )
    return result


def run_scenario(script: str, server: Any, **env: str) -> dict[str, Any]:
    assert NODE is not None
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [NODE, script],
            cwd=JS_DIR,
            env=scenario_env(server, env),
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} did not exit within {SCRIPT_TIMEOUT_S} s; stderr:\n{exc.stderr}")
    elapsed = time.monotonic() - started
    return parse_result(script, proc.returncode, proc.stdout, proc.stderr, elapsed)


class SteppedScenario:
    """A scenario the test drives step by step: ``@@phase NAME`` on its stderr, commands on stdin."""

    def __init__(self, script: str, server: Any, **env: str) -> None:
        assert NODE is not None
        self.script = script
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [NODE, script],
            cwd=JS_DIR,
            env=scenario_env(server, env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self.phases: queue.Queue[str] = queue.Queue()
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if line.startswith("@@phase "):
                self.phases.put(line.split(maxsplit=1)[1].strip())

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def wait_phase(self, name: str, timeout: float = 15) -> None:
        try:
            got = self.phases.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail(
                f"{self.script}: no phase {name!r} within {timeout} s; stdout:\n{self.stdout}\n"
                f"stderr:\n{''.join(self.stderr_lines)}"
            )
        assert got == name, f"{self.script}: expected phase {name!r}, got {got!r}"

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """Kill the script if it is still running; close our ends of its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def result(self, timeout: float = SCRIPT_TIMEOUT_S) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        return parse_result(
            self.script,
            self.proc.returncode,
            self.stdout,
            "".join(self.stderr_lines),
            time.monotonic() - self.started,
        )


def test_live_updates_from_other_clients(server: Any) -> None:
    result = run_scenario("live_updates.mjs", server)
    assert result["checks"]["the update arrived within 1 s of the mutation starting"]["ok"]
    assert result["results"]["latencyMs"] < 1000


def test_mutation_resolves_with_its_write_visible(server: Any) -> None:
    result = run_scenario("read_your_writes.mjs", server)
    checks = result["checks"]
    assert all(
        checks[f"after mutation {i}: getCurrentValue() has the write"]["ok"] for i in range(5)
    )
    assert checks["batched mutations ran in the order sent"]["ok"]


def test_set_auth_with_token_fetcher(server: Any, jwt_issuer: Any) -> None:
    token = jwt_issuer.token("js-user", email="js@example.com")
    result = run_scenario("auth.mjs", server, SYNCLINE_TOKEN=token, SYNCLINE_SUBJECT="js-user")
    assert result["results"]["changes"][0] is True
    assert result["results"]["badChanges"][0] is False
    assert result["checks"]["whoami has the token's subject"]["detail"]["email"] == "js@example.com"


def test_http_client(server: Any, jwt_issuer: Any) -> None:
    token = jwt_issuer.token("js-http-user")
    result = run_scenario(
        "http_client.mjs", server, SYNCLINE_TOKEN=token, SYNCLINE_SUBJECT="js-http-user"
    )
    assert result["checks"]["action result"]["detail"] == 42


def test_convex_error_data_on_both_clients(server: Any) -> None:
    result = run_scenario("errors.mjs", server)
    for client in ("ws", "http"):
        query_error = result["results"][client]["q"]
        assert query_error["isConvexError"] is True
        assert query_error["data"]["n"] == {"bigint": "7"}
        assert query_error["data"]["raw"] == {"bytes": "0102"}
        assert "secret-detail" not in result["results"][client]["p"]["message"]


def test_int64_bytes_and_special_floats_round_trip(server: Any) -> None:
    result = run_scenario("values.mjs", server)
    for client in ("ws", "http"):
        stored = result["results"][client]["stored"]
        assert stored["int"] == {"bigint": str(2**62 + 1)}
        assert stored["neg"] == {"bigint": str(-(2**63))}
        assert stored["bytes"] == {"bytes": bytes(range(256)).hex()}
        assert (stored["nan"], stored["inf"], stored["ninf"], stored["nzero"]) == (
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
        )
        assert result["results"][client]["kinds"]["int"] == "Int64"


def test_concurrent_mutations_from_many_clients(server: Any) -> None:
    result = run_scenario("concurrency.mjs", server)
    assert result["checks"]["each increment saw all earlier ones"]["ok"]


def test_paginated_query(server: Any) -> None:
    result = run_scenario("pagination.mjs", server)
    assert result["checks"]["all pages"]["ok"]


def test_reconnect_after_server_restart(project: Any, start_server: Any) -> None:
    """Stop the server under a connected client, queue a mutation, start it again."""
    srv = start_server(project())
    tag = uuid.uuid4().hex[:12]
    scenario = SteppedScenario("reconnect.mjs", srv, SYNCLINE_UNIQUE=tag)
    try:
        scenario.wait_phase("subscribed")
        srv.stop()
        scenario.send("down")
        scenario.wait_phase("queued")
        srv.start()
        srv.wait_ready()
        with httpx.Client(timeout=5) as http:
            response = http.post(
                f"{srv.url}/api/mutation",
                json={"path": "tasks:add", "args": {"title": f"js-after-{tag}"}, "format": "json"},
            )
            assert response.json()["status"] == "success", response.text
        result = scenario.result()
    finally:
        scenario.kill()
    assert result["results"]["connectionCount"] >= 2
    titles = result["results"]["titles"]
    assert titles.count(f"js-during-{tag}") == 1
    assert "newer than this server" not in srv.log()


def test_token_refresh_and_expiry(server: Any, jwt_issuer: Any) -> None:
    """A second token on a live socket; a short-lived token expiring under a subscription."""
    tokens = {
        "a": jwt_issuer.token("refresh-a"),
        "b": jwt_issuer.token("refresh-b"),
        "short": jwt_issuer.token("refresh-s", lifetime_s=3),
        "long": jwt_issuer.token("refresh-s"),
    }
    result = run_scenario("auth_refresh.mjs", server, SYNCLINE_TOKENS=json.dumps(tokens))
    assert result["results"]["shortFetches"][:3] == [False, True, True]
    assert False not in result["results"]["shortChanges"]
    assert '"authUpdateAttempted":false' in server.log()


def test_http_client_consistent_query(server: Any) -> None:
    run_scenario("consistent_query.mjs", server)


def test_a_counter_counts_every_increment_from_clients_spread_over_three_nodes(
    project: Any, start_server: Any, database_url: str
) -> None:
    """Three nodes on one PostgreSQL database, each with npm clients incrementing one counter."""
    nodes = [start_server(project(), args=["--db", database_url]) for _ in range(3)]
    result = run_scenario(
        "nodes_counter.mjs", nodes[0], SYNCLINE_URLS=",".join(node.url for node in nodes)
    )
    assert result["checks"]["each increment saw all earlier ones"]["ok"]
    assert result["checks"]["a subscriber on every node saw the total"]["ok"]
    assert result["results"]["total"] == 90
