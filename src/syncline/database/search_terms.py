"""Text search terms: how documents and queries are tokenised (Convex's rules).

Text is split into runs of alphanumeric characters (Unicode-aware: letters
and digits of every script, with the combining marks that belong to them,
as in Indic scripts; everything else separates), each run longer than
:data:`MAX_TERM_BYTES` bytes of UTF-8 is dropped, and the rest are lowercased.
There is no stemming and no accent folding: ``café`` and ``cafe`` are
different terms.

A query is tokenised the same way. Its terms are de-duplicated, at most
:data:`MAX_QUERY_TERMS` are allowed, and the **last** one matches as a prefix
(``"hello wor"`` finds ``hello world``): this is what makes search-as-you-type
work.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from syncline.errors import InvalidQuery

__all__ = ["MAX_QUERY_TERMS", "MAX_TERM_BYTES", "QueryTerms", "query_terms", "tokenize"]

#: a run of alphanumerics longer than this (in UTF-8 bytes) is not a term
MAX_TERM_BYTES = 32
#: terms allowed in one search query
MAX_QUERY_TERMS = 16


_ASCII_RUN = re.compile(r"[A-Za-z0-9]+")
_MARKS = frozenset({"Mn", "Mc"})


def _is_word_char(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char) in _MARKS


def _runs(text: str) -> list[str]:
    if text.isascii():
        return _ASCII_RUN.findall(text)
    runs: list[str] = []
    start = -1
    for i, char in enumerate(text):
        if _is_word_char(char):
            if start < 0:
                start = i
        elif start >= 0:
            runs.append(text[start:i])
            start = -1
    if start >= 0:
        runs.append(text[start:])
    return runs


def tokenize(text: str) -> list[str]:
    """The terms of ``text`` in order (repeats kept)."""
    return [run.lower() for run in _runs(text) if len(run.encode()) <= MAX_TERM_BYTES]


class QueryTerms(NamedTuple):
    """A search query's terms: ``exact`` ones and the last one, matched as a ``prefix``."""

    exact: tuple[str, ...]
    prefix: str | None

    def is_empty(self) -> bool:
        return self.prefix is None


def query_terms(text: str) -> QueryTerms:
    """The terms a query ``text`` searches for; InvalidQuery past :data:`MAX_QUERY_TERMS`."""
    tokens = tokenize(text)
    if not tokens:
        return QueryTerms((), None)
    count = len(set(tokens))
    if count > MAX_QUERY_TERMS:
        raise InvalidQuery(
            f"The search text has {count} distinct terms; at most {MAX_QUERY_TERMS} are "
            f"allowed (text: {text[:80]!r})",
            code="TooManySearchTerms",
        )
    # The last term typed is the prefix; an earlier exact copy of it adds nothing.
    prefix = tokens[-1]
    exact = tuple(t for t in dict.fromkeys(tokens[:-1]) if t != prefix)
    return QueryTerms(exact, prefix)
