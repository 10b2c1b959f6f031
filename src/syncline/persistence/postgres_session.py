"""One PostgreSQL connection as the backend uses it: opened with its settings, errors translated.

Every statement goes through :class:`Session`, so a lost connection or a
timeout reaches the engine as :class:`~syncline.errors.DatabaseUnavailable`
(code ``DatabaseUnavailable`` or ``DatabaseTimeout``), never as a driver
exception, and a session whose connection broke says so (:attr:`Session.broken`)
so its owner opens a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncline.errors import DatabaseUnavailable, InternalError
from syncline.persistence.postgres_settings import PostgresSettings

__all__ = ["Role", "Session", "translate_errors"]

#: statement parameters: positional (``%s``) or named (``%(name)s``)
Params = Sequence[Any] | Mapping[str, Any]

Role = Literal["reader", "writer", "listener", "lease", "setup"]

#: libpq parameters a node sets unless the URL sets them: fail fast when the server
#: is gone, and notice a dead peer on an idle connection within about 25 s
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


def _fail(exc: psycopg.Error, what: str) -> NoReturn:
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        raise DatabaseUnavailable(
            f"PostgreSQL cancelled {what}: {str(exc).strip()} (see the statement_timeout_ms "
            "and lock_timeout_ms parameters of the database URL)",
            code="DatabaseTimeout",
        ) from exc
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        raise DatabaseUnavailable(
            f"PostgreSQL is unavailable ({what}): {str(exc).strip() or type(exc).__name__}"
        ) from exc
    raise InternalError(f"PostgreSQL rejected {what}: {str(exc).strip()}") from exc


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Raise driver errors inside as Syncline errors naming ``what`` was being done."""
    try:
        yield
    except psycopg.Error as exc:
        _fail(exc, what)


class Session:
    """An autocommit connection (transactions are begun explicitly) of one role."""

    def __init__(self, conninfo: str, role: Role, settings: PostgresSettings) -> None:
        params = conninfo_to_dict(conninfo)
        for name, value in _CONNECT_DEFAULTS.items():
            params.setdefault(name, value)
        params["application_name"] = f"syncline {role}"
        with translate_errors(f"connecting the {role}"):
            self.conn: psycopg.Connection[Any] = psycopg.connect(
                make_conninfo("", **params), autocommit=True
            )
        try:
            self.run(
                f"SET statement_timeout = {settings.statement_timeout_ms}; "
                f"SET lock_timeout = {settings.lock_timeout_ms}; "
                "SET idle_in_transaction_session_timeout = "
                f"{settings.idle_in_transaction_timeout_ms}",
                what="configuring the session",
            )
        except BaseException:
            self.close()
            raise

    @property
    def broken(self) -> bool:
        """The connection is closed or lost (its owner should open another)."""
        return self.conn.closed or self.conn.broken

    def run(self, sql: str, params: Params | None = None, *, what: str) -> psycopg.Cursor[Any]:
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as exc:
            _fail(exc, what)

    def rows(self, sql: str, params: Params, *, what: str) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            _fail(exc, what)

    def row(self, sql: str, params: Params, *, what: str) -> tuple[Any, ...] | None:
        try:
            return self.conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:
            _fail(exc, what)

    def script(self, script: str, *, what: str) -> psycopg.Cursor[Any]:
        """Run several statements (no parameters) in one round trip; the cursor is at the last."""
        try:
            cur = self.conn.execute(script.encode(), prepare=False)
            while cur.nextset():
                pass
            return cur
        except psycopg.Error as exc:
            _fail(exc, what)

    def many(self, sql: str, rows: Iterable[Params], *, what: str) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as exc:
            _fail(exc, what)

    def copy(
        self, sql: str, types: Sequence[str], rows: Iterable[Sequence[Any]], *, what: str
    ) -> None:
        """``COPY ... FROM STDIN (FORMAT BINARY)`` of ``rows`` (columns of ``types``)."""
        try:
            with self.conn.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(list(types))
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            _fail(exc, what)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
