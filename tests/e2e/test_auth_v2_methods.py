"""The 2.x sign-in methods in a real browser (and the SSR pieces in Node), through the
unchanged ``@convex-dev/auth`` 2.0.0 hooks of the ``auth_app_v2`` page.

One server and one Chromium serve the module; each test uses its own accounts
and counts sessions relative to its start.

* Email + password: sign up (``useSignUpWithEmailPassword`` keeps the browser
  secret), open the mailed link (read from the server log: no SMTP server) so
  that ``useCompleteSignUpWithEmailPassword`` signs in, sign out, sign in with
  ``useSignInWithEmailPassword``; recover the password through its link
  (``useStartPasswordRecovery``, ``useCompletePasswordRecovery``); change the
  email (``useStartChangeEmail``, ``useCompleteChangeEmail``). A link in
  another browser (no secret) completes nothing.
* Username + passkey: ``useSignInWithUsernamePasskey`` registers a passkey for
  a new username (answered by Chromium's virtual authenticator through the
  DevTools protocol); after sign-out the hook's passkey autofill (a
  conditional ``navigator.credentials.get``, which the virtual authenticator
  approves at once) signs the user back in. The page is opened at
  ``localhost``: an IP address cannot be a WebAuthn RP ID. The username-first
  sign-in with an existing passkey is covered with a software authenticator in
  tests/accounts/test_v2_passkey.py.
* SSR: ``auth_app_v2/ssr.mjs`` runs, in Node, what an app's server runs under
  SSR: the sign-in proxy (which moves the refresh token into an httpOnly
  cookie), the refresh and sign-out handlers and the server auth checker, with
  a ``ConvexHttpClient`` aimed at the proxy in the page's part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from syncline._devtools import launch

from .test_auth_oauth import set_env
from .test_auth_password import APP_V2, STEP_TIMEOUT_MS, Page, _evidence, build_app, call
from .test_chat_example import launch_chromium

pytestmark = pytest.mark.slow

NODE = shutil.which("node")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = build_app(tmp_path_factory.mktemp("auth_v2") / "auth_app_v2", APP_V2)
    # Its password mutations run scrypt (about 60 ms alone): room for a loaded machine.
    proc = launch(project, mode="dev", args=["--function-timeout", "20"])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as instance:
        yield instance


def sessions(server: Any) -> int:
    return int(call(server, "query", "users:session_count"))


def _mailed_link(server: Any, since: int, email: str) -> str:
    """The link of the newest mail to ``email`` logged since ``since``."""
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while True:
        found = re.findall(rf"Link for {re.escape(email)}: (\S+) ", server.log(since=since))
        if found:
            return str(found[-1])
        assert time.monotonic() < deadline, "no mail was logged"
        time.sleep(0.05)


def test_email_password_sign_up_verify_sign_in_and_recover(browser: Any, server: Any) -> None:
    """Sign up, open the mailed link, sign in; recover the password; change the email."""
    set_env(server, {"SITE_URL": f"{server.url}/http/"})
    email = "ada@example.com"
    before = sessions(server)
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = Page(context, f"{server.url}/http/")
    with _evidence(server, page):
        page.open()
        tab = page.tab
        tab.locator("#ep-form").wait_for()

        # Sign up: nothing is signed in until the mailed link is opened in this browser.
        mark = server.log_size()
        tab.fill("#ep-email", email)
        tab.fill("#ep-password", "correct horse")
        tab.click("#ep-signup")
        tab.locator("#ep-message", has_text="sent: signUp").wait_for()
        link = _mailed_link(server, mark, email)
        assert link.startswith(f"{server.url}/http/?page=validate-email&code=")
        assert sessions(server) == before
        tab.goto(link)
        tab.locator("#link-status", has_text="complete").wait_for()
        assert page.signed_in_as() == email
        assert sessions(server) == before + 1

        # Sign out, then in with the password.
        tab.click("#signout")
        tab.locator("#profile").wait_for(state="detached")
        page.open()
        tab.fill("#ep-email", email)
        tab.fill("#ep-password", "wrong horse")
        tab.click("#ep-signin")
        tab.locator("#ep-message", has_text="error: INVALID_CREDENTIALS").wait_for()
        tab.fill("#ep-password", "correct horse")
        tab.click("#ep-signin")
        assert page.signed_in_as() == email

        # Recovery: the mailed link asks for a new password and signs in with it.
        tab.click("#signout")
        tab.locator("#ep-form").wait_for()
        mark = server.log_size()
        tab.fill("#ep-email", email)
        tab.click("#ep-recover")
        tab.locator("#ep-message", has_text="sent: recover").wait_for()
        link = _mailed_link(server, mark, email)
        tab.goto(link)
        tab.fill("#new-password", "short")
        tab.click("#reset")
        tab.locator("#reset-error", has_text="PASSWORD_TOO_SHORT").wait_for()
        tab.fill("#new-password", "new battery staple")
        tab.click("#reset")
        assert page.signed_in_as() == email

        # Email change, signed in: confirmed by the link mailed to the new address.
        page.open()
        mark = server.log_size()
        tab.fill("#new-email", "ada@new.example")
        tab.fill("#current-password", "new battery staple")
        tab.click("#change-email")
        tab.locator("#change-email-message", has_text="sent: changeEmail").wait_for()
        tab.goto(_mailed_link(server, mark, "ada@new.example"))
        tab.locator("#link-status", has_text="complete").wait_for()
        assert page.signed_in_as() == "ada@new.example"
        assert not page.problems, page.problems

    # The link in another browser (which has no secret) completes nothing.
    other = Page(browser.new_context(), link)
    other.tab.set_default_timeout(STEP_TIMEOUT_MS)
    with _evidence(server, other):
        other.open()
        other.tab.locator("#link-status", has_text="error: MISSING_SECRET").wait_for()
    context.close()


def test_passkey_register_then_autofill_sign_in(browser: Any, server: Any) -> None:
    """Register a passkey for a new username; after sign-out, autofill signs back in."""
    before = sessions(server)
    site = server.url.replace("127.0.0.1", "localhost")
    set_env(server, {"SITE_URL": f"{site}/http/"})
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = Page(context, f"{site}/http/")
    cdp = context.new_cdp_session(page.tab)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]
    with _evidence(server, page):
        page.open()
        tab = page.tab
        tab.fill("#pk-username", "ada")
        tab.click("#pk-submit")
        assert page.signed_in_as() == "ada"
        [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
            "credentials"
        ]
        assert credential["rpId"] == "localhost" and credential["isResidentCredential"]
        assert sessions(server) == before + 1

        mark = server.log_size()
        tab.click("#signout")
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while "mutation auth:finishSignInWithUsernamePasskey" not in server.log(since=mark):
            assert time.monotonic() < deadline, "the autofill did not sign in"
            time.sleep(0.05)
        assert "auth:startAutofillSignInWithUsernamePasskey" in server.log(since=mark)
        assert page.signed_in_as() == "ada"
        assert sessions(server) == before + 1  # the first one ended
        [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
            "credentials"
        ]
        assert credential["signCount"] >= 1
        assert not page.problems, page.problems
    context.close()


def test_ssr_proxy_refresh_and_sign_out(server: Any) -> None:
    """The SSR pieces, in Node (``auth_app_v2/ssr.mjs``)."""
    assert NODE is not None, "node is not installed"
    run = subprocess.run(
        [NODE, str(APP_V2 / "ssr.mjs")],
        cwd=APP_V2,
        env={**os.environ, "SYNCLINE_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines, f"ssr.mjs printed nothing (exit {run.returncode}); stderr:\n{run.stderr}"
    result = json.loads(lines[-1])
    failed = {label: c.get("detail") for label, c in result["checks"].items() if not c["ok"]}
    assert run.returncode == 0 and not failed, (failed, run.stderr[-2000:])
    assert len(result["checks"]) == 12
