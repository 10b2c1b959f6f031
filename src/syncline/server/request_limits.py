"""Bounds on what one HTTP request may cost the server: body size and read time.

* :func:`read_body` (a Starlette request) and :func:`read_asgi_body` (raw
  ASGI) read a request body as it streams in and stop at the limit: a chunked
  body of any size costs at most ``limit`` bytes of memory before it is
  refused with HTTP 413 ``RequestTooLarge``.
* :class:`BodyGuard` (ASGI middleware, on both ports) gives every request
  body an idle deadline: when no part of it arrives for ``body_timeout_s``
  the request is answered HTTP 408 ``RequestTimeout`` and the connection is
  closed. A response that starts before the body was read to its end closes
  the connection after it, so an unread (oversized, refused) body is never
  drained or buffered. The server's own HTTP protocol (``protocols.py``)
  enforces the same where the bytes arrive and marks its requests with the
  :data:`BODY_DEADLINE` scope extension; the guard passes those through and
  remains for any other ASGI server.
* The request head (request line and headers) has its own deadline and size
  cap, enforced in the HTTP protocol (``protocols.py``), before any of this runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from syncline.errors import InvalidRequest

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BODY_DEADLINE",
    "DEFAULT_REQUEST_LIMITS",
    "MAX_API_BODY_BYTES",
    "BodyGuard",
    "RequestLimits",
    "RequestTimeout",
    "RequestTooLarge",
    "read_asgi_body",
    "read_body",
]

#: Function API, admin and env request bodies: 16 MiB of arguments plus the envelope.
MAX_API_BODY_BYTES = 16 * 1024 * 1024 + 2000


@dataclass(frozen=True)
class RequestLimits:
    """Per-request deadlines and the request-head size cap of a server's ports."""

    #: Seconds for a request line and headers to arrive once their first byte has.
    header_timeout_s: float = 30.0
    #: Longest wait, in seconds, for the next part of a request body.
    body_timeout_s: float = 30.0
    #: Bytes a request line and its headers may take.
    max_header_bytes: int = 64 * 1024


DEFAULT_REQUEST_LIMITS = RequestLimits()

#: ASGI scope extension of a request whose HTTP protocol enforces the body deadline itself.
BODY_DEADLINE = "syncline.body_deadline"


class RequestTooLarge(InvalidRequest):
    code = "RequestTooLarge"
    http_status = 413


class RequestTimeout(InvalidRequest):
    code = "RequestTimeout"
    http_status = 408


def _check_declared(length: str | None, limit: int) -> None:
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLarge(
            f"Request body of {length} bytes is larger than the limit of {limit} bytes"
        )


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"Request body is larger than the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of ``request``, refused as soon as it passes ``limit`` bytes."""
    _check_declared(request.headers.get("content-length"), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def read_asgi_body(receive: Receive, content_length: str | None, limit: int) -> bytes | None:
    """Like :func:`read_body`, from ASGI ``receive``; ``None`` if the client went away.

    ``content_length`` is the request's ``Content-Length`` header, if any.
    """
    _check_declared(content_length, limit)
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        more = message.get("more_body", False)
    return bytes(body)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


class BodyGuard:
    """ASGI middleware: a deadline on each wait for request body data (see the module doc)."""

    def __init__(self, app: ASGIApp, *, body_timeout_s: float) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or BODY_DEADLINE in scope.get("extensions", ())
            or not _has_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        body_pending = True
        answered = False  # this guard sent the 408: the app's own response is dropped
        response_started = False

        async def guarded_receive() -> Message:
            nonlocal body_pending, answered
            if answered:
                return {"type": "http.disconnect"}
            if not body_pending:
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout_s):  # no task per wait, as wait_for's
                    message = await receive()
            except TimeoutError:
                body_pending = False
                if not response_started:
                    answered = True
                    await _send_error(
                        send,
                        RequestTimeout(
                            f"No part of the request body arrived for {self.body_timeout_s:g} s"
                        ),
                    )
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if answered:
                return
            if message["type"] == "http.response.start":
                response_started = True
                if body_pending:
                    # The rest of the body is not wanted: close rather than read it all.
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not answered:
                raise
            # The app failed on the disconnect reported after the 408; nobody reads it.


async def _send_error(send: Send, error: InvalidRequest) -> None:
    body = orjson.dumps(error.to_json())
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
