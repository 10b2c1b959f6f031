"""The backends the contract suite runs against: one registry entry per backend.

An entry maps a name to a *factory*: a context manager that, given a fresh
folder, provisions one empty store and yields an :data:`Opener`. Each call of
the opener opens another :class:`Persistence` on that same store (a reopen
after ``close``, or a second handle as another process would hold), so the
suite can check durability and reopening without knowing where data lives.
Leaving the context removes the store.

Adding a backend is one entry in :data:`BACKENDS`; a backend whose server or
driver is missing raises :class:`BackendUnavailable` from its factory, and its
tests skip (fail instead where ``CI`` is set, so a green CI run means they ran).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from postgres_databases import PostgresUnavailable, fresh_database
from syncline.persistence import open_persistence
from syncline.persistence.base import Durability, Persistence
from syncline.persistence.sqlite import SqlitePersistence

__all__ = ["BACKENDS", "BackendFactory", "BackendUnavailable", "Opener"]


class Opener(Protocol):
    def __call__(self, *, durability: Durability = "off") -> Persistence: ...


BackendFactory = Callable[[Path], contextlib.AbstractContextManager[Opener]]


class BackendUnavailable(Exception):
    """The backend cannot be provisioned here (no server, no driver)."""


@contextlib.contextmanager
def _sqlite(folder: Path) -> Iterator[Opener]:
    path = folder / "contract.sqlite3"

    def open_store(*, durability: Durability = "off") -> Persistence:
        return SqlitePersistence(path, durability=durability)

    yield open_store


@contextlib.contextmanager
def _postgres(folder: Path) -> Iterator[Opener]:
    """A fresh database on the test server (see tests/postgres_databases.py), dropped after."""
    try:
        database = fresh_database("syncline_contract")
        url = database.__enter__()
    except PostgresUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    try:

        def open_store(*, durability: Durability = "off") -> Persistence:
            return open_persistence(url, base=folder, durability=durability)

        yield open_store
    finally:
        database.__exit__(None, None, None)


#: name -> factory; the suite is parametrised over these (see conftest.py)
BACKENDS: dict[str, BackendFactory] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}
