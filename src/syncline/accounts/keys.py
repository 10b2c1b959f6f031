"""The deployment's signing keys: RS256 key pairs kept in the data folder.

Layout of the key folder (``<database folder>/auth_keys``, mode 0700)::

    keys.json        {"keys": [{"kid", "createdMs", "retiredMs"}...]}, newest last
    <kid>.pem        the private key (PKCS#8 PEM, mode 0600)

The newest key that is not retired signs new access tokens. Rotation
(:meth:`KeyStore.rotate`) retires the current key and creates a new one; a
retired key stays in the JWKS (so tokens it signed still verify) until
``retiredMs + keep_ms``, after which rotation removes its files. ``keep_ms``
must be at least the access-token lifetime.

The first process to need a key creates it; creation and rotation hold an
exclusive ``flock`` on ``lock`` in the folder, so worker processes starting
together agree on one key. A running server reads the folder when it opens:
after a rotation, restart it.

RS256 (RSA 2048) rather than ES256: every JWT library and every Convex client
tool verifies it, and verification (the hot path: every connection) is faster.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncline.errors import InternalError
from syncline.private_paths import PRIVATE_FILE_MODE, private_dir

__all__ = ["ALGORITHM", "KEY_DIR_NAME", "KeyStore", "SigningKeyPair"]

ALGORITHM = "RS256"
KEY_DIR_NAME = "auth_keys"
_INDEX = "keys.json"
_RSA_BITS = 2048


@dataclass(frozen=True)
class SigningKeyPair:
    kid: str
    created_ms: float
    retired_ms: float | None
    private_key: Any  # cryptography RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def _new_private_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)


def _pem(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def _load_pem(data: bytes, path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as e:
        raise InternalError(f"{path} is not a PEM private key: {e}", code="BadSigningKey") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InternalError(
            f"{path} holds a {type(key).__name__}, expected an RSA private key",
            code="BadSigningKey",
        )
    return key


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class KeyStore:
    """The signing keys of one deployment: a folder, or memory only (``folder=None``, tests)."""

    def __init__(self, folder: Path | None, keys: list[SigningKeyPair]) -> None:
        self.folder = folder
        self._keys = keys

    # -- opening ----------------------------------------------------------

    @classmethod
    def in_memory(cls, now_ms: float) -> KeyStore:
        """A store that lives and dies with the process (the test kit)."""
        return cls(None, [SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())])

    @classmethod
    def open(cls, folder: Path, now_ms: float) -> KeyStore:
        """The keys in ``folder``; the first key is created when there is none."""
        with _locked(folder):
            keys = _read(folder)
            if not any(k.retired_ms is None for k in keys):
                keys.append(_create(folder, now_ms))
                _write_index(folder, keys)
            return cls(folder, keys)

    # -- use --------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKeyPair:
        """The newest key that is not retired: the one new tokens are signed with."""
        return next(k for k in reversed(self._keys) if k.retired_ms is None)

    @property
    def keys(self) -> tuple[SigningKeyPair, ...]:
        return tuple(self._keys)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: every key kept (current and retired ones not yet removed)."""
        return {"keys": [k.public_jwk() for k in self._keys]}

    # -- rotation ---------------------------------------------------------

    def rotate(self, now_ms: float, keep_ms: float) -> SigningKeyPair:
        """Retire the signing key, create a new one, and drop keys retired before ``now - keep``.

        Returns the new key. On a folder store the change is written before
        this returns; running servers see it when they restart.
        """
        if self.folder is None:
            new = SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())
            self._keys = [*_retire(self._keys, now_ms, keep_ms), new]
            return new
        with _locked(self.folder):
            keys = _retire(_read(self.folder), now_ms, keep_ms)
            new = _create(self.folder, now_ms)
            keys.append(new)
            _write_index(self.folder, keys)
            kept = {k.kid for k in keys}
            for pem in self.folder.glob("*.pem"):
                if pem.stem not in kept:
                    pem.unlink()
            self._keys = keys
            return new


def _new_kid() -> str:
    return secrets.token_hex(8)


def _retire(keys: list[SigningKeyPair], now_ms: float, keep_ms: float) -> list[SigningKeyPair]:
    kept: list[SigningKeyPair] = []
    for key in keys:
        if key.retired_ms is None:
            key = SigningKeyPair(key.kid, key.created_ms, now_ms, key.private_key)
        if key.retired_ms is not None and key.retired_ms + keep_ms <= now_ms:
            continue
        kept.append(key)
    return kept


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    private_dir(folder)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(folder: Path) -> list[SigningKeyPair]:
    index = folder / _INDEX
    if not index.exists():
        return []
    try:
        entries = json.loads(index.read_text())["keys"]
        keys = []
        for entry in entries:
            kid = str(entry["kid"])
            pem = folder / f"{kid}.pem"
            retired = entry.get("retiredMs")
            keys.append(
                SigningKeyPair(
                    kid,
                    float(entry["createdMs"]),
                    None if retired is None else float(retired),
                    _load_pem(pem.read_bytes(), pem),
                )
            )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InternalError(
            f"The signing keys in {folder} are unreadable ({type(e).__name__}: {e}); "
            "restore the folder from a backup, or delete it to start over (every user "
            "then signs in again)",
            code="BadSigningKey",
        ) from e
    return keys


def _create(folder: Path, now_ms: float) -> SigningKeyPair:
    key = SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())
    _write_private(folder / f"{key.kid}.pem", _pem(key.private_key))
    return key


def _write_index(folder: Path, keys: list[SigningKeyPair]) -> None:
    doc = {
        "keys": [{"kid": k.kid, "createdMs": k.created_ms, "retiredMs": k.retired_ms} for k in keys]
    }
    _write_private(folder / _INDEX, json.dumps(doc, indent=2).encode())
