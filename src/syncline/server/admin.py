"""Admin HTTP endpoints for the CLI (``syncline data``, ``syncline logs``, ``syncline run``).

Every endpoint requires the deployment's admin key, as
``Authorization: Convex <admin key>`` or ``?adminKey=<admin key>`` (protocol
§7.2). Without it: 403 ``Forbidden``; with a wrong key: 401 ``BadAdminKey``.
Request errors answer ``{"code", "message"}`` with a 4xx status, like the
function API. Values are Convex's encoded JSON (``{"$integer": ...}`` for
int64, ``{"$bytes": ...}`` for bytes), as on the wire.

``GET /api/admin/tables``
    ``{"tables": [{"name": "messages", "documents": 12}, ...]}`` — the user
    tables, sorted by name, with their document counts.

``GET /api/admin/data?table=T&limit=N&order=asc|desc``
    ``{"table": T, "total": 12, "documents": [...]}`` — up to ``limit``
    documents of ``T`` (default 100, at most :data:`MAX_DATA_LIMIT`) by
    ``_creationTime``, newest first unless ``order=asc``. System tables
    (``_scheduled_functions``, ``_storage``) can be read too. An unknown table
    is 404 ``TableNotFound``.

``GET /api/admin/functions``
    ``{"functions": [{"path", "kind", "visibility", "args", "returns"}, ...]}``
    — the loaded functions sorted by path; ``args`` / ``returns`` are the
    validators' Convex JSON or null.

``GET /api/admin/logs``
    A stream of every function call that this process finishes from now
    on, one JSON object per call: ``{"type": "call"}`` and the fields of a
    log-history record (:mod:`syncline.call_log.records`: "timestamp" in ms
    since the epoch, "path", "kind", "status": "success" | "failure",
    "durationMs", "requestId", "caller", "logLines", "cached", "error" and
    "traceback" for failures). ``syncline logs`` reads the log history
    (``server/observability.py``), which holds the calls of every worker.
    The stream starts with ``{"type": "connected"}``; a consumer too slow to
    keep up gets ``{"type": "dropped", "count": n}`` in place of the calls it
    missed. As newline-delimited JSON (``application/x-ndjson``, empty lines
    as keepalives), or as Server-Sent Events (``data: <json>`` events,
    ``: keepalive`` comments) when the request accepts ``text/event-stream``.
    The stream ends when the client disconnects.

``POST /api/admin/auth_keys/rotate`` with ``{"keepS": seconds}``
    ``{"kid"}`` — rotates built-in auth's signing keys in the database
    (``syncline rotate-auth-keys`` through a running server); every process
    of the deployment picks the new key up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from syncline.call_log.records import call_record
from syncline.database.browse import Order, TableNotFound, read_documents, table_counts
from syncline.errors import InvalidRequest, SynclineError
from syncline.functions.outcomes import Outcome
from syncline.server.api import _json_body, error_response, require_admin_request

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.functions.executor import Executor

__all__ = [
    "DEFAULT_DATA_LIMIT",
    "MAX_DATA_LIMIT",
    "AdminApi",
    "LogStream",
    "TableNotFound",
    "outcome_entry",
    "parse_limit",
    "parse_order",
    "read_documents",
    "routes",
    "table_counts",
]

DEFAULT_DATA_LIMIT = 100
MAX_DATA_LIMIT = 10_000
#: seconds between keepalives on an idle log stream
HEARTBEAT_S = 15.0
#: calls buffered per log stream before they are dropped (and counted)
LOG_BUFFER = 1_000


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# --------------------------------------------------------------------------
# Query parameters


def parse_limit(raw: str | None) -> int:
    """The ``limit`` query parameter: an integer in ``1..MAX_DATA_LIMIT`` (default 100)."""
    if raw is None or raw == "":
        return DEFAULT_DATA_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_DATA_LIMIT:
        raise InvalidRequest(
            f"limit must be an integer between 1 and {MAX_DATA_LIMIT}, got {raw!r}",
            code="BadLimit",
        )
    return limit


def parse_order(raw: str | None) -> Order:
    """The ``order`` query parameter: ``asc`` or ``desc`` (default)."""
    if raw is None or raw == "" or raw == "desc":
        return "desc"
    if raw == "asc":
        return "asc"
    raise InvalidRequest(f"order must be 'asc' or 'desc', got {raw!r}", code="BadOrder")


# --------------------------------------------------------------------------
# Log streams


def outcome_entry(outcome: Outcome) -> dict[str, Any]:
    """The log-stream record of one finished call: a log-history record with ``"type": "call"``."""
    return {"type": "call", **call_record(outcome, timestamp_ms=time.time() * 1000)}


class LogStream:
    """The calls an executor finishes while the stream is open, for one consumer.

    :meth:`open` adds an observer to ``executor.observers`` and :meth:`close`
    removes it. The observer may run in any thread; records are handed to the
    loop with ``call_soon_threadsafe`` and buffered (at most ``buffer``; the
    excess is counted in :attr:`dropped` and reported by :meth:`next`).
    """

    def __init__(
        self, executor: Executor, loop: asyncio.AbstractEventLoop, *, buffer: int = LOG_BUFFER
    ) -> None:
        self._executor = executor
        self._loop = loop
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=buffer)
        self.dropped = 0
        self._observer: Callable[[Outcome], None] | None = None

    def open(self) -> None:
        """Start collecting: every call finished from now on is buffered."""

        def observe(outcome: Outcome) -> None:
            entry = outcome_entry(outcome)
            try:
                self._loop.call_soon_threadsafe(self._deliver, entry)
            except RuntimeError:
                pass  # the loop is closed: the server is shutting down

        self._observer = observe
        self._executor.observers.append(observe)

    def close(self) -> None:
        """Stop collecting (idempotent)."""
        if self._observer is not None:
            try:
                self._executor.observers.remove(self._observer)
            except ValueError:
                pass
            self._observer = None

    def _deliver(self, entry: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next record (a ``dropped`` notice first if calls were lost), or None on timeout."""
        if self.dropped and self._queue.empty():
            count, self.dropped = self.dropped, 0
            return {"type": "dropped", "count": count}
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


# --------------------------------------------------------------------------
# Endpoints


class AdminApi:
    """The admin request handlers bound to one application."""

    def __init__(self, app: Application) -> None:
        self.app = app

    async def _require_admin(self, request: Request, what: str) -> None:
        await require_admin_request(self.app, request, what)

    async def tables(self, request: Request) -> Response:
        """``GET /api/admin/tables``: the user tables and their document counts."""
        try:
            await self._require_admin(request, "GET /api/admin/tables")
            result = await self.app.database.read(table_counts)
        except SynclineError as exc:
            return error_response(exc)
        return _Json({"tables": result.value})

    async def data(self, request: Request) -> Response:
        """``GET /api/admin/data?table=&limit=&order=``: documents of one table."""
        try:
            await self._require_admin(request, "GET /api/admin/data")
            params = request.query_params
            table = params.get("table")
            if not table:
                raise InvalidRequest("the `table` query parameter is required", code="BadTable")
            limit = parse_limit(params.get("limit"))
            order = parse_order(params.get("order"))
            result = await self.app.database.read(
                lambda tx: read_documents(tx, table, limit=limit, order=order)
            )
        except SynclineError as exc:
            return error_response(exc)
        return _Json(result.value)

    async def functions(self, request: Request) -> Response:
        """``GET /api/admin/functions``: the loaded functions with their validators."""
        try:
            await self._require_admin(request, "GET /api/admin/functions")
        except SynclineError as exc:
            return error_response(exc)
        registry = self.app.registry
        return _Json(
            {
                "functions": [
                    {
                        "path": path,
                        "kind": fn.kind.value,
                        "visibility": fn.visibility.value,
                        "args": fn.args.to_json() if fn.args is not None else None,
                        "returns": fn.returns.to_json() if fn.returns is not None else None,
                    }
                    for path, fn in sorted(registry.functions.items())
                ]
            }
        )

    async def logs(self, request: Request) -> Response:
        """``GET /api/admin/logs``: every call finished from now on, streamed."""
        try:
            await self._require_admin(request, "GET /api/admin/logs")
        except SynclineError as exc:
            return error_response(exc)
        sse = "text/event-stream" in request.headers.get("accept", "")
        stream = LogStream(self.app.executor, asyncio.get_running_loop())

        def encode(entry: dict[str, Any]) -> bytes:
            data = orjson.dumps(entry)
            return b"data: " + data + b"\n\n" if sse else data + b"\n"

        keepalive = b": keepalive\n\n" if sse else b"\n"

        async def body() -> AsyncIterator[bytes]:
            stream.open()
            try:
                yield encode({"type": "connected"})
                while True:
                    entry = await stream.next(HEARTBEAT_S)
                    yield keepalive if entry is None else encode(entry)
            finally:
                stream.close()

        return StreamingResponse(
            body(),
            media_type="text/event-stream" if sse else "application/x-ndjson",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def rotate_auth_keys(self, request: Request) -> Response:
        """``POST /api/admin/auth_keys/rotate`` ``{"keepS"}``: ``syncline rotate-auth-keys --url``."""
        from syncline.accounts.keys import KEY_DIR_NAME, rotate_keys

        try:
            await self._require_admin(request, "POST /api/admin/auth_keys/rotate")
            keep_s = (await _json_body(request)).get("keepS")
            if not isinstance(keep_s, int | float) or isinstance(keep_s, bool) or keep_s < 0:
                raise InvalidRequest(
                    f'Body must be {{"keepS": <seconds, 0 or more>}}, got keepS={keep_s!r}',
                    code="BadRotateRequest",
                )
            legacy = None if self.app.paths is None else self.app.paths.database_dir / KEY_DIR_NAME
            now_ms = self.app.clock.now_ms()
            key = await asyncio.to_thread(
                rotate_keys, self.app.database, now_ms, keep_s * 1000, legacy
            )
        except SynclineError as exc:
            return error_response(exc)
        return _Json({"kid": key.kid})


def routes(application: Application) -> list[Route]:
    """The ``/api/admin/*`` routes for ``application`` (see the module docstring)."""
    admin = AdminApi(application)
    return [
        Route("/api/admin/tables", admin.tables, methods=["GET"]),
        Route("/api/admin/data", admin.data, methods=["GET"]),
        Route("/api/admin/functions", admin.functions, methods=["GET"]),
        Route("/api/admin/logs", admin.logs, methods=["GET"]),
        Route("/api/admin/auth_keys/rotate", admin.rotate_auth_keys, methods=["POST"]),
    ]
