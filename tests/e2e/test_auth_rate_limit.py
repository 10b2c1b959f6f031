"""Per-address limits on failed sign-ins, through a real server.

The client's address reaches ``auth:signIn`` on both paths a Convex client
uses: the HTTP function API (``X-Forwarded-For`` counts when the peer is a
trusted proxy, 127.0.0.1 by default) and the sync WebSocket. The app allows 8
failures per address and 5 per account.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncline import Client, ConvexError

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "auth_app"


def sign_in(server: Any, email: str, password: str, forwarded_for: str | None = None) -> Any:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    params = {"flow": "signIn", "email": email, "password": password}
    response = httpx.post(
        f"{server.url}/api/action",
        json={"path": "auth:signIn", "args": {"provider": "password", "params": params}},
        headers=headers,
        timeout=10,
    )
    return response.json()


def error_code(answer: Any) -> str | None:
    return None if answer["status"] == "success" else answer.get("errorData", {}).get("code")


def test_failures_count_per_client_address(start_server: Any, tmp_path: Path) -> None:
    shutil.copytree(APP / "functions", tmp_path / "app" / "functions")
    server = start_server(tmp_path / "app")
    with Client(server.url) as client:
        params = {"flow": "signUp", "email": "ada@example.com", "password": "correct horse"}
        client.action("auth:signIn", {"provider": "password", "params": params})

    # One address (behind the trusted local proxy) tries a password on many accounts.
    for i in range(8):
        answer = sign_in(server, f"user{i}@example.com", "password123", "203.0.113.7")
        assert error_code(answer) == "InvalidCredentials", answer
    blocked = sign_in(server, "ada@example.com", "correct horse", "203.0.113.7")
    assert error_code(blocked) == "TooManyFailedAttempts", blocked
    # Others are not affected.
    assert (
        sign_in(server, "ada@example.com", "correct horse", "198.51.100.2")["status"] == "success"
    )

    # The sync WebSocket counts against the socket's address (127.0.0.1 here).
    with Client(server.url) as client:
        for i in range(8):
            params = {"flow": "signIn", "email": f"ws{i}@example.com", "password": "password123"}
            with pytest.raises(ConvexError) as failed:
                client.action("auth:signIn", {"provider": "password", "params": params})
            assert failed.value.data["code"] == "InvalidCredentials"
        params = {"flow": "signIn", "email": "ada@example.com", "password": "correct horse"}
        with pytest.raises(ConvexError) as blocked_ws:
            client.action("auth:signIn", {"provider": "password", "params": params})
        assert blocked_ws.value.data["code"] == "TooManyFailedAttempts"
    # An HTTP call from that same address (no proxy header) is blocked too.
    assert (
        error_code(sign_in(server, "ada@example.com", "correct horse")) == "TooManyFailedAttempts"
    )
