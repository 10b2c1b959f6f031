"""Blob stores for file contents: the protocol (``base``), a local directory (``local``),
and the choice of store from a ``--files`` location (``location``)."""

from syncline.blobs.base import (
    BlobEntry,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobTooLarge,
    InvalidBlobKey,
    check_key,
)
from syncline.blobs.local import LocalBlobStore
from syncline.blobs.location import open_blob_store

__all__ = [
    "BlobEntry",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "InvalidBlobKey",
    "LocalBlobStore",
    "check_key",
    "open_blob_store",
]
