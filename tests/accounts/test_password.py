"""Password sign-up and sign-in through auth:signIn, with real tokens."""

from __future__ import annotations

import pytest

from syncline.errors import AuthError, ConvexError

from .conftest import AuthBackend, error_code, from_address


def test_sign_up_returns_tokens_whose_identity_is_the_new_user(auth: AuthBackend) -> None:
    answer = auth.password("signUp", "Ada@Example.com", "correct horse", name="Ada")
    tokens = answer["tokens"]
    me = auth.me(tokens["token"])
    assert me["name"] == "Ada"
    assert me["email"] == "ada@example.com"
    [session] = auth.table("authSessions")
    assert me["subject"] == f"{me['id']}|{session['_id']}"
    [account] = auth.table("authAccounts")
    assert account["provider"] == "password"
    assert account["providerAccountId"] == "ada@example.com"
    assert account["secret"].startswith("scrypt$") and "correct horse" not in account["secret"]


def test_sign_in_with_the_right_password_opens_a_second_session(auth: AuthBackend) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    tokens = auth.password("signIn", "ADA@example.com ", "correct horse")["tokens"]
    assert auth.me(tokens["token"])["email"] == "ada@example.com"
    assert len(auth.table("authSessions")) == 2


def test_wrong_password_and_unknown_email_fail_alike_and_create_no_session(
    auth: AuthBackend,
) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    with pytest.raises(ConvexError) as wrong:
        auth.password("signIn", "ada@example.com", "wrong horse")
    with pytest.raises(ConvexError) as unknown:
        auth.password("signIn", "bob@example.com", "correct horse")
    assert wrong.value.data == unknown.value.data
    assert error_code(wrong) == "InvalidCredentials"
    assert len(auth.table("authSessions")) == 1  # the sign-up's only


def test_short_password_is_refused_at_sign_up(auth: AuthBackend) -> None:
    with pytest.raises(ConvexError) as excinfo:
        auth.password("signUp", "ada@example.com", "short")
    assert error_code(excinfo) == "WeakPassword"
    assert auth.table("users") == []


def test_failed_attempts_are_rate_limited_per_account(auth: AuthBackend) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    for _ in range(3):  # max_failed_attempts=3 in the test app
        with pytest.raises(ConvexError) as excinfo:
            auth.password("signIn", "ada@example.com", "wrong horse")
        assert error_code(excinfo) == "InvalidCredentials"
    with pytest.raises(ConvexError) as blocked:
        auth.password("signIn", "ada@example.com", "correct horse")
    assert error_code(blocked) == "TooManyFailedAttempts"
    # Another account is not affected; an unknown one is limited the same way (no enumeration).
    auth.password("signUp", "bob@example.com", "correct horse")
    auth.password("signIn", "bob@example.com", "correct horse")
    # The bucket refills: one attempt per window/3 (the window is an hour).
    auth.t.clock.advance(21 * 60 * 1000)
    assert auth.password("signIn", "ada@example.com", "correct horse")["tokens"] is not None


def test_a_success_clears_the_failures(auth: AuthBackend) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    for _ in range(2):
        with pytest.raises(ConvexError):
            auth.password("signIn", "ada@example.com", "wrong horse")
    auth.password("signIn", "ada@example.com", "correct horse")
    assert auth.table("authRateLimits") == []


def test_unknown_provider_and_flow_are_named(auth: AuthBackend) -> None:
    with pytest.raises(ConvexError) as provider:
        auth.sign_in("nope", params={})
    assert error_code(provider) == "UnknownProvider"
    with pytest.raises(ConvexError) as flow:
        auth.sign_in("password", params={"flow": "dance", "email": "a@b.c", "password": "x"})
    assert error_code(flow) == "InvalidFlow"


def test_token_of_a_deleted_session_no_longer_counts(auth: AuthBackend) -> None:
    token = auth.password("signUp", "ada@example.com", "correct horse")["tokens"]["token"]
    auth.as_token(token).action("auth:signOut")
    assert auth.me(token) is None
    assert auth.as_token(token).query("auth:isAuthenticated") is False


def test_tampered_token_is_rejected(auth: AuthBackend) -> None:
    token = auth.password("signUp", "ada@example.com", "correct horse")["tokens"]["token"]
    header, claims, signature = token.split(".")
    with pytest.raises(AuthError):
        auth.as_token(f"{header}.{claims}.{signature[:-4]}AAAA")


def test_failed_attempts_are_rate_limited_per_client_address(auth: AuthBackend) -> None:
    """One address trying one password against many accounts is stopped (test app: 6 per hour)."""
    auth.password("signUp", "victim@example.com", "correct horse")
    with from_address("203.0.113.7"):
        for i in range(6):
            with pytest.raises(ConvexError) as excinfo:
                auth.password("signIn", f"user{i}@example.com", "password123")
            assert error_code(excinfo) == "InvalidCredentials"
        with pytest.raises(ConvexError) as blocked:
            auth.password("signIn", "victim@example.com", "correct horse")
        assert error_code(blocked) == "TooManyFailedAttempts"
    # Another address is not affected, and its success does not refill the first one's bucket.
    with from_address("198.51.100.2"):
        assert auth.password("signIn", "victim@example.com", "correct horse")["tokens"]
    with from_address("203.0.113.7"), pytest.raises(ConvexError):
        auth.password("signIn", "victim@example.com", "correct horse")
    [address] = [r for r in auth.table("authRateLimits") if r["identifier"].startswith("address:")]
    assert address["identifier"] == "address:203.0.113.7"


def test_a_success_does_not_clear_the_address_failures(auth: AuthBackend) -> None:
    auth.password("signUp", "mine@example.com", "correct horse")
    with from_address("203.0.113.7"):
        for i in range(5):
            with pytest.raises(ConvexError):
                auth.password("signIn", f"user{i}@example.com", "password123")
        auth.password("signIn", "mine@example.com", "correct horse")  # the attacker's own account
        with pytest.raises(ConvexError):
            auth.password("signIn", "user9@example.com", "password123")
        with pytest.raises(ConvexError) as blocked:
            auth.password("signIn", "mine@example.com", "correct horse")
        assert error_code(blocked) == "TooManyFailedAttempts"
