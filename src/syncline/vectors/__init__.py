"""Vector search: ``ctx.vector_search`` over in-memory indexes kept current from commits.

``service.py`` keeps the indexes of a process current and answers searches;
``settings.py`` holds what needs no numpy; ``store.py`` (exact, numpy),
``graph.py`` (approximate, usearch) and ``index.py`` (the two together) need
the ``vector`` extra and are imported only when a schema declares a vector
index. ``filters.py`` is the ``filter=`` builder.
"""

from __future__ import annotations

from syncline.vectors.filters import FilterExpression, VectorFilterBuilder
from syncline.vectors.service import VectorSearch
from syncline.vectors.settings import GraphParameters, VectorSettings

__all__ = [
    "FilterExpression",
    "GraphParameters",
    "VectorFilterBuilder",
    "VectorSearch",
    "VectorSettings",
]
