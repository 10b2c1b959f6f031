"""Blob stores: where file contents live, addressed by key.

A :class:`BlobStore` is deliberately small, so that a local directory and an
S3-compatible bucket can both implement it (put = multipart upload, open =
ranged GET, delete, head, list). Every implementation keeps these contracts:

* **Keys** are 1 to 200 characters of ``[A-Za-z0-9_-]`` (:func:`check_key`): no
  separators and no dots, so no key can ever name something outside the store.
* :meth:`BlobStore.put` consumes an async byte stream chunk by chunk (it never
  holds the whole blob in memory) and returns its size and SHA-256. The blob
  becomes visible under its key only once it is complete and durable. If the
  stream raises, the size passes ``max_size`` (:class:`BlobTooLarge`) or the
  task is cancelled, nothing is visible under the key and no partial data is
  left behind (a crash may leave an *incomplete* upload, never a visible
  partial blob; :meth:`BlobStore.remove_incomplete` reclaims those). Putting a
  key that exists replaces it atomically.
* :meth:`BlobStore.open` raises :class:`BlobNotFound` at once if the key is
  absent; otherwise it returns a :class:`BlobReader` over bytes
  ``[start, end)`` (``end=None`` or past the end: up to the end). A reader
  keeps seeing the blob as it was when opened, even if it is deleted meanwhile.
* :meth:`BlobStore.delete` is idempotent and says whether the key existed.
* :meth:`BlobStore.list` yields every complete blob (for orphan sweeps).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeGuard, runtime_checkable

from syncline.errors import InvalidRequest, SynclineError

__all__ = [
    "BlobEntry",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "FileStoreUnavailable",
    "InvalidBlobKey",
    "InvalidFileStoreLocation",
    "check_key",
    "is_key",
]

_KEY = re.compile(r"[A-Za-z0-9_-]{1,200}")


class BlobNotFound(SynclineError):
    code = "BlobNotFound"
    http_status = 404


class BlobTooLarge(SynclineError):
    """The stream given to :meth:`BlobStore.put` ran past ``max_size``."""

    code = "BlobTooLarge"
    http_status = 413

    def __init__(self, max_size: int) -> None:
        super().__init__(f"The blob is larger than the limit of {max_size} bytes")
        self.max_size = max_size


class FileStoreUnavailable(SynclineError):
    """The store cannot be used: unreachable, missing bucket, credentials refused."""

    code = "FileStoreUnavailable"
    http_status = 503


class InvalidBlobKey(InvalidRequest):
    code = "InvalidBlobKey"


class InvalidFileStoreLocation(InvalidRequest):
    """A ``--files`` location that names no store this build can open."""

    code = "InvalidFileStoreLocation"


def is_key(key: object) -> TypeGuard[str]:
    """Whether ``key`` is a valid blob key."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def check_key(key: object) -> str:
    """``key`` if it is a valid blob key, else :class:`InvalidBlobKey`."""
    if not is_key(key):
        shown = repr(key)[:100]
        raise InvalidBlobKey(
            f"Invalid blob key {shown}: keys are 1-200 characters of letters, digits, '_' and '-'"
        )
    return key


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What :meth:`BlobStore.put` stored."""

    size: int
    #: the raw 32-byte SHA-256 digest of the contents
    sha256: bytes


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """One complete blob, as listed by :meth:`BlobStore.list`."""

    key: str
    size: int
    #: last modification, in seconds since the Unix epoch (the store's own clock)
    modified: float


@runtime_checkable
class BlobReader(Protocol):
    """An open blob: async iteration yields the requested byte range in chunks.

    The reader is closed when iteration ends; call :meth:`aclose` when
    stopping early.
    """

    #: size of the whole blob (not of the range)
    size: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class BlobStore(Protocol):
    """Where file contents live (see the module docstring for the contracts)."""

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> BlobInfo: ...

    async def open(self, key: str, start: int = 0, end: int | None = None) -> BlobReader: ...

    async def delete(self, key: str) -> bool: ...

    async def exists(self, key: str) -> bool: ...

    def list(self) -> AsyncIterator[BlobEntry]: ...

    async def remove_incomplete(self, older_than_s: float) -> int:
        """Drop uploads that never completed and are older than this; return how many."""
        ...
