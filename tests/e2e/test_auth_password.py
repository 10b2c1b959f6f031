"""Built-in auth in a real browser: React pages using @convex-dev/auth/react unchanged.

tests/e2e/auth_app is a Convex Auth 0.0.x page (ConvexAuthProvider, useAuthActions,
Authenticated/Unauthenticated) and the Syncline functions behind it;
tests/e2e/auth_app_v2 is the same page written for Convex Auth 2.x (the
provider's ``api`` prop, the username-password method's hooks). The test
bundles the page with esbuild, serves it from the deployment's HTTP actions
(``/http/`` on the API port, so the page's origin is the API) and drives it in
headless Chromium: sign up, see the name from a query reading the identity,
reload and stay signed in, sign out, sign in again; a wrong password shows an
error and creates no session.

Needs ``npm ci`` in tests/e2e/auth_app and tests/e2e/auth_app_v2, Playwright and
Chromium (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_node_package

from .test_chat_example import launch_chromium

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "auth_app"
APP_V2 = Path(__file__).resolve().parent / "auth_app_v2"
STEP_TIMEOUT_MS = 15_000


def build_app(dest: Path, app: Path = APP) -> Path:
    """A project in ``dest``: the app's functions and page, with the page's bundle built.

    ``auth_app_v2`` holds only what differs from ``auth_app`` (its ``auth.py``,
    its page's source and packages): the rest is ``auth_app``'s.
    """
    require_node_package(app, "@convex-dev/auth")
    require_node_package(app, "esbuild")
    shutil.copytree(APP / "functions", dest / "functions")
    shutil.copytree(app / "functions", dest / "functions", dirs_exist_ok=True)
    shutil.copy(APP / "index.html", dest / "index.html")
    subprocess.run(
        [
            str(app / "node_modules" / ".bin" / "esbuild"),
            str(app / "src" / "main.jsx"),
            "--bundle",
            f"--outfile={dest / 'dist' / 'app.js'}",
            '--define:process.env.NODE_ENV="production"',
            "--log-level=warning",
        ],
        check=True,
        cwd=app,
        timeout=120,
    )
    return dest


def call(server: Any, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    """A function call with the admin key (internal functions too)."""
    response = httpx.post(
        f"{server.url}/api/{kind}",
        json={"path": path, "args": args or {}, "format": "json"},
        headers={"Authorization": f"Convex {server.admin_key}"},
        timeout=10,
    )
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


@pytest.fixture
def browser() -> Iterator[Any]:
    with launch_chromium() as instance:
        yield instance


class Page:
    """One browser tab on the app, collecting page errors."""

    def __init__(self, context: Any, url: str) -> None:
        self.tab = context.new_page()
        self.url = url
        self.problems: list[str] = []
        self.tab.on("pageerror", lambda exc: self.problems.append(str(exc)))

    def open(self) -> None:
        self.tab.goto(self.url)

    def submit(self, email: str, password: str, name: str | None = None) -> None:
        if name is not None:
            self.tab.fill("#name", name)
        self.tab.fill("#email", email)
        self.tab.fill("#password", password)
        self.tab.click("#submit")

    def signed_in_as(self) -> str:
        me = self.tab.locator("#me")
        me.wait_for()
        self.tab.wait_for_function(
            "() => { const t = document.querySelector('#me')?.textContent; return t && t !== '…'; }"
        )
        return str(me.inner_text())

    def local_storage(self) -> dict[str, str]:
        return dict(self.tab.evaluate("() => Object.assign({}, window.localStorage)"))


@pytest.fixture
def app_server(start_server: Any, tmp_path: Path) -> Iterator[Any]:
    project = build_app(tmp_path / "auth_app")
    yield start_server(project, mode="dev")


@pytest.fixture
def app_server_v2(start_server: Any, tmp_path: Path) -> Iterator[Any]:
    project = build_app(tmp_path / "auth_app_v2", APP_V2)
    # Its sign-in mutations run scrypt (about 60 ms alone): room for a loaded machine.
    yield start_server(project, mode="dev", args=["--function-timeout", "20"])


@contextlib.contextmanager
def _evidence(server: Any, page: Page) -> Iterator[None]:
    """On failure, a screenshot and the page's errors in the report."""
    try:
        yield
    except BaseException as exc:
        shot = server.project / "auth-page.png"
        try:
            page.tab.screenshot(path=str(shot), full_page=True)
            exc.add_note(f"Screenshot: {shot}")
        except Exception as shot_error:
            exc.add_note(f"(no screenshot: {shot_error})")
        if page.problems:
            exc.add_note("Page errors:\n" + "\n".join(page.problems))
        raise


def _sign_up_reload_sign_out_and_in(
    browser: Any, server: Any, *, login: str, name: str | None, shown: str, wrong_error: str
) -> None:
    """Sign up, reload, sign out, fail with a wrong password, sign in again."""
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = Page(context, f"{server.url}/http/")
    with _evidence(server, page):
        page.open()
        page.tab.locator("#password-form").wait_for()

        # Sign up: the profile shows the name read by a query from the token's identity.
        page.tab.click("#toggle")
        page.submit(login, "correct horse", name=name)
        assert page.signed_in_as() == shown
        stored = page.local_storage()
        namespace = "".join(c for c in server.url if c.isalnum())
        assert stored[f"__convexAuthJWT_{namespace}"].count(".") == 2
        assert "|" in stored[f"__convexAuthRefreshToken_{namespace}"]
        assert call(server, "query", "users:session_count") == 1

        # Reload: still signed in (the tokens are in localStorage).
        page.tab.reload()
        assert page.signed_in_as() == shown

        # Sign out: back to the form, the session is gone on the server.
        page.tab.click("#signout")
        page.tab.locator("#password-form").wait_for()
        assert f"__convexAuthJWT_{namespace}" not in page.local_storage()
        assert f"__convexAuthRefreshToken_{namespace}" not in page.local_storage()
        assert call(server, "query", "users:session_count") == 0

        # A wrong password: an error on the page and no session.
        page.submit(login, "wrong horse")
        page.tab.locator("#error", has_text=wrong_error).wait_for()
        assert call(server, "query", "users:session_count") == 0
        assert page.tab.locator("#profile").count() == 0

        # The right one: signed in again.
        page.submit(login, "correct horse")
        assert page.signed_in_as() == shown
        assert call(server, "query", "users:session_count") == 1
        assert not page.problems, page.problems
    context.close()


def test_password_sign_up_reload_sign_out_and_in(browser: Any, app_server: Any) -> None:
    _sign_up_reload_sign_out_and_in(
        browser,
        app_server,
        login="ada@example.com",
        name="Ada Lovelace",
        shown="Ada Lovelace",
        wrong_error="The email or password is incorrect",
    )


def test_v2_username_password_sign_up_reload_sign_out_and_in(
    browser: Any, app_server_v2: Any
) -> None:
    """The same story with @convex-dev/auth 2.x: its hooks call mutations, not auth:signIn,
    and sign-out is the auth:signOut mutation with the refresh token."""
    _sign_up_reload_sign_out_and_in(
        browser,
        app_server_v2,
        login="ada",
        name=None,
        shown="ada",
        wrong_error="INVALID_CREDENTIALS",
    )
