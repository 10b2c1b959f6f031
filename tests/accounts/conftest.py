from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncline.errors import ConvexError
from syncline.functions.caller import client_address
from syncline.testing import TestBackend

APP = Path(__file__).parent / "app" / "functions"


class AuthBackend:
    """A TestBackend of the test app, with helpers that call auth the way the client does."""

    def __init__(self, backend: TestBackend) -> None:
        self.t = backend

    def sign_in(self, provider: str | None = None, **args: Any) -> Any:
        return self.t.action("auth:signIn", {"provider": provider, **args} if provider else args)

    def password(self, flow: str, email: str, password: str, **params: Any) -> Any:
        return self.sign_in(
            "password", params={"flow": flow, "email": email, "password": password, **params}
        )

    def refresh(self, refresh_token: str) -> Any:
        return self.sign_in(refreshToken=refresh_token)["tokens"]

    def as_token(self, token: str) -> TestBackend:
        """A view of the backend whose calls carry ``token`` (verified as a client's would be)."""
        identity = asyncio.run(self.t.app.identity_from_header(f"Bearer {token}"))
        view = object.__new__(TestBackend)
        view.__dict__.update(self.t.__dict__)
        view._identity = identity
        return view

    def me(self, token: str) -> Any:
        return self.as_token(token).query("users:me")

    def table(self, name: str) -> list[dict[str, Any]]:
        return self.t.run(lambda ctx: ctx.db.query(name).collect())


def error_code(excinfo: pytest.ExceptionInfo[ConvexError]) -> str:
    data = excinfo.value.data
    assert isinstance(data, dict), data
    return str(data["code"])


@contextlib.contextmanager
def from_address(address: str) -> Iterator[None]:
    """Calls made inside come from client ``address`` (as the server sets it)."""
    token = client_address.set(address)
    try:
        yield
    finally:
        client_address.reset(token)


@contextlib.contextmanager
def open_auth_backend(functions: Path, data_dir: Path) -> Iterator[AuthBackend]:
    backend = TestBackend(functions, data_dir=data_dir)
    try:
        backend.set_env("SITE_URL", "http://app.test")
        yield AuthBackend(backend)
    finally:
        backend.close()


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthBackend]:
    with open_auth_backend(APP, tmp_path) as backend:
        yield backend
