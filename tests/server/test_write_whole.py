"""``_write_whole`` writes a response exactly as two calls of uvicorn's own ``send`` would.

Each generated response goes through a real httptools ``RequestResponseCycle``
twice: once through ``_write_whole`` (falling back to uvicorn's ``send`` when it
declines, as the protocol does) and once through uvicorn's ``send`` alone. The
bytes written, the errors raised, the connection closed or not, and the cycle's
state afterwards must be the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from server.test_protocols import Transport as WrittenTransport
from syncline.server.protocols import _write_whole


class Transport(WrittenTransport):
    """What uvicorn's flow control calls besides."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


STATE = (
    "response_started",
    "response_complete",
    "keep_alive",
    "chunked_encoding",
    "expected_content_length",
    "waiting_for_100_continue",
    "disconnected",
)


def cycle_for(
    transport: Transport,
    method: str = "POST",
    keep_alive: bool = True,
    responses: list[int] | None = None,
) -> RequestResponseCycle:
    return RequestResponseCycle(
        scope={  # type: ignore[typeddict-item]
            "method": method,
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "http_version": "1.1",
            "client": ("127.0.0.1", 5000),
        },
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("uvicorn.error"),
        access_logger=logging.getLogger("uvicorn.access"),
        access_log=True,
        default_headers=[(b"date", b"Sat, 05 Dec 2026 06:00:00 GMT"), (b"server", b"uvicorn")],
        message_event=asyncio.Event(),
        expect_100_continue=True,
        keep_alive=keep_alive,
        on_response=lambda: (responses if responses is not None else []).append(1),
    )


def outcome(direct: bool, keep_alive: bool, start: Any, body: Any, method: str) -> Any:
    async def main() -> Any:
        transport = Transport()
        responses: list[int] = []
        cycle = cycle_for(transport, method, keep_alive, responses)
        error = None
        try:
            if not (direct and _write_whole(cycle, start, body)):
                await cycle.send(start)
                await cycle.send(body)
        except Exception as exc:  # uvicorn's own failures (bad header, wrong length) must match
            error = f"{type(exc).__name__}: {exc}"
        state = {name: getattr(cycle, name) for name in STATE}
        event = cycle.message_event.is_set()
        return b"".join(transport.writes), transport.closed, error, state, event, responses

    return asyncio.run(main())


NAMES = [b"content-length", b"Content-Length", b"content-type", b"connection", b"Connection"]
NAMES += [b"transfer-encoding", b"vary", b"x-a", b"bad name", b"bad:name", b"", b"x\x7f"]
VALUES = [b"2", b"3", b"0", b"x", b"close", b"Keep-Alive, Close", b"keep-alive", b"chunked"]
VALUES += [b"application/json", b"a\r\nb", b"tab\there", b"\x01", b" 2 ", b"-1"]
names = st.sampled_from(NAMES)
values = st.sampled_from(VALUES)
headers = st.lists(st.tuples(names, values), max_size=6)


@settings(max_examples=600, deadline=None)
@given(
    st.booleans(),
    st.sampled_from([200, 204, 400, 413, 500, 599]),
    headers,
    st.sampled_from([b"", b"{}", b"abc"]),
    st.booleans(),
    st.sampled_from(["POST", "GET", "HEAD"]),
)
def test_the_same_as_uvicorn_s_send(
    keep_alive: bool,
    status: int,
    head: list[tuple[bytes, bytes]],
    data: bytes,
    more: bool,
    method: str,
) -> None:
    start = {"type": "http.response.start", "status": status, "headers": head}
    body = {"type": "http.response.body", "body": data, "more_body": more}
    assert outcome(True, keep_alive, start, body, method) == outcome(
        False, keep_alive, start, body, method
    )


def test_an_ordinary_answer_is_written_whole() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    body = {"type": "http.response.body", "body": b"{}"}
    written, closed, error, state, event, responses = outcome(True, True, start, body, "POST")
    assert written == (
        b"HTTP/1.1 200 OK\r\ndate: Sat, 05 Dec 2026 06:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    assert (closed, error, event, responses) == (False, None, True, [1])
    assert state["response_complete"]


def test_a_logged_or_started_response_is_left_to_uvicorn() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    body = {"type": "http.response.body", "body": b"{}"}
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.setLevel(logging.INFO)
    try:
        assert not _write_whole(cycle_for(Transport()), start, body)
    finally:
        access.setLevel(level)
    started = cycle_for(Transport())
    started.response_started = True
    assert not _write_whole(started, start, body)
    assert _write_whole(cycle_for(Transport()), start, body)
