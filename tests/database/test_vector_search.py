"""Vector search over a real SQLite database: exact results, filters, limits, freshness.

:class:`VectorSearch` is driven directly (``search_now``) over a
:class:`Database`; ``ctx.vector_search`` in functions is tested in
``tests/functions/test_vector_ctx.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline import UNDEFINED, Int64, define_schema, define_table, v
from syncline.database.database import Database
from syncline.database.transaction import Transaction
from syncline.errors import InvalidQuery, LimitExceeded, SchemaDefinitionError
from syncline.persistence.sqlite import SqlitePersistence
from syncline.vectors import VectorSearch, VectorSettings
from syncline.vectors.filters import MAX_FILTER_TERMS

DIMS = 8


def _schema(dims: int = DIMS, *, index: bool = True) -> Any:
    table = define_table(
        {"e": v.optional(v.array(v.float64())), "kind": v.optional(v.string()), "n": v.any()}
    )
    if index:
        table = table.vector_index(
            "by_e", vector_field="e", dimensions=dims, filter_fields=["kind", "n"]
        )
    return define_schema({"docs": table})


def _open(path: Path) -> Database:
    return Database(SqlitePersistence(str(path), durability="off"))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = _open(tmp_path / "v.sqlite3")
    database.apply_schema(_schema())
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def search(db: Database) -> Iterator[VectorSearch]:
    service = VectorSearch(db)
    try:
        yield service
    finally:
        service.close()


def _insert_all(db: Database, docs: list[dict[str, Any]]) -> list[str]:
    def insert(tx: Transaction) -> list[str]:
        return [tx.insert("docs", doc) for doc in docs]

    return db.write_sync(insert).value


def _random_docs(rng: np.random.Generator, count: int, dims: int = DIMS) -> list[dict[str, Any]]:
    kinds = ["a", "b", "c", "d"]
    return [
        {"e": rng.standard_normal(dims).tolist(), "kind": kinds[i % 4], "n": float(i % 7)}
        for i in range(count)
    ]


def _reference(
    docs: dict[str, list[float]], query: list[float], limit: int
) -> list[tuple[str, float]]:
    """Brute force in float64: (id, cosine), best first, ties by id."""
    q = np.asarray(query, dtype=np.float64)
    q = q / np.linalg.norm(q)
    scored = []
    for doc_id, vector in docs.items():
        x = np.asarray(vector, dtype=np.float64)
        scored.append((doc_id, float(x @ q / np.linalg.norm(x))))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:limit]


def _assert_matches_reference(
    got: list[dict[str, Any]], want: list[tuple[str, float]], *, tolerance: float = 1e-5
) -> None:
    assert len(got) == len(want)
    for result, (doc_id, score) in zip(got, want, strict=True):
        assert result["_score"] == pytest.approx(score, abs=tolerance)
        if result["_id"] != doc_id:
            # Only a near-tie (within float32 rounding) may swap two documents.
            assert abs(result["_score"] - score) <= tolerance
    scores = [r["_score"] for r in got]
    assert scores == sorted(scores, reverse=True)


# ---------------------------------------------------------------------- exact results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_top_k_matches_brute_force(db: Database, search: VectorSearch, seed: int) -> None:
    rng = np.random.default_rng(seed)
    docs = _random_docs(rng, 600)
    ids = _insert_all(db, docs)
    vectors = {doc_id: doc["e"] for doc_id, doc in zip(ids, docs, strict=True)}
    for limit in (1, 10, 256):
        query = rng.standard_normal(DIMS).tolist()
        got = search.search_now("docs", "by_e", vector=query, limit=limit)
        _assert_matches_reference(got, _reference(vectors, query, limit))


def test_the_default_limit_is_ten_and_results_are_ids_and_scores(
    db: Database, search: VectorSearch
) -> None:
    _insert_all(db, _random_docs(np.random.default_rng(3), 30))
    got = search.search_now("docs", "by_e", vector=[1.0] * DIMS)
    assert len(got) == 10
    assert all(set(r) == {"_id", "_score"} and -1.0 <= r["_score"] <= 1.0 for r in got)


@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(st.sampled_from([(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-1.0, 2.0)]), max_size=40),
    query=st.sampled_from([(1.0, 0.0), (0.0, 1.0), (2.0, 2.0), (3.0, -1.0)]),
    limit=st.integers(1, 20),
)
def test_ties_are_broken_by_id(
    tmp_path_factory: pytest.TempPathFactory,
    picks: list[tuple[float, float]],
    query: tuple[float, float],
    limit: int,
) -> None:
    database = _open(tmp_path_factory.mktemp("ties") / "t.sqlite3")
    database.apply_schema(_schema(2))
    service = VectorSearch(database)
    try:
        ids = _insert_all(database, [{"e": list(p), "kind": "a", "n": 0.0} for p in picks])
        got = service.search_now("docs", "by_e", vector=list(query), limit=limit)
        want = _reference({i: list(p) for i, p in zip(ids, picks, strict=True)}, list(query), limit)
        # Equal vectors give bit-equal scores: the order is exactly (score desc, id asc).
        assert [r["_id"] for r in got] == [
            doc_id for doc_id, _ in sorted(want, key=lambda w: (-round(w[1], 5), w[0]))
        ]
    finally:
        service.close()
        database.close()


def test_documents_without_a_vector_of_the_right_shape_are_not_indexed(
    db: Database, search: VectorSearch
) -> None:
    good = _insert_all(db, [{"e": [1.0] * DIMS, "kind": "a", "n": 0.0}])
    _insert_all(
        db,
        [
            {"kind": "a", "n": 0.0},  # no vector
            {"e": [1.0] * (DIMS - 1), "kind": "a", "n": 0.0},  # wrong length
            {"e": [0.0] * DIMS, "kind": "a", "n": 0.0},  # zero vector: no direction
        ],
    )
    db.apply_schema(
        define_schema(
            {
                "docs": define_table({"e": v.any(), "kind": v.any(), "n": v.any()}).vector_index(
                    "by_e", vector_field="e", dimensions=DIMS, filter_fields=["kind", "n"]
                )
            },
            schema_validation=False,  # lets documents hold anything in the vector field
        )
    )
    _insert_all(
        db,
        [
            {"e": ["x"] * DIMS, "kind": "a", "n": 0.0},  # not numbers
            {"e": [Int64(1)] * DIMS, "kind": "a", "n": 0.0},  # int64, not float64
            {"e": "not a list", "kind": "a", "n": 0.0},
        ],
    )
    got = search.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=256)
    assert [r["_id"] for r in got] == good
    assert search.stats()["docs.by_e"]["vectors"] == 1


def test_a_zero_query_vector_scores_every_document_zero(db: Database, search: VectorSearch) -> None:
    ids = _insert_all(db, _random_docs(np.random.default_rng(4), 5))
    got = search.search_now("docs", "by_e", vector=[0.0] * DIMS, limit=3)
    assert got == [{"_id": i, "_score": 0.0} for i in sorted(ids)[:3]]


# ---------------------------------------------------------------------- filters


def test_filter_is_an_or_of_equalities(db: Database, search: VectorSearch) -> None:
    rng = np.random.default_rng(5)
    docs = _random_docs(rng, 400)
    ids = _insert_all(db, docs)
    query = rng.standard_normal(DIMS).tolist()

    def keep(pred: Any) -> dict[str, list[float]]:
        return {i: d["e"] for i, d in zip(ids, docs, strict=True) if pred(d)}

    got = search.search_now(
        "docs", "by_e", vector=query, limit=50, filter=lambda q: q.eq("kind", "b")
    )
    _assert_matches_reference(got, _reference(keep(lambda d: d["kind"] == "b"), query, 50))

    got = search.search_now(
        "docs",
        "by_e",
        vector=query,
        limit=256,
        filter=lambda q: q.eq("kind", "a") | q.eq("n", 3),  # an int matches the float 3.0
    )
    want = keep(lambda d: d["kind"] == "a" or d["n"] == 3.0)
    _assert_matches_reference(got, _reference(want, query, 256))

    got = search.search_now(
        "docs",
        "by_e",
        vector=query,
        limit=256,
        filter=lambda q: q.or_(q.eq("kind", "c"), q.eq("kind", "d"), q.eq("kind", "zzz")),
    )
    _assert_matches_reference(got, _reference(keep(lambda d: d["kind"] in ("c", "d")), query, 256))


def test_filter_on_a_missing_field_with_undefined(db: Database, search: VectorSearch) -> None:
    [without] = _insert_all(db, [{"e": [1.0] * DIMS, "n": 0.0}])
    _insert_all(db, [{"e": [1.0] * DIMS, "kind": "a", "n": 0.0}])
    got = search.search_now(
        "docs", "by_e", vector=[1.0] * DIMS, filter=lambda q: q.eq("kind", UNDEFINED)
    )
    assert [r["_id"] for r in got] == [without]
    assert (
        search.search_now("docs", "by_e", vector=[1.0] * DIMS, filter=lambda q: q.eq("kind", None))
        == []
    )


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda q: q.eq("title", "x"), "InvalidVectorFilter"),  # not a filter field
        (lambda q: True, "InvalidVectorFilter"),
        (lambda q: q.or_(q.eq("kind", "a"), "b"), "InvalidVectorFilter"),
        ("kind", "InvalidVectorFilter"),
        (
            lambda q: q.or_(*(q.eq("n", i) for i in range(MAX_FILTER_TERMS + 1))),
            "TooManyVectorFilterTerms",
        ),
    ],
)
def test_bad_filters_are_clear_errors(
    db: Database, search: VectorSearch, build: Any, code: str
) -> None:
    _insert_all(db, _random_docs(np.random.default_rng(6), 3))
    with pytest.raises(InvalidQuery) as info:
        search.search_now("docs", "by_e", vector=[1.0] * DIMS, filter=build)
    assert info.value.code == code


def test_sixty_four_filter_terms_are_allowed(db: Database, search: VectorSearch) -> None:
    ids = _insert_all(db, _random_docs(np.random.default_rng(7), 20))
    got = search.search_now(
        "docs",
        "by_e",
        vector=[1.0] * DIMS,
        limit=256,
        filter=lambda q: q.or_(*(q.eq("n", i) for i in range(MAX_FILTER_TERMS))),
    )
    assert sorted(r["_id"] for r in got) == sorted(ids)


# ---------------------------------------------------------------------- limits and errors


@pytest.mark.parametrize("limit", [0, 257, -1, 1.5, True, "10", None])
def test_limit_outside_1_to_256_is_an_error(db: Database, search: VectorSearch, limit: Any) -> None:
    with pytest.raises(InvalidQuery) as info:
        search.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=limit)
    assert info.value.code == "InvalidVectorSearchLimit"
    assert "1 to 256" in info.value.message


def test_limit_256_returns_256(db: Database, search: VectorSearch) -> None:
    _insert_all(db, _random_docs(np.random.default_rng(8), 300))
    assert len(search.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=256)) == 256
    assert len(search.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=256.0)) == 256


@pytest.mark.parametrize("length", [1, DIMS - 1, DIMS + 1, 4096])
def test_a_vector_of_another_length_is_a_dimension_error(
    db: Database, search: VectorSearch, length: int
) -> None:
    with pytest.raises(InvalidQuery) as info:
        search.search_now("docs", "by_e", vector=[1.0] * length)
    assert info.value.code == "VectorDimensionMismatch"
    assert f"{DIMS} numbers" in info.value.message and f"got {length}" in info.value.message


@pytest.mark.parametrize(
    "vector", [[], "abc", [1.0, "x"] * 4, [float("nan")] * DIMS, [True] * DIMS, None]
)
def test_a_vector_that_is_not_finite_numbers_is_an_error(
    db: Database, search: VectorSearch, vector: Any
) -> None:
    with pytest.raises(InvalidQuery) as info:
        search.search_now("docs", "by_e", vector=vector)
    assert info.value.code == "InvalidVector"


def test_an_unknown_index_is_an_error_naming_the_known_ones(
    db: Database, search: VectorSearch
) -> None:
    with pytest.raises(InvalidQuery) as info:
        search.search_now("docs", "by_x", vector=[1.0] * DIMS)
    assert info.value.code == "IndexNotFoundError"
    assert "docs.by_e" in info.value.message


def test_indexes_past_the_memory_limit_refuse_searches(tmp_path: Path) -> None:
    database = _open(tmp_path / "m.sqlite3")
    database.apply_schema(_schema())
    service = VectorSearch(database, VectorSettings(max_memory_bytes=64 * 1024))
    try:
        _insert_all(database, _random_docs(np.random.default_rng(9), 10))
        assert len(service.search_now("docs", "by_e", vector=[1.0] * DIMS)) == 10
        _insert_all(database, _random_docs(np.random.default_rng(9), 2000))
        with pytest.raises(LimitExceeded) as info:
            service.search_now("docs", "by_e", vector=[1.0] * DIMS)
        assert info.value.code == "VectorIndexMemoryLimit"
    finally:
        service.close()
        database.close()


def test_without_numpy_a_vector_schema_names_the_extra(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = VectorSearch(db)
    try:
        service.check_schema(_schema(index=False))  # no vector index: nothing needed
        monkeypatch.setitem(sys.modules, "numpy", None)
        with pytest.raises(SchemaDefinitionError) as info:
            service.check_schema(_schema())
        assert info.value.code == "VectorExtraMissing"
        assert "syncline[vector]" in info.value.message
    finally:
        service.close()


# ---------------------------------------------------------------------- freshness


def test_inserts_updates_and_deletes_are_reflected_right_after_commit(
    db: Database, search: VectorSearch
) -> None:
    east, north = [1.0] + [0.0] * (DIMS - 1), [0.0, 1.0] + [0.0] * (DIMS - 2)
    [a] = _insert_all(db, [{"e": east, "kind": "a", "n": 0.0}])
    assert search.search_now("docs", "by_e", vector=east, limit=1)[0]["_id"] == a
    [b] = _insert_all(db, [{"e": east, "kind": "b", "n": 0.0}])
    assert [r["_id"] for r in search.search_now("docs", "by_e", vector=east)] == sorted([a, b])

    db.write_sync(lambda tx: tx.patch(a, {"e": north}))
    got = search.search_now("docs", "by_e", vector=north)
    assert got[0] == {"_id": a, "_score": pytest.approx(1.0)}
    assert got[1]["_score"] == pytest.approx(0.0, abs=1e-6)

    db.write_sync(lambda tx: tx.patch(b, {"kind": "c"}))
    only_c = search.search_now("docs", "by_e", vector=east, filter=lambda q: q.eq("kind", "c"))
    assert [r["_id"] for r in only_c] == [b]

    db.write_sync(lambda tx: tx.patch(b, {"e": UNDEFINED}))  # no vector any more
    assert [r["_id"] for r in search.search_now("docs", "by_e", vector=east)] == [a]

    db.write_sync(lambda tx: tx.delete(a))
    assert search.search_now("docs", "by_e", vector=east) == []


def test_many_deletes_compact_the_index_and_keep_it_exact(
    db: Database, search: VectorSearch
) -> None:
    rng = np.random.default_rng(10)
    docs = _random_docs(rng, 3000)
    ids = _insert_all(db, docs)
    search.search_now("docs", "by_e", vector=[1.0] * DIMS)  # built
    gone = set(ids[::2][:1400])
    db.write_sync(lambda tx: [tx.delete(i) for i in gone])
    left = {i: d["e"] for i, d in zip(ids, docs, strict=True) if i not in gone}
    query = rng.standard_normal(DIMS).tolist()
    got = search.search_now("docs", "by_e", vector=query, limit=100)
    _assert_matches_reference(got, _reference(left, query, 100))
    assert search.stats()["docs.by_e"]["vectors"] == len(left)


def test_a_commit_from_another_process_is_reflected(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    a, b = _open(path), _open(path)
    a.apply_schema(_schema())
    service = VectorSearch(a)
    try:
        east = [1.0] + [0.0] * (DIMS - 1)
        assert service.search_now("docs", "by_e", vector=east) == []
        [doc] = _insert_all(b, [{"e": east, "kind": "a", "n": 0.0}])
        # No wake-up, no poll: the search itself catches up with the store.
        assert service.search_now("docs", "by_e", vector=east) == [
            {"_id": doc, "_score": pytest.approx(1.0)}
        ]
        b.write_sync(lambda tx: tx.delete(doc))
        assert service.search_now("docs", "by_e", vector=east) == []
    finally:
        service.close()
        a.close()
        b.close()


def test_indexes_are_rebuilt_from_the_database_at_start(tmp_path: Path) -> None:
    path = tmp_path / "restart.sqlite3"
    first = _open(path)
    first.apply_schema(_schema())
    rng = np.random.default_rng(11)
    docs = _random_docs(rng, 500)
    ids = _insert_all(first, docs)
    first.close()

    reopened = _open(path)
    service = VectorSearch(reopened)
    try:
        query = rng.standard_normal(DIMS).tolist()
        got = service.search_now("docs", "by_e", vector=query, limit=20)
        vectors = {i: d["e"] for i, d in zip(ids, docs, strict=True)}
        _assert_matches_reference(got, _reference(vectors, query, 20))
    finally:
        service.close()
        reopened.close()


def test_an_index_added_later_is_built_and_a_removed_one_dropped(tmp_path: Path) -> None:
    database = _open(tmp_path / "later.sqlite3")
    database.apply_schema(_schema(index=False))
    service = VectorSearch(database)
    try:
        ids = _insert_all(database, _random_docs(np.random.default_rng(12), 50))
        with pytest.raises(InvalidQuery):
            service.search_now("docs", "by_e", vector=[1.0] * DIMS)
        database.apply_schema(_schema())
        got = service.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=256)
        assert sorted(r["_id"] for r in got) == sorted(ids)
        database.apply_schema(_schema(index=False))
        with pytest.raises(InvalidQuery) as info:
            service.search_now("docs", "by_e", vector=[1.0] * DIMS)
        assert info.value.code == "IndexNotFoundError"
        assert service.stats() == {}
    finally:
        service.close()
        database.close()


# ---------------------------------------------------------------------- approximate


def _recall(got: list[dict[str, Any]], want: list[tuple[str, float]]) -> float:
    return len({r["_id"] for r in got} & {doc_id for doc_id, _ in want}) / len(want)


def test_approximate_index_recall_at_10_on_random_data(tmp_path: Path) -> None:
    dims = 32
    database = _open(tmp_path / "ann.sqlite3")
    database.apply_schema(_schema(dims))
    service = VectorSearch(database, VectorSettings(mode="approximate", exact_below=0))
    try:
        rng = np.random.default_rng(13)
        docs = _random_docs(rng, 5000, dims)
        ids = _insert_all(database, docs)
        vectors = {i: d["e"] for i, d in zip(ids, docs, strict=True)}
        recalls = []
        for _ in range(40):
            query = rng.standard_normal(dims).tolist()
            got = service.search_now("docs", "by_e", vector=query, limit=10)
            recalls.append(_recall(got, _reference(vectors, query, 10)))
        assert service.stats()["docs.by_e"]["approximate"] is True
        assert float(np.mean(recalls)) >= 0.95

        # Filtered: over-fetched from the graph, every result matches the filter.
        for _ in range(10):
            query = rng.standard_normal(dims).tolist()
            got = service.search_now(
                "docs", "by_e", vector=query, limit=10, filter=lambda q: q.eq("kind", "c")
            )
            kinds = {i: d["kind"] for i, d in zip(ids, docs, strict=True)}
            assert len(got) == 10 and all(kinds[r["_id"]] == "c" for r in got)
            want = _reference({i: x for i, x in vectors.items() if kinds[i] == "c"}, query, 10)
            assert _recall(got, want) >= 0.8
    finally:
        service.close()
        database.close()


def test_approximate_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    database = _open(tmp_path / "ann2.sqlite3")
    database.apply_schema(_schema())
    service = VectorSearch(database, VectorSettings(mode="approximate", exact_below=0))
    try:
        ids = _insert_all(database, _random_docs(np.random.default_rng(14), 500))
        east = [1.0] + [0.0] * (DIMS - 1)
        database.write_sync(lambda tx: tx.patch(ids[7], {"e": east}))
        assert service.search_now("docs", "by_e", vector=east, limit=1)[0]["_id"] == ids[7]
        database.write_sync(lambda tx: tx.delete(ids[7]))
        got = service.search_now("docs", "by_e", vector=east, limit=256)
        assert ids[7] not in {r["_id"] for r in got} and len(got) == 256
    finally:
        service.close()
        database.close()


def _wait_for_graph(service: VectorSearch, wanted: bool) -> None:
    deadline = time.monotonic() + 20
    while service.stats()["docs.by_e"]["approximate"] is not wanted:
        assert time.monotonic() < deadline, service.stats()
        time.sleep(0.01)
        service.search_now("docs", "by_e", vector=[1.0] * DIMS)  # puts a built graph in place


def test_auto_mode_builds_the_graph_apart_above_the_threshold(tmp_path: Path) -> None:
    database = _open(tmp_path / "auto.sqlite3")
    database.apply_schema(_schema())
    service = VectorSearch(database, VectorSettings(approximate_above=300, exact_below=0))
    try:
        rng = np.random.default_rng(15)
        docs = _random_docs(rng, 299)
        ids = _insert_all(database, docs)
        service.search_now("docs", "by_e", vector=[1.0] * DIMS)
        assert service.stats()["docs.by_e"]["approximate"] is False
        more = _insert_all(database, _random_docs(rng, 1))
        assert len(service.search_now("docs", "by_e", vector=[1.0] * DIMS, limit=256)) == 256
        # Writes made while the graph is built reach it when it is put in place.
        east = [1.0] + [0.0] * (DIMS - 1)
        database.write_sync(lambda tx: tx.patch(ids[3], {"e": east}))
        database.write_sync(lambda tx: tx.delete(ids[4]))
        _wait_for_graph(service, True)
        assert service.search_now("docs", "by_e", vector=east, limit=1)[0]["_id"] == ids[3]
        found = {r["_id"] for r in service.search_now("docs", "by_e", vector=east, limit=256)}
        assert ids[4] not in found and len(found) == 256

        database.write_sync(lambda tx: [tx.delete(i) for i in ids[5:205] + more])
        service.search_now("docs", "by_e", vector=[1.0] * DIMS)
        assert service.stats()["docs.by_e"]["approximate"] is False  # below half
    finally:
        service.close()
        database.close()


def test_closing_twice_is_harmless(db: Database) -> None:
    service = VectorSearch(db)
    service.close()
    service.close()  # an application closed twice closes its vector search twice
