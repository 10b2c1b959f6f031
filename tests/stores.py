"""The store the engine tests run on: SQLite by default, PostgreSQL on request.

``SYNCLINE_TEST_DATABASE=postgres pytest tests/database ...`` runs the engine
suite against PostgreSQL (a fresh database per store, see
``postgres_databases.py``). :func:`open_store` stands in for
``SqlitePersistence(path)``: under PostgreSQL the path names a database,
created on first use in a test, so opening the same path twice opens the same
store (a reopen, or a second process). The databases a test created are
dropped when it ends (``conftest.py``). Tests of SQLite itself (its files,
pragmas, crash recovery) are marked :data:`sqlite_only`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from postgres_databases import PostgresUnavailable, fresh_database
from syncline.persistence import open_persistence
from syncline.persistence.base import Durability, Persistence
from syncline.persistence.sqlite import SqlitePersistence

__all__ = ["ENGINE_DATABASE", "drop_test_databases", "open_store", "sqlite_only"]

#: "sqlite" (default) or "postgres"
ENGINE_DATABASE = os.environ.get("SYNCLINE_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
if ENGINE_DATABASE not in ("sqlite", "postgres"):
    raise pytest.UsageError(
        f"SYNCLINE_TEST_DATABASE={ENGINE_DATABASE!r}: expected 'sqlite' or 'postgres'"
    )

#: a test of SQLite's own behaviour (files, pragmas, crash recovery of the file)
sqlite_only = pytest.mark.skipif(
    ENGINE_DATABASE != "sqlite", reason="tests SQLite itself (SYNCLINE_TEST_DATABASE=postgres)"
)

_databases: dict[str, str] = {}
_cleanup = contextlib.ExitStack()


def _database_url(path: str | Path) -> str:
    key = str(Path(path).resolve())
    url = _databases.get(key)
    if url is None:
        try:
            url = _cleanup.enter_context(fresh_database("syncline_engine"))
        except PostgresUnavailable as exc:
            pytest.fail(f"SYNCLINE_TEST_DATABASE=postgres, but {exc}", pytrace=False)
        _databases[key] = url
    return url


def open_store(path: str | Path, *, durability: Durability = "off") -> Persistence:
    """The test's store at ``path`` (a SQLite file, or the PostgreSQL database it names)."""
    if ENGINE_DATABASE == "postgres":
        return open_persistence(_database_url(path), base=Path.cwd(), durability=durability)
    return SqlitePersistence(path, durability=durability)


def drop_test_databases() -> None:
    """Drop every PostgreSQL database the current test created."""
    _databases.clear()
    _cleanup.close()
