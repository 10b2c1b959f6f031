"""One PostgreSQL connection as the backend uses it: opened with its settings, errors translated.

Every statement goes through :class:`Session`, so a lost connection or a
timeout reaches the engine as :class:`~syncline.errors.DatabaseUnavailable`
(code ``DatabaseUnavailable`` or ``DatabaseTimeout``), never as a driver
exception, and a session whose connection broke says so (:attr:`Session.broken`)
so its owner opens a new one.

A session can also *defer* statements whose results nobody reads (the
writer's inserts and deletes): they are sent together, as one script in
one round trip, before the session's next statement or with ``COMMIT``
(:meth:`Session.commit`), so a commit costs two round trips (the lock and
the commit) rather than one per statement. Order is kept: anything else the
session runs sends the deferred statements first. A deferred statement that
fails is reported where they are sent.
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


class _Deferred:
    """A statement to send later: one row of parameters, or many (``executemany``)."""

    __slots__ = ("params", "rows", "sql", "what")

    def __init__(
        self,
        sql: str,
        params: Params | None,
        rows: Sequence[Params] | None,
        what: str,
    ) -> None:
        self.sql, self.params, self.rows, self.what = sql, params, rows, what


class Session:
    """An autocommit connection (transactions are begun explicitly) of one role."""

    def __init__(self, conninfo: str, role: Role, settings: PostgresSettings) -> None:
        params = conninfo_to_dict(conninfo)
        for name, value in _CONNECT_DEFAULTS.items():
            params.setdefault(name, value)
        params["application_name"] = f"syncline {role}"
        self._deferred: list[_Deferred] = []
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
        self.flush()
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as exc:
            _fail(exc, what)

    def rows(self, sql: str, params: Params, *, what: str) -> list[tuple[Any, ...]]:
        self.flush()
        try:
            return self.conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            _fail(exc, what)

    def row(self, sql: str, params: Params, *, what: str) -> tuple[Any, ...] | None:
        self.flush()
        try:
            return self.conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:
            _fail(exc, what)

    def script(self, script: str, *, what: str) -> psycopg.Cursor[Any]:
        """Run several statements (no parameters) in one round trip; the cursor is at the last."""
        self.flush()
        try:
            cur = self.conn.execute(script.encode(), prepare=False)
            while cur.nextset():
                pass
            return cur
        except psycopg.Error as exc:
            _fail(exc, what)

    def many(self, sql: str, rows: Iterable[Params], *, what: str) -> None:
        self.flush()
        try:
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as exc:
            _fail(exc, what)

    def copy(
        self, sql: str, types: Sequence[str], rows: Iterable[Sequence[Any]], *, what: str
    ) -> None:
        """``COPY ... FROM STDIN (FORMAT BINARY)`` of ``rows`` (columns of ``types``)."""
        self.flush()
        try:
            with self.conn.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(list(types))
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            _fail(exc, what)

    def defer(self, sql: str, params: Params | None = None, *, what: str) -> None:
        """Send ``sql`` with the session's next statement (its result is not read)."""
        self._deferred.append(_Deferred(sql, params, None, what))

    def defer_many(self, sql: str, rows: Sequence[Params], *, what: str) -> None:
        """``executemany`` of ``sql`` over ``rows``, sent with the session's next statement."""
        if rows:  # (copied: the caller may reuse its list)
            self._deferred.append(_Deferred(sql, None, list(rows), what))

    def flush(self) -> None:
        """Send the deferred statements now, in one round trip."""
        if self._deferred:
            self._send(self._deferred, None)

    def discard(self) -> None:
        """Drop the deferred statements (the transaction is being rolled back)."""
        self._deferred = []

    def commit(self, notify: tuple[str, str] | None = None) -> str:
        """The deferred statements, ``pg_notify(*notify)`` and ``COMMIT`` in one round trip.

        Returns the server's answer to ``COMMIT`` (``"COMMIT"``, or ``"ROLLBACK"`` when
        the transaction had failed).
        """
        tail = [] if notify is None else [_Deferred("SELECT pg_notify(%s, %s)", notify, None, "")]
        tail.append(_Deferred("COMMIT", None, None, "committing"))
        cursor = self._send([*self._deferred, *tail], "committing")
        return cursor.statusmessage or ""

    def _send(self, statements: list[_Deferred], what: str | None) -> psycopg.Cursor[Any]:
        """``statements`` as one script (simple query protocol): one round trip.

        Parameters are bound on this side (:class:`psycopg.ClientCursor`, which
        quotes and escapes them for this connection), since a script of several
        statements cannot carry them separately. The cursor is at the last result.
        """
        self._deferred = []
        try:
            binder = psycopg.ClientCursor(self.conn)
            parts: list[str] = []
            for statement in statements:
                if statement.rows is not None:
                    parts.extend(binder.mogrify(statement.sql, row) for row in statement.rows)
                elif statement.params is not None:
                    parts.append(binder.mogrify(statement.sql, statement.params))
                else:
                    parts.append(statement.sql)
            cursor = self.conn.execute(";\n".join(parts).encode(), prepare=False)
            while cursor.nextset():
                pass
            return cursor
        except psycopg.Error as exc:
            done = dict.fromkeys(s.what for s in statements if s.what)
            _fail(exc, what or ", ".join(done) or "writing")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
