"""uvicorn's HTTP protocols with deadlines on the request head and body, and a head size cap.

uvicorn times out idle keep-alive connections, but not a request head that
trickles in one byte at a time (slow loris): a few hundred such sockets
would stay open forever. Nor does its httptools protocol bound the size of
the head. Here a connection waiting for a request head (a new connection,
or one whose previous response is complete) must receive the whole head
within ``header_timeout_s`` and in at most ``max_header_bytes``; otherwise it
is answered 408 or 431 and closed. A connection that sent nothing is closed
silently. WebSocket upgrades end the head phase like any request.

A request body must keep arriving: when no part of a pending body arrives for
``body_timeout_s``, the request is answered 408 (if its response has not
started) and the connection is closed; the app's ``receive`` then reports a
disconnect. Time in which the server itself holds the body back (reading
paused by flow control, or a ``100-continue`` the app has not asked for yet)
does not count, so such a wait is cut off within twice the deadline. A
response that starts before the app read the body to its end closes the
connection after it, so an unread (oversized, refused) body is never drained. Enforced here,
where the bytes arrive, this costs no timer for a body that arrives with its
head (nearly every API call) instead of one per ``receive``; requests carry
the :data:`~syncline.server.request_limits.BODY_DEADLINE` scope extension so
that :class:`~syncline.server.request_limits.BodyGuard` leaves them alone.

Each response with a ``content-length`` leaves in one write (one system call,
one wake-up of the client) instead of two: its head waits for the first part
of its body (:func:`_one_write`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from syncline.server.request_limits import BODY_DEADLINE, RequestLimits

try:
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
except ImportError:  # pragma: no cover - without httptools, h11 serves and _write_whole is unused
    pass

__all__ = ["guarded_http_protocol"]


def _base_protocol() -> type[asyncio.Protocol]:
    """uvicorn's choice for ``http="auto"``: httptools when installed, h11 otherwise."""
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = orjson.dumps({"code": code, "message": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Batch:
    """Stands in for a transport while uvicorn writes one response: collects, then writes once."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parts: list[bytes] = []
        self.close_after = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.close_after = True

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def flush(self) -> None:
        if self.parts:
            self.transport.write(b"".join(self.parts))
        if self.close_after:
            self.transport.close()


def _closing(message: Any) -> Any:
    """``message`` (a response start) with ``connection: close`` as its only connection header."""
    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
    return {**message, "headers": [*headers, (b"connection", b"close")]}


def _write_whole(cycle: Any, start: Any, message: Any) -> bool:
    """Write a whole response (``start`` + its only body ``message``) as uvicorn's ``send`` would.

    The same bytes and the same state afterwards as two calls of the httptools
    cycle's ``send``, with the head's names and values checked in one regular
    expression search each (joined by a byte both allow) instead of two per
    header. Declines (False, nothing done) whenever uvicorn's own path could
    do anything else: a paused or gone connection, a HEAD request, a body
    that is not the last or does not match the declared length, a bad or
    chunked head, an access log that would log the response (uvicorn builds
    its line even when the level is off: that is skipped); uvicorn then sends
    it, and fails as it does.
    """
    if (
        message["type"] != "http.response.body"
        or message.get("more_body", False)
        or cycle.response_started
        or cycle.disconnected
        or cycle.scope["method"] == "HEAD"
        or cycle.flow.write_paused
        # uvicorn's access line is built even when its level is off; here only when it is on.
        or (cycle.access_log and cycle.access_logger.isEnabledFor(logging.INFO))
    ):
        return False
    try:
        headers = cycle.default_headers + list(start.get("headers", []))
        if HEADER_RE.search(b"a".join([name for name, _ in headers])) or HEADER_VALUE_RE.search(
            b" ".join([value for _, value in headers])
        ):
            return False
        status_line = STATUS_LINE[start["status"]]
    except (TypeError, ValueError, KeyError):
        return False
    keep_alive = cycle.keep_alive
    length = None
    closes = False
    content = [status_line]
    for name, value in headers:
        name = name.lower()
        if name == b"content-length" and length is None:
            try:
                length = int(value.decode())
            except ValueError:
                return False
        elif name == b"transfer-encoding" and value.lower() == b"chunked":
            return False
        elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
            keep_alive = False
            closes = True
        content += (name, b": ", value, b"\r\n")
    body = message.get("body", b"")
    if length != len(body):
        return False
    if not keep_alive and not closes:
        content.append(b"connection: close\r\n")
    content += (b"\r\n", body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.keep_alive = keep_alive
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(b"".join(content))
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


def _one_write(cycle: Any, *, whole: bool = False) -> Callable[[Any], Awaitable[None]]:
    """A ``send`` for uvicorn's request-response ``cycle`` that writes head and body together.

    A response start that declares its length (a HEAD's has no body to wait
    for) is held until the next message, then both go through uvicorn's own
    ``send`` into one write (with ``whole``, an httptools cycle's response of
    one body message is written by :func:`_write_whole`). A streamed (chunked)
    response is not held: its head leaves at once, as before. An app that
    fails between the two messages gets uvicorn's 500 rather than a truncated
    response. A response that starts before the app read the request body to
    its end closes the connection.
    """
    send = cycle.send
    held: Any = None

    async def one_write_send(message: Any) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            held = None
            if cycle.more_body or cycle.body:  # the app has not read the body to its end
                message = _closing(message)
            if cycle.scope["method"] != "HEAD":
                for name, _ in message.get("headers", ()):
                    if name.lower() == b"content-length":
                        held = message
                        return
        if held is None:
            await send(message)
            return
        start, held = held, None
        if whole and _write_whole(cycle, start, message):
            return
        transport = cycle.transport
        batch = _Batch(transport)
        cycle.transport = batch
        try:
            await send(start)
            await send(message)
        finally:
            cycle.transport = transport
        batch.flush()

    return one_write_send


def guarded_http_protocol(limits: RequestLimits) -> type[asyncio.Protocol]:
    """An HTTP protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits`` on heads."""
    base: Any = _base_protocol()

    class GuardedHttpProtocol(base):
        # At most one timer per connection and deadline, left running between requests and
        # re-armed for what is left when it fires early: no timer is made per request.
        _head_timer: asyncio.TimerHandle | None = None
        #: a request head is awaited: since loop time ``_head_since``, ``_head_bytes`` so far
        _head_pending = False
        _head_since = 0.0
        _head_bytes = 0
        #: how long the wait may stay silent (uvicorn's keep-alive timeout after a response)
        _head_idle_s = limits.header_timeout_s
        _head_timer_due = 0.0
        _body_timer: asyncio.TimerHandle | None = None
        #: loop time at which the pending request body last made progress
        _body_seen = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_done()
            self._stop_head_timer()
            self._body_done()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                self._await_body()
            elif self._body_timer is not None:
                self._body_done()
            if not self._head_pending:
                return
            if not self._waiting_for_head():
                self._head_done()
                return
            self._head_bytes += len(data)
            if self._head_bytes > limits.max_header_bytes:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    "RequestHeadersTooLarge",
                    "The request line and headers are larger than the limit of "
                    f"{limits.max_header_bytes} bytes",
                )

        def on_headers_complete(self) -> None:
            previous = self.cycle
            self.scope.setdefault("extensions", {})[BODY_DEADLINE] = {}
            super().on_headers_complete()
            if self.cycle is not previous and self.cycle is not None:
                # The app is handed ``cycle.send`` when its task first runs, after this.
                self.cycle.send = _one_write(self.cycle, whole=True)

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._head_done()
            self._stop_head_timer()  # or it would hold this object until it fires
            super().handle_websocket_upgrade(*args)
            # This object is no longer the transport's protocol, so its connection_lost
            # (which drops the parser) never runs: break the parser <-> protocol cycle
            # here, or every WebSocket connection leaves garbage for the rare cyclic GC.
            self.parser = None

        def on_response_complete(self) -> None:
            # The whole-response send refers to its cycle, which holds it: dropping it
            # frees the finished cycle by reference counting, not the cyclic collector.
            self.cycle.__dict__.pop("send", None)
            # uvicorn's, except that its keep-alive timeout (close a connection that stays
            # silent after a response) is kept by the head timer, not a timer per response.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            idle_s = limits.header_timeout_s
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                idle_s = min(self.timeout_keep_alive, idle_s)
            self._await_head(idle_s)

        def _await_head(self, idle_s: float = limits.header_timeout_s) -> None:
            self._head_pending = True
            self._head_bytes = 0
            now = self.loop.time()
            self._head_since = now
            self._head_idle_s = idle_s
            self._arm_head_timer(now + idle_s)

        def _arm_head_timer(self, due: float) -> None:
            # A timer due no later than ``due`` is kept: when it fires it re-arms for the rest.
            if self._head_timer is not None:
                if self._head_timer_due <= due:
                    return
                self._head_timer.cancel()
            self._head_timer = self.loop.call_at(due, self._head_timed_out)
            self._head_timer_due = due

        def _head_done(self) -> None:
            self._head_pending = False

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _await_body(self) -> None:
            # One timer per stalled body, not one per part: it re-arms for what is left.
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(limits.body_timeout_s, self._body_timed_out)

        def _body_done(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _body_timed_out(self) -> None:
            self._body_timer = None
            cycle = self.cycle
            if (
                cycle is None
                or not cycle.more_body
                or cycle.response_complete
                or self.transport.is_closing()
            ):
                return
            now = self.loop.time()
            if self.flow.read_paused or cycle.waiting_for_100_continue:
                self._body_seen = now  # the server holds the body back, not the client
            left = self._body_seen + limits.body_timeout_s - now
            if left > 0:
                self._body_timer = self.loop.call_later(left, self._body_timed_out)
                return
            if not cycle.response_started:
                self.transport.write(
                    _raw_response(
                        408,
                        "Request Timeout",
                        "RequestTimeout",
                        f"No part of the request body arrived for {limits.body_timeout_s:g} s",
                    )
                )
            # The app's receive reports a disconnect and anything it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()

        def _waiting_for_head(self) -> bool:
            # A request is in progress once its head is parsed: its cycle is the current one.
            return self.cycle is None or self.cycle.response_complete

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if (
                not self._head_pending
                or self.transport.is_closing()
                or not self._waiting_for_head()
            ):
                return
            silent = self._head_bytes == 0
            due = self._head_since + (self._head_idle_s if silent else limits.header_timeout_s)
            if due > self.loop.time():
                self._arm_head_timer(due)
                return
            if silent:
                self.transport.close()
                return
            self._refuse(
                408,
                "Request Timeout",
                "RequestTimeout",
                f"The request line and headers did not arrive within {limits.header_timeout_s:g} s",
            )

        def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
            self._head_done()
            self._stop_head_timer()
            if not self.transport.is_closing():
                self.transport.write(_raw_response(status, reason, code, message))
                self.transport.close()

    return GuardedHttpProtocol
