"""LocalBlobStore: atomic puts, ranged reads, deletion, listing, cleanup of crashed uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from syncline.blobs import BlobNotFound, BlobReader, BlobTooLarge, InvalidBlobKey, LocalBlobStore
from syncline.blobs import local as local_module

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


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    # Small buffers so that modest test data crosses many chunk boundaries.
    return LocalBlobStore(tmp_path / "blobs", read_chunk_size=7, write_buffer_size=10)


def test_put_then_read_back(store: LocalBlobStore) -> None:
    data = bytes(range(256)) * 3
    info = run(store.put("k1", stream([data[:100], data[100:101], b"", data[101:]])))
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).digest()

    async def check() -> None:
        reader = await store.open("k1")
        assert reader.size == len(data)
        assert await read_all(reader) == data
        assert await store.exists("k1")

    run(check())
    path = store.path_of("k1")
    assert path.read_bytes() == data
    assert path.parent.parent == store.root  # ROOT/<shard>/<key>
    assert files_under(store.root) == [str(path.relative_to(store.root))]


def test_empty_blob(store: LocalBlobStore) -> None:
    info = run(store.put("empty", stream([])))
    assert (info.size, info.sha256) == (0, hashlib.sha256(b"").digest())

    async def check() -> bytes:
        return await read_all(await store.open("empty"))

    assert run(check()) == b""


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
def test_range_reads(store: LocalBlobStore, start: int, end: int | None, expected: bytes) -> None:
    run(store.put("r", stream([b"0123456789abcdefghij"])))

    async def read() -> tuple[int, bytes]:
        reader = await store.open("r", start, end)
        return reader.size, await read_all(reader)

    assert run(read()) == (20, expected)


def test_open_missing_raises_at_once(store: LocalBlobStore) -> None:
    with pytest.raises(BlobNotFound):
        run(store.open("nope"))


def test_a_reader_keeps_its_blob_after_delete(store: LocalBlobStore) -> None:
    data = b"x" * 100

    async def scenario() -> tuple[bytes, bool, bool]:
        await store.put("d", stream([data]))
        reader = await store.open("d")
        deleted = await store.delete("d")
        return await read_all(reader), deleted, await store.exists("d")

    assert run(scenario()) == (data, True, False)


def test_delete_is_idempotent(store: LocalBlobStore) -> None:
    run(store.put("d", stream([b"abc"])))
    assert run(store.delete("d")) is True
    assert run(store.delete("d")) is False
    with pytest.raises(BlobNotFound):
        run(store.open("d"))
    assert files_under(store.root) == []


def test_put_replaces_atomically(store: LocalBlobStore) -> None:
    run(store.put("k", stream([b"old contents"])))
    run(store.put("k", stream([b"new"])))
    assert store.path_of("k").read_bytes() == b"new"
    assert len(files_under(store.root)) == 1


async def failing_stream(parts: int, error: BaseException) -> AsyncIterator[bytes]:
    for _ in range(parts):
        yield b"y" * 25
    raise error


def test_failure_mid_stream_leaves_nothing(store: LocalBlobStore) -> None:
    """A stream that breaks after several buffered writes: no blob, no temp file."""
    with pytest.raises(ConnectionError, match="client went away"):
        run(store.put("broken", failing_stream(5, ConnectionError("client went away"))))
    assert not store.path_of("broken").exists()
    assert files_under(store.root) == []  # the temp file is gone too
    assert run(store.exists("broken")) is False


def test_failure_mid_stream_keeps_an_existing_blob(store: LocalBlobStore) -> None:
    run(store.put("k", stream([b"committed"])))
    with pytest.raises(ConnectionError):
        run(store.put("k", failing_stream(3, ConnectionError())))
    assert store.path_of("k").read_bytes() == b"committed"
    assert len(files_under(store.root)) == 1


def test_failure_at_the_final_rename_leaves_nothing(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        run(store.put("k", stream([b"a" * 50])))
    monkeypatch.undo()
    assert files_under(store.root) == []


def test_crash_mid_write_leaves_only_a_temp_file(store: LocalBlobStore) -> None:
    """A process killed mid-upload cannot run cleanup: no blob appears under the key,
    and the temp file it left is reclaimed by remove_incomplete."""
    code = f"""
import asyncio, os, sys
from syncline.blobs.local import LocalBlobStore

async def chunks():
    yield b"z" * 1000
    yield b"z" * 1000
    await asyncio.sleep(0.2)  # let the first buffers reach the temp file
    os._exit(9)               # die without unwinding: no cleanup code runs

store = LocalBlobStore({str(store.root)!r}, write_buffer_size=512)
asyncio.run(store.put("crash", chunks()))
"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == 9, proc.stderr.decode()
    assert not store.path_of("crash").exists()
    left = files_under(store.root)
    assert len(left) == 1 and Path(left[0]).name.startswith(local_module.TEMP_PREFIX), left
    assert run(collect(store)) == []  # list() never shows a temp file

    assert run(store.remove_incomplete(3600)) == 0  # too recent: could be an upload in progress
    old = time.time() - 7200
    temp = store.root / left[0]
    os.utime(temp, (old, old))
    assert run(store.remove_incomplete(3600)) == 1
    assert files_under(store.root) == []


def test_cancelled_put_leaves_nothing(store: LocalBlobStore) -> None:
    async def scenario() -> None:
        ready = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"q" * 40
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
    assert files_under(store.root) == []


def test_max_size(store: LocalBlobStore) -> None:
    info = run(store.put("fits", stream([b"a" * 30, b"b" * 10]), max_size=40))
    assert info.size == 40
    with pytest.raises(BlobTooLarge) as caught:
        run(store.put("big", stream([b"a" * 30, b"b" * 11]), max_size=40))
    assert caught.value.max_size == 40
    assert not store.path_of("big").exists()
    assert files_under(store.root) == [str(store.path_of("fits").relative_to(store.root))]


async def collect(store: LocalBlobStore) -> list[tuple[str, int]]:
    return sorted([(e.key, e.size) async for e in store.list()])


def test_list(store: LocalBlobStore) -> None:
    async def scenario() -> list[tuple[str, int]]:
        for i in range(20):
            await store.put(f"key{i}", stream([b"x" * i]))
        return await collect(store)

    listed = run(scenario())
    assert listed == sorted((f"key{i}", i) for i in range(20))
    # Keys are spread over shard directories.
    assert len({p.parent for p in store.root.rglob("key*")}) > 1


def test_list_ignores_foreign_files(store: LocalBlobStore) -> None:
    run(store.put("mine", stream([b"1"])))
    (store.root / "README").write_text("not a blob")
    (store.root / "zz").mkdir()
    (store.root / "zz" / "stray").write_text("wrong shard directory name")
    shard = store.path_of("mine").parent
    (shard / "not-in-this-shard-0").write_text("x")
    assert run(collect(store)) == [("mine", 1)]


@pytest.mark.parametrize(
    "key",
    ["", "../x", "a/b", "..", ".", ".tmp-x", "a b", "k\x00", "é", "x" * 201, None, 5],
)
def test_invalid_keys_never_touch_the_disk(store: LocalBlobStore, key: Any) -> None:
    ops: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.put(key, stream([b"x"])),
        lambda: store.open(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
    ]
    for op in ops:
        with pytest.raises(InvalidBlobKey):
            run(op())
    assert files_under(store.root) == []


def test_a_store_reads_as_its_folder_in_messages(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "files")
    assert f"Files: {store}" == f"Files: {(tmp_path / 'files').resolve()}"
    assert repr(store).startswith("LocalBlobStore(")
