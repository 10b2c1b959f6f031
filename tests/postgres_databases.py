"""Throwaway PostgreSQL databases for tests: one fresh database per store, dropped afterwards.

The server is reached through a maintenance database, ``test`` on
127.0.0.1:5432 as ``postgres`` by default; set ``SYNCLINE_TEST_POSTGRES_URL``
to another (a libpq URL whose user may create databases).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

__all__ = [
    "PostgresUnavailable",
    "database_for_test",
    "fresh_database",
    "maintenance_url",
]

DEFAULT_MAINTENANCE_URL = "postgresql://postgres@127.0.0.1:5432/test"


class PostgresUnavailable(Exception):
    """No psycopg, or no server to create a database on."""


def maintenance_url() -> str:
    return os.environ.get("SYNCLINE_TEST_POSTGRES_URL", DEFAULT_MAINTENANCE_URL)


def _connect(url: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresUnavailable(
            f"psycopg is not installed ({exc}): pip install -e '.[postgres]'"
        ) from exc
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(
            f"cannot reach PostgreSQL at {url} ({str(exc).strip()}); "
            "set SYNCLINE_TEST_POSTGRES_URL to a server where the user may create databases"
        ) from exc


@contextlib.contextmanager
def fresh_database(prefix: str = "syncline_test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (closing whatever still uses it)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = maintenance_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _connect(url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(url)
    params["dbname"] = name
    try:
        yield make_conninfo_url(make_conninfo(**params))
    finally:
        with _connect(url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database_for_test(prefix: str) -> Iterator[str]:
    """:func:`fresh_database`, or skip the test (fail it under CI) without a server."""
    from harness import require_or_skip

    database = fresh_database(prefix)
    try:
        url = database.__enter__()
    except PostgresUnavailable as exc:
        require_or_skip(str(exc))
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


def make_conninfo_url(conninfo: str) -> str:
    """A ``postgresql://`` URL for a key=value conninfo (what ``--db`` accepts)."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (auth + "@" if auth else "") + host + (":" + port if port else "")
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"
