"""Errors of file storage; each carries its HTTP status for the storage routes."""

from __future__ import annotations

from syncline.errors import InvalidId, SynclineError

__all__ = [
    "DigestMismatch",
    "FileNotFound",
    "FileStorageDisabled",
    "FileStorageError",
    "FileTooLarge",
    "InvalidStorageId",
    "StorageNotAvailable",
    "UploadTokenRejected",
]


class FileStorageError(SynclineError):
    """A file storage request that cannot be served as asked (400)."""

    code = "FileStorageError"
    http_status = 400


class InvalidStorageId(InvalidId):
    code = "InvalidStorageId"


class FileNotFound(FileStorageError):
    code = "FileNotFound"
    http_status = 404


class FileTooLarge(FileStorageError):
    code = "FileTooLarge"
    http_status = 413


class UploadTokenRejected(FileStorageError):
    """An upload URL's token is forged, expired or used (codes say which)."""

    code = "InvalidUploadToken"
    http_status = 403


class DigestMismatch(FileStorageError):
    code = "DigestMismatch"


class StorageNotAvailable(FileStorageError):
    """A ``ctx.storage`` method called from a kind of function that cannot use it."""

    code = "StorageNotAvailable"


class FileStorageDisabled(FileStorageError):
    code = "FileStorageDisabled"
    http_status = 503
