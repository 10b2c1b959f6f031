"""The functions @convex-dev/auth 2.x calls (syncline.accounts.v2), through the test kit."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import APP, AuthBackend, open_auth_backend

#: the test app's tables and users:me, with the 2.x functions in place of 0.0.x's
AUTH_V2 = """
from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()], access_token_ttl_s=600, max_failed_attempts=3)
refreshSession, signOut, isAuthenticated = auth.v2.session()
signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()
"""


@contextlib.contextmanager
def open_v2_backend(tmp_path: Path, auth_source: str) -> Iterator[AuthBackend]:
    """The test app's tables, users:me and HTTP routes, with ``auth_source`` as auth.py."""
    functions = tmp_path / "functions"
    functions.mkdir()
    for name in ("schema.py", "users.py", "http.py"):
        shutil.copy(APP / name, functions / name)
    (functions / "auth.py").write_text(auth_source)
    with open_auth_backend(functions, tmp_path / "data") as backend:
        # These mutations run scrypt (about 60 ms alone); on a loaded machine that can near
        # the 1 s mutation limit, which is not what these tests are about.
        executor = backend.t.app.executor
        executor.limits = dataclasses.replace(executor.limits, function_timeout_s=20.0)
        yield backend


@pytest.fixture
def auth2(tmp_path: Path) -> Iterator[AuthBackend]:
    with open_v2_backend(tmp_path, AUTH_V2) as backend:
        yield backend


def _up(auth: AuthBackend, username: str, password: str) -> Any:
    args = {"username": username, "password": password}
    return auth.t.mutation("auth:signUpWithUsernamePassword", args)


def _in(auth: AuthBackend, username: str, password: str) -> Any:
    args = {"username": username, "password": password}
    return auth.t.mutation("auth:signInWithUsernamePassword", args)


def test_sign_up_answers_a_token_bundle_for_the_new_user(auth2: AuthBackend) -> None:
    answer = _up(auth2, "ada", "correct horse")
    assert answer["status"] == "complete"
    tokens = answer["tokens"]
    assert set(tokens) == {"accessToken", "refreshToken", "refreshTokenExpiresAt", "userId"}
    me = auth2.me(tokens["accessToken"])
    assert me["name"] == "ada" and me["id"] == tokens["userId"]
    assert auth2.as_token(tokens["accessToken"]).query("auth:isAuthenticated") is True
    [session] = auth2.table("authSessions")
    assert auth2.t.clock.now_ms() < tokens["refreshTokenExpiresAt"] <= session["expirationTime"]


def test_sign_up_errors_are_user_errors(auth2: AuthBackend) -> None:
    _up(auth2, "ada", "correct horse")
    assert _up(auth2, "ada", "another horse")["userError"] == {"error": "USERNAME_TAKEN"}
    short = _up(auth2, "bob", "short")["userError"]
    assert short == {"error": "PASSWORD_TOO_SHORT", "minimumLength": 8}
    assert _up(auth2, " bob", "correct horse")["userError"] == {
        "error": "USERNAME_HAS_SURROUNDING_WHITESPACE"
    }
    assert _up(auth2, "b" * 101, "correct horse")["userError"] == {
        "error": "USERNAME_TOO_LONG",
        "maximumLength": 100,
    }
    assert _up(auth2, "b" * 100, "correct horse")["status"] == "complete"
    assert len(auth2.table("users")) == 2


def test_sign_in_fails_alike_for_unknown_users_and_wrong_passwords(auth2: AuthBackend) -> None:
    _up(auth2, "ada", "correct horse")
    wrong = _in(auth2, "ada", "wrong horse")
    unknown = _in(auth2, "bob", "wrong horse")
    assert wrong == unknown == {"status": "error", "userError": {"error": "INVALID_CREDENTIALS"}}
    assert len(auth2.table("authSessions")) == 1
    # The failures counted: a third one blocks the account (max_failed_attempts=3).
    for _ in range(2):
        _in(auth2, "ada", "wrong horse")
    blocked = _in(auth2, "ada", "correct horse")["userError"]
    assert blocked["error"] == "RATE_LIMITED" and blocked["retryAfterMs"] > 0


def test_refresh_session_rotates_and_reuse_ends_the_session(auth2: AuthBackend) -> None:
    first = _up(auth2, "ada", "correct horse")["tokens"]
    rotated = auth2.t.mutation("auth:refreshSession", {"refreshToken": first["refreshToken"]})
    assert rotated["kind"] == "rotated"
    assert rotated["tokens"]["refreshToken"] != first["refreshToken"]
    assert auth2.me(rotated["tokens"]["accessToken"])["name"] == "ada"
    again = auth2.t.mutation("auth:refreshSession", {"refreshToken": first["refreshToken"]})
    assert again == {"kind": "noSession"}
    assert auth2.table("authSessions") == []
    assert auth2.as_token(first["accessToken"]).query("auth:isAuthenticated") is False


def test_sign_out_ends_the_session_of_the_refresh_token(auth2: AuthBackend) -> None:
    tokens = _up(auth2, "ada", "correct horse")["tokens"]
    other = _in(auth2, "ada", "correct horse")["tokens"]
    assert auth2.t.mutation("auth:signOut", {"refreshToken": tokens["refreshToken"]}) is None
    assert auth2.me(tokens["accessToken"]) is None
    assert auth2.me(other["accessToken"])["name"] == "ada"  # the other session lives on
    refreshed = auth2.t.mutation("auth:refreshSession", {"refreshToken": tokens["refreshToken"]})
    assert refreshed == {"kind": "noSession"}
    # Garbage and a wrong secret are ignored.
    for token in ("nope", other["refreshToken"].split("|")[0] + "|wrong"):
        assert auth2.t.mutation("auth:signOut", {"refreshToken": token}) is None
    assert auth2.me(other["accessToken"])["name"] == "ada"
