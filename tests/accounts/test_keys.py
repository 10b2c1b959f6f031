"""The signing keys in the data folder, and rotating them."""

from __future__ import annotations

import asyncio
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from syncline.accounts.keys import KEY_DIR_NAME, KeyStore
from syncline.application import Application
from syncline.clock import ManualClock
from syncline.errors import AuthError, InternalError
from syncline.identity import User

from .conftest import APP

HOUR_MS = 3600 * 1000


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(APP, tmp_path / "functions")
    return tmp_path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000_000)


def _open(project: Path, clock: ManualClock) -> Application:
    app = Application.open(project, clock=clock, durability="off")
    app.env.update({"SITE_URL": "http://app.test"})
    return app


@pytest.fixture
def opened(project: Path, clock: ManualClock) -> Iterator[list[Application]]:
    apps: list[Application] = []
    yield apps
    for app in apps:
        app.close()


def _sign_up(app: Application, email: str) -> str:
    args = {
        "provider": "password",
        "params": {"flow": "signUp", "email": email, "password": "correct horse"},
    }
    outcome = asyncio.run(app.executor.action("auth:signIn", args))
    token: str = outcome.unwrap()["tokens"]["token"]
    return token


def _verify(app: Application, token: str) -> User:
    identity = asyncio.run(app.identity_from_header(f"Bearer {token}"))
    assert isinstance(identity, User)
    return identity


def test_the_first_key_is_created_private_and_kept(project: Path, clock: ManualClock) -> None:
    folder = project / ".syncline" / KEY_DIR_NAME
    first = KeyStore.open(folder, clock.now_ms())
    again = KeyStore.open(folder, clock.now_ms())
    assert first.signing_key.kid == again.signing_key.kid
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_tokens_survive_a_restart(project: Path, clock: ManualClock) -> None:
    app = _open(project, clock)
    try:
        token = _sign_up(app, "ada@example.com")
    finally:
        app.close()
    app = _open(project, clock)
    try:
        assert _verify(app, token).user.subject.count("|") == 1
    finally:
        app.close()


def test_rotation_keeps_old_tokens_valid_until_they_expire(
    project: Path, clock: ManualClock
) -> None:
    app = _open(project, clock)
    try:
        old_token = _sign_up(app, "ada@example.com")
        old_kid = jwt.get_unverified_header(old_token)["kid"]
    finally:
        app.close()
    folder = project / ".syncline" / KEY_DIR_NAME
    new_key = KeyStore.open(folder, clock.now_ms()).rotate(clock.now_ms(), keep_ms=HOUR_MS)
    assert new_key.kid != old_kid

    app = _open(project, clock)
    try:
        assert app.issuer is not None
        assert {k["kid"] for k in app.issuer.jwks()["keys"]} == {old_kid, new_key.kid}
        _verify(app, old_token)  # signed by the retired key: still valid
        new_token = _sign_up(app, "bob@example.com")
        assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
        _verify(app, new_token)
    finally:
        app.close()

    # The next rotation, past the keep window, drops the retired key and its file.
    clock.advance(2 * HOUR_MS)
    KeyStore.open(folder, clock.now_ms()).rotate(clock.now_ms(), keep_ms=HOUR_MS)
    assert not (folder / f"{old_kid}.pem").exists()
    app = _open(project, clock)
    try:
        assert old_kid not in {k["kid"] for k in app.issuer.jwks()["keys"]}  # type: ignore[union-attr]
        with pytest.raises(AuthError):
            _verify(app, old_token)  # expired anyway, and its key is gone
    finally:
        app.close()


def test_unreadable_keys_are_a_clear_error(project: Path, clock: ManualClock) -> None:
    folder = project / ".syncline" / KEY_DIR_NAME
    store = KeyStore.open(folder, clock.now_ms())
    (folder / f"{store.signing_key.kid}.pem").write_text("not a key")
    with pytest.raises(InternalError, match="unreadable"):
        KeyStore.open(folder, clock.now_ms())


def test_discovery_documents_are_served(project: Path, clock: ManualClock) -> None:
    app = _open(project, clock)
    try:
        from syncline.functions.http.request import HttpRequest
        from syncline.server.http_actions import dispatch

        def get(path: str) -> object:
            response = asyncio.run(dispatch(app, HttpRequest("GET", f"http://site.test{path}")))
            assert response.status == 200
            import json

            return json.loads(response.body)

        config = get("/.well-known/openid-configuration")
        assert config["issuer"] == app.site_url  # type: ignore[index]
        jwks = get("/.well-known/jwks.json")
        token = _sign_up(app, "ada@example.com")
        key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]  # type: ignore[arg-type]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience="convex",
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims["iss"] == app.site_url
    finally:
        app.close()
