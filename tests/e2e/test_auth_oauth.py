"""OAuth sign-in in a real browser: the Convex Auth pages, a fake OIDC provider, built-in auth.

The button calls ``signIn("fake")``; the browser goes through
``/api/auth/signin/fake`` (site port), the provider's authorize endpoint
(which approves at once), ``/api/auth/callback/fake`` and back to the page
with ``?code=``, which ``@convex-dev/auth/react`` exchanges for tokens with
the verifier it kept. A tampered ``state`` and a replayed callback are refused.

The 2.x page's ``useSignInWithGoogle`` (its "google" is the fake provider)
runs the start mutation, the same routes, and the complete mutation with the
state it kept in localStorage; the code comes back as ``?convexAuthCode=``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accounts.fake_idp import FakeIdP

from .test_auth_password import (  # noqa: F401
    STEP_TIMEOUT_MS,
    Page,
    app_server,
    app_server_v2,
    browser,
    call,
)

pytestmark = pytest.mark.slow


def set_env(server: Any, values: dict[str, str]) -> None:
    response = httpx.post(
        f"{server.url}/api/admin/env",
        json={"changes": [{"name": k, "value": v} for k, v in values.items()]},
        headers={"Authorization": f"Convex {server.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    with FakeIdP() as provider:
        yield provider


def test_oauth_sign_in_in_the_browser(browser: Any, app_server: Any, idp: FakeIdP) -> None:  # noqa: F811
    server = app_server
    set_env(server, {"SITE_URL": f"{server.url}/http/", **idp.env()})
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = Page(context, f"{server.url}/http/")
    callbacks: list[str] = []
    page.tab.on(
        "request",
        lambda request: (
            callbacks.append(request.url) if "/api/auth/callback/" in request.url else None
        ),
    )
    try:
        page.open()
        page.tab.locator("#password-form").wait_for()
        page.tab.click("#oauth")
        assert page.signed_in_as() == "Grace Hopper"
        # The one-time code was taken off the address bar.
        assert "code=" not in page.tab.url
        assert call(server, "query", "users:session_count") == 1
        page.tab.reload()
        assert page.signed_in_as() == "Grace Hopper"
        assert not page.problems, page.problems
    finally:
        context.close()

    # The provider's answer again (a replayed code and state): refused, no session made.
    [callback] = callbacks
    assert httpx.get(callback, follow_redirects=False).status_code == 400
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    tampered = {**query, "state": query["state"][:-3] + "abc"}
    url = f"{parts.scheme}://{parts.netloc}{parts.path}?{urllib.parse.urlencode(tampered)}"
    assert httpx.get(url, follow_redirects=False).status_code == 400
    assert call(server, "query", "users:session_count") == 1


def test_v2_google_hook_signs_in_in_the_browser(
    browser: Any,  # noqa: F811
    app_server_v2: Any,  # noqa: F811
    idp: FakeIdP,
) -> None:
    server = app_server_v2
    set_env(server, {"SITE_URL": f"{server.url}/http/", **idp.env("google")})
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = Page(context, f"{server.url}/http/?tab=home")
    callbacks: list[str] = []
    page.tab.on(
        "request",
        lambda request: (
            callbacks.append(request.url) if "/api/auth/callback/" in request.url else None
        ),
    )
    try:
        page.open()
        page.tab.locator("#password-form").wait_for()
        page.tab.click("#oauth")
        assert page.signed_in_as() == "Grace Hopper"
        # The one-time code was taken off the address bar; the page's own params stay.
        assert "convexAuthCode" not in page.tab.url and "tab=home" in page.tab.url
        assert call(server, "query", "users:session_count") == 1
        assert not any("flow" in key.lower() for key in page.local_storage())
        page.tab.reload()
        assert page.signed_in_as() == "Grace Hopper"

        # A provider refusal comes back as the hooks' flowError.
        page.tab.click("#signout")
        page.tab.locator("#password-form").wait_for()
        idp.deny = True
        page.tab.click("#oauth")
        page.tab.locator("#oauth-error", has_text="ACCESS_DENIED").wait_for()
        assert call(server, "query", "users:session_count") == 0
        assert not page.problems, page.problems
    finally:
        context.close()

    # The provider's first answer again (a replayed code and state), then tampered: refused.
    callback = callbacks[0]
    assert httpx.get(callback, follow_redirects=False).status_code == 400
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    tampered = {**query, "state": query["state"][:-3] + "abc"}
    url = f"{parts.scheme}://{parts.netloc}{parts.path}?{urllib.parse.urlencode(tampered)}"
    assert httpx.get(url, follow_redirects=False).status_code == 400
    assert call(server, "query", "users:session_count") == 0
