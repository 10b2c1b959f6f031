"""The 2.x email + password method in a real browser, through its unchanged React hooks.

Sign up (``useSignUpWithEmailPassword`` keeps the browser secret), open the
mailed link (read from the server log: the test has no SMTP server) so that
``useCompleteSignUpWithEmailPassword`` signs in, sign out, sign in with
``useSignInWithEmailPassword``; then recover the password through the
mailed link (``useStartPasswordRecovery``, ``useCompletePasswordRecovery``).
The same link opened in another browser (no secret) completes nothing.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from .test_auth_oauth import set_env
from .test_auth_password import (  # noqa: F401
    STEP_TIMEOUT_MS,
    Page,
    _evidence,
    app_server_v2,
    browser,
    call,
)

pytestmark = pytest.mark.slow


def _mailed_link(server: Any, since: int, email: str) -> str:
    """The link of the newest mail to ``email`` logged since ``since``."""
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while True:
        found = re.findall(rf"Link for {re.escape(email)}: (\S+) ", server.log(since=since))
        if found:
            return str(found[-1])
        assert time.monotonic() < deadline, "no mail was logged"
        time.sleep(0.05)


def test_sign_up_verify_sign_in_and_recover(browser: Any, app_server_v2: Any) -> None:  # noqa: F811
    server = app_server_v2
    set_env(server, {"SITE_URL": f"{server.url}/http/"})
    email = "ada@example.com"
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
        assert call(server, "query", "users:session_count") == 0
        tab.goto(link)
        tab.locator("#link-status", has_text="complete").wait_for()
        assert page.signed_in_as() == email
        assert call(server, "query", "users:session_count") == 1

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
        assert not page.problems, page.problems

    # The link in another browser (which has no secret) completes nothing.
    other = Page(browser.new_context(), link)
    other.tab.set_default_timeout(STEP_TIMEOUT_MS)
    with _evidence(server, other):
        other.open()
        other.tab.locator("#link-status", has_text="error: MISSING_SECRET").wait_for()
    context.close()
