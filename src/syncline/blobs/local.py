"""Blobs in a local directory (the default file store).

Layout: ``ROOT/<shard>/<key>``, where ``shard`` is the first two hex digits of
``sha256(key)``: keys share long prefixes (storage ids start with their table
number), and hashing spreads them evenly over 256 directories.

A put writes ``ROOT/<shard>/.tmp-<random>`` (same directory, hence same file
system as the final name), fsyncs it, renames it over ``<key>`` and fsyncs the
directory: after a crash the key names either nothing or the whole blob. Temp
files that a crash left behind are removed by :meth:`remove_incomplete`.

Bulk work (writing, hashing, reading, fsync, rename) runs on worker threads;
only metadata calls that return at once (``open``, ``mkstemp``, and creating
one of the 256 shard directories the first time) run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from syncline.blobs.base import BlobEntry, BlobInfo, BlobNotFound, BlobTooLarge, check_key
from syncline.private_paths import PRIVATE_DIR_MODE, private_dir

__all__ = ["LocalBlobReader", "LocalBlobStore"]

KiB = 1024
MiB = 1024 * KiB
TEMP_PREFIX = ".tmp-"
_SHARD = re.compile(r"[0-9a-f]{2}")


def _shard(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:2]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _PendingBlob:
    """A temp file being filled. Every step holds ``_lock``, so :meth:`abort`
    (which may run while a cancelled step is still busy on its thread) never
    closes the descriptor under a write in progress."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        self.fd = fd
        self.path = Path(name)
        self.sha256 = hashlib.sha256()
        self._lock = threading.Lock()
        self._final: Path | None = None

    def write(self, data: bytearray) -> None:
        with self._lock:
            self.sha256.update(data)
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]

    def commit(self, final: Path) -> None:
        with self._lock:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            os.replace(self.path, final)
            self._final = final
            _fsync_dir(final.parent)

    def abort(self) -> None:
        """Leave no trace: the temp file goes; so does the blob if the commit got that far."""
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            if self._final is not None:
                # The caller sees the put fail (cancelled during the final fsync):
                # nothing may be visible under the key.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._final)


class LocalBlobReader:
    """Bytes ``[start, end)`` of an open file, read in chunks with ``pread``."""

    def __init__(self, fd: int, start: int, end: int, size: int, chunk_size: int) -> None:
        self.size = size
        self._fd = fd
        self._offset = start
        self._end = end
        self._chunk_size = chunk_size
        self._lock = threading.Lock()

    def __aiter__(self) -> LocalBlobReader:
        return self

    async def __anext__(self) -> bytes:
        if self._fd < 0 or self._offset >= self._end:
            await self.aclose()
            raise StopAsyncIteration
        n = min(self._chunk_size, self._end - self._offset)
        data = await asyncio.to_thread(self._read, n)
        if not data:  # the file shrank under us (it never should: blobs are immutable)
            await self.aclose()
            raise StopAsyncIteration
        self._offset += len(data)
        return data

    def _read(self, n: int) -> bytes:
        with self._lock:
            if self._fd < 0:
                return b""
            return os.pread(self._fd, n, self._offset)

    def _close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    async def aclose(self) -> None:
        if self._fd >= 0:
            # On a thread: a cancelled read may still hold the lock.
            await asyncio.to_thread(self._close)

    def __del__(self) -> None:
        # Abandoned without aclose(): no thread can be using it (it would hold a reference).
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalBlobStore:
    """A :class:`~syncline.blobs.base.BlobStore` in a directory (created if needed)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_chunk_size: int = 256 * KiB,
        write_buffer_size: int = 1 * MiB,
    ) -> None:
        self.root = Path(root).resolve()
        private_dir(self.root)
        self.read_chunk_size = read_chunk_size
        self.write_buffer_size = write_buffer_size

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def __str__(self) -> str:
        """Where the blobs are, as the server's start-up banner shows it."""
        return str(self.root)

    def path_of(self, key: str) -> Path:
        """Where the blob ``key`` lives (whether or not it exists)."""
        key = check_key(key)
        return self.root / _shard(key) / key

    def _shard_dir(self, final: Path) -> Path:
        directory = final.parent
        if not directory.is_dir():
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(directory, PRIVATE_DIR_MODE)  # the umask may only narrow the mode
            # A new directory entry in the root must be durable too.
            _fsync_dir(self.root)
        return directory

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> BlobInfo:
        final = self.path_of(key)
        pending = _PendingBlob(self._shard_dir(final))
        size = 0
        buffer = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise BlobTooLarge(max_size)
                buffer += chunk
                if len(buffer) >= self.write_buffer_size:
                    # Hand the full buffer to the thread and start a new one (no copy).
                    full, buffer = buffer, bytearray()
                    await asyncio.to_thread(pending.write, full)
            if buffer:
                await asyncio.to_thread(pending.write, buffer)
            await asyncio.to_thread(pending.commit, final)
        except BaseException:
            # On a thread and awaited even when cancelled: a step may still be running.
            await asyncio.to_thread(pending.abort)
            raise
        return BlobInfo(size, pending.sha256.digest())

    async def open(self, key: str, start: int = 0, end: int | None = None) -> LocalBlobReader:
        path = self.path_of(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end})")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BlobNotFound(f"No blob {key!r}") from None
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        stop = size if end is None else min(end, size)
        return LocalBlobReader(fd, min(start, stop), stop, size, self.read_chunk_size)

    async def delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(os.unlink, path)
        except FileNotFoundError:
            return False
        return True

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    def _shards(self) -> list[Path]:
        with os.scandir(self.root) as it:
            return sorted(
                Path(e.path)
                for e in it
                if _SHARD.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )

    @staticmethod
    def _scan(shard: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(shard) as it:
                return [e for e in it if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    async def list(self) -> AsyncIterator[BlobEntry]:
        for shard in await asyncio.to_thread(self._shards):
            for entry in await asyncio.to_thread(self._scan, shard):
                name = entry.name
                if name.startswith(TEMP_PREFIX) or _shard(name) != shard.name:
                    continue  # an upload in progress, or a file that is not ours
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since the scan
                yield BlobEntry(name, stat.st_size, stat.st_mtime)

    def _remove_incomplete(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for shard in self._shards():
            for entry in self._scan(shard):
                if not entry.name.startswith(TEMP_PREFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    async def remove_incomplete(self, older_than_s: float) -> int:
        """Remove temp files (uploads cut short by a crash) not written for ``older_than_s``."""
        return await asyncio.to_thread(self._remove_incomplete, older_than_s)
