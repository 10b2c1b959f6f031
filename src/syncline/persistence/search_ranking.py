"""How every storage backend matches and ranks a text search, so that they all agree.

A search (:class:`~syncline.persistence.base.SearchRequest`) becomes a list of
*phrases*, each one exact term (:func:`phrases`): the request's exact terms,
then the terms its prefix expands to -- at most :data:`MAX_PREFIX_TERMS`
indexed terms starting with it, the shortest first (ties in code point
order). A document matches if its search field holds any phrase and its
filter tokens include every requested one.

Matches are ranked by BM25 exactly as SQLite FTS5's ``bm25()`` computes it
(:func:`bm25`), so a backend that ranks in SQL (PostgreSQL) orders results
as FTS5 does, float for float:

* ``N`` is the number of documents in the index, ``n(q)`` the number holding
  phrase ``q`` (its IDF is ``log((N - n + 0.5) / (n + 0.5))``, or ``1e-6``
  when that is not positive);
* a document's length ``D`` counts its search terms *and* its filter tokens
  (FTS5 measures a row over all of its columns), and ``avgdl`` is the mean of
  those lengths over the index;
* each phrase adds ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * D / avgdl))``
  with ``f`` its occurrences in the document, in phrase order, from ``0.0``.

Ties go to the newest creation time, then to the greater document id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = [
    "K1",
    "MAX_PREFIX_TERMS",
    "MIN_IDF",
    "B",
    "average_length",
    "bm25",
    "document_length",
    "idf",
    "phrases",
    "shortest_terms",
]

#: FTS5's bm25() parameters
K1 = 1.2
B = 0.75
#: the IDF a phrase in at least half of the documents gets (FTS5's floor)
MIN_IDF = 1e-6
#: indexed terms the last (prefix) term of a search expands to, the shortest first
MAX_PREFIX_TERMS = 16


def idf(documents: int, holding: int) -> float:
    """The weight of a phrase held by ``holding`` of ``documents`` documents."""
    value = math.log((documents - holding + 0.5) / (holding + 0.5))
    return value if value > 0.0 else MIN_IDF


def document_length(terms: int, filters: int) -> int:
    """A document's length as FTS5 counts it: its terms plus its filter tokens."""
    return terms + filters


def average_length(documents: int, total_length: int) -> float:
    return float(total_length) / float(documents) if documents else 0.0


def bm25(frequencies: Sequence[float], idfs: Sequence[float], length: int, avgdl: float) -> float:
    """A document's relevance (higher is better; FTS5's ``bm25()`` is its negation).

    ``frequencies[i]`` is how often phrase ``i`` occurs in the document and
    ``idfs[i]`` its :func:`idf`; the operations run in FTS5's order.
    """
    score = 0.0
    for frequency, weight in zip(frequencies, idfs, strict=True):
        score += weight * (
            (frequency * (K1 + 1.0)) / (frequency + K1 * (1 - B + B * float(length) / avgdl))
        )
    return score


def shortest_terms(candidates: Iterable[str], cap: int = MAX_PREFIX_TERMS) -> list[str]:
    """The ``cap`` shortest of ``candidates`` (ties in code point order), shortest first."""
    return sorted(set(candidates), key=lambda term: (len(term), term))[:cap]


def phrases(exact: Sequence[str], expanded: Sequence[str]) -> list[str]:
    """A search's phrases: its exact terms, then its prefix's expansion (each once)."""
    return list(dict.fromkeys([*exact, *expanded]))
