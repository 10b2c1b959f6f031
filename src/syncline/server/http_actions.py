"""Serving HTTP actions: the site app (port 3211) and the ``/http/`` mount on the API port.

:func:`dispatch` turns an :class:`~syncline.functions.http.request.HttpRequest`
into an :class:`~syncline.functions.http.response.HttpResponse`; it knows
nothing of ASGI, so the test kit (``TestBackend.fetch``) uses it too.
:class:`SiteApp` is the raw ASGI app around it. No Starlette here: requests
and responses stream straight between ASGI and user code.

Per request:

1. The route is looked up in ``functions/http.py``'s router (exact path, then
   longest prefix; HEAD uses GET routes). None: 404 ``No HttpAction routed
   for <path>`` as text.
2. ``Authorization: Bearer <jwt>`` becomes ``ctx.auth``'s identity. A token
   that fails verification does not fail the request (webhooks send their
   own bearer secrets): the handler runs anonymously, and calling
   ``ctx.auth.get_user_identity()`` raises the AuthError with the reason.
3. The handler runs through ``Executor.http_action`` (action ctx, captured
   logs, action timeout).
4. An uncaught error answers 500 JSON ``{"code": "[Request ID: <id>] Server
   Error[: <message>]", "trace"?, "data"?}``: the message and trace only in
   dev, ConvexError ``data`` always (semantics §10/§12). Errors of the
   caller's making (an unreadable body: 400/413; a rejected token: 401)
   answer ``{"code", "message"}`` with their own status.
5. CORS headers are added only for routes covered by ``http.cors(...)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sysconfig
import traceback
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from syncline.errors import AuthError, ConvexError, SynclineError
from syncline.functions.context import ActionCtx, Auth
from syncline.functions.http.request import MAX_BODY_BYTES, Headers, HttpBodyError, HttpRequest
from syncline.functions.http.response import HttpResponse, to_response
from syncline.functions.http.router import HttpRouter, RouteMatch
from syncline.functions.outcomes import convex_error_data
from syncline.identity import ANONYMOUS, Identity, UserIdentity
from syncline.values.json import to_clean_json

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from syncline.application import Application

log = logging.getLogger("syncline.http")

#: The prefix under which the API port also serves HTTP actions (as Convex self-hosted does).
API_PORT_PREFIX = "/http"


class ResponseTooLarge(SynclineError):
    code = "HttpResponseTooLarge"


class _RejectedTokenAuth(Auth):
    """``ctx.auth`` when the request's bearer token was rejected: asking who it is fails."""

    def __init__(self, error: AuthError) -> None:
        super().__init__(ANONYMOUS)
        self._error = error

    def get_user_identity(self) -> UserIdentity | None:
        raise self._error


async def _identity(app: Application, request: HttpRequest) -> tuple[Identity, AuthError | None]:
    header = request.headers.get("authorization")
    if header is None or header[:7].lower() != "bearer ":
        # Other schemes (Basic, provider signatures, ...) belong to the handler.
        return ANONYMOUS, None
    try:
        return await app.identity_from_header(header), None
    except AuthError as exc:
        return ANONYMOUS, exc
    except SynclineError as exc:
        return ANONYMOUS, AuthError(str(exc), code="InvalidAuthHeader")


def _finish(value: Any) -> HttpResponse:
    response = to_response(value)
    if not response.is_stream and len(response.body) > MAX_BODY_BYTES:
        raise ResponseTooLarge(
            f"The HTTP action's response body is {len(response.body)} bytes, larger than the "
            f"limit of {MAX_BODY_BYTES} bytes"
        )
    return response


def error_response(exc: BaseException, *, request_id: str, dev: bool) -> HttpResponse:
    """The response for a handler's uncaught error (see the module docstring)."""
    if isinstance(exc, HttpBodyError | AuthError):
        return HttpResponse({"code": exc.code, "message": exc.message}, status=exc.http_status)
    code = f"[Request ID: {request_id}] Server Error"
    body: dict[str, Any] = {}
    if isinstance(exc, ConvexError):
        code += f": Uncaught ConvexError: {exc.message}"
        try:
            body["data"] = to_clean_json(convex_error_data(exc))
        except SynclineError as bad:
            code += f" (its data is not a Convex value: {bad})"
    elif dev:
        code += f": Uncaught {type(exc).__name__}: {exc}"
        trace = _user_trace(exc)
        if trace:
            body["trace"] = trace
    return HttpResponse({"code": code, **body}, status=500)


def _user_trace(exc: BaseException) -> str:
    """The frames of user code in ``exc``'s traceback (not Syncline's or the stdlib's)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    frames = [
        f"    at {frame.name} ({frame.filename}:{frame.lineno})"
        for frame in traceback.extract_tb(exc.__traceback__)
        if "/syncline/" not in frame.filename.replace("\\", "/")
        and not frame.filename.startswith(stdlib)
    ]
    return "\n".join(frames[-10:])


def _route_label(match: RouteMatch) -> str:
    return f"{match.method} {match.route}"


def _with_cors(
    response: HttpResponse, match: RouteMatch, request: HttpRequest, router: HttpRouter
) -> HttpResponse:
    if match.cors is None or request.method == "OPTIONS":
        return response
    extra = match.cors.headers(request, routed_methods=router.methods_for(request.path))
    present = {name for name in response.headers}
    pairs = response.headers.multi_items()
    pairs.extend((k.lower(), v) for k, v in extra.items() if k.lower() not in present)
    response.headers = Headers(pairs)
    return response


async def dispatch(
    app: Application, request: HttpRequest, *, identity: Identity | None = None
) -> HttpResponse:
    """Route and run one request; always returns a response (errors become 4xx/5xx).

    ``identity`` overrides the one from the Authorization header (test kit).
    """
    router = app.registry.http
    match = router.lookup(request.path, request.method) if isinstance(router, HttpRouter) else None
    if match is None or not isinstance(router, HttpRouter):
        return HttpResponse(f"No HttpAction routed for {request.path}", status=404)
    rejected: AuthError | None = None
    if identity is None:
        identity, rejected = await _identity(app, request)

    def prepare(ctx: ActionCtx) -> None:
        if rejected is not None:
            ctx.auth = _RejectedTokenAuth(rejected)

    outcome = await app.executor.http_action(
        match.handler,
        request,
        path=_route_label(match),
        identity=identity,
        prepare_ctx=prepare,
        finish=_finish,
    )
    if outcome.error is not None:
        # In dev the console already prints every call's outcome.
        if not app.dev and not isinstance(outcome.error, HttpBodyError | AuthError):
            log.warning(
                "HTTP action %s %s failed: %s: %s",
                request.method,
                request.path,
                type(outcome.error).__name__,
                outcome.error,
            )
        response = error_response(outcome.error, request_id=outcome.request_id, dev=app.dev)
    else:
        response = outcome.value
    return _with_cors(response, match, request, router)


async def read_whole(response: HttpResponse, *, head: bool = False) -> HttpResponse:
    """``response`` with a streamed body collected into bytes (HEAD: no body)."""
    if head:
        await response.aclose()
        return HttpResponse(None, response.status, response.headers.multi_items())
    if not response.is_stream:
        return response
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.chunks():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ResponseTooLarge(
                    f"The streamed response is larger than the limit of {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
    finally:
        await response.aclose()
    return HttpResponse(b"".join(chunks), response.status, response.headers.multi_items())


# ---------------------------------------------------------------------- ASGI


def _url(scope: Scope) -> str:
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


class ClientDisconnected(HttpBodyError):
    code = "ClientDisconnected"


class SiteApp:
    """The ASGI app serving HTTP actions (the site port, and ``/http/`` on the API port)."""

    def __init__(self, application: Application) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        body_done = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal body_done
            while not body_done:
                message = await receive()
                if message["type"] == "http.disconnect":
                    body_done = True
                    raise ClientDisconnected("The client disconnected while sending the body")
                body_done = not message.get("more_body", False)
                yield message.get("body", b"")

        request = HttpRequest(
            scope["method"],
            _url(scope),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])],
            body(),
            path=scope["path"],
        )
        response = await dispatch(self.application, request)
        await _send_response(response, request.method == "HEAD", send, receive)


async def _lifespan(receive: Receive, send: Send) -> None:
    # The application's lifecycle belongs to whoever serves the API port.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _raw_headers(response: HttpResponse, length: int | None) -> list[tuple[bytes, bytes]]:
    raw = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.multi_items()
        if name != "content-length"
    ]
    if length is not None:
        raw.append((b"content-length", str(length).encode()))
    return raw


async def _send_response(response: HttpResponse, head: bool, send: Send, receive: Receive) -> None:
    if not response.is_stream:
        body = response.body
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _raw_headers(response, len(body)),
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": _raw_headers(response, None),
        }
    )
    if head:
        await response.aclose()
        await send({"type": "http.response.body", "body": b""})
        return
    # Stop producing when the client goes away (uvicorn drops sends after a disconnect).
    stream = asyncio.ensure_future(_stream_body(response, send))
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({stream, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not stream.done():
            stream.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        results = await asyncio.gather(stream, return_exceptions=True)
        await response.aclose()
    error = results[0]
    if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
        # Headers are out: the only way to signal a failed stream is to cut the connection.
        log.error("Streamed HTTP action response failed: %s: %s", type(error).__name__, error)
        raise error


async def _stream_body(response: HttpResponse, send: Send) -> None:
    size = 0
    async for chunk in response.chunks():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ResponseTooLarge(
                f"The streamed response is larger than the limit of {MAX_BODY_BYTES} bytes"
            )
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _wait_disconnect(receive: Receive) -> None:
    # Request body the handler left unread arrives here first: it is drained.
    while (await receive())["type"] != "http.disconnect":
        pass


class HttpActionsMount:
    """Serves ``/http/<path>`` with the site app (HTTP actions) and everything else with ``app``.

    The mount sits outside the API's CORS middleware: HTTP actions decide
    their own CORS headers.
    """

    def __init__(self, site: ASGIApp, app: ASGIApp, prefix: str = API_PORT_PREFIX) -> None:
        self.site = site
        self.app = app
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}(/.*)?$")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._pattern.match(scope["path"])
            if found is not None:
                scope = dict(scope)
                scope["path"] = found.group(1) or "/"
                scope["root_path"] = scope.get("root_path", "") + self.prefix
                await self.site(scope, receive, send)
                return
        await self.app(scope, receive, send)
