"""The file service: :class:`FileStorage` keeps a blob and a ``_storage`` row per file.

See :mod:`syncline.files` for the contracts (a row always has its blob; upload
URLs are used at most once; streaming; the upload size limit).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncline import metrics
from syncline.blobs.base import BlobNotFound, BlobReader, BlobStore, BlobTooLarge
from syncline.blobs.location import open_blob_store
from syncline.clock import Clock
from syncline.database.catalog import SYSTEM_TABLES_BY_NAME
from syncline.files.errors import (
    DigestMismatch,
    FileNotFound,
    FileStorageError,
    FileTooLarge,
    InvalidStorageId,
    UploadTokenRejected,
)
from syncline.files.upload_tokens import (
    UPLOAD_URL_VALIDITY_MS,
    UploadGrant,
    UploadTokenSigner,
    load_or_create_secret,
)
from syncline.values.ids import new_id, table_number_of

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction
    from syncline.database.writes import Commit

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_ORIGIN",
    "FILES_DIR_NAME",
    "FileReader",
    "FileStorage",
    "StoredFile",
    "check_storage_id",
    "open_file_storage",
    "parse_byte_size",
    "parse_sha256",
]

log = logging.getLogger("syncline.files")

STORAGE_TABLE = "_storage"
STORAGE_TABLE_NUMBER = SYSTEM_TABLES_BY_NAME[STORAGE_TABLE].number
#: Largest upload accepted by default. Convex sets none; a self-hosted server
#: wants one so that one request cannot fill its disk by accident.
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
#: Where clients reach the API port unless told otherwise (``syncline serve`` sets it).
DEFAULT_ORIGIN = "http://127.0.0.1:3210"
FILES_DIR_NAME = "files"
#: How long a blob without a row is left alone by the sweep (an upload between
#: its blob and its row; another node's upload, with a shared store).
ORPHAN_GRACE_S = 600.0
SWEEP_INTERVAL_S = 3600.0
#: Temp files of uploads older than this are from crashed uploads.
INCOMPLETE_UPLOAD_AGE_S = 6 * 3600.0

_SWEEP_BATCH = 500


def check_storage_id(value: object, what: str) -> str:
    """``value`` if it is an id of the ``_storage`` table, else :class:`InvalidStorageId`."""
    if isinstance(value, str) and table_number_of(value) == STORAGE_TABLE_NUMBER:
        return value
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:80] + "..."
    raise InvalidStorageId(
        f'{what}: {shown} is not a storage id (an Id<"_storage"> returned by an upload '
        "or by ctx.storage.store)"
    )


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40})


def parse_byte_size(text: str) -> int:
    """``"1048576"``, ``"500MB"``, ``"1.5GiB"`` ... as a number of bytes (ValueError if not)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size: use bytes, or a unit like 500MB or 2GiB")
    number, unit = match.groups()
    size = int(float(number) * _UNITS[(unit or "").upper()])
    if size <= 0:
        raise ValueError(f"{text!r}: the size must be positive")
    return size


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_sha256(value: str, what: str) -> bytes:
    """A SHA-256 digest given as base64 (44 chars, as in ``_storage``) or hex (64 chars)."""
    text = value.strip()
    try:
        hex_digits = len(text) == 64
        digest = bytes.fromhex(text) if hex_digits else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        digest = b""
    if len(digest) != 32:
        raise FileStorageError(
            f"{what}: {value[:80]!r} is not a SHA-256 digest (base64 or hex)", code="InvalidDigest"
        )
    return digest


async def _chunks_of(data: Any) -> AsyncIterator[bytes]:
    """``bytes``-like data or an (async) iterable of chunks, as an async iterator of chunks."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        step = 1 << 20
        for i in range(0, len(view), step):
            yield bytes(view[i : i + step])
        return
    if isinstance(data, AsyncIterable):
        async for chunk in data:
            yield _as_bytes(chunk)
        return
    if isinstance(data, Iterable) and not isinstance(data, str):
        for chunk in data:
            yield _as_bytes(chunk)
        return
    raise TypeError(
        "ctx.storage.store() takes bytes or an (async) iterable of bytes chunks, "
        f"not {type(data).__name__}"
    )


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"file chunks must be bytes, got {type(chunk).__name__}")


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A ``_storage`` row."""

    storage_id: str
    #: base64 of the SHA-256 digest
    sha256: str
    size: int
    content_type: str | None
    creation_time: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredFile:
        return cls(
            row["_id"],
            row["sha256"],
            int(row["size"]),
            row.get("contentType"),
            row["_creationTime"],
        )


class FileReader:
    """An open stored file: its metadata, and its bytes as an async iterator of chunks.

    Use it as ``async with`` (or call :meth:`aclose`) when you may stop early.
    """

    def __init__(self, file: StoredFile, blob: BlobReader) -> None:
        self.file = file
        self._blob = blob

    @property
    def storage_id(self) -> str:
        return self.file.storage_id

    @property
    def size(self) -> int:
        return self.file.size

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def content_type(self) -> str | None:
        return self.file.content_type

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._blob.__aiter__()

    async def read(self) -> bytes:
        """Everything (in memory: for files you know are small)."""
        parts = [chunk async for chunk in self._blob]
        return b"".join(parts)

    async def aclose(self) -> None:
        await self._blob.aclose()

    async def __aenter__(self) -> FileReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class FileStorage:
    """Files of one deployment: blobs in ``blobs``, rows in ``database``'s ``_storage``.

    ``origin`` (a string or a function returning one, read at each use) is the
    base URL that clients reach the API port at; URLs handed out start with it.
    :meth:`start` (on the serving event loop) begins deleting blobs of deleted
    rows and sweeping orphans; without it (the in-process test kit), rows are
    deleted as usual and their blobs stay until a started server sweeps them.
    """

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        *,
        secret: bytes,
        clock: Clock | None = None,
        origin: str | Callable[[], str] = DEFAULT_ORIGIN,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        url_validity_ms: int = UPLOAD_URL_VALIDITY_MS,
        orphan_grace_s: float = ORPHAN_GRACE_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        if max_upload_bytes <= 0:
            raise ValueError("max_upload_bytes must be positive")
        retention_ms = database.session_request_retention_ns / 1_000_000
        if retention_ms < url_validity_ms:
            # Used tokens are pruned with those records: forgetting one while
            # it is still valid would let it be used again.
            raise ValueError(
                f"upload URLs valid for {url_validity_ms} ms need the database to keep "
                f"request records at least as long (it keeps them {retention_ms:g} ms)"
            )
        self.database = database
        self.blobs = blobs
        self.clock = clock or database.clock
        self._tokens = UploadTokenSigner(secret, validity_ms=url_validity_ms)
        self._origin = origin
        self.max_upload_bytes = max_upload_bytes
        self.url_validity_ms = url_validity_ms
        self.orphan_grace_s = orphan_grace_s
        self.sweep_interval_s = sweep_interval_s
        #: storage ids whose blob is being written or whose row is being committed
        self._in_flight: set[str] = set()
        #: upload tokens in use right now (a second concurrent use is refused)
        self._tokens_in_use: set[bytes] = set()
        #: ``_storage`` ids written by recent commits: their blob goes if their row went
        self._candidates: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ wiring

    async def start(self) -> None:
        """Delete blobs after the commits that remove their rows; sweep orphans periodically."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.database.add_commit_listener(self._on_commits)
        self._sweeper = self._loop.create_task(self._sweep_forever(), name="syncline-files-sweep")

    async def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(ValueError):
            self.database.remove_commit_listener(self._on_commits)
        self._loop = None
        # Deletions cut short here are finished by the next start's sweep.
        tasks = [t for t in (self._sweeper, self._drainer) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = self._drainer = None

    # ------------------------------------------------------------------ URLs and tokens

    @property
    def origin(self) -> str:
        origin = self._origin() if callable(self._origin) else self._origin
        return origin.rstrip("/")

    def url_for(self, storage_id: str) -> str:
        return f"{self.origin}/api/storage/{storage_id}"

    def generate_upload_url(self) -> str:
        token = self._tokens.issue(self.clock.now_ms())
        return f"{self.origin}/api/storage/upload?token={token}"

    def check_upload_token(self, token: str | None) -> UploadGrant:
        """The grant in ``token``; :class:`UploadTokenRejected` if forged or expired.

        (Whether it was used already is checked by :meth:`upload`.)
        """
        return self._tokens.check(token, self.clock.now_ms())

    @staticmethod
    def _token_used() -> UploadTokenRejected:
        return UploadTokenRejected(
            "The upload URL was already used: each URL uploads one file; generate a new one",
            code="UploadTokenUsed",
        )

    # ------------------------------------------------------------------ writing

    async def upload(
        self,
        token: str | None,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        sha256: bytes | None = None,
    ) -> str:
        """Store an upload authorised by ``token``; return its storage id.

        ``sha256`` (the raw digest from a ``Digest`` header) is verified when given.
        """
        grant = self.check_upload_token(token)
        key = grant.nonce
        if key in self._tokens_in_use:
            raise self._token_used()
        self._tokens_in_use.add(key)
        try:
            # Refuse a used token before receiving any bytes; the insert checks again.
            used = await self.database.read(lambda tx: tx.upload_token_used(key))
            if used.value:
                raise self._token_used()
            return await self._store(chunks, content_type, sha256, token_nonce=key)
        finally:
            self._tokens_in_use.discard(key)

    async def store(
        self, data: Any, *, content_type: str | None = None, sha256: str | bytes | None = None
    ) -> str:
        """Store ``data`` (bytes or an (async) iterable of chunks); return its storage id."""
        digest = parse_sha256(sha256, "store") if isinstance(sha256, str) else sha256
        return await self._store(_chunks_of(data), content_type, digest, token_nonce=None)

    async def _store(
        self,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        sha256: bytes | None,
        *,
        token_nonce: bytes | None,
    ) -> str:
        storage_id = new_id(STORAGE_TABLE_NUMBER)
        self._in_flight.add(storage_id)
        try:
            try:
                info = await self.blobs.put(storage_id, chunks, max_size=self.max_upload_bytes)
            except BlobTooLarge:
                raise FileTooLarge(
                    f"The file is larger than the upload limit of {self.max_upload_bytes} bytes"
                ) from None
            metrics.STORAGE_BYTES.labels("in").inc(info.size)
            row: dict[str, Any] = {"sha256": _b64(info.sha256), "size": float(info.size)}
            if content_type:
                row["contentType"] = content_type
            try:
                if sha256 is not None and not hmac.compare_digest(sha256, info.sha256):
                    raise DigestMismatch(
                        f"The file's SHA-256 is {_b64(info.sha256)}, not the expected "
                        f"{_b64(sha256)}: it was corrupted on the way, or the digest is wrong"
                    )
                await self.database.write(self._insert_row(storage_id, row, token_nonce))
            except asyncio.CancelledError:
                # The commit may still happen: keep the blob. If no row appears,
                # the sweep removes it.
                raise
            except BaseException:
                await self.blobs.delete(storage_id)
                raise
            return storage_id
        finally:
            self._in_flight.discard(storage_id)

    def _insert_row(
        self, storage_id: str, fields: dict[str, Any], token_nonce: bytes | None
    ) -> Callable[[Transaction], str]:
        def write(tx: Transaction) -> str:
            if token_nonce is not None:
                if tx.upload_token_used(token_nonce):
                    raise self._token_used()
                tx.record_upload_token(token_nonce, storage_id)
            # write_raw, not insert: the blob is already stored under this id.
            doc = {"_id": storage_id, "_creationTime": tx.next_creation_time(), **fields}
            tx.write_raw(STORAGE_TABLE, doc)
            return storage_id

        return write

    def delete_in(self, tx: Transaction, storage_id: str, what: str) -> None:
        """Delete the row in ``tx``; the blob goes once that commits."""
        check_storage_id(storage_id, what)
        if tx.get(storage_id) is None:
            raise FileNotFound(f"{what}: there is no file with id {storage_id} (deleted already?)")
        tx.delete(storage_id)

    async def delete(self, storage_id: str) -> None:
        """Delete a file in a transaction of its own."""
        await self.database.write(lambda tx: self.delete_in(tx, storage_id, "ctx.storage.delete"))

    # ------------------------------------------------------------------ reading

    async def metadata(self, storage_id: str) -> StoredFile | None:
        check_storage_id(storage_id, "storage")
        result = await self.database.read(lambda tx: tx.get(storage_id))
        return None if result.value is None else StoredFile.from_row(result.value)

    async def open(
        self, storage_id: str, start: int = 0, end: int | None = None
    ) -> FileReader | None:
        """The file's bytes ``[start, end)`` as a :class:`FileReader`, or None if there is none."""
        file = await self.metadata(storage_id)
        if file is None:
            return None
        try:
            blob = await self.blobs.open(storage_id, start, end)
        except BlobNotFound:
            # Only possible for a file deleted after its row was read.
            return None
        metrics.STORAGE_BYTES.labels("out").inc(max((file.size if end is None else end) - start, 0))
        return FileReader(file, blob)

    # ------------------------------------------------------------------ garbage

    def _on_commits(self, commits: list[Commit]) -> None:
        # On the writer thread: note the ids and hand over to the loop.
        ids = [
            doc_id
            for commit in commits
            if STORAGE_TABLE in commit.writes.tables
            for doc_id in commit.writes.doc_ids
            if table_number_of(doc_id) == STORAGE_TABLE_NUMBER
        ]
        loop = self._loop
        if ids and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._note_candidates, ids)

    def _note_candidates(self, ids: list[str]) -> None:
        self._candidates.update(ids)
        if self._loop is not None and (self._drainer is None or self._drainer.done()):
            self._drainer = self._loop.create_task(self._drain(), name="syncline-files-delete")

    async def _drain(self) -> None:
        while self._candidates:
            batch = [
                self._candidates.pop() for _ in range(min(_SWEEP_BATCH, len(self._candidates)))
            ]
            try:
                await self._remove_rowless(batch)
            except Exception:
                log.exception("deleting the blobs of deleted files failed (the sweep retries)")

    async def _remove_rowless(self, keys: list[str]) -> int:
        """Delete the blobs among ``keys`` that have no ``_storage`` row now."""

        def with_rows(tx: Transaction) -> set[str]:
            return {key for key in keys if tx.get(key) is not None}

        live = (await self.database.read(with_rows)).value
        removed = 0
        for key in keys:
            if key not in live and key not in self._in_flight and await self.blobs.delete(key):
                removed += 1
        return removed

    async def collect_garbage(self, *, grace_s: float | None = None) -> int:
        """Delete blobs that have no ``_storage`` row; return how many.

        Blobs younger than ``grace_s`` (default :attr:`orphan_grace_s`) are
        kept: their row may be about to commit. Also drops temp files of
        uploads that a crash cut short.
        """
        grace = self.orphan_grace_s if grace_s is None else grace_s
        await self.blobs.remove_incomplete(max(grace, INCOMPLETE_UPLOAD_AGE_S))
        # File times come from the file system's clock, not the injected one.
        cutoff = time.time() - grace
        removed = 0
        batch: list[str] = []
        async for entry in self.blobs.list():
            key = entry.key
            if table_number_of(key) != STORAGE_TABLE_NUMBER or entry.modified > cutoff:
                continue  # not a file's blob, or too young to judge
            if key in self._in_flight:
                continue
            batch.append(key)
            if len(batch) >= _SWEEP_BATCH:
                removed += await self._remove_rowless(batch)
                batch = []
        if batch:
            removed += await self._remove_rowless(batch)
        if removed:
            log.info("removed %d file blob(s) without a _storage row", removed)
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.collect_garbage()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeping orphaned file blobs failed")
            await self.clock.sleep(self.sweep_interval_s)


def open_file_storage(
    location: str | os.PathLike[str],
    *,
    database: Database,
    secret_dir: Path,
    clock: Clock | None = None,
    origin: str | Callable[[], str] = DEFAULT_ORIGIN,
    max_upload_bytes: int | None = None,
) -> FileStorage:
    """File storage with its blobs at ``location`` (``--files``), signed with ``secret_dir``'s secret."""
    return FileStorage(
        database,
        open_blob_store(location),
        secret=load_or_create_secret(secret_dir),
        clock=clock,
        origin=origin,
        max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES if max_upload_bytes is None else max_upload_bytes,
    )
