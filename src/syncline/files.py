"""File storage: ``ctx.storage``, upload URLs, and the ``_storage`` system table.

A stored file is two things with one id (an id of the ``_storage`` system
table, which user code reads with ``ctx.db.system``):

* a blob in the :class:`~syncline.blobs.base.BlobStore`, whose key is that id;
* a ``_storage`` row: ``sha256`` (base64 of the SHA-256 digest), ``size``
  (float64 bytes), ``contentType`` (absent when unknown), ``_creationTime``.

Contracts:

* **A row always has its blob.** The blob is complete and durable before the
  transaction inserting its row commits. A blob is deleted only *after* a
  commit removed its row (a commit listener re-checks every ``_storage`` id a
  commit wrote), or by the orphan sweep (blobs without a row, older than a
  grace period: an upload cut short between blob and row, a deletion cut short
  by a crash). So a mutation that deletes a file and then fails keeps it.
* **Upload URLs** are ``<origin>/api/storage/upload?token=<token>``, valid for
  ``url_validity_ms`` (1 hour) and usable once. The token is a nonce and an
  expiry signed with HMAC-SHA256 under a secret kept in the data directory.
  Using a token is recorded in the same transaction that inserts the row, in
  the database's mutation-idempotency records (kept at least as long as a
  token lives), so a token can never make two files, even across restarts;
  a second concurrent use in this process is refused at once.
* **Streaming:** uploads, downloads and ``store`` go chunk by chunk and never
  hold a whole file in memory. (``ctx.storage.get`` returns ``bytes`` by
  contract; ``ctx.storage.open`` streams.)
* **Limits:** an upload (HTTP or ``store``) larger than ``max_upload_bytes``
  (default :data:`DEFAULT_MAX_UPLOAD_BYTES`, 1 GiB) fails with
  :class:`FileTooLarge` (HTTP 413) and stores nothing.

``ctx.storage`` by function kind (action methods are coroutines)::

    method                                   query  mutation  action
    get_url(id) -> str | None                 yes    yes       yes
    generate_upload_url() -> str              -      yes       yes
    delete(id)                                -      yes (1)   yes (2)
    store(data, content_type=, sha256=) -> id -      -         yes
    get(id) -> bytes | None                   -      -         yes
    open(id) -> FileReader | None             -      -         yes

(1) part of the mutation's transaction; (2) its own transaction. Calling a
method where it is not available raises :class:`StorageNotAvailable`, which
says where to call it instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncline.blobs.base import BlobNotFound, BlobReader, BlobStore, BlobTooLarge
from syncline.blobs.local import LocalBlobStore
from syncline.clock import Clock
from syncline.database.catalog import SYSTEM_TABLES_BY_NAME
from syncline.errors import InternalError, InvalidId, InvalidRequest, SynclineError
from syncline.values.ids import new_id, table_number_of

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction
    from syncline.database.writes import Commit
    from syncline.functions.executor import Executor
    from syncline.identity import Identity

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_ORIGIN",
    "UPLOAD_URL_VALIDITY_MS",
    "DigestMismatch",
    "FileNotFound",
    "FileReader",
    "FileStorage",
    "FileStorageDisabled",
    "FileStorageError",
    "FileTooLarge",
    "InvalidStorageId",
    "StorageNotAvailable",
    "StoredFile",
    "UploadTokenRejected",
    "check_storage_id",
    "load_or_create_secret",
    "open_file_storage",
    "parse_byte_size",
]

log = logging.getLogger("syncline.files")

STORAGE_TABLE = "_storage"
STORAGE_TABLE_NUMBER = SYSTEM_TABLES_BY_NAME[STORAGE_TABLE].number
#: Upload URL lifetime (semantics §13: ``STORE_FILE_AUTHORIZATION_VALIDITY``).
UPLOAD_URL_VALIDITY_MS = 3_600_000
#: Largest upload accepted by default. Convex sets none; a self-hosted server
#: wants one so that one request cannot fill its disk by accident.
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
#: Where clients reach the API port unless told otherwise (``syncline serve`` sets it).
DEFAULT_ORIGIN = "http://127.0.0.1:3210"
SECRET_FILE = "storage_secret"
FILES_DIR_NAME = "files"
#: How long a blob without a row is left alone by the sweep (an upload between
#: its blob and its row; another node's upload, with a shared store).
ORPHAN_GRACE_S = 600.0
SWEEP_INTERVAL_S = 3600.0
#: Temp files of uploads older than this are from crashed uploads.
INCOMPLETE_UPLOAD_AGE_S = 6 * 3600.0

_TOKEN_DOMAIN = b"syncline/upload-url/v1\x00"
_NONCE_BYTES = 16
_TOKEN_BYTES = _NONCE_BYTES + 8 + 32
_TOKEN_CHARS = math.ceil(_TOKEN_BYTES * 4 / 3)
_TOKEN_TEXT = re.compile(rf"[A-Za-z0-9_-]{{{_TOKEN_CHARS}}}")
#: ``session_id`` under which a used token's nonce is recorded (request id 0).
_TOKEN_RECORD_PREFIX = "syncline:upload-token:"
_SWEEP_BATCH = 500


# ----------------------------------------------------------------------------- errors


class FileStorageError(SynclineError):
    """A file storage request that cannot be served as asked (400)."""

    code = "FileStorageError"
    http_status = 400


class InvalidStorageId(InvalidId):
    code = "InvalidStorageId"


class FileNotFound(FileStorageError):
    code = "FileNotFound"
    http_status = 404


class FileTooLarge(FileStorageError):
    code = "FileTooLarge"
    http_status = 413


class UploadTokenRejected(FileStorageError):
    """An upload URL's token is forged, expired or used (codes say which)."""

    code = "InvalidUploadToken"
    http_status = 403


class DigestMismatch(FileStorageError):
    code = "DigestMismatch"


class StorageNotAvailable(FileStorageError):
    """A ``ctx.storage`` method called from a kind of function that cannot use it."""

    code = "StorageNotAvailable"


class FileStorageDisabled(FileStorageError):
    code = "FileStorageDisabled"
    http_status = 503


# ----------------------------------------------------------------------------- helpers


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


def load_or_create_secret(data_dir: Path) -> bytes:
    """The 32-byte upload-URL signing secret in ``data_dir/storage_secret`` (created if absent).

    Written to a private temp file, fsynced, then hard-linked into place, so a
    reader never sees a partial secret and two processes starting at once agree.
    """
    path = data_dir / SECRET_FILE

    def read() -> bytes | None:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            secret = b""
        if len(secret) < 32:
            raise InternalError(
                f"{path} is damaged (expected 64 hex digits). Delete it to make a new one; "
                "upload URLs handed out before then stop working.",
                code="BadStorageSecret",
            )
        return secret

    existing = read()
    if existing is not None:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    secret = read()
    if secret is None:
        raise InternalError(f"{path} vanished while being created", code="BadStorageSecret")
    return secret


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


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a valid upload token says."""

    nonce: bytes
    expires_ms: int

    @property
    def record_key(self) -> str:
        return _TOKEN_RECORD_PREFIX + self.nonce.hex()


# ----------------------------------------------------------------------------- the service


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
        if len(secret) < 32:
            raise ValueError("the upload URL secret must be at least 32 bytes")
        if max_upload_bytes <= 0:
            raise ValueError("max_upload_bytes must be positive")
        retention_ms = database.session_request_retention_ns / 1_000_000
        if retention_ms < url_validity_ms:
            # Used tokens are remembered in those records: forgetting one while
            # it is still valid would let it be used again.
            raise ValueError(
                f"upload URLs valid for {url_validity_ms} ms need the database to keep "
                f"request records at least as long (it keeps them {retention_ms:g} ms)"
            )
        self.database = database
        self.blobs = blobs
        self.clock = clock or database.clock
        self._secret = secret
        self._origin = origin
        self.max_upload_bytes = max_upload_bytes
        self.url_validity_ms = url_validity_ms
        self.orphan_grace_s = orphan_grace_s
        self.sweep_interval_s = sweep_interval_s
        #: storage ids whose blob is being written or whose row is being committed
        self._in_flight: set[str] = set()
        #: upload tokens in use right now (a second concurrent use is refused)
        self._tokens_in_use: set[str] = set()
        #: ``_storage`` ids written by recent commits: their blob goes if their row went
        self._candidates: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ wiring

    def install(self, executor: Executor) -> None:
        """Give functions run by ``executor`` a ``ctx.storage``."""
        executor.register_ctx_member("storage", self.ctx_member)

    def ctx_member(self, kind: str, tx: Transaction | None, identity: Identity) -> Any:
        if kind == "query":
            assert tx is not None
            return QueryStorage(self, tx)
        if kind == "mutation":
            assert tx is not None
            return MutationStorage(self, tx)
        if kind == "action":
            return ActionStorage(self)
        return None

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
        expires_ms = int(self.clock.now_ms()) + self.url_validity_ms
        payload = secrets.token_bytes(_NONCE_BYTES) + expires_ms.to_bytes(8, "big")
        token = base64.urlsafe_b64encode(payload + self._sign(payload)).rstrip(b"=")
        return f"{self.origin}/api/storage/upload?token={token.decode('ascii')}"

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _TOKEN_DOMAIN + payload, hashlib.sha256).digest()

    def check_upload_token(self, token: str | None) -> UploadGrant:
        """The grant in ``token``; :class:`UploadTokenRejected` if forged or expired.

        (Whether it was used already is checked by :meth:`upload`.)
        """
        if not token:
            raise FileStorageError(
                "Missing upload token: POST the file to the URL returned by "
                "ctx.storage.generate_upload_url(), with its ?token=... intact",
                code="MissingUploadToken",
            )
        if not _TOKEN_TEXT.fullmatch(token):
            raise UploadTokenRejected("The upload URL's token is malformed")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, signature = raw[: _NONCE_BYTES + 8], raw[_NONCE_BYTES + 8 :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise UploadTokenRejected(
                "The upload URL's token has a bad signature (not issued by this deployment)"
            )
        expires_ms = int.from_bytes(payload[_NONCE_BYTES:], "big")
        if self.clock.now_ms() >= expires_ms:
            raise UploadTokenRejected(
                "The upload URL has expired (upload URLs are valid for "
                f"{self.url_validity_ms // 60_000} minutes): generate a new one",
                code="UploadTokenExpired",
            )
        return UploadGrant(payload[:_NONCE_BYTES], expires_ms)

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
        key = grant.record_key
        if key in self._tokens_in_use:
            raise self._token_used()
        self._tokens_in_use.add(key)
        try:
            # Refuse a used token before receiving any bytes; the insert checks again.
            used = await self.database.read(lambda tx: tx.recorded_request(key, 0))
            if used.value is not None:
                raise self._token_used()
            return await self._store(chunks, content_type, sha256, token_key=key)
        finally:
            self._tokens_in_use.discard(key)

    async def store(
        self, data: Any, *, content_type: str | None = None, sha256: str | bytes | None = None
    ) -> str:
        """Store ``data`` (bytes or an (async) iterable of chunks); return its storage id."""
        digest = parse_sha256(sha256, "store") if isinstance(sha256, str) else sha256
        return await self._store(_chunks_of(data), content_type, digest, token_key=None)

    async def _store(
        self,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        sha256: bytes | None,
        *,
        token_key: str | None,
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
            row: dict[str, Any] = {"sha256": _b64(info.sha256), "size": float(info.size)}
            if content_type:
                row["contentType"] = content_type
            try:
                if sha256 is not None and not hmac.compare_digest(sha256, info.sha256):
                    raise DigestMismatch(
                        f"The file's SHA-256 is {_b64(info.sha256)}, not the expected "
                        f"{_b64(sha256)}: it was corrupted on the way, or the digest is wrong"
                    )
                await self.database.write(self._insert_row(storage_id, row, token_key))
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
        self, storage_id: str, fields: dict[str, Any], token_key: str | None
    ) -> Callable[[Transaction], str]:
        def write(tx: Transaction) -> str:
            if token_key is not None:
                if tx.recorded_request(token_key, 0) is not None:
                    raise self._token_used()
                tx.record_request(token_key, 0, storage_id)
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
    """File storage in the directory ``location`` (``--files``), signed with ``secret_dir``'s secret."""
    text = os.fspath(location)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        hint = " (S3-compatible storage is planned)" if scheme == "s3" else ""
        raise InvalidRequest(
            f"Unsupported file store {text!r}: only a local directory is supported so far{hint}. "
            "Pass a path, like --files ./files",
            code="UnsupportedFileStore",
        )
    return FileStorage(
        database,
        LocalBlobStore(Path(text)),
        secret=load_or_create_secret(secret_dir),
        clock=clock,
        origin=origin,
        max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES if max_upload_bytes is None else max_upload_bytes,
    )


# ----------------------------------------------------------------------------- ctx.storage


def _not_here(method: str, kind: str, where: str) -> StorageNotAvailable:
    return StorageNotAvailable(
        f"ctx.storage.{method}() is not available in a {kind}: {where}",
        code="StorageNotAvailable",
    )


_USE_ACTION = (
    "reading or writing file contents is I/O, which queries and mutations (deterministic "
    "transactions) cannot do. Use an action, or upload with ctx.storage.generate_upload_url()."
)


class QueryStorage:
    """``ctx.storage`` in a query: :meth:`get_url` only."""

    _kind = "query"

    def __init__(self, files: FileStorage, tx: Transaction) -> None:
        self._files = files
        self._tx = tx

    def get_url(self, storage_id: str) -> str | None:
        """The file's download URL, or None if there is no such file.

        The URL is a bearer capability: anyone who has it can download the file
        until the file is deleted.
        """
        check_storage_id(storage_id, "ctx.storage.get_url")
        # A read like any other: a live query re-runs when the file is deleted.
        if self._tx.get(storage_id) is None:
            return None
        return self._files.url_for(storage_id)

    def generate_upload_url(self) -> str:
        raise _not_here("generate_upload_url", self._kind, "call it from a mutation or an action")

    def delete(self, storage_id: str) -> None:
        raise _not_here("delete", self._kind, "call it from a mutation or an action")

    def store(self, *args: Any, **kwargs: Any) -> Any:
        raise _not_here("store", self._kind, _USE_ACTION)

    def get(self, storage_id: str) -> Any:
        raise _not_here("get", self._kind, _USE_ACTION)

    def open(self, storage_id: str) -> Any:
        raise _not_here("open", self._kind, _USE_ACTION)


class MutationStorage(QueryStorage):
    """``ctx.storage`` in a mutation: URLs, and deletion as part of the transaction."""

    _kind = "mutation"

    def generate_upload_url(self) -> str:
        """A URL to ``POST`` one file to within the next hour; the response is ``{"storageId"}``."""
        return self._files.generate_upload_url()

    def delete(self, storage_id: str) -> None:
        """Delete the file if this mutation commits (its URL then answers 404)."""
        self._files.delete_in(self._tx, storage_id, "ctx.storage.delete")


class ActionStorage:
    """``ctx.storage`` in an action: every method is a coroutine."""

    def __init__(self, files: FileStorage) -> None:
        self._files = files

    async def get_url(self, storage_id: str) -> str | None:
        check_storage_id(storage_id, "ctx.storage.get_url")
        if await self._files.metadata(storage_id) is None:
            return None
        return self._files.url_for(storage_id)

    async def generate_upload_url(self) -> str:
        return self._files.generate_upload_url()

    async def delete(self, storage_id: str) -> None:
        await self._files.delete(storage_id)

    async def store(
        self, data: Any, content_type: str | None = None, *, sha256: str | None = None
    ) -> str:
        """Store ``data`` (bytes, or an (async) iterable of byte chunks); return its storage id.

        ``sha256`` (base64 or hex), when given, must match the contents.
        """
        return await self._files.store(data, content_type=content_type, sha256=sha256)

    async def get(self, storage_id: str) -> bytes | None:
        """The file's contents, or None if there is no such file (see :meth:`open` for big ones)."""
        check_storage_id(storage_id, "ctx.storage.get")
        reader = await self._files.open(storage_id)
        if reader is None:
            return None
        async with reader:
            return await reader.read()

    async def open(self, storage_id: str) -> FileReader | None:
        """The file as a :class:`FileReader` (``async for chunk in reader``), or None."""
        check_storage_id(storage_id, "ctx.storage.open")
        return await self._files.open(storage_id)
