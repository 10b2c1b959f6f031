"""The HTTP function API on a real socket, served by the production uvicorn setup.

What the in-process ``TestClient`` cannot show: keep-alive and pipelining,
chunked bodies, ``Expect: 100-continue``, the connection closed after a
refused body, and the response head as bytes (``date`` and ``server`` too).
"""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import pytest

from server.conftest import LiveServer

MiB = 1024 * 1024
LIMIT = 16 * MiB + 2000


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One keep-alive HTTP/1.1 connection, read response by response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server closed the connection (having nothing more to say)."""
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except (ConnectionResetError, TimeoutError):
            return False

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed mid-head: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [
            (k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])
        ]
        length = dict(headers).get("content-length")
        if length is None:
            return Response(status, headers, b"")
        while len(self.buf) < int(length):
            assert self._fill(), "connection closed mid-body"
        body, self.buf = self.buf[: int(length)], self.buf[int(length) :]
        return Response(status, headers, body)


def request(method: str, path: str, body: bytes | None = None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def call(path: str, args: Any = None, fmt: str = "json") -> bytes:
    return json.dumps({"path": path, "args": args or {}, "format": fmt}).encode()


@pytest.fixture
def conn(live_server: LiveServer) -> Any:
    c = Conn(live_server.port)
    yield c
    c.close()


def test_the_response_head(conn: Conn) -> None:
    conn.send(request("POST", "/api/query", call("messages:total"), Origin="http://x.test"))
    response = conn.response()
    assert response.status == 200
    assert response.body == b'{"status":"success","value":0.0,"logLines":[]}'
    assert [name for name, _ in response.headers] == [
        "date",
        "server",
        "content-length",
        "content-type",
        "access-control-allow-credentials",
        "access-control-allow-origin",
        "vary",
    ]
    assert re.fullmatch(
        r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", response.header("date") or ""
    )
    assert response.header("content-type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    assert response.header("access-control-allow-origin") == "http://x.test"
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("vary") == "Origin"
    assert response.header("connection") is None


def test_keep_alive_across_answers_of_every_kind(conn: Conn) -> None:
    sent = [
        (
            request("POST", "/api/mutation", call("messages:send", {"channel": "k", "body": "b"})),
            200,
        ),
        (request("POST", "/api/query", b"{"), 400),
        (request("POST", "/api/query", call("messages:total"), Authorization="Convex no"), 401),
        (request("POST", "/api/action", call("messages:plain_nope")), 200),
        (request("GET", "/api/query"), 405),
        (request("POST", "//api/query", call("messages:count", {"channel": "k"})), 200),
        (request("GET", "/version"), 200),
    ]
    for data, status in sent:
        conn.send(data)
        response = conn.response()
        assert response.status == status, response.body
        assert response.header("connection") is None


def test_pipelined_requests_are_answered_in_order(conn: Conn) -> None:
    conn.send(
        request("POST", "/api/mutation", call("messages:send", {"channel": "p", "body": "1"}))
        + request("POST", "/api/query", call("messages:list", {"channel": "p"}))
        + request("POST", "/api/query", b"[]")
    )
    first, second, third = conn.response(), conn.response(), conn.response()
    assert first.json()["status"] == "success"
    assert second.json()["value"] == ["1"]
    assert (third.status, third.json()["code"]) == (400, "BadJsonBody")


def test_a_chunked_body(conn: Conn) -> None:
    body = call("messages:double", {"x": 2})
    head = request("POST", "/api/action", None, Transfer_Encoding="chunked")
    pieces = [body[:5], body[5:9], body[9:]]
    conn.send(head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")
    response = conn.response()
    assert response.status == 200
    assert response.json()["value"] == 4.0
    conn.send(request("POST", "/api/query", call("messages:total")))
    assert conn.response().status == 200


def test_expect_100_continue(conn: Conn) -> None:
    body = call("messages:total")
    conn.send(
        request("POST", "/api/query", None, Expect="100-continue", Content_Length=str(len(body)))
    )
    interim = conn.response()
    assert interim.status == 100
    conn.send(body)
    assert conn.response().json()["value"] == 0.0


@pytest.mark.parametrize("endpoint", ["/api/query", "/api/mutation", "/api/action"])
def test_a_declared_oversized_body_is_refused_unread(conn: Conn, endpoint: str) -> None:
    conn.send(request("POST", endpoint, None, Content_Length=str(LIMIT + 1), Origin="http://o"))
    response = conn.response()
    assert response.status == 413
    assert response.json()["code"] == "RequestTooLarge"
    assert response.header("connection") == "close"
    assert response.header("access-control-allow-origin") == "http://o"
    assert conn.closed()


@pytest.mark.parametrize("endpoint", ["/api/query", "/api/mutation", "/api/action"])
def test_a_chunked_oversized_body_is_refused_while_streaming(conn: Conn, endpoint: str) -> None:
    conn.send(request("POST", endpoint, None, Transfer_Encoding="chunked"))
    frame = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
    sent = 0
    conn.sock.settimeout(0.05)
    deadline = time.monotonic() + 60
    while b"\r\n\r\n" not in conn.buf and time.monotonic() < deadline:
        try:
            if sent < 64 * MiB:
                conn.sock.sendall(frame)
                sent += MiB
            conn._fill()
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    conn.sock.settimeout(10)
    response = conn.response()
    assert response.status == 413
    assert response.json() == {
        "code": "RequestTooLarge",
        "message": f"Request body is larger than the limit of {LIMIT} bytes",
    }
    assert response.header("connection") == "close"
    assert sent < 64 * MiB  # answered long before the body ended


def test_an_unread_body_closes_the_connection(conn: Conn) -> None:
    conn.send(request("POST", "/api/nothing", call("messages:total")))
    response = conn.response()
    assert response.status == 404
    assert response.header("connection") == "close"
    assert conn.closed()
