"""Operations endpoints: Prometheus metrics and the log history (admin key required).

``GET /metrics``
    The Prometheus text exposition of the server (:mod:`syncline.metrics`;
    with ``--workers N``, of every worker). Needs the admin key, as
    ``Authorization: Convex <key>`` (Prometheus: ``authorization: {type:
    Convex, credentials: <key>}``) or ``?adminKey=``. ``serve
    --metrics-port`` serves the same without a key on a port of its own.

``GET /api/admin/log_history?since=&function=&status=&requestId=&after=&limit=``
    ``{"records": [...], "last": id}``: the log history's records
    (:mod:`syncline.call_log.records`, each with its ``id``) that match
    every given filter, in the order they were written, and the id of the
    newest record of all. ``since`` is a duration back from the server's
    now (``90s``, ``15m``, ``1h``, ``7d``); ``function`` a
    path (``tasks:add``) or a module (``tasks``); ``status`` ``success`` or
    ``failure``; ``limit`` 1 to :data:`~syncline.call_log.query.MAX_LIMIT`
    (default 100); the filters at most
    :data:`~syncline.call_log.query.MAX_FILTER_CHARS` characters. Without ``after``, the newest ``limit`` matches; with
    ``after=<id>``, the oldest ``limit`` matches written after that record
    (``syncline logs --follow`` polls this way). A bad parameter is 400
    ``BadLogQuery``; a server with no data folder answers 404
    ``LogHistoryUnavailable``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncline import metrics
from syncline.call_log.query import parse_log_query
from syncline.call_log.store import query_log, store_path
from syncline.errors import SynclineError
from syncline.server.api import error_response, require_admin_request

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["LogHistoryUnavailable", "routes"]


class LogHistoryUnavailable(SynclineError):
    """The server keeps no log history (an application without a data folder)."""

    code = "LogHistoryUnavailable"
    http_status = 404


def routes(application: Application) -> list[Route]:
    """``GET /metrics`` and ``GET /api/admin/log_history`` for ``application``."""

    async def scrape(request: Request) -> Response:
        try:
            await require_admin_request(application, request, "GET /metrics")
        except SynclineError as exc:
            return error_response(exc)
        # Merging the workers' files reads the disk: off the event loop.
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def log_history(request: Request) -> Response:
        try:
            await require_admin_request(application, request, "GET /api/admin/log_history")
            query = parse_log_query(dict(request.query_params), now_ms=application.clock.now_ms())
            if application.paths is None:
                raise LogHistoryUnavailable("This server keeps no log history (no data folder)")
            if not application.keeps_log_history:
                raise LogHistoryUnavailable(
                    "This server keeps no log history (it runs with --no-log-history): "
                    "`syncline logs --follow` shows calls as they happen"
                )
            path = store_path(application.paths.database_dir)
            records, last = await asyncio.to_thread(query_log, path, query)
        except SynclineError as exc:
            return error_response(exc)
        return Response(
            orjson.dumps({"records": records, "last": last}), media_type="application/json"
        )

    return [
        Route("/metrics", scrape, methods=["GET"]),
        Route("/api/admin/log_history", log_history, methods=["GET"]),
    ]
