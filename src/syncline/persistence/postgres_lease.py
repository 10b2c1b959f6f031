"""A lease among nodes: a session-level advisory lock on its own connection.

PostgreSQL frees a session's advisory locks when the session ends, however
it ends (the node killed, or cut off until TCP keepalives give up), so a dead
holder never blocks the others for long. While held, every
:meth:`AdvisoryLease.try_acquire` checks the connection with one round trip:
a holder whose connection broke learns it has lost the lease.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from syncline.errors import SynclineError
from syncline.persistence.postgres_session import Session

__all__ = ["AdvisoryLease", "lease_key"]


def lease_key(name: str) -> int:
    """The advisory lock key of the lease ``name`` (a signed 64-bit number)."""
    digest = hashlib.blake2b(f"syncline lease {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLease:
    """Implements :class:`~syncline.persistence.base.Lease` with ``pg_try_advisory_lock``."""

    def __init__(self, connect: Callable[[], Session], name: str) -> None:
        self._connect = connect
        self.name = name
        self.key = lease_key(name)
        self._session: Session | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """True if the lease is ours (checked on the server); False if another holds it
        or PostgreSQL cannot be reached."""
        try:
            if self._session is None or self._session.broken:
                self._drop()
                self._session = self._connect()
            if self._held:
                self._session.run("SELECT 1", what="checking the lease")
                return True
            row = self._session.row(
                "SELECT pg_try_advisory_lock(%s)", (self.key,), what="taking the lease"
            )
        except SynclineError:
            self._drop()
            return False
        self._held = bool(row and row[0])
        return self._held

    def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        # Closing the session frees its advisory locks.
        self._held = False
        if self._session is not None:
            self._session.close()
            self._session = None
