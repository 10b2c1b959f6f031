"""Text search through the query builder: matching, filters, order, limits, pagination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stores import open_store
from syncline import v
from syncline.database.database import Database
from syncline.database.query import Query
from syncline.database.search_query import MAX_SEARCH_RESULTS
from syncline.database.search_terms import query_terms, tokenize
from syncline.database.transaction import Transaction
from syncline.errors import InvalidCursor, InvalidQuery, LimitExceeded
from syncline.persistence.search_ranking import MAX_PREFIX_TERMS, shortest_terms
from syncline.schema import Schema, define_schema, define_table
from syncline.values.types import UNDEFINED, Int64


def _schema(*, filter_fields: tuple[str, ...] = ("channel", "n")) -> Schema:
    return define_schema(
        {
            "messages": define_table(
                {"body": v.any(), "channel": v.optional(v.any()), "n": v.optional(v.any())}
            ).search_index("search_body", search_field="body", filter_fields=list(filter_fields)),
            "log": define_table({"n": v.number()}),
        }
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(open_store(tmp_path / "search.sqlite3", durability="off")) as database:
        database.apply_schema(_schema())
        yield database


def _insert(db: Database, *docs: dict[str, Any]) -> list[str]:
    def write(tx: Transaction) -> list[str]:
        return [tx.insert("messages", doc) for doc in docs]

    ids: list[str] = db.write_sync(write).value
    return ids


def _query(tx: Transaction, text: str, **eqs: Any) -> Query:
    def build(q: Any) -> Any:
        expression = q.search("body", text)
        for field, value in eqs.items():
            expression = expression.eq(field, value)
        return expression

    return Query(tx, "messages").with_search_index("search_body", build)


def _bodies(db: Database, text: str, **eqs: Any) -> list[str]:
    docs = db.run_read(lambda tx: _query(tx, text, **eqs).collect()).value
    return [doc["body"] for doc in docs]


def test_only_the_last_term_matches_as_a_prefix(db: Database) -> None:
    _insert(db, {"body": "hello world"}, {"body": "help wanted"}, {"body": "worldly hell"})
    assert set(_bodies(db, "hel")) == {"hello world", "help wanted", "worldly hell"}
    # "hel" before another term must match a whole term: none has it.
    assert _bodies(db, "hel wanted") == ["help wanted"]
    assert set(_bodies(db, "wanted hel")) == {"hello world", "help wanted", "worldly hell"}
    # Two matching terms rank above one.
    assert _bodies(db, "hell wor")[0] == "worldly hell"
    assert set(_bodies(db, "hell wor")) == {"hello world", "worldly hell"}


def test_any_term_matches_and_more_matching_terms_rank_higher(db: Database) -> None:
    _insert(
        db,
        {"body": "the quick brown fox"},
        {"body": "a quick test"},
        {"body": "nothing relevant here"},
    )
    assert _bodies(db, "quick brown fox") == ["the quick brown fox", "a quick test"]


def test_matching_is_case_insensitive_and_splits_on_punctuation(db: Database) -> None:
    _insert(db, {"body": "Hello, WORLD! e-mail: foo@bar.com"})
    for text in ("hello", "HELLO", "world", "mail", "foo", "bar com", "E-MAIL"):
        assert _bodies(db, text) == ["Hello, WORLD! e-mail: foo@bar.com"], text


def test_unicode_terms_are_not_folded(db: Database) -> None:
    _insert(db, {"body": "café naïve 東京 हिन्दी"}, {"body": "cafe"})
    assert _bodies(db, "café") == ["café naïve 東京 हिन्दी"]
    assert _bodies(db, "cafe") == ["cafe"]
    assert set(_bodies(db, "caf")) == {"cafe", "café naïve 東京 हिन्दी"}
    assert _bodies(db, "東") == ["café naïve 東京 हिन्दी"]
    assert _bodies(db, "हिन्दी") == ["café naïve 東京 हिन्दी"]


def test_a_document_without_a_string_search_field_is_not_indexed(db: Database) -> None:
    _insert(db, {"body": 42.0}, {"body": ["hello"]}, {"body": "hello"})
    assert _bodies(db, "hello") == ["hello"]


def test_an_empty_search_text_finds_nothing(db: Database) -> None:
    _insert(db, {"body": "hello"})
    assert _bodies(db, "") == []
    assert _bodies(db, " ,.;") == []


def test_filters_are_exact_equality_of_convex_values(db: Database) -> None:
    _insert(
        db,
        {"body": "x one", "channel": "a", "n": 1.0},
        {"body": "x two", "channel": "a", "n": Int64(1)},
        {"body": "x three", "channel": "b", "n": 1.0},
        {"body": "x four", "channel": None},
        {"body": "x five"},
        {"body": "x six", "channel": "A"},
    )
    assert set(_bodies(db, "x", channel="a")) == {"x one", "x two"}
    assert _bodies(db, "x", channel="a", n=1.0) == ["x one"]
    assert _bodies(db, "x", channel="a", n=Int64(1)) == ["x two"]
    assert _bodies(db, "x", channel=None) == ["x four"]
    assert _bodies(db, "x", channel=UNDEFINED) == ["x five"]
    assert _bodies(db, "x", channel="A") == ["x six"]
    assert _bodies(db, "x", channel="c") == []


def test_ties_in_relevance_go_to_the_newest_document(db: Database) -> None:
    ids = _insert(db, {"body": "same text"}, {"body": "same text"}, {"body": "same text"})
    found = db.run_read(lambda tx: _query(tx, "same").collect()).value
    assert [doc["_id"] for doc in found] == list(reversed(ids))


def test_relevance_prefers_more_occurrences_in_shorter_text(db: Database) -> None:
    _insert(
        db,
        {"body": "apple banana cherry date elderberry fig grape"},
        {"body": "apple apple apple"},
        {"body": "apple pie"},
    )
    assert _bodies(db, "apple") == [
        "apple apple apple",
        "apple pie",
        "apple banana cherry date elderberry fig grape",
    ]


def test_take_first_unique_and_filter_after_the_search(db: Database) -> None:
    _insert(db, {"body": "red one", "n": 1.0}, {"body": "red two", "n": 2.0}, {"body": "blue"})

    def read(tx: Transaction) -> Any:
        return (
            [d["body"] for d in _query(tx, "red").take(1)],
            _query(tx, "blue").unique()["body"],  # type: ignore[index]
            _query(tx, "green").first(),
            [
                d["body"]
                for d in _query(tx, "red").filter(lambda q: q.gt(q.field("n"), 1)).collect()
            ],
        )

    one, unique, missing, filtered = db.run_read(read).value
    assert len(one) == 1
    assert unique == "blue"
    assert missing is None
    assert filtered == ["red two"]
    with pytest.raises(InvalidQuery) as info:
        db.run_read(lambda tx: _query(tx, "red").unique())
    assert info.value.code == "UniqueQueryReturnedMultiple"


def test_at_most_1024_results_are_scanned(db: Database) -> None:
    _insert(db, *({"body": f"common word{i}"} for i in range(MAX_SEARCH_RESULTS + 1)))
    with pytest.raises(LimitExceeded) as info:
        db.run_read(lambda tx: _query(tx, "common").collect())
    assert info.value.code == "TooManySearchResults"
    assert len(db.run_read(lambda tx: _query(tx, "common").take(1024)).value) == 1024
    assert len(db.run_read(lambda tx: _query(tx, "common").take(10)).value) == 10
    # A filter that discards results still scans them.
    with pytest.raises(LimitExceeded):
        db.run_read(lambda tx: _query(tx, "common").filter(lambda q: False).take(1))
    # One result fewer is fine.
    db.write_sync(lambda tx: tx.delete(_query(tx, "word0").unique()["_id"]))  # type: ignore[index]
    assert len(db.run_read(lambda tx: _query(tx, "common").collect()).value) == 1024


def test_pages_of_a_search_concatenate_to_its_results(db: Database) -> None:
    _insert(db, *({"body": f"page item {i}", "n": float(i)} for i in range(25)))
    everything = db.run_read(lambda tx: _query(tx, "item").collect()).value
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        result = db.run_read(
            lambda tx, c=cursor: _query(tx, "item").paginate({"numItems": 10, "cursor": c})
        ).value
        pages.append(result["page"])
        cursor = result["continueCursor"]
        if result["isDone"]:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [d["_id"] for p in pages for d in p] == [d["_id"] for d in everything]


def test_a_page_with_an_end_cursor_returns_exactly_up_to_it(db: Database) -> None:
    _insert(db, *({"body": f"item {i}"} for i in range(6)))
    first = db.run_read(lambda tx: _query(tx, "item").paginate({"numItems": 3, "cursor": None}))
    end = first.value["continueCursor"]
    again = db.run_read(
        lambda tx: _query(tx, "item").paginate({"numItems": 1, "cursor": None, "endCursor": end})
    ).value
    assert [d["_id"] for d in again["page"]] == [d["_id"] for d in first.value["page"]]
    assert again["continueCursor"] == end


def test_a_search_cursor_is_refused_by_another_query(db: Database) -> None:
    _insert(db, *({"body": f"item {i}"} for i in range(3)))
    cursor = db.run_read(
        lambda tx: _query(tx, "item").paginate({"numItems": 1, "cursor": None})
    ).value["continueCursor"]
    with pytest.raises(InvalidCursor):
        db.run_read(lambda tx: _query(tx, "other").paginate({"numItems": 1, "cursor": cursor}))


def test_query_limits_and_mistakes_are_clear_errors(db: Database) -> None:
    def fails(fn: Any, code: str) -> None:
        with pytest.raises(InvalidQuery) as info:
            db.run_read(fn)
        assert info.value.code == code, info.value.message

    seventeen = " ".join(f"t{i}" for i in range(17))
    fails(lambda tx: _query(tx, seventeen).collect(), "TooManySearchTerms")
    _insert(db, {"body": " ".join(f"t{i}" for i in range(16))})
    assert len(db.run_read(lambda tx: _query(tx, seventeen[:-4]).collect()).value) == 1

    many = define_schema(
        {
            "wide": define_table(
                {"b": v.string(), **{f"f{i}": v.optional(v.any()) for i in range(9)}}
            ).search_index("s", search_field="b", filter_fields=[f"f{i}" for i in range(9)])
        }
    )
    db.apply_schema(many)

    def nine_filters(tx: Transaction) -> Any:
        def build(q: Any) -> Any:
            expression = q.search("b", "x")
            for i in range(9):
                expression = expression.eq(f"f{i}", 1)
            return expression

        return Query(tx, "wide").with_search_index("s", build).collect()

    fails(nine_filters, "TooManySearchFilters")
    fails(
        lambda tx: Query(tx, "wide").with_search_index("nope", lambda q: q.search("b", "x")),
        "IndexNotFoundError",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index("s", lambda q: q.search("c", "x")),
        "InvalidSearchQuery",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index(
            "s", lambda q: q.search("b", "x").eq("zz", 1)
        ),
        "InvalidSearchQuery",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index(
            "s", lambda q: q.search("b", "x").eq("f1", 1).eq("f1", 2)
        ),
        "AlreadyDefinedBound",
    )
    fails(
        lambda tx: (
            Query(tx, "wide").with_search_index("s", lambda q: q.search("b", "x")).order("desc")
        ),
        "InvalidQuery",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index("s", lambda q: None),
        "InvalidQuery",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index("s", lambda q: q.eq("f1", 1)),
        "InvalidQuery",
    )
    fails(
        lambda tx: Query(tx, "wide").with_search_index(
            "s", lambda q: q.search("b", "x").search("b", "y")
        ),
        "InvalidQuery",
    )


def test_a_search_counts_toward_the_reads_limit(tmp_path: Path) -> None:
    from syncline.database.transaction import Limits

    persistence = open_store(tmp_path / "limit.sqlite3", durability="off")
    with Database(persistence, limits=Limits(max_read_intervals=3)) as small:
        small.apply_schema(_schema())

        def searches(tx: Transaction) -> None:
            for _ in range(4):
                _query(tx, "x").collect()

        with pytest.raises(LimitExceeded) as info:
            small.run_read(searches)
        assert info.value.code == "TooManyReads"


alphabet = st.sampled_from(["a", "e", "z", "é", "東", "9", "Z", "É"])
word = st.text(alphabet, min_size=1, max_size=4)
text = st.lists(word, max_size=5).map(" ".join)


@pytest.fixture
def model_db(tmp_path: Path) -> Iterator[Database]:
    with Database(open_store(tmp_path / "model.sqlite3", durability="off")) as database:
        database.apply_schema(_schema())
        yield database


def _clear(db: Database) -> None:
    def clear(tx: Transaction) -> None:
        for doc in Query(tx, "messages").collect():
            tx.delete(doc["_id"])

    db.write_sync(clear)


# Every example starts by emptying the one store (a store per example is slow on PostgreSQL).
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(text, st.sampled_from(["a", "b"])), max_size=12),
    st.one_of(word, text),
    st.booleans(),
)
@example(docs=[("é", "a"), ("zz", "a")], query_text="z", filtered=False)
@example(docs=[("東京", "a"), ("z東", "a")], query_text="東", filtered=False)
def test_search_finds_exactly_what_the_matching_rule_says(
    model_db: Database, docs: list[tuple[str, str]], query_text: str, filtered: bool
) -> None:
    """The store agrees with the rule, on any script, prefix (and its cap) included."""
    terms = query_terms(query_text)
    _clear(model_db)
    ids = _insert(model_db, *({"body": b, "channel": c} for b, c in docs))
    eqs = {"channel": "a"} if filtered else {}
    found = model_db.run_read(lambda tx: _query(tx, query_text, **eqs).collect()).value
    # The prefix stands for the shortest indexed terms starting with it (of every document).
    vocabulary = {t for body, _ in docs for t in tokenize(body)}
    prefix = terms.prefix or ""
    expanded = set(shortest_terms(t for t in vocabulary if t.startswith(prefix)))
    assert len(expanded) <= MAX_PREFIX_TERMS
    expected = set()
    for doc_id, (body, channel) in zip(ids, docs, strict=True):
        tokens = tokenize(body)
        if filtered and channel != "a":
            continue
        if terms.prefix is not None and any(t in expanded or t in terms.exact for t in tokens):
            expected.add(doc_id)
    assert {d["_id"] for d in found} == expected
    assert len(found) == len(expected)
