"""File storage over HTTP, on the API port.

* ``POST /api/storage/upload?token=T`` — the request body is the file,
  streamed to the blob store. ``Content-Type`` becomes the file's
  ``contentType``; an optional ``Digest: sha-256=<base64>`` is verified.
  Answers ``{"storageId": "<id>"}``.
* ``GET`` / ``HEAD /api/storage/<id>`` — the file, streamed, with
  ``Content-Type``, ``Content-Length``, ``Accept-Ranges: bytes``,
  ``Digest: sha-256=<base64>`` and ``Cache-Control: private, max-age=2592000``
  (plus ``X-Content-Type-Options: nosniff``, and ``Content-Security-Policy:
  sandbox`` for types that could run scripts: HTML, SVG, XML).
  One ``Range: bytes=...`` answers 206 (416 when it starts past the end);
  several ranges or a malformed header are ignored (200, everything), as
  RFC 9110 allows. The URL is a bearer capability: no other auth.

Failures answer ``{"code", "message"}`` and store nothing: ``InvalidStorageId``
400 (anything that is not a storage id, path traversal attempts included),
``FileNotFound`` 404, ``MissingUploadToken`` 400, ``InvalidUploadToken`` /
``UploadTokenExpired`` / ``UploadTokenUsed`` 403, ``FileTooLarge`` 413,
``InvalidDigest`` / ``DigestMismatch`` 400, ``RangeNotSatisfiable`` 416,
``FileStorageDisabled`` 503.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from syncline.errors import SynclineError
from syncline.files.errors import (
    FileNotFound,
    FileStorageDisabled,
    FileStorageError,
    FileTooLarge,
)
from syncline.files.service import FileReader, FileStorage, StoredFile, check_storage_id
from syncline.server.api import error_response

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["StorageApi", "parse_digest_header", "parse_range"]

CACHE_CONTROL = "private, max-age=2592000"
#: Content types a browser renders as documents that can run scripts.
_ACTIVE_TYPES = re.compile(
    r"\s*(text/html|text/xml|application/xml|[\w.-]+/[\w.+-]+\+xml)\s*(;|$)", re.IGNORECASE
)
_RANGE_SPEC = re.compile(r"(\d*)-(\d*)")


class RangeNotSatisfiable(FileStorageError):
    code = "RangeNotSatisfiable"
    http_status = 416


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span ``[start, end)`` a ``Range`` header asks for, or None for everything.

    Only a single ``bytes`` range is honoured; anything else is ignored.
    Raises :class:`RangeNotSatisfiable` when the range starts past the end.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE_SPEC.fullmatch(spec.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 says
    if start >= size:
        raise _unsatisfiable(header, size)
    end = size if not last else min(int(last) + 1, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"Range {header[:100]!r} is outside the file ({size} bytes)",
    )


def parse_digest_header(value: str | None) -> bytes | None:
    """The SHA-256 in a ``Digest: sha-256=<base64>`` header (other algorithms are ignored)."""
    if not value:
        return None
    for part in value.split(","):
        name, _, encoded = part.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        try:
            digest = base64.b64decode(encoded.strip(), validate=True)
        except (ValueError, binascii.Error):
            digest = b""
        if len(digest) != 32:
            raise FileStorageError(
                f"Malformed Digest header {value[:120]!r}: expected sha-256=<base64 of 32 bytes>",
                code="InvalidDigest",
            )
        return digest
    return None


async def _stream(reader: FileReader) -> AsyncIterator[bytes]:
    try:
        async for chunk in reader:
            yield chunk
    finally:
        await reader.aclose()


def _file_headers(file: StoredFile) -> dict[str, str]:
    content_type = file.content_type or "application/octet-stream"
    headers = {
        "content-type": content_type,
        "accept-ranges": "bytes",
        "digest": f"sha-256={file.sha256}",
        "cache-control": CACHE_CONTROL,
        # Browsers must not guess a more active type than the uploader declared.
        "x-content-type-options": "nosniff",
    }
    if _ACTIVE_TYPES.match(content_type):
        # Anyone with an upload URL chooses the type. An HTML or SVG file opened
        # from this origin (which also serves the dashboard) would run its scripts
        # here; a sandbox gives it an opaque origin and no scripts.
        headers["content-security-policy"] = "sandbox"
    return headers


class StorageApi:
    """The storage request handlers of one application."""

    def __init__(self, app: Application) -> None:
        self.app = app

    def _files(self) -> FileStorage:
        storage = self.app.storage
        if storage is None:
            raise FileStorageDisabled("File storage is not enabled on this server")
        return storage

    async def upload(self, request: Request) -> Response:
        try:
            files = self._files()
            token = request.query_params.get("token")
            # Refuse a bad token or an announced oversize body before reading it.
            files.check_upload_token(token)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > files.max_upload_bytes:
                raise FileTooLarge(
                    f"The file ({length} bytes) is larger than the upload limit of "
                    f"{files.max_upload_bytes} bytes"
                )
            storage_id = await files.upload(
                token,
                request.stream(),
                content_type=request.headers.get("content-type") or None,
                sha256=parse_digest_header(request.headers.get("digest")),
            )
        except SynclineError as exc:
            return error_response(exc)
        except ClientDisconnect:
            # The client went away mid-upload; nothing was stored and nobody reads this.
            return Response(status_code=400)
        return JSONResponse({"storageId": storage_id})

    async def download(self, request: Request) -> Response:
        file: StoredFile | None = None
        try:
            files = self._files()
            storage_id = check_storage_id(request.path_params["rest"], "/api/storage/<id>")
            file = await files.metadata(storage_id)
            if file is None:
                raise FileNotFound(f"There is no file {storage_id} (it may have been deleted)")
            span = parse_range(request.headers.get("range"), file.size)
            start, end = span if span is not None else (0, file.size)
            headers = _file_headers(file)
            headers["content-length"] = str(end - start)
            status = 200
            if span is not None:
                status = 206
                headers["content-range"] = f"bytes {start}-{end - 1}/{file.size}"
            if request.method == "HEAD":
                return Response(status_code=status, headers=headers)
            reader = await files.open(storage_id, start, end)
            if reader is None:
                raise FileNotFound(f"There is no file {storage_id} (it was just deleted)")
        except RangeNotSatisfiable as exc:
            response = error_response(exc)
            if file is not None:
                response.headers["content-range"] = f"bytes */{file.size}"
            return response
        except SynclineError as exc:
            return error_response(exc)
        return StreamingResponse(_stream(reader), status_code=status, headers=headers)
