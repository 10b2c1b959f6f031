"""The Anonymous provider: a session for a new user, limited per client address."""

from __future__ import annotations

import pytest

from syncline.errors import ConvexError

from .conftest import AuthBackend, error_code, from_address


def test_anonymous_sign_in_creates_a_user_each_time(auth: AuthBackend) -> None:
    first = auth.sign_in("anonymous")["tokens"]
    second = auth.sign_in("anonymous")["tokens"]
    me = auth.me(first["token"])
    assert me["id"] != auth.me(second["token"])["id"]
    users = auth.table("users")
    assert [u["isAnonymous"] for u in users] == [True, True]
    assert {a["provider"] for a in auth.table("authAccounts")} == {"anonymous"}
    # Its refresh token rotates like any other.
    assert auth.refresh(first["refreshToken"])["token"]


def test_anonymous_sign_ins_are_limited_per_client_address(auth: AuthBackend) -> None:
    with from_address("203.0.113.7"):
        for _ in range(2):  # Anonymous(max_per_address=2) in the test app
            auth.sign_in("anonymous")
        with pytest.raises(ConvexError) as blocked:
            auth.sign_in("anonymous")
        assert error_code(blocked) == "TooManyFailedAttempts"
        assert len(auth.table("users")) == 2
    with from_address("198.51.100.2"):
        assert auth.sign_in("anonymous")["tokens"] is not None
