"""The signing keys in the database, moving them from the data folder, and rotating them."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from syncline.accounts.issuer import TokenIssuer
from syncline.accounts.keys import KEY_DIR_NAME, TABLE, KeyStore, rotate_keys
from syncline.application import Application
from syncline.clock import ManualClock
from syncline.database.query import Query
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


def _keys(project: Path, clock: ManualClock) -> KeyStore:
    """The keys in the project's database, opened as ``syncline rotate-auth-keys`` does."""
    app = Application.open(project, clock=clock, durability="off", load=False)
    try:
        return KeyStore.open(app.database, clock.now_ms())
    finally:
        app.close()


def _rotate(project: Path, clock: ManualClock, keep_ms: float) -> str:
    app = Application.open(project, clock=clock, durability="off", load=False)
    try:
        return rotate_keys(app.database, clock.now_ms(), keep_ms).kid
    finally:
        app.close()


def _write_legacy_folder(folder: Path, key: KeyStore) -> None:
    """The data-folder layout of keys from before they moved to the database."""
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True)
    signing = key.signing_key
    pem = signing.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / f"{signing.kid}.pem").write_bytes(pem)
    index = {"keys": [{"kid": signing.kid, "createdMs": signing.created_ms, "retiredMs": None}]}
    (folder / "keys.json").write_text(json.dumps(index))


def test_the_first_key_is_created_once_in_the_database(project: Path, clock: ManualClock) -> None:
    app = _open(project, clock)
    try:
        assert app.issuer is not None
        kid = app.issuer.keys.signing_key.kid
    finally:
        app.close()
    assert _keys(project, clock).signing_key.kid == kid
    assert [k.kid for k in _keys(project, clock).keys] == [kid]
    assert not (project / ".syncline" / KEY_DIR_NAME).exists()


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


def test_keys_of_the_data_folder_move_into_the_database_once(
    project: Path, clock: ManualClock
) -> None:
    """A deployment from before the database kept its keys: its tokens stay valid."""
    legacy = KeyStore.in_memory(clock.now_ms())
    folder = project / ".syncline" / KEY_DIR_NAME
    _write_legacy_folder(folder, legacy)
    app = _open(project, clock)
    try:
        assert app.issuer is not None
        assert app.issuer.keys.signing_key.kid == legacy.signing_key.kid
        # A token the old key signed before the upgrade verifies.
        old_token = TokenIssuer(legacy, lambda: app.site_url, clock).sign("u", "s", 600)
        assert _verify(app, old_token).user.subject == "u|s"
    finally:
        app.close()
    # Copied once: the folder is no longer needed.
    shutil.rmtree(folder)
    assert [k.kid for k in _keys(project, clock).keys] == [legacy.signing_key.kid]


def test_rotation_keeps_old_tokens_valid_until_they_expire(
    project: Path, clock: ManualClock
) -> None:
    app = _open(project, clock)
    try:
        old_token = _sign_up(app, "ada@example.com")
        old_kid = jwt.get_unverified_header(old_token)["kid"]
    finally:
        app.close()
    new_kid = _rotate(project, clock, keep_ms=HOUR_MS)
    assert new_kid != old_kid

    app = _open(project, clock)
    try:
        assert app.issuer is not None
        assert {k["kid"] for k in app.issuer.jwks()["keys"]} == {old_kid, new_kid}
        _verify(app, old_token)  # signed by the retired key: still valid
        new_token = _sign_up(app, "bob@example.com")
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        _verify(app, new_token)
    finally:
        app.close()

    # The next rotation, past the keep window, drops the retired key.
    clock.advance(2 * HOUR_MS)
    _rotate(project, clock, keep_ms=HOUR_MS)
    assert old_kid not in {k.kid for k in _keys(project, clock).keys}
    app = _open(project, clock)
    try:
        assert old_kid not in {k["kid"] for k in app.issuer.jwks()["keys"]}  # type: ignore[union-attr]
        with pytest.raises(AuthError):
            _verify(app, old_token)  # expired anyway, and its key is gone
    finally:
        app.close()


def test_a_running_server_follows_a_rotation_without_restarting(
    project: Path, clock: ManualClock
) -> None:
    app = _open(project, clock)

    async def scenario() -> tuple[str, str]:
        await app.start()
        try:
            before = _kid_of(await _asign_up(app, "ada@example.com"))
            # Another process (here: another store object) rotates in the database.
            await asyncio.to_thread(rotate_keys, app.database, clock.now_ms(), HOUR_MS)
            for attempt in range(200):
                after = _kid_of(await _asign_up(app, f"u{attempt}@example.com"))
                if after != before:
                    break
                await asyncio.sleep(0.01)
            token = await _asign_up(app, "bob@example.com")
            await app.identity_from_header(f"Bearer {token}")  # the verifier has the new key
            return before, after
        finally:
            await app.stop()

    try:
        before, after = asyncio.run(scenario())
    finally:
        app.close()
    assert before != after


async def _asign_up(app: Application, email: str) -> str:
    args = {
        "provider": "password",
        "params": {"flow": "signUp", "email": email, "password": "correct horse"},
    }
    outcome = await app.executor.action("auth:signIn", args)
    token: str = outcome.unwrap()["tokens"]["token"]
    return token


def _kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_unreadable_keys_are_a_clear_error(project: Path, clock: ManualClock) -> None:
    app = Application.open(project, clock=clock, durability="off", load=False)
    try:
        KeyStore.open(app.database, clock.now_ms())

        def corrupt(tx: Any) -> None:
            for doc in Query(tx, TABLE).collect():
                tx.patch(doc["_id"], {"privateKey": "not a key"})

        app.database.write_sync(corrupt)
        with pytest.raises(InternalError, match="not a PEM private key"):
            KeyStore.open(app.database, clock.now_ms())
    finally:
        app.close()


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


def test_auth_added_by_a_reload_of_a_running_server_follows_rotations(
    project: Path, clock: ManualClock
) -> None:
    app = Application.open(project, clock=clock, durability="off", load=False)

    async def scenario() -> None:
        await app.start()
        try:
            await asyncio.to_thread(app.load)  # as a dev reload: off the event loop
            assert app.issuer is not None
            before = app.issuer.keys.signing_key.kid
            other = await asyncio.to_thread(rotate_keys, app.database, clock.now_ms(), HOUR_MS)
            for _ in range(500):
                if app.issuer.keys.signing_key.kid != before:
                    break
                await asyncio.sleep(0.01)
            assert app.issuer.keys.signing_key.kid == other.kid
        finally:
            await app.stop()

    try:
        asyncio.run(scenario())
    finally:
        app.close()
