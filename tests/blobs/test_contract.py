"""The BlobStore contract (syncline.blobs.base), for every implementation: atomic puts,
ranged reads, readers that outlive deletes, deletion, listing, limits, and cleanup of
uploads cut short."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from syncline.blobs import BlobNotFound, BlobStore, BlobTooLarge, InvalidBlobKey

from .support import StoreUnderTest, collect, read_all, run, stream


def test_put_then_read_back(under_test: StoreUnderTest) -> None:
    store = under_test.store
    data = bytes(range(256)) * 3
    info = run(store.put("k1", stream([data[:100], data[100:101], b"", data[101:]])))
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).digest()

    async def check() -> None:
        reader = await store.open("k1")
        assert reader.size == len(data)
        assert await read_all(reader) == data
        assert await store.exists("k1")
        assert not await store.exists("k2")

    run(check())
    assert len(under_test.leftovers()) == 1


def test_a_large_blob_round_trips(under_test: StoreUnderTest) -> None:
    """Many chunks, several buffers (a multipart upload of three parts on S3)."""
    store = under_test.store
    piece = hashlib.sha256(b"seed").digest() * (under_test.chunk // 32)
    parts = [piece[i:] + piece[:i] for i in range(4)]
    data = b"".join(parts)
    info = run(store.put("large", stream(parts)))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).digest())

    async def read(start: int, end: int | None) -> bytes:
        return await read_all(await store.open("large", start, end))

    assert run(read(0, None)) == data
    middle = (len(data) // 3, 2 * len(data) // 3 + 7)
    assert run(read(*middle)) == data[middle[0] : middle[1]]


def test_empty_blob(store: BlobStore) -> None:
    info = run(store.put("empty", stream([])))
    assert (info.size, info.sha256) == (0, hashlib.sha256(b"").digest())

    async def check() -> tuple[int, bytes]:
        reader = await store.open("empty")
        return reader.size, await read_all(reader)

    assert run(check()) == (0, b"")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, b"0123456789abcdefghij"),
        (5, None, b"56789abcdefghij"),
        (5, 12, b"56789ab"),
        (19, 20, b"j"),
        (0, 0, b""),
        (15, 1000, b"fghij"),  # an end past the blob is clamped
        (20, None, b""),
        (500, None, b""),
    ],
)
def test_range_reads(store: BlobStore, start: int, end: int | None, expected: bytes) -> None:
    run(store.put("r", stream([b"0123456789abcdefghij"])))

    async def read() -> tuple[int, bytes]:
        reader = await store.open("r", start, end)
        return reader.size, await read_all(reader)

    assert run(read()) == (20, expected)


def test_invalid_ranges(store: BlobStore) -> None:
    run(store.put("r", stream([b"abc"])))
    for start, end in [(-1, None), (2, 1)]:
        with pytest.raises(ValueError, match="invalid byte range"):
            run(store.open("r", start, end))


def test_open_missing_raises_at_once(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        run(store.open("nope"))


def test_a_reader_keeps_its_blob_after_delete(store: BlobStore) -> None:
    data = b"x" * 100

    async def scenario() -> tuple[bytes, bool, bool]:
        await store.put("d", stream([data]))
        reader = await store.open("d")
        deleted = await store.delete("d")
        return await read_all(reader), deleted, await store.exists("d")

    assert run(scenario()) == (data, True, False)


def test_a_reader_keeps_its_blob_after_replace(store: BlobStore) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        await store.put("k", stream([b"old contents"]))
        reader = await store.open("k", 4)
        await store.put("k", stream([b"new contents, longer"]))
        return await read_all(reader), await read_all(await store.open("k"))

    assert run(scenario()) == (b"contents", b"new contents, longer")


def test_a_reader_closed_early(store: BlobStore) -> None:
    async def scenario() -> bytes:
        await store.put("k", stream([b"z" * 300_000]))
        reader = await store.open("k")
        async for _chunk in reader:
            break
        await reader.aclose()
        await reader.aclose()  # idempotent
        return await read_all(await store.open("k", 299_990))

    assert run(scenario()) == b"z" * 10


def test_delete_is_idempotent(under_test: StoreUnderTest) -> None:
    store = under_test.store
    run(store.put("d", stream([b"abc"])))
    assert run(store.delete("d")) is True
    assert run(store.delete("d")) is False
    with pytest.raises(BlobNotFound):
        run(store.open("d"))
    assert under_test.leftovers() == []


def test_put_replaces_atomically(under_test: StoreUnderTest) -> None:
    store = under_test.store
    run(store.put("k", stream([b"old contents"])))
    run(store.put("k", stream([b"new"])))
    assert run(read_key(store, "k")) == b"new"
    assert len(under_test.leftovers()) == 1


async def read_key(store: BlobStore, key: str) -> bytes:
    return await read_all(await store.open(key))


async def failing_stream(parts: int, size: int, error: BaseException) -> AsyncIterator[bytes]:
    for _ in range(parts):
        yield b"y" * size
    raise error


def test_failure_mid_stream_leaves_nothing(under_test: StoreUnderTest) -> None:
    """A stream that breaks after several buffers were written: no blob, nothing partial."""
    store = under_test.store
    broken = failing_stream(5, under_test.chunk, ConnectionError("client went away"))
    with pytest.raises(ConnectionError, match="client went away"):
        run(store.put("broken", broken))
    assert under_test.leftovers() == []
    assert run(store.exists("broken")) is False


def test_failure_mid_stream_keeps_an_existing_blob(under_test: StoreUnderTest) -> None:
    store = under_test.store
    run(store.put("k", stream([b"committed"])))
    with pytest.raises(ConnectionError):
        run(store.put("k", failing_stream(3, under_test.chunk, ConnectionError())))
    assert run(read_key(store, "k")) == b"committed"
    assert len(under_test.leftovers()) == 1


def test_cancelled_put_leaves_nothing(under_test: StoreUnderTest) -> None:
    store = under_test.store

    async def scenario() -> None:
        ready = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"q" * under_test.chunk
            yield b"q" * under_test.chunk
            ready.set()
            await asyncio.sleep(30)
            yield b"never"

        task = asyncio.create_task(store.put("c", slow()))
        await ready.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert under_test.leftovers() == []


def test_max_size(under_test: StoreUnderTest) -> None:
    store, chunk = under_test.store, under_test.chunk
    info = run(store.put("fits", stream([b"a" * chunk, b"b" * chunk]), max_size=2 * chunk))
    assert info.size == 2 * chunk
    with pytest.raises(BlobTooLarge) as caught:
        run(store.put("big", stream([b"a" * chunk, b"b" * (chunk + 1)]), max_size=2 * chunk))
    assert caught.value.max_size == 2 * chunk
    assert run(store.exists("big")) is False
    assert len(under_test.leftovers()) == 1


def test_list(store: BlobStore) -> None:
    async def scenario() -> list[tuple[str, int]]:
        for i in range(20):
            await store.put(f"key{i}", stream([b"x" * i]))
        return await collect(store)

    assert run(scenario()) == sorted((f"key{i}", i) for i in range(20))


def test_crash_mid_upload_leaves_an_incomplete_upload_only(under_test: StoreUnderTest) -> None:
    """A process killed mid-upload cannot run cleanup: no blob appears under the key,
    and what it left is reclaimed by remove_incomplete once old enough."""
    code = textwrap.dedent(
        f"""
        import asyncio, os
        from syncline.blobs import open_blob_store

        async def chunks():
            yield b"z" * (5 << 20)
            yield b"z" * (5 << 20)
            await asyncio.sleep(1.0)  # let the first buffers (a part) reach the store
            os._exit(9)               # die without unwinding: no cleanup code runs

        asyncio.run(open_blob_store({under_test.location!r}).put("crash", chunks()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    store = under_test.store
    assert run(store.exists("crash")) is False
    assert len(under_test.leftovers()) == 1
    assert run(collect(store)) == []  # list() never shows an incomplete upload
    # Too recent: it could be an upload in progress.
    assert run(store.remove_incomplete(under_test.recent_s)) == 0
    assert run(store.remove_incomplete(0)) == 1
    assert under_test.leftovers() == []


@pytest.mark.parametrize(
    "key",
    ["", "../x", "a/b", "..", ".", ".tmp-x", "a b", "k\x00", "é", "x" * 201, None, 5],
)
def test_invalid_keys_never_reach_the_store(under_test: StoreUnderTest, key: Any) -> None:
    store = under_test.store
    ops: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.put(key, stream([b"x"])),
        lambda: store.open(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
    ]
    for op in ops:
        with pytest.raises(InvalidBlobKey):
            run(op())
    assert under_test.leftovers() == []
