"""Access-token expiry, refresh-token rotation and reuse, sign-out."""

from __future__ import annotations

import jwt
import pytest

from syncline.errors import AuthError

from .conftest import AuthBackend

MINUTE_MS = 60 * 1000


def _sign_up(auth: AuthBackend) -> dict[str, str]:
    tokens: dict[str, str] = auth.password("signUp", "ada@example.com", "correct horse")["tokens"]
    return tokens


def test_access_token_claims(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    header = jwt.get_unverified_header(tokens["token"])
    claims = jwt.decode(tokens["token"], options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert header["kid"] == auth.t.app.issuer.keys.signing_key.kid  # type: ignore[union-attr]
    assert claims["iss"] == auth.t.app.site_url
    assert claims["aud"] == "convex"
    assert claims["exp"] - claims["iat"] == 600  # access_token_ttl_s of the test app


def test_access_token_expires_and_refresh_gives_a_new_one(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    auth.t.clock.advance(11 * MINUTE_MS)
    with pytest.raises(AuthError, match="expired"):
        auth.me(tokens["token"])
    fresh = auth.refresh(tokens["refreshToken"])
    assert fresh["refreshToken"] != tokens["refreshToken"]
    assert auth.me(fresh["token"])["email"] == "ada@example.com"


def test_a_refresh_token_works_once_and_its_reuse_ends_the_session(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    second = auth.refresh(tokens["refreshToken"])
    third = auth.refresh(second["refreshToken"])
    assert third is not None
    # The first token again: stolen. Nobody may refresh this session any more.
    assert auth.refresh(tokens["refreshToken"]) is None
    assert auth.refresh(third["refreshToken"]) is None
    assert auth.table("authSessions") == []
    assert auth.table("authRefreshTokens") == []
    assert auth.me(third["token"]) is None


def test_sign_out_ends_the_session_and_its_refresh_tokens(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    other = auth.password("signIn", "ada@example.com", "correct horse")["tokens"]
    auth.as_token(tokens["token"]).action("auth:signOut")
    assert auth.refresh(tokens["refreshToken"]) is None
    assert auth.me(tokens["token"]) is None
    # The other device stays signed in.
    assert auth.me(other["token"]) is not None
    assert auth.refresh(other["refreshToken"]) is not None


def test_sign_out_without_a_session_is_a_no_op(auth: AuthBackend) -> None:
    assert auth.t.action("auth:signOut") is None


@pytest.mark.parametrize(
    "bad",
    ["", "nonsense", "a|b", "|", "x" * 200 + "|y"],
)
def test_malformed_refresh_tokens_sign_out(auth: AuthBackend, bad: str) -> None:
    _sign_up(auth)
    assert auth.refresh(bad) is None
    assert len(auth.table("authSessions")) == 1


def test_a_forged_secret_with_a_real_token_id_is_refused(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    token_id = tokens["refreshToken"].split("|")[0]
    assert auth.refresh(f"{token_id}|forged") is None
    # Not counted as a reuse: the real token still works.
    assert auth.refresh(tokens["refreshToken"]) is not None


def test_session_expires_after_its_lifetime(auth: AuthBackend) -> None:
    tokens = _sign_up(auth)
    auth.t.clock.advance(31 * 24 * 60 * MINUTE_MS)
    assert auth.refresh(tokens["refreshToken"]) is None
    assert auth.table("authSessions") == []
