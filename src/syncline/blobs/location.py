"""Choosing the blob store from the ``--files`` location."""

from __future__ import annotations

import os
from pathlib import Path

from syncline.blobs.base import BlobStore
from syncline.blobs.local import LocalBlobStore
from syncline.errors import InvalidRequest

__all__ = ["open_blob_store"]


def open_blob_store(location: str | os.PathLike[str]) -> BlobStore:
    """The blob store at ``location``: a directory path (a URL scheme names another backend).

    Raises :class:`InvalidRequest` (code ``UnsupportedFileStore``) for a URL of a
    backend this build does not have.
    """
    text = os.fspath(location)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        hint = " (S3-compatible storage is planned)" if scheme == "s3" else ""
        raise InvalidRequest(
            f"Unsupported file store {text!r}: only a local directory is supported so far{hint}. "
            "Pass a path, like --files ./files",
            code="UnsupportedFileStore",
        )
    return LocalBlobStore(Path(text))
