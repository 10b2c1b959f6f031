"""HTTP actions: the user API of ``functions/http.py``.

::

    from syncline import HttpRouter, HttpResponse, http_action

    http = HttpRouter()

    @http.route(path="/hook", method="POST")
    async def hook(ctx, request):
        event = await request.json()
        await ctx.run_mutation("events:record", {"kind": event["kind"]})
        return HttpResponse({"ok": True})

    @http_action
    async def files(ctx, request):
        return HttpResponse(b"...", headers={"Content-Type": "application/pdf"})

    http.route(path_prefix="/files/", method="GET", handler=files)

Contracts (semantics §10):

* Methods: GET, POST, PUT, DELETE, OPTIONS, PATCH. HEAD is answered by the GET
  route with the body left out. ``path`` starts with ``/``; ``path_prefix``
  starts and ends with ``/``; ``/.files`` is reserved. Defining the same
  (path, method) or (prefix, method) twice fails when ``http.py`` is imported.
* Lookup: the exact path first, else the longest matching prefix, else 404
  ``No HttpAction routed for <path>``.
* A handler is ``async def handler(ctx, request)`` (``@http_action`` optional).
  ``ctx`` is the action ctx (``run_query``, ``run_mutation``, ``run_action``,
  ``auth``, ``env``, ...). It returns an :class:`HttpResponse`, or for
  convenience a ``str`` (text/plain), ``bytes`` (application/octet-stream), or
  ``dict``/``list`` (JSON) answered with status 200.
* No CORS headers are added unless the user asks: :func:`cors_headers` builds
  them for one response, :meth:`HttpRouter.cors` answers preflight requests and
  adds them to every response of the routes it covers.
* Request and response bodies are capped at 20 MiB.

This module imports only the standard library, orjson and Syncline's errors:
``from syncline import HttpRouter`` loads no server and no database.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import parse_qsl, urlsplit

import orjson

from syncline.errors import FunctionDefinitionError, InvalidRequest

__all__ = [
    "MAX_BODY_BYTES",
    "METHODS",
    "CorsPolicy",
    "FormData",
    "FormFile",
    "Headers",
    "HttpAction",
    "HttpBodyError",
    "HttpRequest",
    "HttpResponse",
    "HttpRouter",
    "QueryParams",
    "RequestTooLarge",
    "RouteMatch",
    "cors_headers",
    "http_action",
    "to_response",
]

#: The methods a route can be defined for (HEAD is served by GET routes).
METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
#: Request and response bodies larger than this are refused (semantics §13).
MAX_BODY_BYTES = 20 * 1024 * 1024

HttpHandler = Callable[[Any, "HttpRequest"], Any]
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

    # The email package parses MIME multipart bodies; multipart/form-data is one.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HttpBodyError("The multipart/form-data body could not be parsed")
    items: list[tuple[str, Any]] = []
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
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


@dataclass(frozen=True)
class CorsPolicy:
    """Which cross-origin requests a route accepts (see :func:`cors_headers`)."""

    origin: str | tuple[str, ...] = "*"
    #: None: the methods routed at the path (computed per request)
    methods: tuple[str, ...] | None = None
    allow_headers: tuple[str, ...] = ("Content-Type", "Authorization")
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = 86400
    credentials: bool = False

    @classmethod
    def make(
        cls,
        origin: str | Iterable[str] = "*",
        *,
        methods: Iterable[str] | None = None,
        allow_headers: Iterable[str] = ("Content-Type", "Authorization"),
        expose_headers: Iterable[str] = (),
        max_age: int | None = 86400,
        credentials: bool = False,
    ) -> CorsPolicy:
        origins: str | tuple[str, ...] = origin if isinstance(origin, str) else tuple(origin)
        if isinstance(origins, tuple) and not origins:
            raise ValueError("cors: give at least one allowed origin (or '*')")
        methods_tuple = None
        if methods is not None:
            methods_tuple = tuple(_check_method(m, allow_head=True) for m in methods)
        return cls(
            origins,
            methods_tuple,
            tuple(allow_headers),
            tuple(expose_headers),
            max_age,
            credentials,
        )

    def allowed_origin(self, request_origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``request_origin``."""
        if self.origin == "*":
            # Credentials may not be combined with "*": mirror the caller instead.
            if self.credentials:
                return request_origin
            return "*"
        if isinstance(self.origin, str):
            return self.origin
        if request_origin is not None and request_origin in self.origin:
            return request_origin
        return None

    def headers(
        self,
        request: HttpRequest | None = None,
        *,
        preflight: bool = False,
        routed_methods: Iterable[str] = (),
    ) -> dict[str, str]:
        request_origin = request.headers.get("origin") if request is not None else None
        allowed = self.allowed_origin(request_origin)
        out: dict[str, str] = {}
        if allowed is None:
            return out
        out["Access-Control-Allow-Origin"] = allowed
        if allowed != "*":
            out["Vary"] = "Origin"
        if self.credentials:
            out["Access-Control-Allow-Credentials"] = "true"
        if self.expose_headers and not preflight:
            out["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        if preflight or request is None:
            methods = self.methods if self.methods is not None else tuple(routed_methods)
            if methods:
                out["Access-Control-Allow-Methods"] = ", ".join(methods)
            allow_headers = self.allow_headers
            if allow_headers == ("*",) and request is not None:
                asked = request.headers.get("access-control-request-headers")
                allow_headers = (asked,) if asked else ()
            if allow_headers:
                out["Access-Control-Allow-Headers"] = ", ".join(allow_headers)
            if self.max_age is not None:
                out["Access-Control-Max-Age"] = str(self.max_age)
        return out


def cors_headers(
    origin: str | Iterable[str] = "*",
    *,
    request: HttpRequest | None = None,
    methods: Iterable[str] = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"),
    allow_headers: Iterable[str] = ("Content-Type", "Authorization"),
    expose_headers: Iterable[str] = (),
    max_age: int | None = 86400,
    credentials: bool = False,
) -> dict[str, str]:
    """CORS headers to add to a response (Syncline adds none by itself).

    ``origin`` is ``"*"``, one origin, or a list of allowed origins; with a
    list, pass the ``request`` so its ``Origin`` can be checked (and echoed:
    no Allow-Origin header is produced for an origin not in the list).
    Without a request the preflight headers (methods, headers, max age) are
    included too, so the same dict can answer an OPTIONS request::

        @http.route(path="/api/data", method="OPTIONS")
        async def preflight(ctx, request):
            return HttpResponse(status=204, headers=cors_headers("https://app.example.com"))
    """
    policy = CorsPolicy.make(
        origin,
        methods=methods,
        allow_headers=allow_headers,
        expose_headers=expose_headers,
        max_age=max_age,
        credentials=credentials,
    )
    if request is None and (isinstance(policy.origin, tuple) or credentials):
        raise ValueError(
            "cors_headers: with a list of origins or credentials=True, pass request= so the "
            "caller's Origin can be checked and echoed"
        )
    preflight = request is not None and request.method == "OPTIONS"
    return policy.headers(request, preflight=preflight)


# ---------------------------------------------------------------------- actions


class HttpAction:
    """An ``async def handler(ctx, request)`` marked with ``@http_action``.

    Calling it calls the handler (handy in tests). It is not a function that
    clients can call by path: it is reached only through a route.
    """

    def __init__(self, handler: HttpHandler) -> None:
        _check_handler(handler)
        self.handler = handler
        self.__name__ = getattr(handler, "__name__", "handler")
        self.__qualname__ = getattr(handler, "__qualname__", self.__name__)
        self.__module__ = getattr(handler, "__module__", __name__)
        self.__doc__ = getattr(handler, "__doc__", None)
        self.__wrapped__ = handler

    def __call__(self, ctx: Any, request: HttpRequest) -> Any:
        return self.handler(ctx, request)

    def __repr__(self) -> str:
        return f"<http_action {self.__module__}.{self.__qualname__}>"


def _check_handler(handler: Any) -> None:
    if isinstance(handler, HttpAction):
        return
    if not callable(handler):
        raise FunctionDefinitionError(f"An HTTP action handler must be a function, got {handler!r}")
    if not inspect.iscoroutinefunction(handler):
        name = getattr(handler, "__qualname__", repr(handler))
        raise FunctionDefinitionError(
            f"{name}: HTTP action handlers must be `async def handler(ctx, request)`"
        )


@overload
def http_action(handler: HttpHandler, /) -> HttpAction: ...
@overload
def http_action() -> Callable[[HttpHandler], HttpAction]: ...


def http_action(handler: HttpHandler | None = None, /) -> Any:
    """Mark ``async def handler(ctx, request)`` as an HTTP action (bare or called)."""
    if handler is None:
        return HttpAction
    return HttpAction(handler)


# ---------------------------------------------------------------------- router


def _check_method(method: object, *, allow_head: bool = False) -> str:
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


def _check_route(path: str | None, path_prefix: str | None) -> tuple[str, str]:
    if (path is None) == (path_prefix is None):
        raise FunctionDefinitionError("A route needs exactly one of `path` and `path_prefix`")
    if path is not None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise FunctionDefinitionError(f"Route path must start with '/', got {path!r}")
        if path == "/.files" or path.startswith("/.files/"):
            raise FunctionDefinitionError(f"Route path {path!r}: /.files is reserved")
        return "path", path
    assert path_prefix is not None
    if (
        not isinstance(path_prefix, str)
        or not path_prefix.startswith("/")
        or not path_prefix.endswith("/")
    ):
        raise FunctionDefinitionError(
            f"Route path_prefix must start and end with '/', got {path_prefix!r}"
        )
    if path_prefix.startswith("/.files/"):
        raise FunctionDefinitionError(f"Route path_prefix {path_prefix!r}: /.files is reserved")
    return "prefix", path_prefix


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request resolved to."""

    handler: HttpHandler
    #: the method of the route (GET for a HEAD request)
    method: str
    #: the route's path, or its prefix followed by ``*``
    route: str
    cors: CorsPolicy | None


class HttpRouter:
    """The routes of ``functions/http.py`` (``http = HttpRouter()``)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], HttpHandler] = {}
        self._prefix: dict[tuple[str, str], HttpHandler] = {}
        self._cors: dict[tuple[str, str], CorsPolicy] = {}

    @overload
    def route(
        self,
        *,
        path: str | None = None,
        path_prefix: str | None = None,
        method: str,
        handler: HttpHandler,
    ) -> HttpHandler: ...
    @overload
    def route(
        self, *, path: str | None = None, path_prefix: str | None = None, method: str
    ) -> Callable[[HttpHandler], HttpHandler]: ...

    def route(
        self,
        *,
        path: str | None = None,
        path_prefix: str | None = None,
        method: str,
        handler: HttpHandler | None = None,
    ) -> Any:
        """Route ``method`` requests for ``path`` (or under ``path_prefix``) to ``handler``.

        Without ``handler`` it is a decorator (the function is returned unchanged).
        """
        kind, where = _check_route(path, path_prefix)
        verb = _check_method(method)

        def add(fn: HttpHandler) -> HttpHandler:
            _check_handler(fn)
            table = self._exact if kind == "path" else self._prefix
            if (where, verb) in table:
                label = "path" if kind == "path" else "path_prefix"
                raise FunctionDefinitionError(
                    f"Route for {verb} {label}={where!r} is defined twice"
                )
            table[(where, verb)] = fn
            return fn

        if handler is None:
            return add
        return add(handler)

    def cors(
        self,
        *,
        path: str | None = None,
        path_prefix: str | None = None,
        origin: str | Iterable[str] = "*",
        methods: Iterable[str] | None = None,
        allow_headers: Iterable[str] = ("Content-Type", "Authorization"),
        expose_headers: Iterable[str] = (),
        max_age: int | None = 86400,
        credentials: bool = False,
    ) -> None:
        """Accept cross-origin requests for ``path`` (or everything under ``path_prefix``).

        Registers the OPTIONS route answering preflight requests (204), and
        adds ``Access-Control-Allow-Origin`` (and friends) to every response
        of the routes it covers, error responses included. ``methods``
        defaults to the methods routed at the request's path. ``origin`` is
        ``"*"``, one origin, or a list (the caller's Origin is echoed when
        listed). ``allow_headers=["*"]`` echoes the headers the preflight asks for.
        """
        kind, where = _check_route(path, path_prefix)
        policy = CorsPolicy.make(
            origin,
            methods=methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
            credentials=credentials,
        )
        if (kind, where) in self._cors:
            raise FunctionDefinitionError(f"CORS for {kind}={where!r} is defined twice")
        router = self

        async def preflight(ctx: Any, request: HttpRequest) -> HttpResponse:
            routed = router.methods_for(request.path)
            return HttpResponse(
                status=204, headers=policy.headers(request, preflight=True, routed_methods=routed)
            )

        preflight.__qualname__ = f"cors preflight {where}"
        self.route(
            path=where if kind == "path" else None,
            path_prefix=where if kind == "prefix" else None,
            method="OPTIONS",
            handler=preflight,
        )
        self._cors[(kind, where)] = policy

    def _cors_for(self, path: str) -> CorsPolicy | None:
        policy = self._cors.get(("path", path))
        if policy is not None:
            return policy
        best: CorsPolicy | None = None
        best_len = -1
        for (kind, where), value in self._cors.items():
            if kind == "prefix" and path.startswith(where) and len(where) > best_len:
                best, best_len = value, len(where)
        return best

    def lookup(self, path: str, method: str) -> RouteMatch | None:
        """The route for a request: exact path first, then the longest prefix."""
        verb = method.upper()
        if verb == "HEAD":
            verb = "GET"
        handler = self._exact.get((path, verb))
        if handler is not None:
            return RouteMatch(handler, verb, path, self._cors_for(path))
        best: tuple[str, HttpHandler] | None = None
        for (prefix, route_method), fn in self._prefix.items():
            if route_method != verb or not path.startswith(prefix):
                continue
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, fn)
        if best is None:
            return None
        return RouteMatch(best[1], verb, best[0] + "*", self._cors_for(path))

    def methods_for(self, path: str) -> list[str]:
        """Every method some route answers for ``path`` (HEAD included when GET is)."""
        found = [m for m in METHODS if self.lookup(path, m) is not None]
        if "GET" in found:
            found.insert(found.index("GET") + 1, "HEAD")
        return found

    def routes(self) -> list[tuple[str, str, HttpHandler]]:
        """(path or ``prefix*``, method, handler) of every route, exact paths first."""
        exact = [(p, m, h) for (p, m), h in sorted(self._exact.items(), key=lambda kv: kv[0])]
        prefixed = [
            (p + "*", m, h) for (p, m), h in sorted(self._prefix.items(), key=lambda kv: kv[0])
        ]
        return exact + prefixed

    def __repr__(self) -> str:
        return f"<HttpRouter {len(self._exact) + len(self._prefix)} routes>"
