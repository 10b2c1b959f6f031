"""The dashboard's system functions through the official npm ``convex`` client, as the
React app calls them (``tests/e2e/js/dashboard_api.mjs``, run against a real server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import StartServer, write_functions
from dashboard.conftest import DASHBOARD_FILES
from e2e.test_js_client import JS_DIR, run_scenario
from harness import require_node_package

pytestmark = pytest.mark.slow


def test_admin_clients_read_and_write_live_and_others_are_refused(
    tmp_path: Path, start_server: StartServer
) -> None:
    require_node_package(JS_DIR, "convex")
    write_functions(tmp_path / "functions", DASHBOARD_FILES)
    server = start_server(tmp_path, mode="dev")
    run_scenario("dashboard_api.mjs", server)
