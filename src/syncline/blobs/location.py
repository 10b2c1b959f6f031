"""Choosing the blob store from the ``--files`` location."""

from __future__ import annotations

import os
from pathlib import Path

from syncline.blobs.base import BlobStore, InvalidFileStoreLocation
from syncline.blobs.local import LocalBlobStore

__all__ = ["open_blob_store"]

#: The extra that brings the S3 client, as the install hint shows it.
S3_EXTRA = "pip install 'syncline[s3]'"


def open_blob_store(location: str | os.PathLike[str]) -> BlobStore:
    """The blob store at ``location``: a directory path, or ``s3://bucket/prefix``.

    An S3 store is checked before it is returned (its bucket must answer:
    :class:`~syncline.blobs.base.FileStoreUnavailable` otherwise). Raises
    :class:`~syncline.blobs.base.InvalidFileStoreLocation` (code
    ``UnsupportedFileStore``) for a URL of another scheme, or for ``s3://``
    without the ``s3`` extra installed.
    """
    text = os.fspath(location)
    if "://" not in text:
        return LocalBlobStore(Path(text))
    scheme = text.split("://", 1)[0]
    if scheme != "s3":
        raise InvalidFileStoreLocation(
            f"Unsupported file store {text!r}: expected a directory path (--files ./files) "
            "or an S3 URL (--files s3://bucket/prefix)",
            code="UnsupportedFileStore",
        )
    try:
        # Imported here: without S3 in use, the client library is never loaded.
        from syncline.blobs.s3 import S3BlobStore
    except ImportError as exc:
        raise InvalidFileStoreLocation(
            f"The file store {text!r} needs the S3 client, which is not installed "
            f"({exc}): {S3_EXTRA}",
            code="UnsupportedFileStore",
        ) from None
    return S3BlobStore.connect(text)
