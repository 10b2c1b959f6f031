"""``ctx.vector_search``: the process's vector indexes, kept current from the commit stream.

Every commit this process publishes (its own, and other processes' read from
the commit log by :meth:`Database.catch_up`) reaches :meth:`VectorSearch._on_commits`,
which only notes the ids of written documents in indexed tables (and whether
the catalog or schema changed). A search first brings the indexes up to date:

1. ``catch_up`` publishes every commit already in the store;
2. the noted ids are taken; the indexes are reconciled with the schema if it
   changed (new indexes built, removed ones dropped);
3. a storage snapshot is opened (it sees every commit published so far) and
   each noted document is read from it and applied (indexed, updated or, when
   deleted or no longer holding a vector, removed).

So a search reflects every commit acknowledged before it started, whichever
process made it. Ids noted after step 2 are applied by the next search; a
document read at a newer snapshot than its noting commit is simply applied
early, and again (idempotently) later.

Indexes are built from the database when the first refresh runs (``start``
schedules one when the server starts), when an index is added, when a table
is replaced (import) and when this process fell behind the commit log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from syncline.database.writes import CATALOG_CHANGED, EVERYTHING_CHANGED, SCHEMA_CHANGED, Commit
from syncline.errors import InvalidQuery, SchemaDefinitionError
from syncline.values.ids import table_number_of
from syncline.values.json import document_from_json_bytes
from syncline.vectors.filters import VectorFilterBuilder, compile_filter
from syncline.vectors.settings import IndexSpec, MemoryBudget, VectorSettings

if TYPE_CHECKING:
    from syncline.database.catalog import Catalog
    from syncline.database.database import Database
    from syncline.functions.executor import Executor
    from syncline.identity import Identity
    from syncline.persistence.base import ReadConnection
    from syncline.schema import Schema
    from syncline.vectors.index import VectorIndex

__all__ = ["MAX_LIMIT", "VectorSearch", "require_vector_extra", "specs_of"]

log = logging.getLogger("syncline.vectors")

#: results one vector search may return (Convex: 1 to 256, default 10)
MAX_LIMIT: Final = 256
DEFAULT_LIMIT: Final = 10
#: noted ids per table kept before that table's indexes are rebuilt instead
MAX_NOTED_PER_TABLE: Final = 100_000
#: documents read per storage round trip while building an index
BUILD_BATCH: Final = 1000

_RESYNC_FLAGS: Final = CATALOG_CHANGED | SCHEMA_CHANGED


def require_vector_extra(*, approximate: bool) -> None:
    """SchemaDefinitionError naming the extra when numpy (or usearch) cannot be imported."""
    modules = ["numpy", "usearch.index"] if approximate else ["numpy"]
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise SchemaDefinitionError(
                f"The schema declares a vector index, which needs the `{module.split('.')[0]}` "
                "package: install Syncline with the vector extra "
                "(pip install 'syncline[vector]')",
                code="VectorExtraMissing",
            ) from None


def specs_of(schema: Schema | None) -> dict[str, IndexSpec]:
    """Every vector index ``schema`` declares, by ``table.index``."""
    specs: dict[str, IndexSpec] = {}
    if schema is None:
        return specs
    for table, definition in schema.tables.items():
        for x in definition.vector_indexes:
            spec = IndexSpec(table, x.name, x.vector_field, x.dimensions, x.filter_fields)
            specs[spec.full_name] = spec
    return specs


class VectorSearch:
    """The vector indexes of one :class:`Database`, and ``ctx.vector_search`` over them."""

    def __init__(
        self, database: Database, settings: VectorSettings | None = None, *, threads: int = 4
    ) -> None:
        self.database = database
        self.settings = settings or VectorSettings()
        self._budget = MemoryBudget(self.settings.max_memory_bytes)
        #: one refresh at a time (it may read storage for a while)
        self._refresh_lock = threading.Lock()
        self._indexes: dict[str, VectorIndex] = {}
        #: the indexes the schema declares (as of the last reconcile)
        self._specs: dict[str, IndexSpec] = {}
        #: table number each index was built for
        self._numbers: dict[str, int | None] = {}
        # Noted by the commit listener (under _noted_lock), taken by refresh.
        self._noted_lock = threading.Lock()
        self._watched: dict[int, list[str]] = {}
        self._watched_tables: frozenset[str] = frozenset()
        self._noted: dict[int, set[str]] = {}
        self._rebuild_numbers: set[int] = set()
        self._resync = True
        self._rebuild_all = False
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "syncline-vectors")
        #: approximate graphs built while searches go on (one at a time)
        self._graph_builds = concurrent.futures.ThreadPoolExecutor(1, "syncline-vector-graph")
        self._warm: asyncio.Task[None] | None = None
        self._closed = False
        database.add_commit_listener(self._on_commits)

    # ------------------------------------------------------------------ commit stream

    def _on_commits(self, commits: list[Commit]) -> None:
        with self._noted_lock:
            for commit in commits:
                if commit.flags & EVERYTHING_CHANGED:
                    self._rebuild_all = True
                    self._noted.clear()
                elif commit.flags & _RESYNC_FLAGS:
                    self._resync = True
                if not self._watched or not (commit.writes.tables & self._watched_tables):
                    continue
                for doc_id in commit.writes.doc_ids:
                    number = table_number_of(doc_id)
                    if number in self._watched and number not in self._rebuild_numbers:
                        noted = self._noted.setdefault(number, set())
                        noted.add(doc_id)
                        if len(noted) > MAX_NOTED_PER_TABLE:
                            del self._noted[number]
                            self._rebuild_numbers.add(number)

    # ------------------------------------------------------------------ schema

    def check_schema(self, schema: Schema | None) -> None:
        """Refuse a schema whose vector indexes this installation cannot serve."""
        if specs_of(schema):
            require_vector_extra(approximate=self.settings.mode != "exact")

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        """Bring every index up to date with every commit published or in the store."""
        with self._refresh_lock:
            self.database.catch_up()
            with self._noted_lock:
                resync = self._resync or self._rebuild_all
                rebuild_all = self._rebuild_all
                noted, self._noted = self._noted, {}
                rebuild_numbers, self._rebuild_numbers = self._rebuild_numbers, set()
                self._resync = self._rebuild_all = False
            build = self._reconcile(rebuild_all) if resync else set()
            for name, number in self._numbers.items():
                if number in rebuild_numbers:
                    build.add(name)
            if not build and not noted:
                return
            with self.database.storage_snapshot() as (conn, catalog):
                for name in sorted(build):
                    self._build(name, conn, catalog)
                for number, ids in noted.items():
                    self._apply(number, ids, conn, skip=build)

    def _reconcile(self, rebuild_all: bool) -> set[str]:
        """Match the indexes to the current schema and catalog; the names to build."""
        specs = specs_of(self.database.schema)
        catalog = self.database.catalog
        if specs:
            require_vector_extra(approximate=self.settings.mode != "exact")
        build: set[str] = set()
        self._specs = specs
        for name in list(self._numbers):
            if name not in specs:
                self._numbers.pop(name)
                index = self._indexes.pop(name, None)
                if index is not None:
                    index.close()
        for name, spec in specs.items():
            info = catalog.table(spec.table)
            number = None if info is None else info.number
            current = self._indexes.get(name)
            if (
                rebuild_all
                or current is None
                or current.spec != spec
                or self._numbers.get(name) != number
            ):
                build.add(name)
            self._numbers[name] = number
        watched: dict[int, list[str]] = {}
        for name, number in self._numbers.items():
            if number is not None:
                watched.setdefault(number, []).append(name)
        with self._noted_lock:
            # Set before the snapshot is opened: a commit published from now on is
            # noted, and one published before is in the snapshot.
            self._watched = watched
            self._watched_tables = frozenset(s.table for s in specs.values())
        return build

    def _build(self, name: str, conn: ReadConnection, catalog: Catalog) -> None:
        """Build index ``name`` from ``conn``, then put it in place of the old one."""
        from syncline.vectors.index import VectorIndex  # numpy: only with vector indexes

        spec = self._specs[name]
        old = self._indexes.get(name)
        if old is not None:
            self._budget.release(old)  # searches use it until the new one is in place
        index = VectorIndex(spec, self.settings, self._budget, self._graph_builds.submit)
        info = catalog.table(spec.table)
        if info is not None and info.number == self._numbers.get(name):
            batch: list[tuple[str, Any]] = []
            for doc_id, raw in self.database.scan_table(conn, info, batch=BUILD_BATCH):
                batch.append((doc_id, document_from_json_bytes(raw)))
                if len(batch) >= BUILD_BATCH:
                    index.load(batch)
                    batch = []
            index.load(batch)
        index.settle(wait=True)
        if index.failure is not None:
            log.error("%s", index.failure.message)
        log.info(
            "vector index %s: %d vectors (%s)",
            name,
            len(index),
            "approximate" if index.approximate else "exact",
        )
        self._indexes[name] = index
        if old is not None:
            old.close()

    def _apply(self, number: int, ids: set[str], conn: ReadConnection, *, skip: set[str]) -> None:
        names = [n for n in self._watched.get(number, ()) if n not in skip and n in self._indexes]
        if not names:
            return
        docs: list[tuple[str, Any]] = []
        for doc_id in sorted(ids):
            found = conn.get_document(doc_id)
            if found is None or found[0] != number:
                docs.append((doc_id, None))
            else:
                docs.append((doc_id, document_from_json_bytes(found[1])))
        for name in names:
            index = self._indexes[name]
            with index.lock:
                for doc_id, doc in docs:
                    index.apply(doc_id, doc, settle=False)
                index.settle()

    # ------------------------------------------------------------------ search

    def search_now(
        self,
        table: str,
        index: str,
        *,
        vector: Sequence[float],
        limit: Any = DEFAULT_LIMIT,
        filter: Callable[[VectorFilterBuilder], Any] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`search`, in the calling thread (blocking)."""
        limit = _check_limit(limit)
        values = _check_vector(vector)
        self.refresh()
        full_name = f"{table}.{index}"
        found = self._indexes.get(full_name)
        if found is None:
            known = ", ".join(sorted(self._indexes)) or "none"
            raise InvalidQuery(
                f"Index {full_name} not found: it is not a vector index of the schema "
                f"(vector indexes: {known})",
                code="IndexNotFoundError",
            )
        spec = found.spec
        if len(values) != spec.dimensions:
            raise InvalidQuery(
                f"Vector search on {full_name} expects a vector of {spec.dimensions} numbers "
                f"(the index's dimensions), got {len(values)}",
                code="VectorDimensionMismatch",
            )
        terms = compile_filter(spec.filter_fields, filter)
        from syncline.vectors.store import unit_vector

        query = unit_vector(values, spec.dimensions)
        with found.lock:
            if query is None:  # a zero vector: every document scores 0
                ranked = found.search_zero(limit, terms)
            else:
                ranked = found.search(query, limit, terms)
        return [{"_id": doc_id, "_score": score} for score, doc_id in ranked]

    async def search(
        self,
        table: str,
        index: str,
        *,
        vector: Sequence[float],
        limit: Any = DEFAULT_LIMIT,
        filter: Callable[[VectorFilterBuilder], Any] | None = None,
    ) -> list[dict[str, Any]]:
        """``ctx.vector_search``: ids and cosine scores of the ``limit`` nearest documents.

        ``filter=lambda q: q.eq("f", v) | q.eq("g", w)`` keeps documents that
        match any of the equalities. Results are ``[{"_id", "_score"}]``, best
        first, ties by id, reflecting every commit acknowledged before the call.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            lambda: self.search_now(table, index, vector=vector, limit=limit, filter=filter),
        )

    # ------------------------------------------------------------------ wiring

    def install(self, executor: Executor) -> None:
        """Give actions run by ``executor`` ``ctx.vector_search``; other kinds get an error."""

        def ctx_member(kind: str, tx: Any, identity: Identity) -> Any:
            return self.search if kind == "action" else _not_in_actions(kind)

        executor.register_ctx_member("vector_search", ctx_member)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per index: vectors held, whether approximate, bytes held."""
        return {
            name: {
                "vectors": len(index),
                "approximate": index.approximate,
                "building_graph": index.building,
                "memory_bytes": index.memory_bytes,
            }
            for name, index in sorted(self._indexes.items())
        }

    async def start(self) -> None:
        """Build the indexes in the background (searches wait for it)."""
        loop = asyncio.get_running_loop()

        async def warm() -> None:
            try:
                await loop.run_in_executor(self._pool, self.refresh)
            except Exception:
                log.exception("building the vector indexes failed")

        self._warm = asyncio.create_task(warm(), name="syncline-vector-warm")

    async def stop(self) -> None:
        if self._warm is not None:
            await self._warm
            self._warm = None

    def close(self) -> None:
        """Stop following commits and free the indexes (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.database.remove_commit_listener(self._on_commits)
        self._pool.shutdown(wait=True)
        # A graph build under way is not waited for: its result is ignored.
        self._graph_builds.shutdown(wait=False, cancel_futures=True)
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()


def _not_in_actions(kind: str) -> Callable[..., Any]:
    def vector_search(*args: Any, **kwargs: Any) -> Any:
        raise InvalidQuery(
            f"ctx.vector_search is only available in actions, not in a {kind}: search from an "
            "action, then load the documents with ctx.run_query",
            code="VectorSearchNotInAction",
        )

    return vector_search


def _check_limit(limit: Any) -> int:
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not float(limit).is_integer()
        or not 1 <= limit <= MAX_LIMIT
    ):
        raise InvalidQuery(
            f"Vector search `limit` must be an integer from 1 to {MAX_LIMIT}, got {limit!r}",
            code="InvalidVectorSearchLimit",
        )
    return int(limit)


def _check_vector(vector: Any) -> list[float]:
    if not isinstance(vector, list | tuple) or not vector:
        raise InvalidQuery(
            f"Vector search `vector` must be a non-empty list of numbers, got {type(vector).__name__}",
            code="InvalidVector",
        )
    for i, x in enumerate(vector):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise InvalidQuery(
                f"Vector search `vector` must hold finite numbers; element {i} is {x!r}",
                code="InvalidVector",
            )
    return [float(x) for x in vector]
