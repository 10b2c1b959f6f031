"""The catalog and schema this process holds, per catalog version of the store.

Another process may create a table, add an index or push a schema: the store
bumps its catalog version with each such commit, and every snapshot (and the
writer's transaction) names the version it sees. :class:`CatalogStates` holds
the newest state this process has loaded and reloads it when a connection
names a newer version.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import orjson

from syncline.database.catalog import Catalog
from syncline.persistence.base import ReadConnection

if TYPE_CHECKING:
    from syncline.schema import Schema

__all__ = ["SCHEMA_KEY", "CatalogState", "CatalogStates", "load_state"]

#: the global holding the active schema (JSON; empty for none)
SCHEMA_KEY = "schema"


class CatalogState(NamedTuple):
    """The catalog and schema as of one catalog version of the store."""

    version: int
    catalog: Catalog
    schema: Schema | None
    by_id_tables: Mapping[int, int]


def load_state(conn: ReadConnection) -> CatalogState:
    catalog = Catalog.from_rows(conn.tables(), conn.indexes())
    raw_schema = conn.get_global(SCHEMA_KEY)
    schema = None
    if raw_schema:
        from syncline.schema import Schema

        schema = Schema.from_json(orjson.loads(raw_schema))
    return CatalogState(conn.catalog_version, catalog, schema, catalog.by_id_tables())


class CatalogStates:
    """The newest :class:`CatalogState` known here (thread-safe)."""

    def __init__(self, initial: CatalogState) -> None:
        self.current = initial
        self._lock = threading.Lock()

    def of(self, conn: ReadConnection) -> CatalogState:
        """The state of ``conn``'s snapshot (loaded if its version is not the one held)."""
        state = self.current
        if conn.catalog_version == state.version:
            return state
        loaded = load_state(conn)
        with self._lock:
            if loaded.version > self.current.version:
                self.current = loaded
        return loaded

    def replace(self, state: CatalogState) -> None:
        """Hold ``state`` (the committer's, under the store's write lock: it is the newest)."""
        with self._lock:
            self.current = state
