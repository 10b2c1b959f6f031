"""What a process's vector indexes are and how they are kept (no numpy needed here).

Memory: every vector index is held in the memory of every process that
serves the deployment (each ``serve --workers N`` worker keeps its own copy).
:class:`MemoryBudget` bounds what one process's indexes hold together.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final, Literal

from syncline.errors import LimitExceeded

__all__ = [
    "DEFAULT_APPROXIMATE_ABOVE",
    "DEFAULT_MAX_MEMORY_BYTES",
    "GraphParameters",
    "IndexSpec",
    "MemoryBudget",
    "Mode",
    "VectorSettings",
]

Mode = Literal["exact", "approximate", "auto"]
MODES: Final = ("exact", "approximate", "auto")

#: vectors above which ``"auto"`` adds an approximate graph to an index
DEFAULT_APPROXIMATE_ABOVE: Final = 100_000
#: memory all vector indexes of one process may hold together (bytes)
DEFAULT_MAX_MEMORY_BYTES: Final = 4 << 30


@dataclass(frozen=True, slots=True)
class GraphParameters:
    """HNSW parameters of the approximate graph (see ``graph.py``)."""

    #: edges per node (HNSW ``M``)
    connectivity: int = 16
    #: candidate list size while inserting (``efConstruction``)
    expansion_add: int = 64
    #: candidate list size while searching (``ef``)
    expansion_search: int = 256
    #: candidates asked of the graph per result wanted, then rescored exactly
    oversample: int = 8
    #: threads used to add many vectors at once (a rebuild)
    build_threads: int = 2


@dataclass(frozen=True, slots=True)
class VectorSettings:
    """How a process keeps its vector indexes."""

    #: "exact" never builds a graph; "approximate" always does; "auto" above the threshold
    mode: Mode = "auto"
    approximate_above: int = DEFAULT_APPROXIMATE_ABOVE
    #: a filter matching at most this many rows is searched exactly, graph or not
    exact_below: int = 20_000
    graph: GraphParameters = field(default_factory=GraphParameters)
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"vector index mode must be one of {MODES}, got {self.mode!r}")
        if self.approximate_above < 1 or self.max_memory_bytes < 1:
            raise ValueError("approximate_above and max_memory_bytes must be positive")


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What a schema declares for one vector index."""

    table: str
    name: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...]

    @property
    def full_name(self) -> str:
        return f"{self.table}.{self.name}"


class MemoryBudget:
    """The bytes the vector indexes of a process hold, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        #: id of the holder -> bytes
        self._used: dict[int, int] = {}

    @property
    def used(self) -> int:
        with self._lock:
            return sum(self._used.values())

    def set(self, owner: object, name: str, size: int) -> None:
        """Record that ``owner`` (index ``name``) holds ``size`` bytes; LimitExceeded past
        the limit."""
        key = id(owner)
        with self._lock:
            others = sum(v for k, v in self._used.items() if k != key)
            if others + size > self.limit:
                self._used.pop(key, None)
                raise LimitExceeded(
                    f"Vector index {name} needs {size:,} bytes of memory, and the vector "
                    f"indexes of this process may hold {self.limit:,} bytes in all "
                    f"({others:,} held by others): raise the limit (--vector-memory) or "
                    "index fewer documents",
                    code="VectorIndexMemoryLimit",
                )
            self._used[key] = size

    def release(self, owner: object) -> None:
        with self._lock:
            self._used.pop(id(owner), None)
