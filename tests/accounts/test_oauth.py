"""OAuth (OIDC) sign-in against a fake provider on a real socket."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncline.errors import ConvexError

from .conftest import AuthBackend, error_code
from .fake_idp import FakeIdP


@pytest.fixture
def idp(auth: AuthBackend) -> Iterator[FakeIdP]:
    with FakeIdP() as provider:
        for name, value in provider.env().items():
            auth.t.set_env(name, value)
        yield provider


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _location(response: Any) -> str:
    assert response.status == 302, (response.status, response.body)
    return str(response.headers["location"])


def _start(auth: AuthBackend) -> tuple[str, str]:
    """signIn("fake"): the client's verifier, and the provider's redirect back to the callback."""
    answer = auth.sign_in("fake", params={"redirectTo": "/welcome"})
    assert answer["redirect"].startswith(f"{auth.t.app.site_url}/api/auth/signin/fake?code=")
    authorize = _location(auth.t.fetch(_path(answer["redirect"])))
    callback = httpx.get(authorize, follow_redirects=False)
    assert callback.status_code == 302
    return answer["verifier"], callback.headers["location"]


def _finish(auth: AuthBackend, callback: str) -> str:
    """The callback, then the app URL's one-time code."""
    back = _location(auth.t.fetch(_path(callback)))
    parts = urllib.parse.urlsplit(back)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://app.test/welcome"
    return urllib.parse.parse_qs(parts.query)["code"][0]


def test_oidc_sign_in_end_to_end(auth: AuthBackend, idp: FakeIdP) -> None:
    verifier, callback = _start(auth)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert query["state"][0].startswith(f"{verifier}.")
    code = _finish(auth, callback)
    tokens = auth.sign_in(params={"code": code}, verifier=verifier)["tokens"]
    me = auth.me(tokens["token"])
    assert (me["name"], me["email"]) == ("Grace Hopper", "grace@example.com")
    [account] = auth.table("authAccounts")
    assert (account["provider"], account["providerAccountId"]) == ("fake", "fake-user-1")
    assert auth.table("authVerifiers") == []
    # A second sign-in finds the same user.
    verifier, callback = _start(auth)
    tokens = auth.sign_in(params={"code": _finish(auth, callback)}, verifier=verifier)["tokens"]
    assert auth.me(tokens["token"])["id"] == me["id"]
    assert len(auth.table("users")) == 1


def test_tampered_state_is_refused(auth: AuthBackend, idp: FakeIdP) -> None:
    verifier, callback = _start(auth)
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    tampered = {**query, "state": query["state"][:-4] + "AAAA"}
    response = auth.t.fetch(f"{parts.path}?{urllib.parse.urlencode(tampered)}")
    assert response.status == 400
    assert b"state" in response.body
    assert auth.table("authVerificationCodes") == []
    assert idp.grants  # the provider's code was never redeemed
    # Someone else's sign-in (another verifier id in the state) is refused too.
    other = {**query, "state": "x" + query["state"]}
    assert auth.t.fetch(f"{parts.path}?{urllib.parse.urlencode(other)}").status == 400
    # The genuine answer still completes.
    code = _finish(auth, callback)
    assert auth.sign_in(params={"code": code}, verifier=verifier)["tokens"] is not None


def test_replayed_callback_and_replayed_code_are_refused(auth: AuthBackend, idp: FakeIdP) -> None:
    verifier, callback = _start(auth)
    code = _finish(auth, callback)
    replay = auth.t.fetch(_path(callback))
    assert replay.status == 400  # the state is spent
    assert auth.sign_in(params={"code": code}, verifier=verifier)["tokens"] is not None
    assert auth.sign_in(params={"code": code}, verifier=verifier) == {"tokens": None}
    assert len(auth.table("authSessions")) == 1


def test_code_needs_the_verifier_of_the_browser_that_started(
    auth: AuthBackend, idp: FakeIdP
) -> None:
    _verifier, callback = _start(auth)
    code = _finish(auth, callback)
    assert auth.sign_in(params={"code": code}, verifier="someone-else") == {"tokens": None}
    assert auth.sign_in(params={"code": code}) == {"tokens": None}
    assert auth.table("authSessions") == []


def test_sign_in_link_works_once(auth: AuthBackend, idp: FakeIdP) -> None:
    answer = auth.sign_in("fake", params={})
    assert auth.t.fetch(_path(answer["redirect"])).status == 302
    again = auth.t.fetch(_path(answer["redirect"]))
    assert again.status == 400


def test_provider_refusal_and_unknown_code(auth: AuthBackend, idp: FakeIdP) -> None:
    _verifier, callback = _start(auth)
    idp.grants.clear()  # the provider forgot the code (expired, or used elsewhere)
    response = auth.t.fetch(_path(callback))
    assert response.status == 400
    assert b"invalid_grant" in response.body
    assert idp.refusals == ["token: unknown or used code"]


def test_missing_client_credentials_are_named(auth: AuthBackend) -> None:
    with pytest.raises(ConvexError) as excinfo:
        auth.sign_in("fake", params={})
    assert error_code(excinfo) == "OAuthNotConfigured"
    assert "AUTH_FAKE_ID" in str(excinfo.value.data)


def test_unreachable_provider_is_a_clear_error(auth: AuthBackend, idp: FakeIdP) -> None:
    from syncline._devtools import free_ports

    [port] = free_ports(1)
    auth.t.set_env("AUTH_FAKE_ISSUER", f"http://127.0.0.1:{port}")
    answer = auth.sign_in("fake", params={})
    response = auth.t.fetch(_path(answer["redirect"]))
    assert response.status == 502
    assert b"Could not start the sign-in with fake" in response.body
