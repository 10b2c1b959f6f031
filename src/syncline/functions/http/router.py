"""Routing HTTP requests to actions: :func:`http_action` and :class:`HttpRouter`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, overload

from syncline.errors import FunctionDefinitionError
from syncline.functions.http.cors import CorsPolicy
from syncline.functions.http.request import METHODS, HttpRequest, check_method
from syncline.functions.http.response import HttpResponse

__all__ = ["HttpAction", "HttpHandler", "HttpRouter", "RouteMatch", "http_action"]

HttpHandler = Callable[[Any, "HttpRequest"], Any]


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
        verb = check_method(method)

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
