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

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from syncline.errors import LimitExceeded
from syncline.vectors.graph import AnnGraph
from syncline.vectors.settings import IndexSpec, MemoryBudget, VectorSettings
from syncline.vectors.store import (
    FloatRows,
    VectorStore,
    filter_keys,
    vector_of_document,
)

__all__ = ["VectorIndex"]


class VectorIndex:
    """The in-memory copy of one vector index; every method takes ``lock``."""

    def __init__(self, spec: IndexSpec, settings: VectorSettings, budget: MemoryBudget) -> None:
        self.spec = spec
        self.settings = settings
        self.lock = threading.Lock()
        self._budget = budget
        self._store = VectorStore(spec.dimensions, spec.filter_fields)
        self._graph: AnnGraph | None = None
        #: graph label of each indexed document, and back
        self._label_of: dict[str, int] = {}
        self._id_of_label: dict[int, str] = {}
        self._next_label = 0
        #: why the index cannot answer (over the memory limit); None when it can
        self.failure: LimitExceeded | None = None

    def __len__(self) -> int:
        return len(self._store)

    @property
    def approximate(self) -> bool:
        """Whether searches go through the approximate graph."""
        return self._graph is not None

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

    def settle(self) -> None:
        """Add or drop the graph as the size asks, and check the memory budget."""
        if self.failure is not None:
            return
        self._adjust_graph()
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
        return len(self._store) >= (threshold // 2 if self._graph is not None else threshold)

    def _adjust_graph(self) -> None:
        wanted = self._wants_graph()
        if not wanted:
            self._drop_graph()
        elif self._graph is None or self._graph.tombstones * 2 > len(self._graph):
            self._build_graph()

    def _drop_graph(self) -> None:
        self._graph = None
        self._label_of.clear()
        self._id_of_label.clear()

    def _build_graph(self) -> None:
        self._drop_graph()
        graph = AnnGraph(self.spec.dimensions, self.settings.graph)
        store = self._store
        ids = [doc_id for doc_id in (store.id_at(r) for r in range(store.used)) if doc_id]
        if ids:
            rows = np.asarray([store.row_of(doc_id) for doc_id in ids], dtype=np.intp)
            labels = np.arange(len(ids), dtype=np.uint64)
            graph.add(labels, store.vectors(rows))
        self._label_of = {doc_id: i for i, doc_id in enumerate(ids)}
        self._id_of_label = dict(enumerate(ids))
        self._next_label = len(ids)
        self._graph = graph

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
