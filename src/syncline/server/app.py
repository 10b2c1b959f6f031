"""The ASGI application: sync WebSocket, HTTP function API, readiness.

Routes (API port, 3210 by default):

* ``/api/sync`` and ``/api/{client version}/sync`` — the sync WebSocket (``ws.py``);
* ``POST /api/query``, ``/api/mutation``, ``/api/action``, ``/api/function``,
  ``/api/run/{path}``, ``/api/query_ts``, ``/api/debug_event`` — see ``api.py``
  (the first three are served in front of everything else, ``lean_api.py``);
* ``POST /api/storage/upload``, ``GET|HEAD /api/storage/{id}`` — files (``storage.py``);
* ``GET /version`` — 200 with the server version once serving (readiness);
* ``GET|POST /api/admin/env`` — environment variables, admin only (``env_api.py``);
* ``GET /api/admin/tables|data|functions|logs`` — data and logs, admin only (``admin.py``);
* ``GET /metrics``, ``GET /api/admin/log_history`` — metrics and the log history, admin
  only (``observability.py``);
* ``GET /api/admin/export``, ``POST /api/admin/import`` — online backup and restore,
  admin only (``snapshot_api.py``);
* ``POST /api/admin/deploy`` — new code for the running deployment, admin only (``deploy.py``);
* ``/dashboard``, ``/api/admin/dashboard/health|login`` — the web dashboard, unless turned
  off (``dashboard_api.py``); its pages call the ``_system/dashboard/`` functions over sync;
* ``/http/{path}`` — HTTP actions, as on the site port (``http_actions.py``).

Paths with doubled slashes (``//api/query``: the JS client appends ``/api``
to a deployment URL that ends in ``/``) are served as if single.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from syncline.__about__ import __version__
from syncline.dashboard import install_system_functions
from syncline.errors import DatabaseUnavailable
from syncline.functions.registration import FunctionKind
from syncline.server import admin, deploy, env_api, observability, snapshot_api
from syncline.server.api import HttpApi
from syncline.server.dashboard_api import Dashboard
from syncline.server.http_actions import HttpActionsMount, SiteApp
from syncline.server.lean_api import LeanApi
from syncline.server.storage import StorageApi
from syncline.server.ws import SyncEndpoint
from syncline.sync.limits import ConnectionLimits

if TYPE_CHECKING:
    from syncline.application import Application

log = logging.getLogger("syncline.server")
_SLASHES = re.compile(r"/{2,}")


class CollapseSlashes:
    """Serve ``//api/x`` as ``/api/x``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and "//" in scope["path"]:
            scope = dict(scope)
            scope["path"] = _SLASHES.sub("/", scope["path"])
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def create_app(
    application: Application,
    *,
    manage_lifecycle: bool = True,
    sync_limits: ConnectionLimits | None = None,
    max_import_bytes: int = snapshot_api.DEFAULT_MAX_IMPORT_BYTES,
    max_deploy_bytes: int = deploy.DEFAULT_MAX_DEPLOY_BYTES,
    dashboard: bool = True,
    dashboard_static: Path | None = None,
) -> ASGIApp:
    """The API-port ASGI app for ``application``.

    With ``manage_lifecycle`` the app's lifespan starts and stops the
    application's background work; pass False when the caller does that.
    ``sync_limits`` bound each sync connection (default: ``ConnectionLimits()``);
    ``max_import_bytes`` the snapshot a ``POST /api/admin/import`` may upload,
    ``max_deploy_bytes`` the bundle a ``POST /api/admin/deploy`` may.
    ``dashboard=False`` serves no dashboard (``serve --no-dashboard``);
    ``dashboard_static`` is the folder of its built files (default: the package's).
    The dashboard's system functions are served to admin callers either way.
    """
    install_system_functions(application)
    board = Dashboard(application, dashboard_static) if dashboard else None
    api = HttpApi(application)
    storage = StorageApi(application)
    deployer = deploy.Deployer(application, max_bytes=max_deploy_bytes)
    follower = deploy.DeploymentFollower(deployer)

    async def version(request: Request) -> Response:
        # A health check: 503 while the database cannot be reached (a load balancer
        # then sends clients to another node).
        try:
            await asyncio.to_thread(application.database.persistence.ping)
        except DatabaseUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        return PlainTextResponse(__version__)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await application.start()
        try:
            async with contextlib.AsyncExitStack() as running:
                await running.enter_async_context(follower.running())  # others' deploys
                if board is not None:
                    await running.enter_async_context(board.counting())
                yield
        finally:
            if manage_lifecycle:
                await application.stop()

    routes = [
        Route("/version", version, methods=["GET"]),
        # A POST to these three is answered by LeanApi in front: the routes answer
        # the other methods (405), like any route's.
        Route("/api/query", api.endpoint(FunctionKind.QUERY), methods=["POST"]),
        Route("/api/mutation", api.endpoint(FunctionKind.MUTATION), methods=["POST"]),
        Route("/api/action", api.endpoint(FunctionKind.ACTION), methods=["POST"]),
        Route("/api/function", api.function, methods=["POST"]),
        Route("/api/run/{path:path}", api.run, methods=["POST"]),
        Route("/api/query_ts", api.query_ts, methods=["POST"]),
        Route("/api/query_at_ts", api.query_at_ts, methods=["POST"]),
        Route("/api/debug_event", api.debug_event, methods=["POST"]),
        Route("/api/storage/upload", storage.upload, methods=["POST"]),
        # Any path below /api/storage/: whatever is not a storage id gets a clear 400.
        Route("/api/storage/{rest:path}", storage.download, methods=["GET", "HEAD"]),
        *env_api.routes(application),
        *admin.routes(application),
        *observability.routes(application),
        *snapshot_api.routes(application, max_import_bytes=max_import_bytes),
        *deploy.routes(application, deployer),
        *(board.routes() if board is not None else []),
    ]
    middleware = [
        Middleware(CollapseSlashes),
        # The function API mirrors the caller's origin, as Convex does (protocol §7.2).
        Middleware(
            CORSMiddleware,
            allow_origin_regex=".*",
            allow_credentials=True,
            allow_methods=["GET", "POST", "OPTIONS", "PATCH", "DELETE", "PUT"],
            allow_headers=["*"],
            max_age=86400,
        ),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        # Request-level errors are {code, message} JSON everywhere (protocol §7.3).
        return JSONResponse(
            {"code": "NotFound", "message": f"No route for {request.method} {request.url.path}"},
            status_code=404,
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"code": "MethodNotAllowed", "message": f"{request.method} is not allowed here"},
            status_code=405,
        )

    http_app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    # HTTP actions are also served under /http/, outside the API's CORS layer.
    endpoints = SyncEndpoint(
        application, HttpActionsMount(SiteApp(application), http_app), sync_limits
    )
    return LeanApi(api, endpoints)
