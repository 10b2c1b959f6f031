"""Tokenisation of documents and search queries (Convex's rules), property-tested."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.database.search_terms import (
    MAX_QUERY_TERMS,
    MAX_TERM_BYTES,
    query_terms,
    tokenize,
)
from syncline.errors import InvalidQuery

#: words: letters and digits of any script (no combining marks, which join words)
words = st.text(
    st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd")), min_size=1, max_size=40
)
#: separators: punctuation, symbols, spaces, controls, and the underscore
separators = st.text(
    st.characters(whitelist_categories=("Po", "Pc", "Ps", "Pe", "Pd", "Sm", "Sc", "Zs", "Cc")),
    min_size=1,
    max_size=3,
)


def _kept(word: str) -> bool:
    return len(word.encode()) <= MAX_TERM_BYTES


@given(st.lists(st.tuples(words, separators), max_size=12), st.booleans())
def test_text_splits_on_every_non_alphanumeric_and_is_lowercased(
    parts: list[tuple[str, str]], leading: bool
) -> None:
    text = ("_ " if leading else "") + "".join(word + sep for word, sep in parts)
    assert tokenize(text) == [word.lower() for word, _ in parts if _kept(word)]


@given(st.text(max_size=200))
def test_ascii_text_splits_as_a_regular_expression_would(text: str) -> None:
    ascii_text = text.encode("ascii", "replace").decode()
    expected = [w.lower() for w in re.findall(r"[A-Za-z0-9]+", ascii_text) if _kept(w)]
    assert tokenize(ascii_text) == expected


@given(st.text(max_size=200))
def test_every_term_is_short_lowercase_and_alphanumeric(text: str) -> None:
    for term in tokenize(text):
        assert term
        assert term == term.lower()
        assert all(c.isalnum() or unicodedata.category(c) in ("Mn", "Mc") for c in term)


def test_terms_longer_than_the_limit_are_dropped_not_cut() -> None:
    exact = "a" * MAX_TERM_BYTES
    assert tokenize(f"{exact} {exact}b ok") == [exact, "ok"]
    # The limit is in UTF-8 bytes: 16 two-byte letters fit, 17 do not.
    assert tokenize("é" * 16) == ["é" * 16]
    assert tokenize("é" * 17) == []


def test_combining_marks_stay_inside_their_word() -> None:
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert tokenize("cafe\u0301 au lait") == ["cafe\u0301", "au", "lait"]


@given(st.lists(words, min_size=1, max_size=MAX_QUERY_TERMS))
def test_the_last_query_term_is_the_prefix_and_the_others_are_exact(terms: list[str]) -> None:
    kept = [t.lower() for t in terms if _kept(t)]
    parsed = query_terms(" ".join(terms))
    if not kept:
        assert parsed.is_empty()
        return
    assert parsed.prefix == kept[-1]
    assert parsed.prefix not in parsed.exact
    assert list(parsed.exact) == [t for t in dict.fromkeys(kept[:-1]) if t != kept[-1]]


def test_more_than_16_distinct_query_terms_is_an_error_repeats_are_not() -> None:
    assert query_terms(" ".join(f"t{i}" for i in range(16))).prefix == "t15"
    assert query_terms(" ".join(["same"] * 40)).prefix == "same"
    with pytest.raises(InvalidQuery) as info:
        query_terms(" ".join(f"t{i}" for i in range(17)))
    assert info.value.code == "TooManySearchTerms"
