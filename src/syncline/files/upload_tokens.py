"""Upload URL tokens: a nonce and an expiry, signed with HMAC-SHA256.

An upload URL is ``<origin>/api/storage/upload?token=<token>``. The token is
``base64url(nonce[16] || expires_ms[8] || HMAC-SHA256(secret, domain || nonce || expires_ms))``
under a 32-byte secret kept in ``<data dir>/storage_secret``. A token says only
that this deployment issued it and until when it is valid; that it is used at
most once is the file service's business (it records each used nonce).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from syncline.errors import InternalError
from syncline.files.errors import FileStorageError, UploadTokenRejected
from syncline.private_paths import private_dir

__all__ = [
    "SECRET_FILE",
    "UPLOAD_URL_VALIDITY_MS",
    "UploadGrant",
    "UploadTokenSigner",
    "load_or_create_secret",
]

#: Upload URL lifetime (semantics §13: ``STORE_FILE_AUTHORIZATION_VALIDITY``).
UPLOAD_URL_VALIDITY_MS = 3_600_000
SECRET_FILE = "storage_secret"

_TOKEN_DOMAIN = b"syncline/upload-url/v1\x00"
_NONCE_BYTES = 16
_TOKEN_BYTES = _NONCE_BYTES + 8 + 32
_TOKEN_CHARS = math.ceil(_TOKEN_BYTES * 4 / 3)
_TOKEN_TEXT = re.compile(rf"[A-Za-z0-9_-]{{{_TOKEN_CHARS}}}")


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a valid upload token says."""

    nonce: bytes
    expires_ms: int


class UploadTokenSigner:
    """Issues and checks upload tokens under one secret."""

    def __init__(self, secret: bytes, *, validity_ms: int = UPLOAD_URL_VALIDITY_MS) -> None:
        if len(secret) < 32:
            raise ValueError("the upload URL secret must be at least 32 bytes")
        self._secret = secret
        self.validity_ms = validity_ms

    def issue(self, now_ms: float) -> str:
        """A new token, valid for :attr:`validity_ms` from ``now_ms``."""
        expires_ms = int(now_ms) + self.validity_ms
        payload = secrets.token_bytes(_NONCE_BYTES) + expires_ms.to_bytes(8, "big")
        token = base64.urlsafe_b64encode(payload + self._sign(payload)).rstrip(b"=")
        return token.decode("ascii")

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _TOKEN_DOMAIN + payload, hashlib.sha256).digest()

    def check(self, token: str | None, now_ms: float) -> UploadGrant:
        """The grant in ``token``; :class:`UploadTokenRejected` if forged or expired."""
        if not token:
            raise FileStorageError(
                "Missing upload token: POST the file to the URL returned by "
                "ctx.storage.generate_upload_url(), with its ?token=... intact",
                code="MissingUploadToken",
            )
        if not _TOKEN_TEXT.fullmatch(token):
            raise UploadTokenRejected("The upload URL's token is malformed")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, signature = raw[: _NONCE_BYTES + 8], raw[_NONCE_BYTES + 8 :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise UploadTokenRejected(
                "The upload URL's token has a bad signature (not issued by this deployment)"
            )
        expires_ms = int.from_bytes(payload[_NONCE_BYTES:], "big")
        if now_ms >= expires_ms:
            raise UploadTokenRejected(
                "The upload URL has expired (upload URLs are valid for "
                f"{self.validity_ms // 60_000} minutes): generate a new one",
                code="UploadTokenExpired",
            )
        return UploadGrant(payload[:_NONCE_BYTES], expires_ms)


def load_or_create_secret(data_dir: Path) -> bytes:
    """The 32-byte upload-URL signing secret in ``data_dir/storage_secret`` (created if absent).

    Written to a private temp file, fsynced, then hard-linked into place, so a
    reader never sees a partial secret and two processes starting at once agree.
    """
    path = data_dir / SECRET_FILE

    def read() -> bytes | None:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            secret = b""
        if len(secret) < 32:
            raise InternalError(
                f"{path} is damaged (expected 64 hex digits). Delete it to make a new one; "
                "upload URLs handed out before then stop working.",
                code="BadStorageSecret",
            )
        return secret

    existing = read()
    if existing is not None:
        return existing
    private_dir(data_dir)
    tmp = data_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    secret = read()
    if secret is None:
        raise InternalError(f"{path} vanished while being created", code="BadStorageSecret")
    return secret
