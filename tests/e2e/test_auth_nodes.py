"""Built-in auth on two ``serve`` nodes sharing one PostgreSQL database.

The signing keys live in the database: a token one node issues verifies on
the other, and ``syncline rotate-auth-keys`` (through one node) reaches both
without a restart, old tokens staying valid.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner

from conftest import StartServer
from syncline._devtools import ServerProcess
from syncline.cli import main

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "auth_app"
#: both nodes answer behind one address, as behind a load balancer: one token issuer
PUBLIC_URL = "http://auth.example.test"


@pytest.fixture
def start_node(
    start_server: StartServer, database_url: str, tmp_path: Path
) -> Callable[[], ServerProcess]:
    count = 0

    def start() -> ServerProcess:
        nonlocal count
        folder = tmp_path / f"node{count}"
        count += 1
        shutil.copytree(APP / "functions", folder / "functions")
        return start_server(folder, args=["--db", database_url, "--public-url", PUBLIC_URL])

    return start


def _call(node: ServerProcess, kind: str, path: str, args: dict[str, Any], token: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{node.url}/api/{kind}",
        json={"path": path, "args": args, "format": "json"},
        headers=headers,
        timeout=20,
    )
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


def _password(node: ServerProcess, flow: str, email: str) -> str:
    params = {"flow": flow, "email": email, "password": "correct horse", "name": email}
    answer = _call(node, "action", "auth:signIn", {"provider": "password", "params": params})
    token: str = answer["tokens"]["token"]
    return token


def _me(node: ServerProcess, token: str) -> Any:
    return _call(node, "query", "users:me", {}, token)


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_tokens_and_key_rotation_reach_every_node(
    start_node: Callable[[], ServerProcess], database_url: str
) -> None:
    a, b = start_node(), start_node()
    old_token = _password(a, "signUp", "ada@example.com")
    assert _me(b, old_token)["email"] == "ada@example.com"  # issued on A, verified on B
    token_b = _password(b, "signIn", "ada@example.com")
    assert _kid(token_b) == _kid(old_token)  # one key for both
    assert _me(a, token_b)["email"] == "ada@example.com"

    # The rotation route is admin only, and checks its body.
    route = f"{a.url}/api/admin/auth_keys/rotate"
    assert httpx.post(route, json={"keepS": 60}, timeout=10).status_code == 403
    bad = httpx.post(
        route, json={"keepS": -1}, headers={"Authorization": f"Convex {a.admin_key}"}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["code"] == "BadRotateRequest"

    # Rotate through node A (the CLI finds it running on its folder).
    result = CliRunner().invoke(
        main, ["rotate-auth-keys", "--dir", str(a.project), "--db", database_url]
    )
    assert result.exit_code == 0, result.output
    assert "New signing key" in result.output
    new_kid = result.output.split("New signing key ")[1].split(";")[0]
    assert new_kid != _kid(old_token)

    # B signs with the new key as soon as it sees the commit, with no restart.
    deadline = time.monotonic() + 20
    while _kid(token := _password(b, "signIn", "ada@example.com")) != new_kid:
        assert time.monotonic() < deadline, "node B never picked up the rotated key"
        time.sleep(0.2)
    assert _me(a, token)["email"] == "ada@example.com"
    # Tokens signed before the rotation stay valid on both nodes until they expire.
    assert _me(a, old_token)["email"] == "ada@example.com"
    assert _me(b, old_token)["email"] == "ada@example.com"
