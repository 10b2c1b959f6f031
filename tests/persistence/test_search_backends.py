"""SQLite and PostgreSQL return the same search results, in the same order, scored alike.

One random corpus (seeded) goes into both backends, with updates and
deletions, and random queries (exact terms, a prefix that expands past the
cap, filters) are compared with each other and with the reference BM25 of
``search_ranking`` computed here from the corpus itself.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_databases import database_for_test
from syncline.persistence import open_persistence, postgres_search, sqlite_search
from syncline.persistence.base import Persistence, SearchEntry, SearchIndexRow, SearchRequest
from syncline.persistence.search_ranking import (
    MAX_PREFIX_TERMS,
    average_length,
    bm25,
    document_length,
    idf,
    phrases,
    shortest_terms,
)
from syncline.persistence.sqlite import SqlitePersistence

pytest.importorskip("psycopg", reason="needs syncline[postgres]")

from syncline.persistence.postgres import PostgresPersistence

TABLE = 10_001
INDEX = "search_body"
# Short stems with many extensions: a one-letter prefix matches far more than the cap.
STEMS = ["a", "ab", "b", "ca", "é", "東", "z", "9", "v"]
WORDS = sorted(
    {
        s + t
        for s in STEMS
        for t in ["", "a", "b", "ba", "zz", "é", "abc", "12", "c", "x", "bb", "東"]
    }
)
CHANNELS = ["va", "vb", "vc"]

Ranked = list[tuple[str, float]]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Persistence, Persistence]]:
    sqlite = SqlitePersistence(tmp_path / "side.sqlite3", durability="off")
    with database_for_test("syncline_side") as url:
        postgres = open_persistence(url, base=tmp_path, durability="off")
        try:
            yield sqlite, postgres
        finally:
            postgres.close()
            sqlite.close()


def _entry(rng: random.Random, n: int, time: float) -> SearchEntry:
    # Zipf-like word choice: a few very common terms, a long tail.
    length = rng.randint(0, 14)
    tokens = tuple(
        WORDS[min(int(rng.paretovariate(0.8)) - 1, len(WORDS) - 1)] for _ in range(length)
    )
    tokens = tuple(rng.choice(WORDS) if rng.random() < 0.3 else t for t in tokens)
    return SearchEntry(f"d{n:05d}", time, tokens, (rng.choice(CHANNELS),))


def _write(store: Persistence, puts: list[SearchEntry], deletes: list[str]) -> None:
    conn = store.begin_write()
    try:
        conn.put_search_entries(TABLE, INDEX, puts)
        conn.delete_search_entries(TABLE, INDEX, deletes)
    except BaseException:
        store.abort_write(conn)
        raise
    store.commit_write(conn)


def _ranked(store: Persistence, request: SearchRequest) -> Ranked:
    conn = store.reader()
    try:
        if isinstance(store, PostgresPersistence):
            return postgres_search.ranked(conn.session, TABLE, INDEX, request)  # type: ignore[attr-defined]
        return sqlite_search.ranked(conn.conn, TABLE, INDEX, request)  # type: ignore[attr-defined]
    finally:
        store.release_reader(conn)


def _reference(corpus: dict[str, SearchEntry], request: SearchRequest) -> Ranked:
    """The ranking ``search_ranking`` defines, computed from the corpus in Python."""
    vocabulary = {t for entry in corpus.values() for t in entry.tokens}
    expanded = (
        shortest_terms(t for t in vocabulary if t.startswith(request.prefix))
        if request.prefix is not None
        else []
    )
    terms = phrases(request.terms, expanded)
    count = len(corpus)
    lengths = {d: document_length(len(e.tokens), len(e.filters)) for d, e in corpus.items()}
    avgdl = average_length(count, sum(lengths.values()))
    holding = Counter(t for entry in corpus.values() for t in set(entry.tokens))
    idfs = [idf(count, holding[t]) for t in terms]
    scored = []
    for doc_id, entry in corpus.items():
        counts = Counter(entry.tokens)
        if not any(counts[t] for t in terms):
            continue
        if not set(request.filters) <= set(entry.filters):
            continue
        score = bm25([float(counts[t]) for t in terms], idfs, lengths[doc_id], avgdl)
        scored.append((score, entry.creation_time, doc_id))
    scored.sort(reverse=True)
    return [(doc_id, score) for score, _, doc_id in scored[: request.limit]]


def _request(rng: random.Random) -> SearchRequest:
    exact = tuple(dict.fromkeys(rng.choice(WORDS) for _ in range(rng.randint(0, 3))))
    word = rng.choice(WORDS)
    prefix = word[: rng.choice([1, 1, 2, len(word)])]
    filters = (rng.choice(CHANNELS),) if rng.random() < 0.3 else ()
    return SearchRequest(exact, prefix, filters, rng.choice([5, 20, 1025]))


def test_both_backends_rank_a_random_corpus_identically(
    stores: tuple[Persistence, Persistence], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL writes entries in statements of at most this many documents.
    monkeypatch.setattr(postgres_search, "STATEMENT_DOCUMENTS", 7)
    rng = random.Random(1414)
    corpus: dict[str, SearchEntry] = {}
    for store in stores:
        conn = store.begin_write()
        conn.create_search_index(SearchIndexRow(TABLE, INDEX, "body", ("channel",)))
        store.commit_write(conn)
    time = 1.0e12
    for batch in range(6):
        puts = []
        for n in range(batch * 80, batch * 80 + 80):
            time += rng.choice([0.0, 1.0])  # some equal creation times: ties go to the id
            puts.append(_entry(rng, n, time))
        # Re-index a few existing documents and remove a few others.
        puts += [
            _entry(rng, int(d[1:]), corpus[d].creation_time)
            for d in rng.sample(sorted(corpus), min(10, len(corpus)))
        ]
        deletes = rng.sample(sorted(corpus), min(8, len(corpus)))
        for store in stores:
            _write(store, puts, deletes)
        corpus.update({entry.doc_id: entry for entry in puts})
        for doc_id in deletes:
            corpus.pop(doc_id)
    assert len(corpus) > 400

    capped = 0
    for _ in range(80):
        request = _request(rng)
        expected = _reference(corpus, request)
        sqlite_ranked, postgres_ranked = (_ranked(store, request) for store in stores)
        assert [d for d, _ in sqlite_ranked] == [d for d, _ in expected], request
        assert [d for d, _ in postgres_ranked] == [d for d, _ in expected], request
        for ranked in (sqlite_ranked, postgres_ranked):
            assert [s for _, s in ranked] == pytest.approx([s for _, s in expected], rel=1e-12)
        vocabulary = {t for e in corpus.values() for t in e.tokens}
        assert request.prefix is not None
        capped += sum(t.startswith(request.prefix) for t in vocabulary) > MAX_PREFIX_TERMS
    assert capped >= 5  # the cap was exercised


def test_a_writer_searches_its_own_entries_and_a_rollback_to_the_savepoint_undoes_them(
    stores: tuple[Persistence, Persistence],
) -> None:
    request = SearchRequest((), "hel", (), 10)
    for store in stores:
        conn = store.begin_write()
        conn.create_search_index(SearchIndexRow(TABLE, INDEX, "body", ()))
        conn.put_search_entries(TABLE, INDEX, [SearchEntry("d1", 1.0, ("hello",), ())])
        assert conn.search(TABLE, INDEX, request) == ["d1"]
        conn.savepoint()
        conn.put_search_entries(TABLE, INDEX, [SearchEntry("d2", 2.0, ("help",), ())])
        conn.delete_search_entries(TABLE, INDEX, ["d1"])
        assert conn.search(TABLE, INDEX, request) == ["d2"]
        conn.rollback_to()
        conn.savepoint()
        conn.put_search_entries(TABLE, INDEX, [SearchEntry("d3", 3.0, ("hello", "hello"), ())])
        conn.release()
        store.commit_write(conn)
        reader = store.reader()
        try:
            assert reader.search(TABLE, INDEX, request) == ["d3", "d1"], store
        finally:
            store.release_reader(reader)


def test_a_snapshot_searches_the_entries_of_its_own_commit_only(
    stores: tuple[Persistence, Persistence],
) -> None:
    request = SearchRequest((), "hel", (), 10)
    for store in stores:
        conn = store.begin_write()
        conn.create_search_index(SearchIndexRow(TABLE, INDEX, "body", ()))
        conn.put_search_entries(TABLE, INDEX, [SearchEntry("d1", 1.0, ("hello",), ())])
        store.commit_write(conn)
        before = store.reader()
        try:
            before.get_global("ts")  # the snapshot is taken by its first read
            conn = store.begin_write()
            conn.put_search_entries(TABLE, INDEX, [SearchEntry("d2", 2.0, ("help",), ())])
            conn.delete_search_entries(TABLE, INDEX, ["d1"])
            store.commit_write(conn)
            assert before.search(TABLE, INDEX, request) == ["d1"], store
        finally:
            store.release_reader(before)
        after = store.reader()
        try:
            assert after.search(TABLE, INDEX, request) == ["d2"], store
        finally:
            store.release_reader(after)
