"""One write per response: the head of a response with a length waits for its body."""

from __future__ import annotations

import asyncio
from typing import Any

from syncline.server.protocols import _one_write


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Cycle:
    """What ``_one_write`` uses of uvicorn's cycle: ``send`` writes each message at once."""

    def __init__(
        self, method: str = "POST", keep_alive: bool = True, more_body: bool = False
    ) -> None:
        self.scope = {"method": method}
        self.transport: Any = Transport()
        self.keep_alive = keep_alive
        self.more_body = more_body  # the request body has not all arrived yet
        self.body = bytearray()  # what arrived and the app has not received
        self.starts: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.starts.append(message)
            self.transport.write(b"head %d|" % message["status"])
        else:
            self.transport.write(message.get("body", b""))
            if not message.get("more_body", False) and not self.keep_alive:
                self.transport.close()


def run(cycle: Cycle, *messages: dict[str, Any]) -> list[bytes]:
    transport = cycle.transport
    send = _one_write(cycle)

    async def main() -> None:
        for message in messages:
            await send(message)

    asyncio.run(main())
    assert cycle.transport is transport
    return list(transport.writes)


def start(status: int = 200, length: bool = True) -> dict[str, Any]:
    headers = [(b"Content-Length", b"2")] if length else [(b"transfer-encoding", b"chunked")]
    return {"type": "http.response.start", "status": status, "headers": headers}


def body(data: bytes = b"{}", more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_head_and_body_leave_in_one_write() -> None:
    assert run(Cycle(), start(), body()) == [b"head 200|{}"]


def test_a_close_waits_for_the_write() -> None:
    cycle = Cycle(keep_alive=False)
    assert run(cycle, start(), body()) == [b"head 200|{}"]
    assert cycle.transport.closed


def test_streamed_and_head_responses_are_not_held() -> None:
    assert run(Cycle(), start(length=False), body(b"a", more=True), body(b"b")) == [
        b"head 200|",
        b"a",
        b"b",
    ]
    assert run(Cycle("HEAD"), start(), body(b"")) == [b"head 200|", b""]


def test_only_the_first_body_part_joins_the_head() -> None:
    assert run(Cycle(), start(), body(b"a", more=True), body(b"b")) == [b"head 200|a", b"b"]


def test_a_second_start_replaces_a_held_one() -> None:
    # uvicorn answers 500 when the app fails after its start: only the 500 is sent.
    assert run(Cycle(), start(200), start(500), body()) == [b"head 500|{}"]


def test_an_answer_before_the_whole_body_closes_the_connection() -> None:
    cycle = Cycle(more_body=True)
    headers = [(b"content-length", b"2"), (b"Connection", b"keep-alive")]
    run(cycle, {"type": "http.response.start", "status": 413, "headers": headers}, body())
    assert cycle.starts[0]["headers"] == [(b"content-length", b"2"), (b"connection", b"close")]


def test_an_answer_with_the_body_unread_closes_the_connection() -> None:
    cycle = Cycle()
    cycle.body += b"{}"
    run(cycle, start(), body())
    assert cycle.starts[0]["headers"] == [(b"Content-Length", b"2"), (b"connection", b"close")]


def test_an_answer_after_the_whole_body_was_read_keeps_the_connection() -> None:
    cycle = Cycle()
    run(cycle, start(), body())
    assert cycle.starts[0]["headers"] == [(b"Content-Length", b"2")]
