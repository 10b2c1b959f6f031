"""Storage backends for the database engine, and the one place a database URL picks one.

``--db`` URLs: ``sqlite:///relative.db`` (relative to a base folder, the working
directory for the CLI) or ``sqlite:////absolute/path.db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncline.errors import InvalidRequest

if TYPE_CHECKING:
    from syncline.persistence.base import Durability, Persistence

__all__ = ["open_persistence", "sqlite_path_from_url"]


def sqlite_path_from_url(url: str, *, base: Path) -> Path:
    """``sqlite:///relative.db`` (relative to ``base``) or ``sqlite:////abs/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise InvalidRequest(
            f"Unsupported database URL {url!r}: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db",
            code="InvalidDatabaseUrl",
        )
    rest = url[len(prefix) :]
    if not rest:
        raise InvalidRequest(f"Database URL {url!r} names no file", code="InvalidDatabaseUrl")
    path = Path(rest)
    return path if path.is_absolute() else base / path


def open_persistence(url: str, *, base: Path, durability: Durability = "full") -> Persistence:
    """The storage backend ``url`` names, opened (the database file is created if missing)."""
    path = sqlite_path_from_url(url, base=base)
    # Imported here: a backend's modules load only when a URL chooses it.
    from syncline.persistence.sqlite import SqlitePersistence

    return SqlitePersistence(path, durability=durability)
