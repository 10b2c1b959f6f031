"""The exact vector store of one index: unit-length float32 rows, by document id.

One row per indexed document in a float32 matrix of ``capacity x dimensions``,
plus, per filter field, an int32 column of value codes (each distinct encoded
value of the field gets a code). Cosine similarity of a unit query with every
row is one matrix-vector product.

Updates are in place (the document keeps its row); deletes leave a dead row,
reused by nothing, until dead rows pass a quarter of the rows (and
:data:`COMPACT_MIN_DEAD`): then live rows are packed to the front. The matrix
grows by half when full. Memory: ``capacity * (4 * dimensions + 4 * filters + 1)``
bytes for the arrays, plus the id map (about 100 bytes a document).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from syncline.values.keys import encode_value, get_field_path

__all__ = ["FloatRows", "VectorStore", "unit_vector", "vector_of_document"]

FloatRows = npt.NDArray[np.float32]

#: rows allocated for an empty store
INITIAL_CAPACITY: Final = 256
#: dead rows tolerated before a compaction, whatever the store's size
COMPACT_MIN_DEAD: Final = 1024


def unit_vector(values: Sequence[float], dimensions: int) -> FloatRows | None:
    """``values`` scaled to length 1 as float32; None for a zero vector."""
    array = np.asarray(values, dtype=np.float64).reshape(dimensions)
    norm = float(np.linalg.norm(array))
    if norm == 0.0 or not math.isfinite(norm):
        return None
    return (array / norm).astype(np.float32)


def vector_of_document(doc: Mapping[str, Any], field: str, dimensions: int) -> FloatRows | None:
    """The unit vector ``doc`` holds in ``field``, or None when it holds none to index.

    Indexed: a list of exactly ``dimensions`` finite floats, not all zero. Anything
    else (missing, another type, another length, an int64, NaN) is left out of the
    index, as Convex leaves such documents out.
    """
    value = get_field_path(doc, field)
    if type(value) is not list or len(value) != dimensions:
        return None
    floats = [x for x in value if type(x) is float and math.isfinite(x)]
    if len(floats) != dimensions:
        return None
    return unit_vector(floats, dimensions)


def filter_keys(doc: Mapping[str, Any], fields: Sequence[str]) -> tuple[bytes, ...]:
    """The encoded values of ``fields`` in ``doc`` (a missing field encodes as UNDEFINED)."""
    return tuple(encode_value(get_field_path(doc, f)) for f in fields)


class VectorStore:
    """Rows of one vector index; not thread-safe (the index's lock guards it)."""

    def __init__(self, dimensions: int, filter_fields: Sequence[str]) -> None:
        self.dimensions = dimensions
        self.filter_fields = tuple(filter_fields)
        self._vectors: FloatRows = np.zeros((INITIAL_CAPACITY, dimensions), dtype=np.float32)
        self._codes = np.zeros((len(self.filter_fields), INITIAL_CAPACITY), dtype=np.int32)
        self._live = np.zeros(INITIAL_CAPACITY, dtype=np.bool_)
        self._ids: list[str | None] = []
        self._rows: dict[str, int] = {}
        #: per filter field: encoded value -> code
        self._code_of: list[dict[bytes, int]] = [{} for _ in self.filter_fields]

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    @property
    def capacity(self) -> int:
        return len(self._live)

    @staticmethod
    def row_bytes(dimensions: int, filters: int) -> int:
        """Bytes one allocated row costs (matrix, codes, live flag, id map)."""
        return 4 * dimensions + 4 * filters + 1 + 100

    @property
    def memory_bytes(self) -> int:
        return self.capacity * self.row_bytes(self.dimensions, len(self.filter_fields))

    # ------------------------------------------------------------------ writes

    def upsert(self, doc_id: str, vector: FloatRows, keys: tuple[bytes, ...]) -> None:
        """Store ``vector`` (unit length) and the filter values ``keys`` for ``doc_id``."""
        row = self._rows.get(doc_id)
        if row is None:
            row = len(self._ids)
            if row == self.capacity:
                self._grow()
            self._ids.append(doc_id)
            self._rows[doc_id] = row
            self._live[row] = True
        self._vectors[row] = vector
        for i, key in enumerate(keys):
            codes = self._code_of[i]
            code = codes.get(key)
            if code is None:
                code = codes[key] = len(codes)
            self._codes[i, row] = code

    def remove(self, doc_id: str) -> bool:
        """Forget ``doc_id``; whether it was stored."""
        row = self._rows.pop(doc_id, None)
        if row is None:
            return False
        self._live[row] = False
        self._ids[row] = None
        dead = len(self._ids) - len(self._rows)
        if dead >= COMPACT_MIN_DEAD and dead * 4 >= len(self._ids):
            self.compact()
        return True

    def _grow(self) -> None:
        capacity = max(INITIAL_CAPACITY, self.capacity + self.capacity // 2)
        self._resize(capacity)

    def _resize(self, capacity: int) -> None:
        used = len(self._ids)
        vectors = np.zeros((capacity, self.dimensions), dtype=np.float32)
        vectors[:used] = self._vectors[:used]
        codes = np.zeros((len(self.filter_fields), capacity), dtype=np.int32)
        codes[:, :used] = self._codes[:, :used]
        live = np.zeros(capacity, dtype=np.bool_)
        live[:used] = self._live[:used]
        self._vectors, self._codes, self._live = vectors, codes, live

    def compact(self) -> None:
        """Pack the live rows to the front (row numbers change; ids do not)."""
        used = len(self._ids)
        keep = np.flatnonzero(self._live[:used])
        count = len(keep)
        self._vectors[:count] = self._vectors[keep]
        self._codes[:, :count] = self._codes[:, keep]
        self._live[:count] = True
        self._live[count:] = False
        ids = [self._ids[int(r)] for r in keep]
        self._ids = ids
        self._rows = {doc_id: row for row, doc_id in enumerate(ids) if doc_id is not None}
        capacity = max(INITIAL_CAPACITY, count + count // 2)
        if capacity < self.capacity:
            self._resize(capacity)

    # ------------------------------------------------------------------ reads

    @property
    def used(self) -> int:
        """Rows in use, dead ones included (row numbers are below it)."""
        return len(self._ids)

    def vectors(self, rows: npt.NDArray[np.intp]) -> FloatRows:
        return self._vectors[rows]

    def row_of(self, doc_id: str) -> int | None:
        return self._rows.get(doc_id)

    def id_at(self, row: int) -> str | None:
        return self._ids[row]

    def matches(self, terms: Sequence[tuple[str, bytes]] | None) -> npt.NDArray[np.bool_]:
        """Whether each used row is live and matches any of ``terms`` (None: every live row)."""
        used = len(self._ids)
        live = self._live[:used]
        if terms is None:
            return live.copy()
        mask = np.zeros(used, dtype=np.bool_)
        for field, key in terms:
            i = self.filter_fields.index(field)
            code = self._code_of[i].get(key)
            if code is not None:
                mask |= self._codes[i, :used] == code
        return mask & live

    def scores(self, query: FloatRows, rows: npt.NDArray[np.intp] | None = None) -> FloatRows:
        """Cosine similarity of ``query`` (unit length) with ``rows`` (None: every used row)."""
        if rows is None:
            return self._vectors[: len(self._ids)] @ query
        return self._vectors[rows] @ query

    def top(
        self, query: FloatRows, limit: int, terms: Sequence[tuple[str, bytes]] | None
    ) -> list[tuple[float, str]]:
        """The exact best ``limit`` live rows matching ``terms``: ``(score, id)``, best first,
        ties by id."""
        mask = self.matches(terms)
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return []
        # Few rows: gather them; many: one product over the whole matrix.
        few = len(rows) * 4 < len(mask)
        scores = self.scores(query, rows) if few else self.scores(query)[rows]
        return self.best(rows, scores, limit)

    def best(
        self, rows: npt.NDArray[np.intp], scores: FloatRows, limit: int
    ) -> list[tuple[float, str]]:
        """The best ``limit`` of ``rows`` by ``scores``: ``(score, id)``, ties by id."""
        if len(rows) > limit:
            # Everything tied with the limit-th score is kept, so ties are broken by id.
            kth = np.partition(scores, len(scores) - limit)[len(scores) - limit]
            chosen = np.flatnonzero(scores >= kth)
            rows, scores = rows[chosen], scores[chosen]
        ranked: list[tuple[float, str]] = []
        for row, score in zip(rows.tolist(), np.clip(scores, -1.0, 1.0).tolist(), strict=True):
            doc_id = self._ids[row]
            if doc_id is not None:
                ranked.append((score, doc_id))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return ranked[:limit]
