"""The 2.x OAuth functions (startSignInWith<X>, completeSignInWith<X>) against a fake OIDC provider.

The steps are the ones ``useSignInWithGoogle`` and its kin take in a browser:
the start mutation, the browser's trip through ``/api/auth/signin/<id>``, the
provider and the callback, and the complete mutation with the kept state.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncline.errors import ConvexError, FunctionDefinitionError

from .conftest import AuthBackend
from .fake_idp import FakeIdP
from .test_oauth import _location, _path
from .test_v2 import open_v2_backend

AUTH_V2_OAUTH = """
from syncline.accounts import OIDC, convex_auth

auth = convex_auth(providers=[OIDC(id="fake")], access_token_ttl_s=600)
refreshSession, signOut, isAuthenticated = auth.v2.session()
startSignInWithFake, completeSignInWithFake = auth.v2.oauth("fake")
store = auth.store
"""

INVALID_CODE = {"status": "error", "userError": {"error": "INVALID_CODE"}}


@pytest.fixture
def auth2(tmp_path: Path) -> Iterator[AuthBackend]:
    with open_v2_backend(tmp_path, AUTH_V2_OAUTH) as backend:
        yield backend


@pytest.fixture
def idp(auth2: AuthBackend) -> Iterator[FakeIdP]:
    with FakeIdP() as provider:
        for name, value in provider.env().items():
            auth2.t.set_env(name, value)
        yield provider


def _start(
    auth: AuthBackend, redirect_to: str = "http://app.test/welcome?tab=2"
) -> tuple[str, str]:
    """The start mutation: the state the client keeps, and the provider's redirect to the callback."""
    answer = auth.t.mutation("auth:startSignInWithFake", {"redirectTo": redirect_to})
    assert set(answer) == {"redirect", "state"}
    assert answer["state"] not in answer["redirect"]
    authorize = _location(auth.t.fetch(_path(answer["redirect"])))
    callback = httpx.get(authorize, follow_redirects=False)
    assert callback.status_code == 302
    return answer["state"], callback.headers["location"]


def _back(auth: AuthBackend, callback: str) -> dict[str, str]:
    """The callback; the query of the app URL it sends the browser back to."""
    back = _location(auth.t.fetch(_path(callback)))
    parts = urllib.parse.urlsplit(back)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://app.test/welcome"
    return dict(urllib.parse.parse_qsl(parts.query))


def _complete(auth: AuthBackend, code: str, state: str) -> Any:
    return auth.t.mutation("auth:completeSignInWithFake", {"code": code, "state": state})


def test_sign_in_end_to_end(auth2: AuthBackend, idp: FakeIdP) -> None:
    state, callback = _start(auth2)
    query = _back(auth2, callback)
    assert query["tab"] == "2" and "code" not in query  # the app's own params are kept
    answer = _complete(auth2, query["convexAuthCode"], state)
    assert answer["status"] == "complete"
    me = auth2.me(answer["tokens"]["accessToken"])
    assert (me["name"], me["email"]) == ("Grace Hopper", "grace@example.com")
    assert me["id"] == answer["tokens"]["userId"]
    assert auth2.table("authVerifiers") == []
    # The refresh token works with the 2.x session functions.
    rotated = auth2.t.mutation(
        "auth:refreshSession", {"refreshToken": answer["tokens"]["refreshToken"]}
    )
    assert rotated["kind"] == "rotated"
    # A second sign-in finds the same user.
    state, callback = _start(auth2)
    again = _complete(auth2, _back(auth2, callback)["convexAuthCode"], state)
    assert again["tokens"]["userId"] == me["id"]
    assert len(auth2.table("users")) == 1


def test_tampered_state_and_replayed_callback_are_refused(auth2: AuthBackend, idp: FakeIdP) -> None:
    state, callback = _start(auth2)
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    tampered = {**query, "state": query["state"][:-4] + "AAAA"}
    response = auth2.t.fetch(f"{parts.path}?{urllib.parse.urlencode(tampered)}")
    assert response.status == 400
    assert auth2.table("authVerificationCodes") == []
    assert idp.grants  # the provider's code was never redeemed
    code = _back(auth2, callback)["convexAuthCode"]
    assert auth2.t.fetch(_path(callback)).status == 400  # replayed: the state is spent
    assert _complete(auth2, code, state)["status"] == "complete"
    assert len(auth2.table("authSessions")) == 1


def test_code_works_once_and_only_with_the_state_of_the_browser_that_started(
    auth2: AuthBackend, idp: FakeIdP
) -> None:
    state, callback = _start(auth2)
    code = _back(auth2, callback)["convexAuthCode"]
    assert _complete(auth2, code, state)["status"] == "complete"
    assert _complete(auth2, code, state) == INVALID_CODE  # replayed code
    other_state, callback = _start(auth2)
    code = _back(auth2, callback)["convexAuthCode"]
    assert _complete(auth2, code, state) == INVALID_CODE  # another browser's state
    assert _complete(auth2, code, other_state) == INVALID_CODE  # a wrong try spent it
    assert _complete(auth2, "x" * 500, other_state) == INVALID_CODE
    assert len(auth2.table("authSessions")) == 1


def test_code_expires_after_a_minute(auth2: AuthBackend, idp: FakeIdP) -> None:
    state, callback = _start(auth2)
    code = _back(auth2, callback)["convexAuthCode"]
    auth2.t.clock.advance(61_000)
    assert _complete(auth2, code, state) == INVALID_CODE


def test_provider_errors_go_back_to_the_app_as_convex_auth_error(
    auth2: AuthBackend, idp: FakeIdP
) -> None:
    _state, callback = _start(auth2)
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    denied = {"state": query["state"], "error": "access_denied"}
    assert _back(auth2, f"{parts.path}?{urllib.parse.urlencode(denied)}") == {
        "tab": "2",
        "convexAuthError": "access_denied",
    }
    _state, callback = _start(auth2)
    idp.grants.clear()  # the provider refuses the code exchange
    assert _back(auth2, callback)["convexAuthError"] == "oauth_error"
    assert auth2.table("authSessions") == []


def test_redirect_must_stay_on_the_site(auth2: AuthBackend, idp: FakeIdP) -> None:
    with pytest.raises(ConvexError) as excinfo:
        auth2.t.mutation("auth:startSignInWithFake", {"redirectTo": "https://evil.test/"})
    assert excinfo.value.data["code"] == "InvalidRedirect"
    assert auth2.table("authVerifiers") == []


def test_unknown_provider_and_missing_store_are_named(tmp_path: Path) -> None:
    from syncline.accounts import OIDC, Password, convex_auth

    auth = convex_auth(providers=[Password(), OIDC(id="fake")])
    with pytest.raises(FunctionDefinitionError, match="'fake'"):
        auth.v2.oauth("github")
    with pytest.raises(FunctionDefinitionError, match="'fake'"):
        auth.v2.oauth("password")
    source = AUTH_V2_OAUTH.replace("store = auth.store\n", "")
    with (
        open_v2_backend(tmp_path, source) as backend,
        pytest.raises(ConvexError, match=r"store = auth\.store"),
    ):
        backend.t.mutation("auth:startSignInWithFake", {"redirectTo": "/"})


def test_abandoned_sign_ins_are_swept_by_later_ones(auth2: AuthBackend, idp: FakeIdP) -> None:
    start = {"redirectTo": "/"}
    for _ in range(3):
        auth2.t.mutation("auth:startSignInWithFake", start)
    auth2.t.clock.advance(15 * 60 * 1000 + 1)
    auth2.t.mutation("auth:startSignInWithFake", start)
    [live] = auth2.table("authVerifiers")
    assert live["expirationTime"] > auth2.t.clock.now_ms()


def test_a_sign_in_that_expired_at_the_provider_goes_back_as_expired(
    auth2: AuthBackend, idp: FakeIdP
) -> None:
    _state, callback = _start(auth2)
    auth2.t.clock.advance(15 * 60 * 1000 + 1)  # the user took too long at the provider
    assert _back(auth2, callback) == {"tab": "2", "convexAuthError": "expired"}
    assert auth2.table("authVerifiers") == []
    assert auth2.t.fetch(_path(callback)).status == 400  # and it is gone
