"""The dashboard's HTTP routes: its built files (SPA routing, caching), the health figures,
one-time login links, ``serve --no-dashboard``, and the lines ``syncline dev`` prints."""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import StartServer, write_functions
from dashboard.conftest import ADMIN_HEADERS, DASHBOARD_FILES, PREFIX
from server.conftest import ADMIN_KEY, open_application
from syncline.__about__ import __version__
from syncline._devtools import ServerProcess
from syncline.application import Application
from syncline.clock import ManualClock
from syncline.dashboard.login import LOGIN_TOKEN_VALIDITY_MS, LoginTokens
from syncline.server.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

INDEX = "<!doctype html><title>Syncline</title><div id=root></div>"


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text("console.log('app')")
    (root / "assets" / "vendor-def456.js").write_text("export const big = 1;\n" * 2000)
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("not for you")
    return root


@contextlib.contextmanager
def served(
    app: Application, *, dashboard: bool = True, dashboard_static: Path | None = None
) -> Iterator[TestClient]:
    asgi = create_app(app, dashboard=dashboard, dashboard_static=dashboard_static)
    with TestClient(asgi) as client:
        yield client


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = open_application(tmp_path / "project", DASHBOARD_FILES, clock=ManualClock())
    try:
        yield application
    finally:
        application.close()


def test_pages_are_the_index_and_assets_are_files(app: Application, static_dir: Path) -> None:
    with served(app, dashboard_static=static_dir) as client:
        redirect = client.get("/dashboard", follow_redirects=False)
        assert redirect.status_code == 308
        assert redirect.headers["location"] == "/dashboard/"
        for route in ("/dashboard/", "/dashboard/data/tasks", "/dashboard/logs?x=1"):
            page = client.get(route)
            assert page.status_code == 200, route
            assert page.text == INDEX
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-cache"
        vendor = client.get("/dashboard/assets/vendor-def456.js")
        assert vendor.headers["content-encoding"] == "gzip"
        assert vendor.text == "export const big = 1;\n" * 2000
        assert int(vendor.headers["content-length"]) < len(vendor.text) / 10
        icon = client.get("/dashboard/favicon.svg")
        assert icon.text == "<svg/>"
        assert icon.headers["cache-control"] == "no-cache"
        asset = client.get("/dashboard/assets/index-abc123.js")
        assert asset.status_code == 200
        assert asset.text == "console.log('app')"
        assert "javascript" in asset.headers["content-type"]
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        for missing in (
            "/dashboard/assets/gone.js",
            "/dashboard/assets/../../secret.txt",
            "/dashboard/assets/%2e%2e/%2e%2e/secret.txt",
        ):
            response = client.get(missing)
            assert response.status_code == 404, missing
            assert "not for you" not in response.text
        # Outside the folder is no file of it: the page's route, answered with the page.
        assert client.get("/dashboard/%2e%2e/secret.txt").text == INDEX


def test_without_a_built_ui_pages_are_404(app: Application, tmp_path: Path) -> None:
    with served(app, dashboard_static=tmp_path / "nothing") as client:
        assert client.get("/dashboard/").status_code == 404


def test_no_dashboard_serves_none_of_its_routes(app: Application, static_dir: Path) -> None:
    with served(app, dashboard=False, dashboard_static=static_dir) as client:
        for path in ("/dashboard/", "/dashboard/assets/index-abc123.js", "/dashboard/x"):
            assert client.get(path).status_code == 404, path
        health = client.get("/api/admin/dashboard/health", headers=ADMIN_HEADERS)
        assert health.status_code == 404
        token = LoginTokens(ADMIN_KEY, app.database, app.clock).issue()
        login = client.post("/api/admin/dashboard/login", json={"token": token})
        assert login.status_code == 404


def test_health_figures(app: Application) -> None:
    with served(app) as client:
        for _ in range(3):
            body = client.post("/api/mutation", json={"path": "tasks:add", "args": {"title": "x"}})
            assert body.json()["status"] == "success"
        client.post("/api/query", json={"path": "tasks:count"})
        # The dashboard's own calls are not counted.
        client.post("/api/query", json={"path": PREFIX + "env:list"}, headers=ADMIN_HEADERS)
        with client.websocket_connect("/api/sync"):
            response = client.get("/api/admin/dashboard/health", headers=ADMIN_HEADERS)
    assert response.status_code == 200
    health = response.json()
    assert set(health) == {
        "version",
        "startedAt",
        "uptimeS",
        "database",
        "connectedClients",
        "liveQueries",
        "commitsPerSecond",
        "functions",
    }
    assert health["version"] == __version__
    assert health["database"] == "sqlite"
    assert health["startedAt"] <= time.time() * 1000
    assert health["uptimeS"] >= 0
    assert health["connectedClients"] >= 1
    assert health["liveQueries"] == 0
    assert health["commitsPerSecond"] > 0
    functions = health["functions"]
    assert set(functions) == {"query", "mutation", "action"}
    assert functions["mutation"]["calls"] == 3
    assert functions["query"]["calls"] == 1
    assert functions["action"] == {"calls": 0, "p50Ms": None, "p95Ms": None}
    assert 0 < functions["mutation"]["p50Ms"] <= functions["mutation"]["p95Ms"]


def test_health_needs_the_admin_key(app: Application) -> None:
    with served(app) as client:
        for headers in ({}, {"Authorization": "Convex wrong-key"}):
            response = client.get("/api/admin/dashboard/health", headers=headers)
            assert response.status_code == 401
            assert response.json()["code"] == "Unauthorized"
            assert response.json()["message"]


def test_a_login_token_works_once_within_ten_minutes(app: Application) -> None:
    assert isinstance(app.clock, ManualClock)
    tokens = LoginTokens(ADMIN_KEY, app.database, app.clock)
    with served(app) as client:

        def login(token: object) -> httpx.Response:
            return client.post("/api/admin/dashboard/login", json={"token": token})

        token = tokens.issue()
        first = login(token)
        assert first.status_code == 200
        assert first.json() == {"adminKey": ADMIN_KEY}
        again = login(token)
        assert again.status_code == 401
        assert again.json()["code"] == "InvalidLoginToken"
        assert "used already" in again.json()["message"]

        soon = tokens.issue()
        app.clock.advance(LOGIN_TOKEN_VALIDITY_MS - 1000)
        assert login(soon).status_code == 200
        late = tokens.issue()
        app.clock.advance(LOGIN_TOKEN_VALIDITY_MS + 1)
        expired = login(late)
        assert expired.status_code == 401
        assert "expired" in expired.json()["message"]

        fresh = tokens.issue()
        forged = fresh[:-2] + ("AA" if not fresh.endswith("AA") else "BB")
        other_key = LoginTokens("another-key", app.database, app.clock).issue()
        for bad in (forged, other_key, "garbage", "", None, 42, "x" * 500):
            response = login(bad)
            assert response.status_code == 401, bad
            assert response.json()["code"] == "InvalidLoginToken"
        assert login(fresh).status_code == 200


def _wait_for_line(server: ServerProcess, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, server.log())
        if match is not None or time.monotonic() > deadline:
            assert match is not None, f"no line matching {pattern!r}"
            return match
        time.sleep(0.05)


@pytest.mark.slow
def test_dev_prints_the_dashboard_and_a_login_link_that_works(
    tmp_path: Path, start_server: StartServer
) -> None:
    write_functions(tmp_path / "functions", DASHBOARD_FILES)
    server = start_server(tmp_path, mode="dev")
    _wait_for_line(server, rf"Dashboard: +{re.escape(server.url)}/dashboard/")
    link = _wait_for_line(server, r"Login link: +(\S+/dashboard/#login=(\S+))")
    assert link.group(1).startswith(f"{server.url}/dashboard/#login=")
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/api/admin/dashboard/login", json={"token": link.group(2)})
        assert first.status_code == 200
        assert first.json() == {"adminKey": server.admin_key}
        assert (
            client.post("/api/admin/dashboard/login", json={"token": link.group(2)}).status_code
            == 401
        )


@pytest.mark.slow
def test_serve_no_dashboard(tmp_path: Path, start_server: StartServer) -> None:
    write_functions(tmp_path / "functions", DASHBOARD_FILES)
    server = start_server(tmp_path, args=["--no-dashboard"])
    _wait_for_line(server, r"Functions: ")
    assert "Dashboard:" not in server.log() and "Login link" not in server.log()
    headers = {"Authorization": f"Convex {server.admin_key}"}
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/dashboard/").status_code == 404
        assert client.get("/api/admin/dashboard/health", headers=headers).status_code == 404
        # The system functions still answer admins (the CLI may use them).
        body = client.post("/api/query", json={"path": PREFIX + "env:list"}, headers=headers).json()
        assert body == {"status": "success", "value": [], "logLines": []}
