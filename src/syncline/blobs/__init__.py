"""Blob stores for file contents: the protocol (``base``), a local directory (``local``),
an S3-compatible bucket (``s3``, with the ``s3`` extra; not imported here), and the
choice of store from a ``--files`` location (``location``)."""

from syncline.blobs.base import (
    BlobEntry,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobTooLarge,
    FileStoreUnavailable,
    InvalidBlobKey,
    InvalidFileStoreLocation,
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
    "FileStoreUnavailable",
    "InvalidBlobKey",
    "InvalidFileStoreLocation",
    "LocalBlobStore",
    "check_key",
    "open_blob_store",
]
