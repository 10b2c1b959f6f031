"""Search reads against written revisions: the rule, the index of live reads, the log form."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.database.reads import ReadSet
from syncline.database.recent_writes import RecentWrites
from syncline.database.search_reads import (
    SearchRead,
    SearchReadIndex,
    SearchWrite,
    filter_token,
    read_matches,
)
from syncline.database.search_terms import QueryTerms
from syncline.database.subscriptions import IntervalIndex
from syncline.database.writes import Commit, WriteSet, decode_write_set, encode_write_set
from syncline.values.types import UNDEFINED, Int64

INDEX = "messages.search_body"


def _read(terms: QueryTerms, **filters: object) -> SearchRead:
    tokens = tuple(sorted((f, filter_token(f, value)) for f, value in filters.items()))
    return SearchRead(INDEX, tokens, terms)


def _write(terms: set[str], **filters: object) -> SearchWrite:
    return SearchWrite(
        {f: filter_token(f, value) for f, value in filters.items()}, frozenset(terms)
    )


def test_a_revision_matches_with_equal_filters_and_a_matching_term() -> None:
    read = _read(QueryTerms(("hello",), "wor"), channel="a")
    assert read_matches(read, _write({"hello"}, channel="a", other=1.0))
    assert read_matches(read, _write({"world"}, channel="a"))
    assert read_matches(read, _write({"wor"}, channel="a"))
    assert not read_matches(read, _write({"hello"}, channel="b"))
    assert not read_matches(read, _write({"hell", "sword"}, channel="a"))  # "hello" is exact
    assert not read_matches(read, _write({"hello"}))  # no channel: undefined is not "a"


def test_filter_tokens_follow_the_total_order_of_values() -> None:
    assert filter_token("f", 1.0) != filter_token("f", Int64(1))
    assert filter_token("f", None) != filter_token("f", UNDEFINED)
    assert filter_token("f", 0.0) != filter_token("f", -0.0)
    assert filter_token("f", float("nan")) == filter_token("f", float("nan"))
    assert filter_token("f", "a") != filter_token("g", "a")
    assert filter_token("f", {"a": [1.0]}) == filter_token("f", {"a": [1.0]})


def test_an_empty_search_matches_nothing() -> None:
    assert not read_matches(_read(QueryTerms((), None)), _write({"anything"}))


term = st.sampled_from(["a", "ab", "abc", "b", "ba", "hello", "help", "x"])
value = st.sampled_from(["a", "b", None, 1.0])
reads = st.builds(
    lambda exact, prefix, channel, n, use_channel, use_n: _read(
        QueryTerms(tuple(sorted(set(exact) - {prefix})), prefix),
        **({"channel": channel} if use_channel else {}),
        **({"n": n} if use_n else {}),
    ),
    st.lists(term, max_size=3),
    term,
    value,
    value,
    st.booleans(),
    st.booleans(),
)
writes = st.builds(
    lambda terms, channel, n: _write(set(terms), channel=channel, n=n),
    st.lists(term, max_size=4),
    value,
    value,
)


@settings(max_examples=200)
@given(st.lists(reads, min_size=1, max_size=8), st.lists(writes, max_size=5), st.data())
def test_the_live_read_index_finds_exactly_the_matching_reads(
    all_reads: list[SearchRead], revisions: list[SearchWrite], data: st.DataObject
) -> None:
    index: SearchReadIndex[int] = SearchReadIndex()
    for token, read in enumerate(all_reads):
        index.register(token, [read])
    dropped = data.draw(st.sets(st.integers(0, len(all_reads) - 1)))
    for token in dropped:
        index.unregister(token)
    found: set[int] = set()
    index.matches({INDEX: revisions, "other.index": revisions}, found)
    expected = {
        token
        for token, read in enumerate(all_reads)
        if token not in dropped and any(read_matches(read, w) for w in revisions)
    }
    assert found == expected
    for token in range(len(all_reads)):
        index.unregister(token)
    assert len(index) == 0


def test_a_live_query_is_touched_only_by_matching_revisions() -> None:
    live: IntervalIndex[str] = IntervalIndex()
    read_set = ReadSet()
    read_set.add_search(_read(QueryTerms((), "hel"), channel="a"))
    live.register("q", read_set)
    unrelated = WriteSet(
        search={INDEX: [_write({"help"}, channel="b"), _write({"x"}, channel="a")]}
    )
    assert live.matches_writes(unrelated) == set()
    matching = WriteSet(search={INDEX: [_write({"help"}, channel="a")]})
    assert live.matches_writes(matching) == {"q"}
    live.unregister("q")
    assert live.matches_writes(matching) == set()


def test_the_conflict_check_sees_only_later_matching_commits() -> None:
    recent = RecentWrites()
    recent.add(Commit(10, WriteSet(search={INDEX: [_write({"hello"}, channel="a")]})))
    recent.add(Commit(20, WriteSet(search={INDEX: [_write({"bye"}, channel="a")]})))
    read_set = ReadSet()
    read_set.add_search(_read(QueryTerms((), "hello"), channel="a"))
    assert recent.conflict(read_set, after=5) == INDEX
    assert recent.conflict(read_set, after=10) is None
    assert read_set.overlaps_writes(WriteSet(search={INDEX: [_write({"hello"}, channel="a")]}))
    assert not read_set.is_empty()


def test_search_revisions_survive_the_commit_log() -> None:
    writes = WriteSet(keys={"t.by_id": [b"\x01"]}, doc_ids={"d"}, tables={"t"})
    writes.add_search(INDEX, _write({"hello", "world"}, channel="a"))
    decoded = decode_write_set(encode_write_set(writes))
    assert decoded == writes
    # Log rows written before search existed have no search part.
    plain = WriteSet(keys={"t.by_id": [b"\x01"]}, doc_ids={"d"}, tables={"t"})
    assert b'"s"' not in encode_write_set(plain)
    assert decode_write_set(encode_write_set(plain)).search == {}
