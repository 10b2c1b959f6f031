"""CORS: Syncline adds no CORS headers unless asked.

:func:`cors_headers` builds them for one response; :meth:`HttpRouter.cors
<syncline.functions.http.router.HttpRouter.cors>` keeps a :class:`CorsPolicy` per
path that answers preflight requests and decorates every response of its routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncline.functions.http.request import check_method

if TYPE_CHECKING:
    from syncline.functions.http.request import HttpRequest

__all__ = ["CorsPolicy", "cors_headers"]


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
            methods_tuple = tuple(check_method(m, allow_head=True) for m in methods)
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
