"""The request an HTTP action receives: :class:`HttpRequest`, its headers, query and form data.

Bodies are read on demand (``body``, ``text``, ``json``, ``form`` or ``stream``)
and capped at :data:`MAX_BODY_BYTES`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from syncline.errors import FunctionDefinitionError, InvalidRequest

__all__ = [
    "MAX_BODY_BYTES",
    "METHODS",
    "FormData",
    "FormFile",
    "Headers",
    "HeadersInit",
    "HttpBodyError",
    "HttpRequest",
    "QueryParams",
    "RequestTooLarge",
    "check_method",
]

#: The methods a route can be defined for (HEAD is served by GET routes).
METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
#: Request and response bodies larger than this are refused (semantics §13).
MAX_BODY_BYTES = 20 * 1024 * 1024
HeadersInit = Mapping[str, str] | Iterable[tuple[str, str]] | None


# ---------------------------------------------------------------------- errors


class HttpBodyError(InvalidRequest, ValueError):
    """The request body cannot be read as asked (bad JSON, not a form, read twice, ...).

    Also a ``ValueError``, so ``except ValueError`` in a handler catches it.
    Uncaught, it answers 400 ``{"code", "message"}``: the caller sent it.
    """

    code = "BadRequestBody"


class RequestTooLarge(HttpBodyError):
    code = "RequestTooLarge"
    http_status = 413


# ---------------------------------------------------------------------- multi-maps


class _MultiMap(Mapping[str, Any]):
    """An ordered list of (key, value) pairs read as a mapping of first values."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        self._items: list[tuple[str, Any]] = list(items)

    def _key(self, key: str) -> str:
        return key

    def __getitem__(self, key: str) -> Any:
        wanted = self._key(key)
        for name, value in self._items:
            if self._key(name) == wanted:
                return value
        raise KeyError(key)

    def get_all(self, key: str) -> list[Any]:
        """Every value of ``key``, in order (empty if absent)."""
        wanted = self._key(key)
        return [value for name, value in self._items if self._key(name) == wanted]

    def multi_items(self) -> list[tuple[str, Any]]:
        """All (key, value) pairs, repeated keys included, in order."""
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for name, _ in self._items:
            seen.setdefault(self._key(name))
        return iter(seen)

    def __len__(self) -> int:
        return len({self._key(name) for name, _ in self._items})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(_MultiMap):
    """HTTP headers: case-insensitive; names iterate in lower case.

    ``headers["accept"]`` joins repeated headers with ``", "`` as the Fetch API
    does; ``headers.get_all("set-cookie")`` keeps them apart.
    """

    __slots__ = ()

    def __init__(self, items: HeadersInit = None) -> None:
        if items is None:
            pairs: Iterable[tuple[str, str]] = ()
        elif isinstance(items, Mapping):
            pairs = items.items()
        else:
            pairs = items
        checked = []
        for name, value in pairs:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"Header names and values must be strings, got {name!r}: {value!r}")
            if any(c in name or c in value for c in "\r\n"):
                raise ValueError(f"Header {name!r} contains a line break")
            checked.append((name.lower(), value))
        super().__init__(checked)

    def _key(self, key: str) -> str:
        return key.lower()

    def __getitem__(self, key: str) -> str:
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        return ", ".join(values)


class QueryParams(_MultiMap):
    """URL query parameters: ``query["page"]`` is the first value, ``get_all`` every one."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FormFile:
    """A file field of a ``multipart/form-data`` body."""

    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


class FormData(_MultiMap):
    """A parsed form: each value is a ``str``, or a :class:`FormFile` for file fields."""

    __slots__ = ()


# ---------------------------------------------------------------------- request


def _content_type(headers: Headers) -> tuple[str, dict[str, str]]:
    """(media type in lower case, parameters) of the Content-Type header."""
    raw = headers.get("content-type", "")
    media, _, rest = raw.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            params[key.lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    import email.parser
    import email.policy
    import email.utils

    # The email package parses MIME multipart bodies; multipart/form-data is one.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HttpBodyError("The multipart/form-data body could not be parsed")
    items: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        param = part.get_param("name", header="content-disposition")
        # get_param may give an RFC 2231 (charset, language, text) triple: keep the text.
        name = email.utils.collapse_rfc2231_value(param) if param else ""
        if not name:
            continue
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            items.append((name, FormFile(filename, part.get_content_type(), payload)))
        else:
            charset = part.get_content_charset() or "utf-8"
            items.append((name, payload.decode(charset, errors="replace")))
    return items


class HttpRequest:
    """The request an HTTP action receives.

    ``method``, ``url`` (the full URL asked for), ``path`` (the path routed
    on), ``headers`` (:class:`Headers`), ``query`` (:class:`QueryParams`).
    The body is read with ``await body()`` / ``text()`` / ``json()`` /
    ``form()`` (these may be combined: the body is kept once read), or
    consumed piece by piece with ``async for chunk in request.stream()``.
    """

    def __init__(
        self,
        method: str,
        url: str,
        headers: HeadersInit = None,
        body: bytes | AsyncIterable[bytes] = b"",
        *,
        path: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.method = method.upper()
        self.url = url
        parts = urlsplit(url)
        self.path = path if path is not None else (parts.path or "/")
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.query = QueryParams(parse_qsl(parts.query, keep_blank_values=True))
        self._max = max_body_bytes
        self._body: bytes | None = None
        self._source: AsyncIterable[bytes] | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            self._body = bytes(body)
            self._check_size(len(self._body))
        else:
            self._source = body
        self._streamed = False

    def __repr__(self) -> str:
        return f"<HttpRequest {self.method} {self.url}>"

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise RequestTooLarge(f"The request body is larger than the limit of {self._max} bytes")

    async def stream(self) -> AsyncIterator[bytes]:
        """The body in chunks as it arrives (the whole body if it was already read)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._streamed or self._source is None:
            raise HttpBodyError("The request body was already consumed by stream()")
        self._streamed = True
        size = 0
        async for chunk in self._source:
            if not chunk:
                continue
            size += len(chunk)
            self._check_size(size)
            yield bytes(chunk)

    async def body(self) -> bytes:
        """The whole body as bytes."""
        if self._body is None:
            chunks = [chunk async for chunk in self.stream()]
            self._body = b"".join(chunks)
        return self._body

    async def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes become U+FFFD, as in the Fetch API)."""
        return (await self.body()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        """The body parsed as JSON; :class:`HttpBodyError` (a ValueError) if it is not JSON."""
        raw = await self.body()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpBodyError(f"The request body is not valid JSON: {exc}") from None

    async def form(self) -> FormData:
        """The body parsed as ``application/x-www-form-urlencoded`` or ``multipart/form-data``."""
        media, params = _content_type(self.headers)
        raw = await self.body()
        if media == "application/x-www-form-urlencoded":
            text = raw.decode(params.get("charset", "utf-8"), errors="replace")
            return FormData(parse_qsl(text, keep_blank_values=True))
        if media == "multipart/form-data":
            if "boundary" not in params:
                raise HttpBodyError("The multipart/form-data Content-Type has no boundary")
            return FormData(_parse_multipart(raw, self.headers["content-type"]))
        raise HttpBodyError(
            "form() reads application/x-www-form-urlencoded or multipart/form-data bodies, "
            f"but the Content-Type is {media or 'missing'!r}"
        )


# ---------------------------------------------------------------------- response


def check_method(method: object, *, allow_head: bool = False) -> str:
    """``method`` upper-cased if a route may have it; HEAD only with ``allow_head``."""
    if not isinstance(method, str):
        raise FunctionDefinitionError(f"HTTP method must be a string, got {method!r}")
    upper = method.upper()
    if upper == "HEAD" and not allow_head:
        raise FunctionDefinitionError(
            "HEAD cannot be routed: HEAD requests are answered by the GET route without a body"
        )
    if upper not in METHODS and not (allow_head and upper == "HEAD"):
        raise FunctionDefinitionError(
            f"Unsupported HTTP method {method!r}: use one of {', '.join(METHODS)}"
        )
    return upper
