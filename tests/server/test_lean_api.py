"""``LeanApi`` answers exactly as the Starlette app behind it would, and only what it should.

Every request below is sent twice, once through ``LeanApi`` and once straight
to the Starlette app it sits in front of (which serves the same paths with the
same ``HttpApi``): status, every header in order, and body must be the same,
request ids aside.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.conftest import ADMIN_KEY, BASIC_FILES, open_application
from syncline.application import Application
from syncline.server.app import create_app
from syncline.server.lean_api import LeanApi

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

VIA_STARLETTE = "x-test-via-starlette"


class Counting:
    """An ASGI app that counts the requests passed on to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.http = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.http += 1
        await self.app(scope, receive, send)


@pytest.fixture
def application(tmp_path: Path) -> Iterator[Application]:
    app = open_application(tmp_path, BASIC_FILES)
    yield app
    app.close()


@pytest.fixture
def lean(application: Application) -> LeanApi:
    app = create_app(application)
    assert isinstance(app, LeanApi)
    app.app = Counting(app.app)
    return app


@pytest.fixture
def client(lean: LeanApi) -> Iterator[TestClient]:
    async def either(scope: Any, receive: Any, send: Any) -> None:
        """``LeanApi``, or the app behind it when the request asks for it."""
        if scope["type"] == "http" and (VIA_STARLETTE.encode(), b"1") in scope["headers"]:
            await lean.app(scope, receive, send)
        else:
            await lean(scope, receive, send)

    with TestClient(either) as c:
        yield c


ORIGIN = {"Origin": "http://localhost:5173"}
ADMIN = {"Authorization": f"Convex {ADMIN_KEY}"}
CASES: dict[str, tuple[str, Any, dict[str, str]]] = {
    "query, json": ("/api/query", b'{"path":"messages:shapes","format":"json"}', {}),
    "query, encoded": (
        "/api/query",
        b'{"path":"messages:shapes","args":{},"format":"convex_encoded_json"}',
        ORIGIN,
    ),
    "args as an array": ("/api/query", b'{"path":"messages:count","args":[{"channel":"a"}]}', {}),
    "mutation": ("/api/mutation", b'{"path":"messages:touch_other","args":{}}', ORIGIN),
    "action": ("/api/action", b'{"path":"messages:double","args":{"x":2}}', {}),
    "function error": ("/api/mutation", b'{"path":"messages:fail","args":{"channel":"a"}}', {}),
    "ConvexError": ("/api/action", b'{"path":"messages:convex_nope"}', ORIGIN),
    "unknown function": ("/api/query", b'{"path":"messages:nope"}', {}),
    "internal function": ("/api/query", b'{"path":"messages:secret"}', {}),
    "internal, as admin": ("/api/query", b'{"path":"messages:secret"}', ADMIN),
    "admin key parameter": (
        f"/api/query?a=1&adminKey={ADMIN_KEY}",
        b'{"path":"messages:secret"}',
        {},
    ),
    "bad admin key parameter": ("/api/query?adminKey=no", b'{"path":"messages:total"}', ORIGIN),
    "bad json": ("/api/query", b"{nope", ORIGIN),
    "not an object": ("/api/mutation", b"[1]", {}),
    "empty body": ("/api/action", b"", {}),
    "bad path": ("/api/query", b'{"path":["x"]}', {}),
    "bad format": ("/api/query", b'{"path":"messages:total","format":"yaml"}', {}),
    "bad args": ("/api/query", b'{"path":"messages:count","args":{"channel":{"$bad":1}}}', {}),
    "bad header": ("/api/query", b'{"path":"messages:total"}', {"Authorization": "Basic x"}),
    "bad token": ("/api/mutation", b'{"path":"messages:total"}', {"Authorization": "Bearer x"}),
    "bad admin key": ("/api/action", b'{"path":"messages:total"}', {"Authorization": "Convex x"}),
    "too large": ("/api/query", b"x" * (16 * 1024 * 1024 + 2001), ORIGIN),
    "doubled slashes": ("//api//query", b'{"path":"messages:total"}', ORIGIN),
}
REQUEST_ID = re.compile(rb"\[Request ID: [0-9a-f]{16}\]")
NEW_ID = re.compile(rb'"value":"[0-9a-z]{32}"')


@pytest.mark.parametrize("case", list(CASES))
def test_answers_as_the_starlette_app(client: TestClient, lean: LeanApi, case: str) -> None:
    url, body, headers = CASES[case]
    if url.startswith("//"):
        url = "http://testserver" + url
    counting = lean.app
    assert isinstance(counting, Counting)
    before = counting.http
    answers = []
    for via in ({}, {VIA_STARLETTE: "1"}):
        response = client.post(url, content=body, headers={**headers, **via})
        answers.append(
            (
                response.status_code,
                response.headers.multi_items(),
                NEW_ID.sub(b"id", REQUEST_ID.sub(b"[Request ID: x]", response.content)),
            )
        )
    assert answers[0] == answers[1]
    assert counting.http == before + 1  # only the second one reached the app behind


def test_a_chunked_oversized_body(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    answers = [
        client.post("/api/mutation", content=chunks(), headers=via).content
        for via in ({}, {VIA_STARLETTE: "1"})
    ]
    assert answers[0] == answers[1]
    assert b"RequestTooLarge" in answers[0]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/query"),
        ("OPTIONS", "/api/mutation"),
        ("PUT", "/api/action"),
        ("POST", "/api/query/"),
        ("POST", "/api/function"),
        ("POST", "/api/querys"),
        ("GET", "/version"),
    ],
)
def test_everything_else_goes_to_the_app_behind(
    client: TestClient, lean: LeanApi, method: str, url: str
) -> None:
    counting = lean.app
    assert isinstance(counting, Counting)
    before = counting.http
    client.request(method, url, headers=ORIGIN, follow_redirects=False)
    assert counting.http == before + 1


def drive(lean: LeanApi, messages: list[dict[str, Any]], **scope: Any) -> list[dict[str, Any]]:
    """Run one request through ``lean`` with these receive messages; what it sent."""
    sent: list[dict[str, Any]] = []
    incoming = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    full = {
        "type": "http",
        "method": "POST",
        "path": "/api/mutation",
        "headers": [],
        "query_string": b"",
        **scope,
    }
    asyncio.run(lean(full, receive, send))
    return sent


def test_a_client_gone_before_its_body_ended_runs_nothing(
    client: TestClient, lean: LeanApi, application: Application
) -> None:
    body = b'{"path":"messages:touch_other","args":{}}'
    sent = drive(
        lean,
        [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert sent == []
    assert drive(lean, [{"type": "http.disconnect"}]) == []
    total = client.post("/api/query", content=b'{"path":"messages:total"}').json()
    assert total["value"] == 0.0


def test_an_unexpected_error_is_a_500_then_raised(
    lean: LeanApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lean.api, "call", broken)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/query",
        "headers": [],
        "query_string": b"",
    }
    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(lean(scope, receive, send))
    assert sent[0]["status"] == 500
    assert sent[1]["body"] == b"Internal Server Error"


class Recording:
    """An ASGI app that keeps the scope of each HTTP request and answers 204."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(dict(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def forwarded_request(path: str, client: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "scheme": "http",
        "client": (client, 50000),
        "headers": [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.9")],
    }


@pytest.mark.parametrize(
    ("client", "expected"),
    [("127.0.0.1", ("https", "203.0.113.9")), ("198.51.100.1", ("http", "198.51.100.1"))],
)
def test_the_app_behind_sees_a_trusted_proxy_s_forwarded_headers(
    application: Application, client: str, expected: tuple[str, str]
) -> None:
    # uvicorn runs without proxy_headers: the app behind must see them applied as before.
    behind = Recording()
    served = create_app(application)
    assert isinstance(served, LeanApi)
    lean = LeanApi(served.api, behind)

    async def sent(message: Any) -> None:
        pass

    async def nothing() -> Any:
        return {"type": "http.request", "body": b""}

    asyncio.run(lean(forwarded_request("/http/echo", client), nothing, sent))
    (scope,) = behind.scopes
    assert (scope["scheme"], scope["client"][0]) == expected
