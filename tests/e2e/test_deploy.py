"""``syncline deploy`` end to end: real servers, the CLI, and official clients.

* 100 subscribed npm ``convex`` clients (one node process) across a deploy that
  changes a function, adds a table field and an index: none disconnects, every
  one receives the new code's result; a deploy whose schema the data violates
  is refused by the CLI (exit 1, the failing document named) and nothing changes.
* ``serve --workers 2``: both workers serve the deployed code; after a restart
  the deployed code still serves (the folder on disk is older); ``--dry-run``
  prints the diff and changes nothing.
* Two nodes on one PostgreSQL database: the node that was not deployed to
  serves the new code too.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import deploy_projects
from conftest import StartServer, write_functions
from harness import require_module, require_node_package
from postgres_databases import database_for_test
from syncline._devtools import ServerProcess

from .test_js_client import JS_DIR, SteppedScenario

pytestmark = pytest.mark.slow

WHERE = """
    import os

    from syncline import mutation

    @mutation
    def where(ctx):
        return ["{version}", float(os.getpid())]
"""
#: each version says which version and which process answered (tasks_where:where)
V1 = {**deploy_projects.V1, "tasks_where.py": WHERE.replace("{version}", "v1")}
V2 = {**deploy_projects.V2, "tasks_where.py": WHERE.replace("{version}", "v2")}
VIOLATING = deploy_projects.VIOLATING


def _source(tmp_path: Path, name: str, files: Mapping[str, str]) -> Path:
    project = tmp_path / name
    write_functions(project / "functions", files)
    return project


def deploy(server: ServerProcess, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "syncline", "deploy", "--dir", str(project)),
            *("--url", server.url, "--admin-key", server.admin_key, *args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def call(server: ServerProcess, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    # A fresh connection each time: with several workers, any of them may answer.
    with httpx.Client(timeout=10) as http:
        answer = http.post(
            f"{server.url}/api/{kind}", json={"path": path, "args": args or {}, "format": "json"}
        ).json()
    assert answer["status"] == "success", answer
    return answer["value"]


def test_a_deploy_under_100_subscribed_clients(tmp_path: Path, start_server: StartServer) -> None:
    require_node_package(JS_DIR, "convex")
    server = start_server(_source(tmp_path, "served", V1))
    call(server, "mutation", "tasks:add", {"title": "a"})
    scenario = SteppedScenario("deploy.mjs", server, SYNCLINE_CLIENTS="100")
    try:
        scenario.wait_phase("subscribed", timeout=40)
        done = deploy(server, _source(tmp_path, "v2", V2))
        assert done.returncode == 0, done.stderr
        assert "Deployed bundle" in done.stderr
        scenario.send("deployed")
        scenario.wait_phase("updated", timeout=40)

        refused = deploy(server, _source(tmp_path, "bad", VIOLATING))
        assert refused.returncode == 1
        assert "missing the required field `done`" in refused.stderr
        assert "(InvalidSchema)" in refused.stderr
        scenario.send("refused")
        result = scenario.result(timeout=40)
    finally:
        scenario.kill()
    assert result["results"]["clients"] == 100
    assert call(server, "query", "tasks:list") == ["v2:a", "v2:after"]


def _pids_serving(server: ServerProcess, version: str, *, want: int = 2) -> set[float]:
    """Call ``tasks_where:where`` on fresh connections until ``want`` processes answered."""
    pids: set[float] = set()
    deadline = time.monotonic() + 20
    while len(pids) < want:
        assert time.monotonic() < deadline, f"only {pids} answered {version}"
        served, pid = call(server, "mutation", "tasks_where:where")
        if served == version:
            pids.add(pid)
    return pids


def test_workers_serve_the_deployed_code_and_a_restart_keeps_it(
    tmp_path: Path, start_server: StartServer
) -> None:
    served = _source(tmp_path, "served", V1)
    server = start_server(served, args=["--workers", "2"])
    call(server, "mutation", "tasks:add", {"title": "a"})
    before = _pids_serving(server, "v1")
    new = _source(tmp_path, "v2", V2)

    dry = deploy(server, new, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ tasks.by_title (title)" in dry.stderr
    assert "+ done" in dry.stderr
    assert "nothing was changed" in dry.stderr
    assert call(server, "query", "tasks:list") == ["v1:a"]

    done = deploy(server, new)
    assert done.returncode == 0, done.stderr
    # Both workers (the ones that served v1) now serve v2, without a restart.
    assert _pids_serving(server, "v2") == before
    assert call(server, "query", "tasks:open") == 1

    server.stop()
    server.start()
    server.wait_ready()
    assert len(_pids_serving(server, "v2")) == 2
    assert call(server, "query", "tasks:list") == ["v2:a"]
    assert "Serving the deployed bundle" in server.log()
    assert (served / "functions" / "tasks.py").read_text() == textwrap.dedent(
        V1["tasks.py"]
    ).lstrip("\n")


def test_nodes_on_postgresql_serve_what_one_of_them_was_deployed(
    tmp_path: Path, start_server: StartServer
) -> None:
    require_module("psycopg", "pip install -e '.[postgres]'")
    with database_for_test("deploy_nodes") as url:
        first = start_server(_source(tmp_path, "node1", V1), args=["--db", url])
        second = start_server(_source(tmp_path, "node2", V1), args=["--db", url])
        call(first, "mutation", "tasks:add", {"title": "a"})
        assert call(second, "query", "tasks:list") == ["v1:a"]
        done = deploy(first, _source(tmp_path, "v2", V2))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        while call(second, "query", "tasks:list") != ["v2:a"]:
            assert time.monotonic() < deadline, second.log()
            time.sleep(0.1)
        assert call(second, "query", "tasks:open") == 1
        assert "deployed by another process" in second.log()
        first.stop()
        second.stop()
