"""The deployment's signing keys: RS256 key pairs kept in the database.

They live in the private system table ``_auth_signing_keys`` (one document
per key: ``kid``, ``createdMs``, ``retiredMs`` or null, ``privateKey`` as a
PKCS#8 PEM), so every node and worker process of a deployment signs and
verifies with the same keys, and a rotation reaches all of them: each
process reloads the keys when a commit touches the table (its own, or
another process's, as for environment variables). The keys are not
encrypted at rest: whoever can read the database (or its backups) can sign
tokens, so protect it as you protect the data.

The newest key that is not retired signs new access tokens. Rotation
(:meth:`KeyStore.rotate`) retires the current key and creates a new one; a
retired key stays in the JWKS (so tokens it signed still verify) until
``retiredMs + keep_ms``, after which rotation removes it. ``keep_ms`` must be
at least the access-token lifetime.

The first process to need a key creates it, in a write transaction that
checks again that there is none (processes starting together agree on one).
A deployment from before the keys moved to the database has them in the data
folder (``<database folder>/auth_keys``: ``keys.json`` and ``<kid>.pem``):
they are copied into the table once, when it is empty, so tokens issued
before the upgrade stay valid; the folder is then no longer read or written.

RS256 (RSA 2048) rather than ES256: every JWT library and every Convex client
tool verifies it, and verification (the hot path: every connection) is faster.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncline.database.query import Query
from syncline.errors import InternalError

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction
    from syncline.database.writes import Commit

__all__ = [
    "ALGORITHM",
    "KEY_DIR_NAME",
    "TABLE",
    "KeyStore",
    "SigningKeyPair",
    "read_folder",
    "rotate_keys",
]

ALGORITHM = "RS256"
#: the data-folder directory of keys from before they moved to the database
KEY_DIR_NAME = "auth_keys"
TABLE = "_auth_signing_keys"
_BY_KID = "by_kid"
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


def _load_pem(data: bytes, path: Path | str) -> Any:
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


class KeyStore:
    """The signing keys of one deployment, as last read from its database.

    ``database=None``: keys that live and die with the object (rotation
    included), for code that has no database.
    """

    def __init__(self, keys: list[SigningKeyPair], database: Database | None = None) -> None:
        self.database = database
        self._keys = keys
        self._lock = threading.Lock()
        self._on_change: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._stale = False

    # -- opening ----------------------------------------------------------

    @classmethod
    def in_memory(cls, now_ms: float) -> KeyStore:
        return cls([SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())])

    @classmethod
    def open(cls, database: Database, now_ms: float, legacy_folder: Path | None = None) -> KeyStore:
        """The keys in ``database``: copied from ``legacy_folder`` when the table is empty,
        and the first key created when there is no key to sign with (blocking)."""
        keys = database.run_read(_read_table).value
        if any(k.retired_ms is None for k in keys):
            return cls(keys, database)
        legacy = [] if legacy_folder is None else read_folder(legacy_folder)
        fresh = None
        if not any(k.retired_ms is None for k in legacy):
            fresh = SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())

        def settle(tx: Transaction) -> list[SigningKeyPair]:
            current = _read_table(tx)
            if not current:
                for key in legacy:
                    _insert(tx, key)
                current = list(legacy)
            if fresh is not None and not any(k.retired_ms is None for k in current):
                _insert(tx, fresh)
                current.append(fresh)
            return current

        return cls(database.write_sync(settle).value, database)

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

    # -- changes ----------------------------------------------------------

    def follow(self, on_change: Callable[[], None]) -> None:
        """Reload the keys whenever a commit touches the table, from :meth:`start` on.

        ``on_change()`` runs on the event loop after a reload that changed them.
        """
        if self.database is None or self._on_change is not None:
            return
        self._on_change = on_change
        self.database.add_commit_listener(self._on_commits)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Do the reloads :meth:`follow` asks for on ``loop`` (default: the running one).

        May be called from another thread with the loop of a running server.
        """
        self._loop = loop or asyncio.get_running_loop()
        if self._stale:
            self._loop.call_soon_threadsafe(self._schedule_reload)

    async def stop(self) -> None:
        self._loop = None
        task, self._reloading = self._reloading, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_commits(self, commits: list[Commit]) -> None:
        # On the publishing thread: note the change and hand the reload to the loop.
        if not any(TABLE in c.writes.tables for c in commits):
            return
        self._stale = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._schedule_reload)
            except RuntimeError:
                pass  # the loop is closed

    def _schedule_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._reload_while_stale())

    async def _reload_while_stale(self) -> None:
        changed = False
        while self._stale:
            self._stale = False
            changed = await self.reload() or changed
        if changed and self._on_change is not None:
            self._on_change()

    async def reload(self) -> bool:
        """Read the keys again (after a commit touched the table); whether they changed."""
        if self.database is None:
            return False
        keys = (await self.database.read(_read_table)).value
        return self._install(keys)

    def _install(self, keys: list[SigningKeyPair]) -> bool:
        if not any(k.retired_ms is None for k in keys):
            return False  # never drop the signing key: keep the last good set
        with self._lock:
            changed = [(k.kid, k.retired_ms) for k in keys] != [
                (k.kid, k.retired_ms) for k in self._keys
            ]
            self._keys = keys
        return changed

    def rotate(self, now_ms: float, keep_ms: float) -> SigningKeyPair:
        """Retire the signing key, create a new one, and drop keys retired before ``now - keep``.

        Returns the new key. In a database the change is one commit; every
        process serving the deployment picks it up when it sees the commit.
        """
        new = SigningKeyPair(_new_kid(), now_ms, None, _new_private_key())
        if self.database is None:
            self._keys = [*_retire(self._keys, now_ms, keep_ms), new]
            return new

        def rotate(tx: Transaction) -> list[SigningKeyPair]:
            docs = list(Query(tx, TABLE).with_index(_BY_KID))
            kept = {k.kid for k in _retire(_read_table(tx), now_ms, keep_ms)}
            for doc in docs:
                if doc["kid"] not in kept:
                    tx.delete(doc["_id"])
                elif doc.get("retiredMs") is None:
                    tx.patch(doc["_id"], {"retiredMs": now_ms})
            _insert(tx, new)
            return _read_table(tx)

        self._install(self.database.write_sync(rotate).value)
        return new


def rotate_keys(
    database: Database, now_ms: float, keep_ms: float, legacy_folder: Path | None = None
) -> SigningKeyPair:
    """Rotate the deployment's keys in ``database`` (blocking); the new signing key."""
    return KeyStore.open(database, now_ms, legacy_folder).rotate(now_ms, keep_ms)


def _insert(tx: Transaction, key: SigningKeyPair) -> None:
    tx.insert(
        TABLE,
        {
            "kid": key.kid,
            "createdMs": key.created_ms,
            "retiredMs": key.retired_ms,
            "privateKey": _pem(key.private_key).decode(),
        },
    )


def _read_table(tx: Transaction) -> list[SigningKeyPair]:
    """The keys in the table, oldest first."""
    keys = []
    for doc in Query(tx, TABLE).with_index(_BY_KID):
        retired = doc.get("retiredMs")
        keys.append(
            SigningKeyPair(
                str(doc["kid"]),
                float(doc["createdMs"]),
                None if retired is None else float(retired),
                _load_pem(str(doc["privateKey"]).encode(), f"{TABLE} key {doc['kid']}"),
            )
        )
    return sorted(keys, key=lambda k: (k.created_ms, k.kid))


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


def read_folder(folder: Path) -> list[SigningKeyPair]:
    """The keys a deployment kept in its data folder before they moved to the database."""
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
