"""The request head and body deadlines, enforced by the HTTP protocol itself (no middleware).

A real uvicorn server on a loopback socket, with ``guarded_http_protocol`` and
an app that reads the body as the function API does.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from syncline.server.protocols import guarded_http_protocol
from syncline.server.request_limits import BODY_DEADLINE, RequestLimits

DEADLINE_S = 0.4


class App:
    """Answers 200 with the body it read; records what ``receive`` reported and the scope."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.extensions: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.extensions.append(scope.get("extensions"))
        body = b""
        while True:
            message = await receive()
            self.events.append(message["type"])
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


Scenario = Callable[[int, App], Awaitable[None]]


def serve(scenario: Scenario, head_deadline_s: float = 30, keep_alive_s: float = 5) -> None:
    """Run ``scenario(port, app)`` against a fresh server."""
    asyncio.run(_serve(scenario, head_deadline_s, keep_alive_s))


async def _serve(scenario: Scenario, head_deadline_s: float, keep_alive_s: float) -> None:
    app = App()
    limits = RequestLimits(body_timeout_s=DEADLINE_S, header_timeout_s=head_deadline_s)
    config = uvicorn.Config(
        app,
        http=guarded_http_protocol(limits),
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=keep_alive_s,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        await scenario(sock.getsockname()[1], app)
    finally:
        server.should_exit = True
        await task
        sock.close()


HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout=DEADLINE_S * 10)


def test_a_stalled_body_is_answered_408_and_closed() -> None:
    serve(_a_stalled_body_is_answered_408_and_closed)


async def _a_stalled_body_is_answered_408_and_closed(port: int, app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"12345")
    answer = await read_all(reader)  # the server closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nconnection: close" in head
    assert json.loads(body) == {
        "code": "RequestTimeout",
        "message": f"No part of the request body arrived for {DEADLINE_S:g} s",
    }
    await asyncio.sleep(0.05)
    assert app.events == ["http.request", "http.disconnect"]


def test_a_body_that_keeps_arriving_is_not_cut_off() -> None:
    serve(_a_body_that_keeps_arriving_is_not_cut_off)


async def _a_body_that_keeps_arriving_is_not_cut_off(port: int, app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD)
    for part in (b"12", b"34", b"56", b"78", b"90"):  # 5 parts over twice the deadline
        await asyncio.sleep(DEADLINE_S * 0.4)
        writer.write(part)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    body = await asyncio.wait_for(reader.readexactly(10), timeout=5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" not in head
    assert body == b"1234567890"
    # The connection stays usable, and a request that came whole sets no deadline off.
    writer.write(HEAD + b"abcdefghij")
    await asyncio.sleep(DEADLINE_S * 1.5)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)).startswith(
        b"HTTP/1.1 200"
    )
    assert await asyncio.wait_for(reader.readexactly(10), timeout=5) == b"abcdefghij"
    writer.close()
    assert app.extensions == [{BODY_DEADLINE: {}}, {BODY_DEADLINE: {}}]


def test_a_body_not_yet_asked_for_is_not_cut_off() -> None:
    serve(_a_body_not_yet_asked_for_is_not_cut_off)


async def _a_body_not_yet_asked_for_is_not_cut_off(port: int, app: App) -> None:
    # With Expect: 100-continue the client sends the body once the app asks for it.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await asyncio.sleep(DEADLINE_S * 0.5)
    writer.write(b"1234567890")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    writer.close()


async def answered(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    await asyncio.wait_for(reader.readexactly(10), timeout=5)
    return head


def test_the_head_deadline_counts_from_the_last_response() -> None:
    serve(_the_head_deadline_counts_from_the_last_response, head_deadline_s=DEADLINE_S)


async def _the_head_deadline_counts_from_the_last_response(port: int, app: App) -> None:
    # Requests spread over several deadlines keep the connection; each wait is short.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(6):
        await asyncio.sleep(DEADLINE_S * 0.6)
        writer.write(HEAD + b"1234567890")
        assert (await answered(reader)).startswith(b"HTTP/1.1 200")
    # Then a head that trickles in is cut off one deadline after the last response.
    loop = asyncio.get_running_loop()
    since = loop.time()
    writer.write(b"POST /x HTTP/1.1\r\n")
    answer = await read_all(reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    # Not sooner: a timer left from an earlier wait must not cut this one short.
    assert loop.time() - since >= DEADLINE_S * 0.9
    writer.close()


def test_a_silent_kept_alive_connection_is_closed() -> None:
    serve(_a_silent_kept_alive_connection_is_closed, head_deadline_s=DEADLINE_S)


async def _a_silent_kept_alive_connection_is_closed(port: int, app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"1234567890")
    assert (await answered(reader)).startswith(b"HTTP/1.1 200")
    assert await read_all(reader) == b""  # closed, with nothing said
    writer.close()


def test_uvicorn_s_keep_alive_timeout_still_closes_a_silent_connection() -> None:
    serve(_keep_alive_timeout, keep_alive_s=DEADLINE_S)


async def _keep_alive_timeout(port: int, app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(3):  # busy for longer than the keep-alive timeout: not closed
        writer.write(HEAD + b"1234567890")
        assert (await answered(reader)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(DEADLINE_S * 0.5)
    loop = asyncio.get_running_loop()
    since = loop.time()
    assert await read_all(reader) == b""  # then closed, long before the 30 s head deadline
    assert loop.time() - since >= DEADLINE_S * 0.4  # not before the timeout of its last wait
    writer.close()


def test_a_started_head_outlives_the_keep_alive_timeout() -> None:
    serve(_a_started_head_outlives_the_keep_alive_timeout, keep_alive_s=DEADLINE_S)


async def _a_started_head_outlives_the_keep_alive_timeout(port: int, app: App) -> None:
    # As with uvicorn's own timer: any byte of the next request ends the keep-alive wait.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"1234567890")
    assert (await answered(reader)).startswith(b"HTTP/1.1 200")
    writer.write(HEAD[:10])
    await asyncio.sleep(DEADLINE_S * 2.5)
    writer.write(HEAD[10:] + b"1234567890")
    assert (await answered(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
