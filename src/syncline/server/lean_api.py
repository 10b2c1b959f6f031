"""``POST /api/query``, ``/api/mutation`` and ``/api/action`` as plain ASGI.

Nearly every HTTP call a client makes is one of these three, so they are
served in front of the Starlette app, without its middleware, routing and
request/response objects: the path is looked up once, the headers read in one
pass, the body read with the size limit as it streams in, and the answer
(``HttpApi.call``: parsed and encoded once with orjson) sent as one start and
one body message.

The answers are the Starlette app's, byte for byte: the same status codes and
bodies, and the CORS headers its ``CORSMiddleware`` adds to every answer (the
caller's ``Origin`` mirrored with credentials allowed, ``Vary: Origin``).
Everything else, other methods on these paths included (CORS preflights, the
405 of a GET), goes to the Starlette app.

uvicorn's ``X-Forwarded-*`` handling (``ProxyHeadersMiddleware``, which
rewrites the scope's ``client`` and ``scheme`` for a trusted proxy) is applied
here, to everything but these three endpoints, which read neither; the server
runs uvicorn with ``proxy_headers=False`` so that it is not applied twice.
The trusted proxies are uvicorn's default: ``FORWARDED_ALLOW_IPS``, else
``127.0.0.1,::1``.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from syncline.errors import SynclineError
from syncline.functions.caller import client_address
from syncline.functions.registration import FunctionKind
from syncline.server.api import HttpApi, error_answer
from syncline.server.request_limits import MAX_API_BODY_BYTES, read_asgi_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LeanApi"]

ROUTES = {
    "/api/query": FunctionKind.QUERY,
    "/api/mutation": FunctionKind.MUTATION,
    "/api/action": FunctionKind.ACTION,
}
_SLASHES = re.compile(r"/{2,}")

_JSON = (b"content-type", b"application/json")
_CREDENTIALS = (b"access-control-allow-credentials", b"true")
_VARY = (b"vary", b"Origin")
_SERVER_ERROR = b"Internal Server Error"
_SERVER_ERROR_HEADERS = [
    (b"content-length", b"%d" % len(_SERVER_ERROR)),
    (b"content-type", b"text/plain; charset=utf-8"),
]


def _trusted_proxies() -> str:
    """The proxies whose ``X-Forwarded-*`` headers count, as uvicorn's ``Config`` reads them."""
    return os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


class LeanApi:
    """Serves the three function endpoints; passes every other request to ``app``.

    ``app`` gets the proxy headers applied (see the module docstring).
    """

    def __init__(self, api: HttpApi, app: ASGIApp) -> None:
        self.api = api
        # uvicorn types the middleware with its own (narrower) ASGI types.
        proxied: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=_trusted_proxies())
        self.app: ASGIApp = proxied
        self._trusted = proxied.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            kind = ROUTES.get(path)
            if kind is None and "//" in path:  # `//api/query`, as the Starlette app allows
                kind = ROUTES.get(_SLASHES.sub("/", path))
            if kind is not None:
                await self.serve(kind, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def serve(self, kind: FunctionKind, scope: Scope, receive: Receive, send: Send) -> None:
        # The first of each header counts, as in Starlette's ``Headers.get``.
        authorization = origin = length = forwarded = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = length or value
            elif name == b"authorization":
                authorization = authorization or value
            elif name == b"origin":
                origin = origin or value
            elif name == b"x-forwarded-for":
                forwarded = forwarded or value
        client_address.set(self._client_host(scope, forwarded))
        try:
            body = await read_asgi_body(
                receive, None if length is None else length.decode("latin-1"), MAX_API_BODY_BYTES
            )
            if body is None:
                return  # the client went away: nobody to run the function for
            status, answer = await self.api.call(
                kind,
                body,
                None if authorization is None else authorization.decode("latin-1"),
                _admin_key(scope["query_string"]),
            )
        except SynclineError as exc:
            status, answer = error_answer(exc)
        except Exception:
            # What Starlette's ServerErrorMiddleware answers; the server logs the error.
            await send(
                {"type": "http.response.start", "status": 500, "headers": _SERVER_ERROR_HEADERS}
            )
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
        if origin is None:
            headers = [(b"content-length", b"%d" % len(answer)), _JSON, _VARY]
        else:
            headers = [
                (b"content-length", b"%d" % len(answer)),
                _JSON,
                _CREDENTIALS,
                (b"access-control-allow-origin", origin),
                _VARY,
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def _client_host(self, scope: Scope, forwarded: bytes | None) -> str | None:
        """The caller's address for abuse limits, as ``ProxyHeadersMiddleware`` would give it."""
        peer = scope.get("client")
        host = peer[0] if peer else None
        if forwarded is not None and host is not None and host in self._trusted:
            forwarded_host, _port = self._trusted.get_trusted_client_address(
                forwarded.decode("latin-1")
            )
            return str(forwarded_host)
        return host


def _admin_key(query_string: bytes) -> str | None:
    """The ``adminKey`` query parameter (the last one, as Starlette's ``QueryParams``)."""
    if not query_string:
        return None
    key = None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "adminKey":
            key = value
    return key
