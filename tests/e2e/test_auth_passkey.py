"""The 2.x username + passkey method in Chromium, with a virtual authenticator.

``useSignInWithUsernamePasskey`` (unchanged) registers a passkey for a new
username (the browser's WebAuthn API, answered by Chromium's virtual
authenticator through the DevTools protocol). After sign-out the hook's
passkey autofill (a conditional ``navigator.credentials.get``, which the
virtual authenticator approves at once) signs the user back in with it. The
username-first sign-in with an existing passkey is covered with a software
authenticator in tests/accounts/test_v2_passkey.py. The page is opened at
``localhost``: an IP address cannot be a WebAuthn RP ID.
"""

from __future__ import annotations

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


def test_register_and_sign_in_with_a_passkey(browser: Any, app_server_v2: Any) -> None:  # noqa: F811
    server = app_server_v2
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
        assert call(server, "query", "users:session_count") == 1

        mark = server.log_size()
        tab.click("#signout")
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while "mutation auth:finishSignInWithUsernamePasskey" not in server.log(since=mark):
            assert time.monotonic() < deadline, "the autofill did not sign in"
            time.sleep(0.05)
        assert "auth:startAutofillSignInWithUsernamePasskey" in server.log(since=mark)
        assert page.signed_in_as() == "ada"
        assert call(server, "query", "users:session_count") == 1  # the first one ended
        [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
            "credentials"
        ]
        assert credential["signCount"] >= 1
        assert not page.problems, page.problems
    context.close()
