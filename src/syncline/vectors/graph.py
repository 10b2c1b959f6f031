"""The approximate nearest-neighbour graph of one vector index (HNSW, from usearch).

The graph holds int8-quantised copies of the unit vectors under integer
labels and answers "which labels are probably closest"; the exact float32
rows of :class:`~syncline.vectors.store.VectorStore` then rescore those
candidates, so returned scores are exact and recall depends only on the
candidates the graph finds (it is asked for several times the limit).

Removed labels stay in the graph as tombstones (searches skip them) until
they pass half of it; then the owner rebuilds the graph from the store.
Memory: about ``dimensions + 2 * connectivity * 4 + 40`` bytes per label.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from syncline.vectors.settings import GraphParameters
from syncline.vectors.store import FloatRows

__all__ = ["AnnGraph"]

Labels = npt.NDArray[np.uint64]


def _usearch_index() -> Any:
    from usearch.index import Index  # an optional dependency: imported when a graph is built

    return Index


MIN_CANDIDATES: Final = 64


class AnnGraph:
    """An HNSW graph over unit vectors, inner-product metric, int8 storage."""

    def __init__(self, dimensions: int, parameters: GraphParameters) -> None:
        self.parameters = parameters
        self.dimensions = dimensions
        self._index = _usearch_index()(
            ndim=dimensions,
            metric="ip",
            dtype="i8",
            connectivity=parameters.connectivity,
            expansion_add=parameters.expansion_add,
            expansion_search=parameters.expansion_search,
        )
        self.tombstones = 0

    def __len__(self) -> int:
        return len(self._index)

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)

    def add(self, labels: Labels, vectors: FloatRows) -> None:
        if len(labels):
            threads = self.parameters.build_threads if len(labels) > 1 else 1
            self._index.add(labels, vectors, threads=threads)

    def remove(self, label: int) -> None:
        self._index.remove(label)
        self.tombstones += 1

    def candidates(self, query: FloatRows, count: int) -> Labels:
        """Up to ``count`` labels near ``query``, nearest first."""
        count = max(count, MIN_CANDIDATES)
        matches = self._index.search(query, count)
        keys: Labels = np.asarray(matches.keys, dtype=np.uint64)
        return keys
