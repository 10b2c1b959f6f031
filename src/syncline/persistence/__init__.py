"""Storage backends for the database engine, and the one place a database URL picks one.

``--db`` URLs: ``sqlite:///relative.db`` (relative to a base folder, the working
directory for the CLI) or ``sqlite:////absolute/path.db``; or a PostgreSQL
connection URL, ``postgresql://user@host:5432/dbname`` (also ``postgres://``),
which needs the ``syncline[postgres]`` extra (see
:mod:`syncline.persistence.postgres_settings` for its parameters).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncline.errors import InvalidRequest

if TYPE_CHECKING:
    from syncline.persistence.base import Durability, Persistence

__all__ = ["is_postgres_url", "open_persistence", "sqlite_path_from_url"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (shared by several nodes)."""
    return url.startswith(_POSTGRES_SCHEMES)


def sqlite_path_from_url(url: str, *, base: Path) -> Path:
    """``sqlite:///relative.db`` (relative to ``base``) or ``sqlite:////abs/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise InvalidRequest(
            f"Unsupported database URL {url!r}: use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or postgresql://user@host/dbname",
            code="InvalidDatabaseUrl",
        )
    rest = url[len(prefix) :]
    if not rest:
        raise InvalidRequest(f"Database URL {url!r} names no file", code="InvalidDatabaseUrl")
    path = Path(rest)
    return path if path.is_absolute() else base / path


def open_persistence(url: str, *, base: Path, durability: Durability = "full") -> Persistence:
    """The storage backend ``url`` names, opened (a SQLite file, or PostgreSQL's tables,
    are created if missing)."""
    if is_postgres_url(url):
        return _open_postgres(url, durability=durability)
    path = sqlite_path_from_url(url, base=base)
    # Imported here: a backend's modules load only when a URL chooses it.
    from syncline.persistence.sqlite import SqlitePersistence

    return SqlitePersistence(path, durability=durability)


def _open_postgres(url: str, *, durability: Durability) -> Persistence:
    try:
        from syncline.persistence.postgres import PostgresPersistence
    except ImportError as exc:
        raise InvalidRequest(
            f"The database URL {url.split('@')[-1]!r} names PostgreSQL, which needs psycopg: "
            "install syncline[postgres]",
            code="InvalidDatabaseUrl",
        ) from exc
    from syncline.persistence.postgres_settings import parse_postgres_url

    conninfo, settings = parse_postgres_url(url)
    return PostgresPersistence(conninfo, durability=durability, settings=settings)
