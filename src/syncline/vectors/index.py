"""One vector index in memory: the exact store, and an approximate graph when it is large.

Searches are exact (every matching row scored) unless the index holds an
:class:`~syncline.vectors.graph.AnnGraph`: in ``"approximate"`` mode always,
in ``"auto"`` mode once it holds ``approximate_above`` vectors (and until it
falls below half of that). With a graph, a search asks it for
``oversample * limit`` candidates (scaled up by how selective the filter is),
keeps those matching the filter, rescores them exactly and, when fewer than
``limit`` match, asks for four times more; a filter that matches at most
``exact_below`` rows is searched exactly over just those rows.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from syncline.errors import LimitExceeded
from syncline.vectors.graph import AnnGraph
from syncline.vectors.settings import GraphParameters, IndexSpec, MemoryBudget, VectorSettings
from syncline.vectors.store import (
    FloatRows,
    VectorStore,
    filter_keys,
    vector_of_document,
)

__all__ = ["BuiltGraph", "GraphBuilder", "VectorIndex"]

log = logging.getLogger("syncline.vectors")


GraphBuilder = Callable[[Callable[[], "BuiltGraph"]], "concurrent.futures.Future[BuiltGraph]"]


@dataclass(slots=True)
class BuiltGraph:
    """A graph built apart, and the documents it holds (label ``i`` is ``ids[i]``)."""

    graph: AnnGraph
    ids: list[str]


def _build_graph(
    dimensions: int, parameters: GraphParameters, ids: list[str], vectors: FloatRows
) -> BuiltGraph:
    graph = AnnGraph(dimensions, parameters)
    graph.add(np.arange(len(ids), dtype=np.uint64), vectors)
    return BuiltGraph(graph, ids)


class VectorIndex:
    """The in-memory copy of one vector index; callers hold ``lock`` around every method.

    The graph of an index that grows past the threshold (or whose graph has
    gathered too many tombstones) is built on ``builder`` (another thread)
    from a copy of the rows, while searches stay exact (or keep the old
    graph); the documents written meanwhile are applied to it when it is put
    in place, at the next write or search.
    """

    def __init__(
        self,
        spec: IndexSpec,
        settings: VectorSettings,
        budget: MemoryBudget,
        builder: GraphBuilder | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.lock = threading.Lock()
        self._budget = budget
        self._builder = builder
        self._store = VectorStore(spec.dimensions, spec.filter_fields)
        self._graph: AnnGraph | None = None
        #: graph label of each indexed document, and back
        self._label_of: dict[str, int] = {}
        self._id_of_label: dict[int, str] = {}
        self._next_label = 0
        #: a graph being built on ``builder``, and the documents written since it started
        self._building: concurrent.futures.Future[BuiltGraph] | None = None
        self._touched: set[str] = set()
        #: why the index cannot answer (over the memory limit); None when it can
        self.failure: LimitExceeded | None = None

    def __len__(self) -> int:
        return len(self._store)

    @property
    def approximate(self) -> bool:
        """Whether searches go through the approximate graph."""
        return self._graph is not None

    @property
    def building(self) -> bool:
        """Whether a graph is being built apart."""
        return self._building is not None

    @property
    def memory_bytes(self) -> int:
        graph = 0 if self._graph is None else self._graph.memory_bytes
        return self._store.memory_bytes + graph

    # ------------------------------------------------------------------ writes

    def load(self, documents: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Apply many documents (a rebuild's batch); call :meth:`settle` after the last one."""
        for doc_id, doc in documents:
            self.apply(doc_id, doc, settle=False)

    def apply(self, doc_id: str, doc: Mapping[str, Any] | None, *, settle: bool = True) -> None:
        """Make the index hold what ``doc`` (None: deleted) says for ``doc_id``."""
        if self.failure is not None:
            return
        spec = self.spec
        vector = (
            None if doc is None else vector_of_document(doc, spec.vector_field, spec.dimensions)
        )
        if self._building is not None:
            self._touched.add(doc_id)
        if vector is None:
            if self._store.remove(doc_id):
                self._unlabel(doc_id)
        else:
            assert doc is not None
            self._store.upsert(doc_id, vector, filter_keys(doc, spec.filter_fields))
            if self._graph is not None:
                self._unlabel(doc_id)
                self._label(doc_id, vector)
        if settle:
            self.settle()

    def settle(self, *, wait: bool = False) -> None:
        """Add or drop the graph as the size asks, and check the memory budget.

        ``wait`` builds a needed graph here rather than on the builder (a
        rebuild, which searches wait for anyway).
        """
        if self.failure is not None:
            return
        self._adjust_graph(wait=wait or self._builder is None)
        try:
            self._budget.set(self, self.spec.full_name, self.memory_bytes)
        except LimitExceeded as exc:
            self.failure = exc
            self._store = VectorStore(self.spec.dimensions, self.spec.filter_fields)
            self._drop_graph()

    def _label(self, doc_id: str, vector: FloatRows) -> None:
        assert self._graph is not None
        label = self._next_label
        self._next_label += 1
        self._label_of[doc_id] = label
        self._id_of_label[label] = doc_id
        self._graph.add(np.asarray([label], dtype=np.uint64), vector.reshape(1, -1))

    def _unlabel(self, doc_id: str) -> None:
        label = self._label_of.pop(doc_id, None)
        if label is not None and self._graph is not None:
            del self._id_of_label[label]
            self._graph.remove(label)

    def _wants_graph(self) -> bool:
        mode = self.settings.mode
        if mode == "approximate":
            return True
        if mode == "exact":
            return False
        threshold = self.settings.approximate_above
        has_one = self._graph is not None or self._building is not None
        return len(self._store) >= (threshold // 2 if has_one else threshold)

    def _adjust_graph(self, *, wait: bool) -> None:
        self._finish_build()
        if not self._wants_graph():
            self._drop_graph()
            return
        graph = self._graph
        if graph is not None and graph.tombstones * 2 <= len(graph):
            return
        if self._building is not None:
            return
        store = self._store
        ids = [doc_id for doc_id in (store.id_at(r) for r in range(store.used)) if doc_id]
        rows = np.asarray([store.row_of(doc_id) for doc_id in ids], dtype=np.intp)
        vectors = store.vectors(rows)  # a copy: the build does not race with writes
        dims, parameters = self.spec.dimensions, self.settings.graph
        if wait or self._builder is None:
            self._put_in_place(_build_graph(dims, parameters, ids, vectors))
            return
        self._touched = set()
        self._building = self._builder(lambda: _build_graph(dims, parameters, ids, vectors))

    def _finish_build(self) -> None:
        """Put a graph built apart in place once it is ready, with the writes made since."""
        building = self._building
        if building is None or not building.done():
            return
        self._building = None
        try:
            built = building.result()
        except Exception:
            log.exception("building the graph of vector index %s failed", self.spec.full_name)
            return
        self._put_in_place(built)
        store = self._store
        for doc_id in self._touched:
            self._unlabel(doc_id)
            row = store.row_of(doc_id)
            if row is not None:
                self._label(doc_id, store.vectors(np.asarray([row], dtype=np.intp))[0])
        self._touched = set()

    def _put_in_place(self, built: BuiltGraph) -> None:
        self._graph = built.graph
        self._label_of = {doc_id: i for i, doc_id in enumerate(built.ids)}
        self._id_of_label = dict(enumerate(built.ids))
        self._next_label = len(built.ids)

    def _drop_graph(self) -> None:
        self._graph = None
        self._building = None  # a build under way is left to finish and be ignored
        self._label_of = {}
        self._id_of_label = {}

    def close(self) -> None:
        with self.lock:
            self._budget.release(self)
            self._drop_graph()
            self._store = VectorStore(self.spec.dimensions, self.spec.filter_fields)

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: FloatRows,
        limit: int,
        terms: Sequence[tuple[str, bytes]] | None,
        *,
        exact: bool = False,
    ) -> list[tuple[float, str]]:
        """The best ``limit`` documents for the unit vector ``query``: ``(score, id)``.

        ``exact`` scores every matching row even when the index has a graph.
        """
        if self.failure is not None:
            raise self.failure
        self._finish_build()
        store = self._store
        graph = self._graph
        if exact or graph is None or len(store) == 0:
            return store.top(query, limit, terms)
        mask = None if terms is None else store.matches(terms)
        matching = len(store) if mask is None else int(mask.sum())
        if matching <= max(limit, self.settings.exact_below):
            return store.top(query, limit, terms)
        want = math.ceil(limit * graph.parameters.oversample * len(store) / matching)
        while True:
            found = self._graph_candidates(query, want, mask)
            if len(found) >= limit or want >= len(graph):
                break
            want *= 4
        if len(found) < limit:
            return store.top(query, limit, terms)
        rows = np.asarray(found, dtype=np.intp)
        return store.best(rows, store.scores(query, rows), limit)

    def search_zero(
        self, limit: int, terms: Sequence[tuple[str, bytes]] | None
    ) -> list[tuple[float, str]]:
        """The results for a zero query vector: every match scores 0, so the first ids."""
        if self.failure is not None:
            raise self.failure
        rows = np.flatnonzero(self._store.matches(terms))
        return self._store.best(rows, np.zeros(len(rows), dtype=np.float32), limit)

    def _graph_candidates(
        self, query: FloatRows, count: int, mask: npt.NDArray[np.bool_] | None
    ) -> list[int]:
        """Rows of the graph's ``count`` nearest labels that are live and in ``mask``."""
        assert self._graph is not None
        store = self._store
        rows: list[int] = []
        for label in self._graph.candidates(query, count).tolist():
            doc_id = self._id_of_label.get(label)
            row = None if doc_id is None else store.row_of(doc_id)
            if row is not None and (mask is None or mask[row]):
                rows.append(row)
        return rows
