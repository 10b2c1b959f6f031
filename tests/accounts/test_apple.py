"""Sign in with Apple (with the 2.x functions): a minted ES256 client secret, a form POST answer.

The fake provider plays Apple: it checks the client secret JWT against the
team's public key, answers with an auto-posting form (``response_mode=form_post``),
sends the user's name in that form rather than in the ID token, and sends
``email_verified`` as the string ``"true"``.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from syncline.errors import ConvexError

from .conftest import AuthBackend
from .fake_idp import FakeIdP
from .test_oauth import _location, _path
from .test_v2 import open_v2_backend

AUTH_V2_APPLE = """
from syncline.accounts import Apple, convex_auth

auth = convex_auth(providers=[Apple(issuer=None)])  # the issuer from AUTH_APPLE_ISSUER
refreshSession, signOut, isAuthenticated = auth.v2.session()
startSignInWithApple, completeSignInWithApple = auth.v2.oauth("apple")
store = auth.store
"""


@pytest.fixture
def apple(tmp_path: Path) -> Iterator[tuple[AuthBackend, FakeIdP]]:
    with (
        open_v2_backend(tmp_path, AUTH_V2_APPLE) as backend,
        FakeIdP(apple_key=ec.generate_private_key(ec.SECP256R1())) as idp,
    ):
        for name, value in idp.apple_env().items():
            backend.t.set_env(name, value)
        yield backend, idp


def _form_post(page: str) -> tuple[str, dict[str, str]]:
    """The action and fields of the provider's auto-posting form."""
    action = re.search(r'action="([^"]+)"', page)
    assert action, page
    fields = re.findall(r'name="([^"]+)" value="([^"]*)"', page)
    return html.unescape(action.group(1)), {html.unescape(k): html.unescape(v) for k, v in fields}


def _sign_in(auth: AuthBackend) -> Any:
    start = auth.t.mutation("auth:startSignInWithApple", {"redirectTo": "/"})
    authorize = _location(auth.t.fetch(_path(start["redirect"])))
    assert "response_mode=form_post" in authorize
    answer = httpx.get(authorize, follow_redirects=False)
    assert answer.status_code == 200
    action, fields = _form_post(answer.text)
    assert urllib.parse.urlsplit(action).path == "/api/auth/callback/apple"
    back = auth.t.fetch(
        urllib.parse.urlsplit(action).path,
        method="POST",
        body=urllib.parse.urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(_location(back)).query)
    code = query["convexAuthCode"][0]
    return auth.t.mutation("auth:completeSignInWithApple", {"code": code, "state": start["state"]})


def test_apple_sign_in_keeps_the_name_of_the_first_sign_in(
    apple: tuple[AuthBackend, FakeIdP],
) -> None:
    auth, idp = apple
    first = _sign_in(auth)
    assert first["status"] == "complete", first
    me = auth.me(first["tokens"]["accessToken"])
    assert (me["name"], me["email"]) == ("Grace Hopper", "grace@example.com")
    [account] = auth.table("authAccounts")
    assert (account["provider"], account["providerAccountId"]) == ("apple", "fake-user-1")
    # Apple sends the name only once; later sign-ins keep it.
    idp.name = ""
    again = _sign_in(auth)
    assert auth.me(again["tokens"]["accessToken"])["name"] == "Grace Hopper"
    assert idp.refusals == []


def test_a_wrong_team_key_is_refused_by_the_provider(
    apple: tuple[AuthBackend, FakeIdP],
) -> None:
    auth, idp = apple
    idp.apple_key = ec.generate_private_key(ec.SECP256R1())  # the provider knows another key
    start = auth.t.mutation("auth:startSignInWithApple", {"redirectTo": "/"})
    answer = httpx.get(_location(auth.t.fetch(_path(start["redirect"]))), follow_redirects=False)
    action, fields = _form_post(answer.text)
    back = auth.t.fetch(
        urllib.parse.urlsplit(action).path,
        method="POST",
        body=urllib.parse.urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "convexAuthError=oauth_error" in _location(back)
    assert idp.refusals == ["token: bad client credentials"]


def test_missing_or_bad_key_is_named(apple: tuple[AuthBackend, FakeIdP]) -> None:
    auth, _idp = apple
    auth.t.set_env("AUTH_APPLE_PRIVATE_KEY", "not a key")
    with pytest.raises(ConvexError) as excinfo:
        auth.t.mutation("auth:startSignInWithApple", {"redirectTo": "/"})
    assert "AUTH_APPLE_PRIVATE_KEY" in str(excinfo.value.data)
    auth.t.set_env("AUTH_APPLE_PRIVATE_KEY", None)
    with pytest.raises(ConvexError) as excinfo:
        auth.t.mutation("auth:startSignInWithApple", {"redirectTo": "/"})
    assert "AUTH_APPLE_SECRET" in str(excinfo.value.data)
    # A secret made beforehand works too (here a wrong one: the provider refuses it later).
    auth.t.set_env("AUTH_APPLE_SECRET", "eyJ.made.beforehand")
    assert "redirect" in auth.t.mutation("auth:startSignInWithApple", {"redirectTo": "/"})
