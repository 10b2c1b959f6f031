"""The official npm ``convex`` client (1.48.0, pinned in js/package.json) against a real server.

Each scenario is a script in ``tests/e2e/js`` run with ``node``. It gets the
server URL (and a JWT where needed) from the environment, prints one JSON line
``{scenario, ok, checks: {label: {ok, detail?}}, results, error?}`` and exits
0 when every check passed. Install the client with ``npm ci`` in
``tests/e2e/js`` (``.ci/run`` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
SCRIPT_TIMEOUT_S = 40

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NODE is None, reason="`node` is not on PATH (Node 18+ is needed)"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "convex" / "package.json").is_file(),
        reason="npm convex client not installed: run `npm ci` in tests/e2e/js (.ci/run does)",
    ),
]


def run_scenario(script: str, server: Any, **env: str) -> dict[str, Any]:
    assert NODE is not None
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [NODE, script],
            cwd=JS_DIR,
            env={**os.environ, "SYNCLINE_URL": server.url, **env},
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} did not exit within {SCRIPT_TIMEOUT_S} s; stderr:\n{exc.stderr}")
    elapsed = time.monotonic() - started
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{script} printed nothing (exit {proc.returncode}); stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    failed = {label: c.get("detail") for label, c in result["checks"].items() if not c["ok"]}
    assert proc.returncode == 0 and result["ok"] and not failed, (
        f"{script} failed after {elapsed:.1f} s (exit {proc.returncode})\n"
        f"error: {result.get('error')}\n"
        f"failed checks: {json.dumps(failed, indent=2)}\n"
        f"stderr:\n{proc.stderr}"
    )
    return result


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
