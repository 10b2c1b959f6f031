"""Helpers of the blob store tests, and the stores under test (tests/blobs/conftest.py
gives each implementation in turn as the ``under_test`` fixture).

Every implementation comes with what the contract tests need to see through it:
``leftovers()`` lists everything it holds, complete or not (a local store's files,
temp files included; a bucket's objects and incomplete multipart uploads), and
``chunk`` is a chunk size that makes a few chunks cross its buffers (the local
store's write buffer; S3's 5 MiB parts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from syncline.blobs import BlobReader, BlobStore, LocalBlobStore

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read_all(reader: BlobReader) -> bytes:
    return b"".join([chunk async for chunk in reader])


async def collect(store: BlobStore) -> list[tuple[str, int]]:
    """``(key, size)`` of every blob the store lists, sorted."""
    return sorted([(e.key, e.size) async for e in store.list()])


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@dataclass
class StoreUnderTest:
    name: str
    store: BlobStore
    #: what ``open_blob_store`` opens it from (``--files``)
    location: str
    #: a chunk size such that a few chunks cross the store's write buffer or part size
    chunk: int
    leftovers: Callable[[], list[str]]
    #: an age that a just-crashed upload is younger than, as the store reports it
    #: (moto says every multipart upload was initiated on 2010-11-10)
    recent_s: float = 3600.0


async def s3_leftovers(store: Any) -> list[str]:
    """Every object and incomplete multipart upload in the store's bucket."""
    client = await store._client()
    bucket = store.location.bucket
    objects = await client.list_objects_v2(Bucket=bucket)
    uploads = await client.list_multipart_uploads(Bucket=bucket)
    return sorted(
        [o["Key"] for o in objects.get("Contents", ())]
        + [f"incomplete:{u['Key']}" for u in uploads.get("Uploads", ())]
    )


def local_store(tmp_path: Path) -> StoreUnderTest:
    # Small buffers so that modest test data crosses many chunk boundaries.
    store = LocalBlobStore(tmp_path / "blobs", read_chunk_size=7, write_buffer_size=10)
    return StoreUnderTest("local", store, str(store.root), 25, lambda: files_under(store.root))


def s3_store(url: str) -> StoreUnderTest:
    from syncline.blobs.s3 import MIN_PART_SIZE, S3BlobStore

    store = S3BlobStore.connect(url, part_size=MIN_PART_SIZE, read_chunk_size=64 * 1024)
    return StoreUnderTest(
        "s3", store, url, 3 * 1024 * 1024, lambda: run(s3_leftovers(store)), 40 * 365 * 86400.0
    )
