"""The commit log, client mutation records and used upload tokens, and their pruning."""

from __future__ import annotations

from syncline.persistence.base import LogEntry, Persistence, WriteConnection
from syncline.values.ids import new_id

from .support import snapshot, write


def _entries() -> list[LogEntry]:
    ids = sorted(new_id(10001) for _ in range(4))
    return [
        LogEntry(10, ids[0], 10001, b"a"),
        LogEntry(10, ids[1], 10001, None),  # a deletion
        LogEntry(12, ids[2], 10002, b"c"),
        LogEntry(15, ids[0], 10001, b"a2"),
        LogEntry(15, ids[3], 10001, b"d"),
        LogEntry(20, ids[1], 10001, b"b"),
    ]


def _by_ts(entries: list[LogEntry]) -> list[tuple[int, str]]:
    return sorted((e.ts, e.doc_id) for e in entries)


def test_log_since_returns_later_entries_in_ts_order(store: Persistence) -> None:
    entries = _entries()
    # Appended out of order and over several commits.
    write(store, lambda conn: conn.append_log(entries[3:]))
    write(store, lambda conn: conn.append_log(entries[:3]))
    with snapshot(store) as conn:
        for since in (0, 9, 10, 11, 12, 15, 19, 20, 99):
            got = conn.log_since(since, limit=100)
            assert [e.ts for e in got] == sorted(e.ts for e in got)
            assert sorted(got, key=lambda e: (e.ts, e.doc_id)) == sorted(
                (e for e in entries if e.ts > since), key=lambda e: (e.ts, e.doc_id)
            )
        # A deletion comes back with no value.
        assert {e.value for e in conn.log_since(0, limit=100) if e.ts == 10} == {b"a", None}


def test_log_since_limit_takes_the_earliest(store: Persistence) -> None:
    entries = _entries()
    write(store, lambda conn: conn.append_log(entries))
    with snapshot(store) as conn:
        assert [e.ts for e in conn.log_since(0, limit=3)] == [10, 10, 12]
        assert conn.log_since(12, limit=1)[0].ts == 15
        # Reading on from the last ts of a page never skips a later commit.
        page = conn.log_since(0, limit=4)
        last = page[-1].ts
        whole = [e for e in page if e.ts < last] + conn.log_since(last - 1, limit=100)
        assert _by_ts(whole) == _by_ts(entries)


def test_one_log_entry_per_ts_and_document_the_last_appended_wins(store: Persistence) -> None:
    doc_id = new_id(10001)

    def body(conn: WriteConnection) -> None:
        conn.append_log([LogEntry(5, doc_id, 10001, None)])
        conn.append_log([LogEntry(5, doc_id, 10001, b"new")])

    write(store, body)
    with snapshot(store) as conn:
        assert conn.log_since(0, limit=10) == [LogEntry(5, doc_id, 10001, b"new")]


def test_prune_log_forgets_entries_before_a_ts(store: Persistence) -> None:
    entries = _entries()
    write(store, lambda conn: conn.append_log(entries))
    assert write(store, lambda conn: conn.prune_log(12)) == 2
    assert write(store, lambda conn: conn.prune_log(12)) == 0
    with snapshot(store) as conn:
        assert _by_ts(conn.log_since(0, limit=100)) == _by_ts(entries[2:])
    assert write(store, lambda conn: conn.prune_log(100)) == 4
    with snapshot(store) as conn:
        assert conn.log_since(0, limit=100) == []


def test_mutation_records(store: Persistence) -> None:
    records = [
        ("session-a", 1, 100, b"fp1", b'{"ok":1}'),
        ("session-a", 2, 101, b"fp2", b""),
        ("session-b", 1, 102, b"\x00\xff", b"null"),
    ]
    write(store, lambda conn: conn.put_mutation_requests(records))
    with snapshot(store) as conn:
        for session, request, ts, fingerprint, result in records:
            assert conn.get_mutation_request(session, request) == (ts, fingerprint, result)
        assert conn.get_mutation_request("session-a", 3) is None
        assert conn.get_mutation_request("session-c", 1) is None


def test_used_upload_tokens_are_apart_from_mutation_records(store: Persistence) -> None:
    write(store, lambda conn: conn.put_used_upload_token(b"\x01nonce", 100, "storage-1"))
    with snapshot(store) as conn:
        assert conn.get_used_upload_token(b"\x01nonce") == "storage-1"
        assert conn.get_used_upload_token(b"other") is None
        assert conn.get_mutation_request("\x01nonce", 0) is None


def test_prune_request_records_forgets_both_kinds_before_a_ts(store: Persistence) -> None:
    def body(conn: WriteConnection) -> None:
        conn.put_mutation_requests([("s", i, ts, b"f", b"r") for i, ts in enumerate((5, 9, 10))])
        conn.put_used_upload_token(b"old", 9, "a")
        conn.put_used_upload_token(b"new", 10, "b")

    write(store, body)
    assert write(store, lambda conn: conn.prune_request_records(10)) == 3
    with snapshot(store) as conn:
        assert conn.get_mutation_request("s", 0) is None
        assert conn.get_mutation_request("s", 1) is None
        assert conn.get_mutation_request("s", 2) == (10, b"f", b"r")
        assert conn.get_used_upload_token(b"old") is None
        assert conn.get_used_upload_token(b"new") == "b"
