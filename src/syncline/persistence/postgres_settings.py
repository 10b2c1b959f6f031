"""A PostgreSQL database URL: what libpq connects with, and Syncline's own settings in it.

``postgresql://user:password@host:5432/dbname?max_connections=10`` -- the
URL is a libpq connection URI (every libpq parameter works: ``sslmode``,
``connect_timeout``, ``options``, ...). A few query parameters are Syncline's
and are taken out before libpq sees the URL (:class:`PostgresSettings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncline.errors import InvalidRequest

__all__ = ["PostgresSettings", "parse_postgres_url"]

#: Syncline's URL parameters -> (field, least value, greatest value)
_PARAMETERS: dict[str, tuple[str, int, int]] = {
    "max_connections": ("max_connections", 3, 1000),
    "statement_timeout_ms": ("statement_timeout_ms", 100, 24 * 3600 * 1000),
    "lock_timeout_ms": ("lock_timeout_ms", 100, 24 * 3600 * 1000),
    "idle_in_transaction_timeout_ms": ("idle_in_transaction_timeout_ms", 100, 24 * 3600 * 1000),
}


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """How a node uses PostgreSQL (each field is a URL query parameter of the same name)."""

    #: connections this process opens at most: one writer, one commit listener, one
    #: scheduler lease, and the rest for snapshots (reads)
    max_connections: int = 12
    #: the longest one statement may run before PostgreSQL cancels it
    statement_timeout_ms: int = 30_000
    #: how long a commit waits for the write lock (held by another node's commit)
    lock_timeout_ms: int = 30_000
    #: a session idle this long inside a transaction is ended by PostgreSQL, so a
    #: hung node cannot hold the write lock (or a snapshot) forever
    idle_in_transaction_timeout_ms: int = 30_000

    @property
    def max_readers(self) -> int:
        """Connections for snapshots: all but the writer, the listener and the lease."""
        return self.max_connections - 3


def parse_postgres_url(url: str) -> tuple[str, PostgresSettings]:
    """(the libpq URL, without Syncline's parameters; the settings they name)."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    values: dict[str, int] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        spec = _PARAMETERS.get(name)
        if spec is None:
            kept.append((name, raw))
            continue
        field, least, greatest = spec
        try:
            value = int(raw)
        except ValueError:
            value = least - 1
        if not least <= value <= greatest:
            raise InvalidRequest(
                f"Database URL parameter {name}={raw!r}: expected a whole number "
                f"from {least} to {greatest}",
                code="InvalidDatabaseUrl",
            )
        values[field] = value
    settings = dataclasses.replace(PostgresSettings(), **values)
    return urlunsplit(parts._replace(query=urlencode(kept))), settings
