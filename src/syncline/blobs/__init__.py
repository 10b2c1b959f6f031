"""Blob stores for file contents: the protocol (``base``) and a local directory (``local``)."""

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
]
