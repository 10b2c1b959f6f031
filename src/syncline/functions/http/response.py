"""The response of an HTTP action: :class:`HttpResponse`, and :func:`to_response` for
the shortcuts a handler may return instead (``str``, ``bytes``, ``dict``, ``list``)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

from syncline.functions.http.request import Headers, HeadersInit

__all__ = ["HttpResponse", "to_response"]


class HttpResponse:
    """What an HTTP action answers.

    ``body`` is ``bytes``; a ``str`` (sent as UTF-8, ``text/plain`` by
    default); a ``dict`` or ``list`` (sent as JSON, ``application/json``);
    ``None`` (empty); or an async iterable of ``bytes``/``str`` chunks, which
    is streamed as it is produced. A ``Content-Type`` in ``headers`` (or
    ``content_type=``) wins over the default. ``headers`` is a mapping or a
    list of (name, value) pairs (for repeated headers such as Set-Cookie).
    """

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: HeadersInit = None,
        *,
        content_type: str | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"HttpResponse status must be an int from 100 to 599, got {status!r}")
        self.status = status
        self._stream: AsyncIterable[bytes | str] | None = None
        default_type: str | None = None
        if body is None:
            self._body = b""
        elif isinstance(body, bytes | bytearray | memoryview):
            self._body = bytes(body)
        elif isinstance(body, str):
            self._body = body.encode()
            default_type = "text/plain; charset=utf-8"
        elif isinstance(body, dict | list):
            self._body = _dump_json(body)
            default_type = "application/json"
        elif isinstance(body, AsyncIterable):
            self._body = b""
            self._stream = body
        else:
            raise TypeError(
                "HttpResponse body must be bytes, str, dict, list, None or an async iterable "
                f"of bytes, got {type(body).__name__}"
            )
        pairs = Headers(headers).multi_items()
        if content_type is not None:
            pairs = [(k, v) for k, v in pairs if k != "content-type"]
            pairs.append(("content-type", content_type))
        elif default_type is not None and not any(k == "content-type" for k, _ in pairs):
            pairs.append(("content-type", default_type))
        self.headers = Headers(pairs)

    @classmethod
    def redirect(
        cls, location: str, status: int = 302, headers: HeadersInit = None
    ) -> HttpResponse:
        """A redirect to ``location`` (302 by default; 301, 303, 307 and 308 also make sense)."""
        pairs = [*Headers(headers).multi_items(), ("location", location)]
        return cls(None, status, pairs)

    @property
    def is_stream(self) -> bool:
        return self._stream is not None

    @property
    def body(self) -> bytes:
        """The body (not available for a streamed response: iterate :meth:`chunks`)."""
        if self._stream is not None:
            raise TypeError("This HttpResponse is streamed; read it with `async for` over chunks()")
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as bytes chunks (one chunk unless streamed)."""
        if self._stream is None:
            if self._body:
                yield self._body
            return
        async for chunk in self._stream:
            if isinstance(chunk, str):
                chunk = chunk.encode()
            elif isinstance(chunk, bytearray | memoryview):
                chunk = bytes(chunk)
            elif not isinstance(chunk, bytes):
                raise TypeError(
                    f"A streamed HttpResponse must yield bytes or str, got {type(chunk).__name__}"
                )
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        """Close a streamed body that will not be read (HEAD requests, disconnects)."""
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        kind = "stream" if self._stream is not None else f"{len(self._body)} bytes"
        return f"<HttpResponse {self.status} {kind}>"


def _dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise TypeError(f"HttpResponse body is not JSON-serializable: {exc}") from None


def to_response(value: Any) -> HttpResponse:
    """The response for what a handler returned (see the module docstring)."""
    if isinstance(value, HttpResponse):
        return value
    if isinstance(value, str | dict | list):
        return HttpResponse(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return HttpResponse(value, content_type="application/octet-stream")
    raise TypeError(
        "An HTTP action must return an HttpResponse (or a str, bytes, dict or list), "
        f"got {type(value).__name__}"
        + (": did the handler forget to `return` its response?" if value is None else "")
    )


# ---------------------------------------------------------------------- CORS
