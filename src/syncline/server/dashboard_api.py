"""The web dashboard's HTTP side: its built files, its login link, its health figures.

* ``GET /dashboard`` redirects to ``/dashboard/``; ``GET /dashboard/<route>``
  answers ``index.html`` (``Cache-Control: no-cache``: the app routes in the
  browser), ``GET /dashboard/assets/<file>`` the file (cached for good),
  gzip-compressed for clients that accept it.
  Without a built UI (or with ``serve --no-dashboard``, which mounts none of
  these routes) they are 404.
* ``POST /api/admin/dashboard/login`` with ``{"token"}``: ``{"adminKey"}``
  for a login link's token, once; a forged, expired or used one is 401
  ``InvalidLoginToken`` (:mod:`syncline.dashboard.login`).
* ``GET /api/admin/dashboard/health`` (admin key): this process's version,
  uptime, connections, live queries, commit rate and call latencies
  (:mod:`syncline.dashboard.health`); a missing or wrong key is 401
  ``Unauthorized``, which is how the login form checks a key.

The pages' data comes through the sync protocol, from the system functions
under ``_system/dashboard/`` (:mod:`syncline.dashboard`), not from here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from syncline.auth.credentials import require_admin
from syncline.dashboard import static
from syncline.dashboard.health import HealthStats
from syncline.dashboard.login import InvalidLoginToken, LoginTokens
from syncline.errors import SynclineError
from syncline.server.api import _json_body, error_response

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["Dashboard"]


class Dashboard:
    """The dashboard's routes for one application, and the health counters they read."""

    def __init__(self, application: Application, static_dir: Path | None = None) -> None:
        self.application = application
        self.static_dir = static.STATIC_DIR if static_dir is None else Path(static_dir)
        self.stats = HealthStats(application)

    @contextlib.asynccontextmanager
    async def counting(self) -> AsyncIterator[None]:
        """Count calls and commits while the server runs (its lifespan)."""
        self.stats.attach()
        try:
            yield
        finally:
            self.stats.detach()

    def routes(self) -> list[BaseRoute]:
        # The built files are compressed on the way out (a bundle shrinks about 4 times).
        pages = GZipMiddleware(
            Router([Route("/{route:path}", self.page, methods=["GET", "HEAD"])]),
            minimum_size=1024,
        )
        return [
            Route("/dashboard", self.redirect, methods=["GET", "HEAD"]),
            Mount("/dashboard", app=pages),
            Route("/api/admin/dashboard/health", self.health, methods=["GET"]),
            Route("/api/admin/dashboard/login", self.login, methods=["POST"]),
        ]

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=308)

    async def page(self, request: Request) -> Response:
        found = await asyncio.to_thread(
            static.resolve, self.static_dir, request.path_params["route"]
        )
        if found is None:
            return JSONResponse(
                {"code": "NotFound", "message": f"No route for GET {request.url.path}"},
                status_code=404,
            )
        return FileResponse(found.path, headers={"Cache-Control": found.cache_control})

    async def health(self, request: Request) -> Response:
        try:
            identity = await self.application.identity_from_header(
                request.headers.get("authorization")
            )
            require_admin(identity, "GET /api/admin/dashboard/health")
        except SynclineError as exc:
            return JSONResponse(
                {"code": "Unauthorized", "message": f"{exc.message}: log in with the admin key"},
                status_code=401,
            )
        return JSONResponse(self.stats.snapshot())

    async def login(self, request: Request) -> Response:
        application = self.application
        try:
            body = await _json_body(request)
            if application.admin_key is None:
                raise InvalidLoginToken(
                    "This deployment has no admin key: there is nothing to log in with"
                )
            tokens = LoginTokens(application.admin_key, application.database, application.clock)
            admin_key = await tokens.redeem(body.get("token"))
        except SynclineError as exc:
            return error_response(exc)
        return JSONResponse({"adminKey": admin_key})
