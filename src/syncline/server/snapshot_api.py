"""Online backup and restore, admin only (``syncline export|import --url``).

``GET /api/admin/export[?includeFiles=false]``, ``GET /api/admin/export?table=T&format=jsonl|csv``
    A snapshot ZIP (or, with ``table``, that one table as JSONL or CSV) (the layout of :mod:`syncline.snapshot`) of the database
    as of one commit, streamed while writes go on. The header
    ``X-Syncline-Snapshot-Ts`` names that commit's ts. The ZIP is produced as
    it is sent (a reader thread holds one consistent snapshot; memory does
    not grow with the data). A failure after the headers went out ends the
    response early: the ZIP then lacks its directory, and readers reject it.

``POST /api/admin/import?mode=empty|replace|append[&table=T&format=jsonl|csv]``
    The body is a snapshot ZIP (or, with ``table``, a JSONL or CSV file
    for that table; at most ``max_import_bytes``, 413 beyond).
    It is applied as one commit, all or nothing, through the same commit
    path as mutations: live queries re-run and subscribed clients receive
    the new data. Answers ``{"tables": {name: imported}, "deleted": {name:
    n}, "files": n, "warnings": [...], "ts": commit ts}``; a bad file or bad
    rows answer 400 ``DataImportError`` (or ``TableNotEmpty``) and change
    nothing.

Both need ``Authorization: Convex <admin key>`` (403 without, 401 for a wrong key).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from syncline.auth.credentials import require_admin
from syncline.errors import InvalidRequest, LimitExceeded, SynclineError
from syncline.server.api import error_response

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.snapshot import ImportMode

# syncline.snapshot (and zipfile, csv) is imported by the first export or import,
# not with the server: most servers never run one.

__all__ = ["DEFAULT_MAX_IMPORT_BYTES", "EXPORT_PATH", "IMPORT_PATH", "TS_HEADER", "routes"]

EXPORT_PATH = "/api/admin/export"
IMPORT_PATH = "/api/admin/import"
TS_HEADER = "X-Syncline-Snapshot-Ts"
#: the largest snapshot ZIP ``POST /api/admin/import`` accepts (``serve --max-import-size``)
DEFAULT_MAX_IMPORT_BYTES = 16 * 1024**3
#: bytes per streamed chunk of an export, and chunks buffered ahead of a slow reader
_CHUNK = 256 * 1024
_AHEAD = 8
#: seconds between checks, while the export waits on a full buffer, that the reader is still there
_POLL_S = 1.0


class _ExportAbandoned(Exception):
    """The client stopped reading the export: the export thread stops writing."""


class _ChunkPipe:
    """A write-only binary stream whose bytes an event loop reads as chunks.

    The export thread writes; the loop's :meth:`chunks` yields. At most
    ``_AHEAD`` chunks wait in between, so a slow reader slows the export
    instead of filling memory.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_AHEAD)
        self._buffer = bytearray()
        self.abandoned = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def flush(self) -> None:
        """Buffered bytes are sent with the next chunk (zipfile calls this often)."""

    # What io.TextIOWrapper asks of the binary stream below it (CSV exports).
    closed = False

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def finish(self) -> None:
        """Send what is buffered and the end mark (called by the export thread, once)."""
        with contextlib.suppress(_ExportAbandoned):
            if self._buffer:
                self._put(bytes(self._buffer))
            self._put(None)

    def _put(self, chunk: bytes | None) -> None:
        future = asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop)
        while True:
            try:
                future.result(timeout=_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if self.abandoned:
                    future.cancel()
                    raise _ExportAbandoned from None

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk


def _mode(raw: str | None) -> ImportMode:
    from syncline.snapshot import ImportMode

    try:
        return ImportMode(raw or "empty")
    except ValueError:
        raise InvalidRequest(
            f"mode must be empty, replace or append, got {raw!r}", code="BadImportMode"
        ) from None


class SnapshotApi:
    """The export and import handlers bound to one application."""

    def __init__(self, app: Application, *, max_import_bytes: int) -> None:
        self.app = app
        self.max_import_bytes = max_import_bytes

    async def _require_admin(self, request: Request, what: str) -> None:
        identity = await self.app.identity_from_header(request.headers.get("authorization"))
        require_admin(identity, what)

    def _blobs(self) -> Any:
        return self.app.storage.blobs if self.app.storage is not None else None

    async def export(self, request: Request) -> Response:
        from syncline.snapshot import export_snapshot, export_table

        try:
            await self._require_admin(request, f"GET {EXPORT_PATH}")
        except SynclineError as exc:
            return error_response(exc)
        include_files = request.query_params.get("includeFiles", "true") != "false"
        table = request.query_params.get("table")
        fmt = request.query_params.get("format", "jsonl")
        loop = asyncio.get_running_loop()
        pipe = _ChunkPipe(loop)
        opened: asyncio.Future[int] = loop.create_future()

        def snapshot_open(ts: int) -> None:
            loop.call_soon_threadsafe(opened.set_result, ts)

        def run() -> None:
            try:
                if table is not None:
                    export_table(
                        self.app.database,
                        table,
                        pipe,  # type: ignore[arg-type]  # a write-only stream is all it needs
                        fmt=fmt,
                        on_snapshot=snapshot_open,
                    )
                    return
                export_snapshot(
                    self.app.database,
                    pipe,  # type: ignore[arg-type]  # a write-only stream is all zipfile needs
                    blobs=self._blobs(),
                    include_files=include_files,
                    on_snapshot=snapshot_open,
                )
            finally:
                pipe.finish()

        work = asyncio.ensure_future(asyncio.to_thread(run))
        waiting: list[asyncio.Future[Any]] = [opened, work]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            pipe.abandoned = True
            failure = work.exception()
            assert failure is not None  # the export ended before opening its snapshot: it failed
            if isinstance(failure, SynclineError):
                return error_response(failure)
            raise failure

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in pipe.chunks():
                    yield chunk
                await work  # an export that failed midway ends the response early
            finally:
                pipe.abandoned = True

        if table is None:
            name, media_type = f"snapshot_{time.strftime('%Y%m%d-%H%M%S')}.zip", "application/zip"
        else:
            name = f"{table}.{fmt}"
            media_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(
            body(),
            media_type=media_type,
            headers={
                TS_HEADER: str(opened.result()),
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    async def import_(self, request: Request) -> Response:
        from syncline.snapshot import import_snapshot, import_table

        try:
            await self._require_admin(request, f"POST {IMPORT_PATH}")
            mode = _mode(request.query_params.get("mode"))
            table = request.query_params.get("table")
            fmt = request.query_params.get("format", "jsonl")
            if table is not None and fmt not in ("jsonl", "csv"):
                raise InvalidRequest(
                    f"format must be jsonl or csv, got {fmt!r}", code="BadImportFormat"
                )
            with tempfile.TemporaryDirectory(prefix="syncline-import-") as folder:
                path = Path(folder) / ("snapshot.zip" if table is None else f"{table}.{fmt}")
                await self._receive(request, path)
                if table is None:
                    result = await asyncio.to_thread(
                        import_snapshot, self.app.database, path, mode=mode, blobs=self._blobs()
                    )
                else:
                    result = await asyncio.to_thread(
                        import_table, self.app.database, table, path, fmt=fmt, mode=mode
                    )
        except SynclineError as exc:
            return error_response(exc)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it; nothing was imported
        answer = {
            "tables": result.tables,
            "deleted": result.deleted,
            "files": result.files,
            "warnings": result.warnings,
            "ts": self.app.database.last_ts,
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    async def _receive(self, request: Request, path: Path) -> None:
        """Spool the request body to ``path``, refusing it past ``max_import_bytes``."""
        limit = self.max_import_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        received = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise _too_large(received, limit)
                await asyncio.to_thread(out.write, chunk)


def _too_large(size: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"The snapshot ({size} bytes or more) is larger than the import limit of {limit} bytes "
        "(serve --max-import-size)",
        code="ImportTooLarge",
    )


def routes(
    application: Application, *, max_import_bytes: int = DEFAULT_MAX_IMPORT_BYTES
) -> list[Route]:
    """The export and import routes for ``application`` (see the module docstring)."""
    api = SnapshotApi(application, max_import_bytes=max_import_bytes)
    return [
        Route(EXPORT_PATH, api.export, methods=["GET"]),
        Route(IMPORT_PATH, api.import_, methods=["POST"]),
    ]
