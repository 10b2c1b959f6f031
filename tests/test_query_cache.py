"""The query cache's own rules: what is kept, what evicts it, its bound (``syncline.query_cache``).

The HTTP behaviour (answers, formats, identities) is in ``tests/server/test_query_cache.py``.
"""

from __future__ import annotations

from syncline.database.reads import ReadSet, point
from syncline.database.writes import EVERYTHING_CHANGED, Commit, WriteSet
from syncline.functions.outcomes import Outcome
from syncline.functions.registration import FunctionKind
from syncline.identity import ANONYMOUS
from syncline.query_cache import QueryCache

INDEX = "messages.by_id"


def outcome(key: bytes, ts: int, value: object = "v") -> Outcome:
    read_set = ReadSet()
    read_set.add(INDEX, point(key))
    return Outcome(
        "m:q", FunctionKind.QUERY, value=value, ts=ts, read_set=read_set, caller=ANONYMOUS
    )


def writes(*keys: bytes) -> WriteSet:
    return WriteSet(keys={INDEX: list(keys)})


class Fixture:
    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.conflict: int | None = None
        self.current = True
        self.cache = QueryCache(
            max_bytes=max_bytes,
            first_conflict=lambda read_set, ts: self.conflict,
            up_to_date=lambda: self.current,
        )

    def put(self, args: bytes, key: bytes, ts: int, answer: bytes = b"{}") -> bool:
        entry = self.cache.store("m:q", args, outcome(key, ts), ANONYMOUS)
        if entry is None:
            return False
        self.cache.add_answer(entry, "json", answer)
        return True

    def has(self, args: bytes) -> bool:
        return self.cache.lookup("m:q", args, ANONYMOUS) is not None


def test_a_commit_evicts_only_the_entries_it_overlaps_and_only_if_newer() -> None:
    f = Fixture()
    assert f.put(b"1", b"k1", ts=10) and f.put(b"2", b"k2", ts=20)
    f.cache.on_commit(Commit(15, writes(b"k2")))  # older than entry 2's snapshot: no effect
    assert f.has(b"1") and f.has(b"2")
    f.cache.on_commit(Commit(21, writes(b"k2", b"other")))
    assert f.has(b"1") and not f.has(b"2")
    f.cache.on_commit(Commit(22, WriteSet(), flags=EVERYTHING_CHANGED))
    assert len(f.cache) == 0 and f.cache.size_bytes == 0


def test_an_answer_changed_while_it_ran_is_not_kept_and_a_lagging_process_serves_nothing() -> None:
    f = Fixture()
    f.conflict = 12  # a commit processed after the snapshot overlapped the reads
    assert not f.put(b"1", b"k1", ts=10)
    f.conflict = None
    assert f.put(b"1", b"k1", ts=10)
    f.current = False  # a published commit is not processed yet
    assert not f.has(b"1")
    f.current = True
    assert f.has(b"1")


def test_the_bytes_held_are_bounded_and_the_least_recently_used_go_first() -> None:
    f = Fixture(max_bytes=3 * (512 + 1000))
    for n in range(3):
        assert f.put(b"%d" % n, b"k%d" % n, ts=1, answer=b"x" * 1000)
    assert f.has(b"0")  # now the most recently used
    assert f.put(b"3", b"k3", ts=1, answer=b"x" * 1000)
    assert [f.has(b"%d" % n) for n in range(4)] == [True, False, True, True]
    assert f.cache.size_bytes <= f.cache.max_bytes
    # An answer larger than the whole cache is not kept at all.
    assert f.put(b"big", b"kb", ts=1, answer=b"x" * 10_000) and not f.has(b"big")
    assert f.cache.size_bytes <= f.cache.max_bytes


def test_paths_that_are_never_cached() -> None:
    cache = Fixture().cache
    assert cache.canonical_path("messages:list") == "messages:list"
    assert cache.canonical_path("messages") == "messages:default"
    assert cache.canonical_path("_system/dashboard/health:get") is None
    assert cache.canonical_path("") is None
