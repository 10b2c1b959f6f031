"""Blobs in an S3-compatible bucket (``--files s3://bucket/prefix``), with the ``s3`` extra.

Client: aiobotocore (aio-libs, released with every botocore), not obstore:
this store needs S3 calls that obstore does not expose, listing and aborting
multipart uploads (:meth:`S3BlobStore.remove_incomplete`) and the parts of an
upload one by one (bounded memory, abort on failure); and botocore resolves
endpoint, region and credentials exactly as every AWS tool does.

Layout: blob ``key`` is the object ``PREFIX/key`` (``key`` alone without a prefix).

* :meth:`~S3BlobStore.put` buffers up to ``part_size`` bytes. A blob that ends
  before that is one ``PutObject``; a longer one is a multipart upload whose
  parts (all but the last at least ``part_size``, S3's minimum being 5 MiB)
  are sent while the next one fills: at most two parts are in memory. S3 makes
  an object visible only when ``PutObject`` or ``CompleteMultipartUpload``
  succeeds. On an error, :class:`~syncline.blobs.base.BlobTooLarge` or
  cancellation the upload is aborted; if the outcome of that final request is
  unknown (cancelled or cut off while in flight) the key is deleted. A crash
  leaves an incomplete multipart upload, which :meth:`~S3BlobStore.remove_incomplete`
  aborts.
* :meth:`~S3BlobStore.open` reads the object's metadata (``HeadObject``: size,
  ETag, version) and starts one ranged ``GetObject``, pinned to that version
  on a versioned bucket, else conditional on that ETag (``If-Match``), so the
  reader streams exactly the blob as it was at ``open``: a response in flight
  is one object version, and a replacement between the two requests is seen
  (412) and the open retried. The reader streams that one response; a delete
  or replace after ``open`` returns does not change what it yields.
* :meth:`~S3BlobStore.delete` reports whether the key existed from a
  ``HeadObject`` before the ``DeleteObject`` (two concurrent deletes may both
  say True). On a versioned bucket it leaves a delete marker, as S3 does.

One aiobotocore client (an HTTP connection pool) is made per event loop, on
first use, and closed when that loop's tasks are cancelled at its shutdown
(``asyncio.run``, ``asyncio.Runner``) or by :meth:`~S3BlobStore.aclose`. Errors
of the store (unreachable endpoint, missing bucket, denied access) raise
:class:`~syncline.blobs.base.FileStoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from syncline.blobs.base import (
    BlobEntry,
    BlobInfo,
    BlobNotFound,
    BlobTooLarge,
    FileStoreUnavailable,
    InvalidFileStoreLocation,
    check_key,
    is_key,
)

__all__ = ["MIN_PART_SIZE", "S3BlobReader", "S3BlobStore", "S3Location", "parse_s3_url"]

KiB = 1024
MiB = 1024 * KiB
#: S3's smallest part of a multipart upload (all parts but the last).
MIN_PART_SIZE = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
#: Parts of one multipart upload S3 accepts.
MAX_PARTS = 10_000
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OPTIONS = ("endpoint", "region", "addressing")
_ADDRESSING = ("path", "virtual", "auto")
#: Error codes S3 answers for a missing key or version.
_MISSING = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_CHANGED = frozenset({"PreconditionFailed", "412"})
_OPEN_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where an :class:`S3BlobStore` keeps its blobs, and how it reaches them."""

    bucket: str
    #: "" or a prefix ending in "/"
    prefix: str
    #: None: AWS's own endpoint for the region
    endpoint_url: str | None
    region: str
    #: botocore's ``addressing_style``: "path" (bucket in the path), "virtual" or "auto"
    addressing: str

    def __str__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where


def parse_s3_url(url: str, environ: Mapping[str, str] | None = None) -> S3Location:
    """``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&addressing=path|virtual|auto]``.

    A query option wins over the environment: ``AWS_ENDPOINT_URL_S3`` then
    ``AWS_ENDPOINT_URL`` for the endpoint, ``AWS_REGION`` then
    ``AWS_DEFAULT_REGION`` for the region (default ``us-east-1``). Addressing
    defaults to ``path`` with an endpoint (MinIO, R2, moto) and ``auto`` without.
    Credentials never come from the URL (botocore's chain: environment
    variables, shared files, instance roles).
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidFileStoreLocation(
            f"Invalid S3 file store {url!r}: expected s3://BUCKET[/PREFIX][?OPTIONS]"
        )
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise InvalidFileStoreLocation(
            f"Invalid S3 bucket name {bucket!r} in {url!r}: bucket names are 3-63 "
            "characters of lowercase letters, digits, '.' and '-'"
        )
    prefix = "/".join(p for p in parts.path.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise InvalidFileStoreLocation(f"Invalid S3 prefix {parts.path!r} in {url!r}")
    options: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True, strict_parsing=False).items():
        if name not in _OPTIONS:
            raise InvalidFileStoreLocation(
                f"Unknown option {name!r} in S3 file store {url!r}: expected one of "
                f"{', '.join(_OPTIONS)} (credentials come from the environment)"
            )
        if len(values) != 1 or not values[0]:
            raise InvalidFileStoreLocation(f"Option {name!r} in {url!r} needs one value")
        options[name] = values[0]
    endpoint = (
        options.get("endpoint") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    )
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise InvalidFileStoreLocation(
            f"Invalid S3 endpoint {endpoint!r}: expected an http:// or https:// URL"
        )
    addressing = options.get("addressing", "path" if endpoint else "auto")
    if addressing not in _ADDRESSING:
        raise InvalidFileStoreLocation(
            f"Invalid addressing {addressing!r} in {url!r}: expected one of {', '.join(_ADDRESSING)}"
        )
    region = (
        options.get("region")
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    return S3Location(
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        endpoint_url=endpoint,
        region=region,
        addressing=addressing,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_missing(exc: ClientError) -> bool:
    return _error_code(exc) in _MISSING or _status(exc) == 404


#: Failures of the store itself (transport, service, streaming).
_STORE_ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


class S3BlobReader:
    """Bytes of one ranged ``GetObject`` response, in chunks."""

    def __init__(
        self, store: S3BlobStore, key: str, size: int, body: Any, length: int, chunk_size: int
    ) -> None:
        self.size = size
        self._store = store
        self._key = key
        self._body = body
        self._left = length
        self._chunk_size = chunk_size

    def __aiter__(self) -> S3BlobReader:
        return self

    async def __anext__(self) -> bytes:
        if self._body is None:
            raise StopAsyncIteration
        if self._left <= 0:
            await self.aclose()
            raise StopAsyncIteration
        with self._store._failures(f"read blob {self._key!r}"):
            data = await self._body.read(min(self._chunk_size, self._left))
        if not data:
            await self.aclose()
            raise FileStoreUnavailable(
                f"The S3 file store {self._store} ended blob {self._key!r} "
                f"{self._left} byte(s) early"
            )
        self._left -= len(data)
        return bytes(data)

    async def aclose(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()  # gives the connection back (or drops it, mid-response)


class _Multipart:
    """One multipart upload: parts go up one at a time while the caller fills the next."""

    def __init__(self, client: Any, bucket: str, name: str, upload_id: str) -> None:
        self.client = client
        self.bucket = bucket
        self.name = name
        self.upload_id = upload_id
        self.parts: list[dict[str, Any]] = []
        self._sending: asyncio.Task[None] | None = None

    async def send(self, data: bytes) -> None:
        """Wait for the previous part (raising its error), then start sending ``data``."""
        await self.wait()
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise FileStoreUnavailable(
                f"A blob needs more than {MAX_PARTS} parts: raise the part size"
            )
        self.parts.append({"PartNumber": number})
        self._sending = asyncio.create_task(self._upload(number, data))

    async def _upload(self, number: int, data: bytes) -> None:
        response = await self.client.upload_part(
            Bucket=self.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        self.parts[number - 1]["ETag"] = response["ETag"]

    async def wait(self) -> None:
        task, self._sending = self._sending, None
        if task is not None:
            await task

    async def complete(self) -> None:
        await self.wait()
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        task, self._sending = self._sending, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.name, UploadId=self.upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":  # completed after all, or aborted already
                raise


class S3BlobStore:
    """A :class:`~syncline.blobs.base.BlobStore` in an S3-compatible bucket.

    Construct it with :meth:`connect` (from a URL, checking the bucket) or with an
    :class:`S3Location`; :meth:`check` says whether the bucket is reachable.
    """

    def __init__(
        self,
        location: S3Location,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        read_chunk_size: int = 256 * KiB,
        max_connections: int = 32,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.location = location
        self.part_size = part_size
        self.read_chunk_size = read_chunk_size
        self._session = AioSession()
        self._config = AioConfig(
            s3={"addressing_style": location.addressing},
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        #: per event loop: the client (once made) and the task that owns it
        self._clients: dict[
            asyncio.AbstractEventLoop, tuple[asyncio.Future[Any], asyncio.Task[None]]
        ]
        self._clients = {}

    @classmethod
    def connect(cls, url: str, **options: Any) -> S3BlobStore:
        """The store at ``url`` (see :func:`parse_s3_url`), after checking that its bucket
        answers; :class:`FileStoreUnavailable` if not."""
        store = cls(parse_s3_url(url), **options)
        store.check_now()
        return store

    def __repr__(self) -> str:
        return f"S3BlobStore({str(self.location)!r})"

    def __str__(self) -> str:
        return str(self.location)

    # ------------------------------------------------------------------ clients

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        held = self._clients.get(loop)
        if held is None:
            ready: asyncio.Future[Any] = loop.create_future()
            owner = loop.create_task(self._own_client(loop, ready), name="syncline-s3-client")
            held = self._clients[loop] = (ready, owner)
        return await asyncio.shield(held[0])

    async def _own_client(
        self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[Any]
    ) -> None:
        """Make this loop's client and keep it open until cancelled (loop shutdown, aclose)."""
        try:
            async with self._session.create_client(
                "s3",
                region_name=self.location.region,
                endpoint_url=self.location.endpoint_url,
                config=self._config,
            ) as client:
                ready.set_result(client)
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(
                    FileStoreUnavailable(f"Cannot make an S3 client for {self}: {exc}")
                )
            else:
                raise
        finally:
            if self._clients.get(loop, (None, None))[0] is ready:
                del self._clients[loop]

    async def aclose(self) -> None:
        """Close the client of the running event loop (other loops close theirs at shutdown)."""
        held = self._clients.pop(asyncio.get_running_loop(), None)
        if held is not None:
            held[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held[1]

    @contextlib.contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Turn failures of the store into :class:`FileStoreUnavailable`."""
        try:
            yield
        except ClientError as exc:
            code = _error_code(exc) or str(_status(exc))
            hint = {
                "NoSuchBucket": "the bucket does not exist",
                "AccessDenied": "access denied: check the credentials (AWS_ACCESS_KEY_ID, ...)",
                "InvalidAccessKeyId": "the access key is not known to the store",
                "SignatureDoesNotMatch": "the secret key does not match the access key",
                "403": "access denied: check the credentials (AWS_ACCESS_KEY_ID, ...)",
                "404": "the bucket does not exist",
            }.get(code, str(exc))
            raise FileStoreUnavailable(
                f"The S3 file store {self} could not {action}: {hint} ({code})"
            ) from exc
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise FileStoreUnavailable(
                f"The S3 file store {self} could not {action}: {exc}"
            ) from exc

    def _name(self, key: str) -> str:
        return self.location.prefix + check_key(key)

    # ------------------------------------------------------------------ checks

    async def check(self) -> None:
        """Raise :class:`FileStoreUnavailable` unless the bucket exists and answers us."""
        client = await self._client()
        with self._failures("reach its bucket"):
            await client.head_bucket(Bucket=self.location.bucket)

    def check_now(self) -> None:
        """:meth:`check` from synchronous code (on a thread of its own: a loop may be running)."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.check())
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=run, name="syncline-s3-check")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    # ------------------------------------------------------------------ BlobStore

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> BlobInfo:
        name = self._name(key)
        client = await self._client()
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload: _Multipart | None = None
        committing = False
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise BlobTooLarge(max_size)
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= self.part_size:
                    if upload is None:
                        upload = await self._begin(client, name)
                    # One copy to bytes (what the HTTP client takes); the buffer goes at once.
                    full, buffer = bytes(buffer), bytearray()
                    with self._failures(f"upload a part of blob {key!r}"):
                        await upload.send(full)
            with self._failures(f"store blob {key!r}"):
                if upload is None:
                    committing = True
                    await client.put_object(
                        Bucket=self.location.bucket, Key=name, Body=bytes(buffer)
                    )
                else:
                    if buffer:
                        await upload.send(bytes(buffer))
                    await upload.wait()
                    committing = True
                    await upload.complete()
        except BaseException as exc:
            # Shielded: a cancelled put still cleans up before it says so.
            await asyncio.shield(self._discard(client, name, upload, committing, exc))
            raise
        return BlobInfo(size, digest.digest())

    async def _begin(self, client: Any, name: str) -> _Multipart:
        with self._failures("start a multipart upload"):
            response = await client.create_multipart_upload(Bucket=self.location.bucket, Key=name)
        return _Multipart(client, self.location.bucket, name, response["UploadId"])

    async def _discard(
        self,
        client: Any,
        name: str,
        upload: _Multipart | None,
        committing: bool,
        error: BaseException,
    ) -> None:
        """Leave nothing visible of a failed put (and no incomplete upload if we can help it)."""
        # A final request that got an answer did nothing; one cut off may have taken effect.
        unknown = committing and not (
            isinstance(error, FileStoreUnavailable) and isinstance(error.__cause__, ClientError)
        )
        try:
            if upload is not None:
                await upload.abort()
            if unknown:
                await client.delete_object(Bucket=self.location.bucket, Key=name)
        except _STORE_ERRORS:
            # remove_incomplete reclaims the upload; the failed put is what the caller sees.
            pass

    async def _head(self, client: Any, name: str) -> dict[str, Any] | None:
        try:
            with self._failures(f"look up {name!r}"):
                response: dict[str, Any] = await client.head_object(
                    Bucket=self.location.bucket, Key=name
                )
        except FileStoreUnavailable as exc:
            if isinstance(exc.__cause__, ClientError) and _is_missing(exc.__cause__):
                return None
            raise
        return response

    async def open(self, key: str, start: int = 0, end: int | None = None) -> S3BlobReader:
        name = self._name(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end})")
        client = await self._client()
        for _ in range(_OPEN_ATTEMPTS):
            head = await self._head(client, name)
            if head is None:
                raise BlobNotFound(f"No blob {key!r}")
            size = int(head["ContentLength"])
            stop = size if end is None else min(end, size)
            first = min(start, stop)
            if first >= stop:
                return S3BlobReader(self, key, size, None, 0, self.read_chunk_size)
            request: dict[str, Any] = {
                "Bucket": self.location.bucket,
                "Key": name,
                "Range": f"bytes={first}-{stop - 1}",
            }
            version = head.get("VersionId")
            if version and version != "null":
                request["VersionId"] = version
            else:
                request["IfMatch"] = head["ETag"]
            try:
                with self._failures(f"read blob {key!r}"):
                    response = await client.get_object(**request)
            except FileStoreUnavailable as exc:
                cause = exc.__cause__
                if isinstance(cause, ClientError) and _is_missing(cause):
                    raise BlobNotFound(f"No blob {key!r}") from None
                if isinstance(cause, ClientError) and (
                    _error_code(cause) in _CHANGED or _status(cause) == 412
                ):
                    continue  # replaced between the two requests: look again
                raise
            return S3BlobReader(
                self, key, size, response["Body"], stop - first, self.read_chunk_size
            )
        raise FileStoreUnavailable(
            f"Blob {key!r} in the S3 file store {self} was replaced during each of "
            f"{_OPEN_ATTEMPTS} attempts to open it"
        )

    async def delete(self, key: str) -> bool:
        name = self._name(key)
        client = await self._client()
        if await self._head(client, name) is None:
            return False
        with self._failures(f"delete blob {key!r}"):
            await client.delete_object(Bucket=self.location.bucket, Key=name)
        return True

    async def exists(self, key: str) -> bool:
        return await self._head(await self._client(), self._name(key)) is not None

    def _key_of(self, name: str) -> str | None:
        """The blob key of object ``name``, if it is one of ours."""
        prefix = self.location.prefix
        if not name.startswith(prefix):
            return None
        key = name[len(prefix) :]
        return key if is_key(key) else None

    async def list(self) -> AsyncIterator[BlobEntry]:
        client = await self._client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix, Delimiter="/"
        )
        with self._failures("list blobs"):
            async for page in pages:
                for item in page.get("Contents", ()):
                    key = self._key_of(item["Key"])
                    if key is not None:
                        yield BlobEntry(key, int(item["Size"]), item["LastModified"].timestamp())

    async def remove_incomplete(self, older_than_s: float) -> int:
        """Abort multipart uploads of our keys started more than ``older_than_s`` ago."""
        client = await self._client()
        cutoff = time.time() - older_than_s
        removed = 0
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        with self._failures("list incomplete uploads"):
            async for page in pages:
                for upload in page.get("Uploads", ()):
                    if self._key_of(upload["Key"]) is None:
                        continue
                    if upload["Initiated"].timestamp() >= cutoff:
                        continue
                    try:
                        await client.abort_multipart_upload(
                            Bucket=self.location.bucket,
                            Key=upload["Key"],
                            UploadId=upload["UploadId"],
                        )
                    except ClientError as exc:
                        if _error_code(exc) != "NoSuchUpload":
                            raise
                        continue  # finished or aborted meanwhile
                    removed += 1
        return removed
