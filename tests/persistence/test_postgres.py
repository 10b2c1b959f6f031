"""PostgreSQL storage beyond the contract: long keys, lost connections, timeouts, nodes' helpers.

Each test gets a fresh database (``postgres_databases.py``); without a server
they skip, and fail under CI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postgres_databases import database_for_test, maintenance_url
from syncline import metrics
from syncline.errors import DatabaseUnavailable, InvalidRequest
from syncline.persistence import open_persistence
from syncline.persistence.base import BY_ID_INDEX, CommitRow, Persistence
from syncline.persistence.by_id import key_of_id
from syncline.values.ids import new_id

pytest.importorskip("psycopg", reason="needs syncline[postgres]")

from syncline.persistence.postgres import KEY_PREFIX_BYTES, PostgresPersistence
from syncline.persistence.postgres_settings import parse_postgres_url

OpenStore = Callable[..., PostgresPersistence]


@pytest.fixture
def database_url() -> Iterator[str]:
    with database_for_test("syncline_pg") as url:
        yield url


@pytest.fixture
def open_store(database_url: str) -> Iterator[OpenStore]:
    opened: list[Persistence] = []

    def open_one(query: str = "", *, durability: Any = "off") -> PostgresPersistence:
        store = open_persistence(database_url + query, base=Path.cwd(), durability=durability)
        assert isinstance(store, PostgresPersistence)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def _terminate_sessions(database_url: str, role: str = "%") -> int:
    """End the database's Syncline sessions of ``role`` from the server side, as a restart would."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(maintenance_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE %s",
            (name, f"syncline {role}"),
        ).fetchall()
    return len(rows)


def _terminate_backend(pid: int) -> None:
    import psycopg

    with psycopg.connect(maintenance_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _table(store: Persistence) -> tuple[int, int, int]:
    """(table number, by_id index, by_value index) of a new table."""
    conn = store.begin_write()
    try:
        conn.create_table("t", 10001)
        by_id = conn.create_index(10001, BY_ID_INDEX, ())
        by_value = conn.create_index(10001, "by_value", ("value",))
    except BaseException:
        store.abort_write(conn)
        raise
    store.commit_write(conn)
    return 10001, by_id, by_value


# ---------------------------------------------------------------------- keys


_KEYS = st.sets(
    st.tuples(
        st.sampled_from([0, KEY_PREFIX_BYTES - 1, KEY_PREFIX_BYTES, 3000]), st.binary(max_size=6)
    ),
    min_size=1,
    max_size=12,
)


def test_keys_longer_than_a_btree_entry_scan_in_byte_order(open_store: OpenStore) -> None:
    """Keys sharing prefixes past KEY_PREFIX_BYTES (and past PostgreSQL's btree entry limit)."""
    store = open_store()
    number, _, by_value = _table(store)

    @settings(max_examples=25, deadline=None)
    @given(keys=_KEYS, bounds=st.tuples(st.binary(max_size=4), st.binary(max_size=4)))
    def check(keys: set[tuple[int, bytes]], bounds: tuple[bytes, bytes]) -> None:
        stored = sorted(b"k" * pad + tail for pad, tail in keys)
        ids = [new_id(number) for _ in stored]
        conn = store.begin_write()
        for key, doc_id in zip(stored, ids, strict=True):
            conn.put_document(doc_id, number, 1, b"v")
            conn.insert_index_entries([(by_value, key, doc_id)])
        store.commit_write(conn)
        low = b"k" * KEY_PREFIX_BYTES + bounds[0]
        reader = store.reader()
        try:
            for start, end in [(b"", b"\xff"), (low, b"\xff"), (b"k", low), (low, low + bounds[1])]:
                expected = [k for k in stored if start <= k < end]
                for reverse in (False, True):
                    rows = reader.scan(by_value, start, end, reverse=reverse, limit=100)
                    assert [key for key, _, _ in rows] == (expected[::-1] if reverse else expected)
        finally:
            store.release_reader(reader)
        conn = store.begin_write()
        conn.delete_index_entries([(by_value, key) for key in stored])
        for doc_id in ids:
            conn.delete_document(doc_id)
        store.commit_write(conn)
        reader = store.reader()
        try:
            assert reader.count(by_value) == 0
        finally:
            store.release_reader(reader)

    check()


def test_a_by_id_bound_between_two_ids_selects_the_ids_above_it(open_store: OpenStore) -> None:
    """A key bound ``id + 00 + tail`` maps to an id bound text cannot hold (NUL)."""
    store = open_store()
    number, by_id, _ = _table(store)
    ids = sorted(new_id(number) for _ in range(5))
    conn = store.begin_write()
    for doc_id in ids:
        conn.put_document(doc_id, number, 1, doc_id.encode())
    store.commit_write(conn)
    reader = store.reader()
    try:
        start = key_of_id(ids[1]) + b"\x01"
        end = key_of_id(ids[3]) + b"\x01"
        rows = reader.scan(by_id, start, end, reverse=False, limit=10)
        assert [doc_id for _, doc_id, _ in rows] == ids[2:4]
        rows = reader.scan(by_id, start, end, reverse=True, limit=10)
        assert [doc_id for _, doc_id, _ in rows] == ids[3:1:-1]
    finally:
        store.release_reader(reader)


# ---------------------------------------------------------------------- URL


def test_the_url_parameters_are_syncline_s_and_the_rest_libpq_s() -> None:
    conninfo, settings = parse_postgres_url(
        "postgresql://u@h:5/db?sslmode=disable&max_connections=5&lock_timeout_ms=250"
    )
    assert conninfo == "postgresql://u@h:5/db?sslmode=disable"
    assert (settings.max_connections, settings.max_readers, settings.lock_timeout_ms) == (5, 2, 250)


@pytest.mark.parametrize(
    "query", ["max_connections=2", "statement_timeout_ms=x", "lock_timeout_ms=0"]
)
def test_a_url_parameter_out_of_range_is_refused(query: str) -> None:
    with pytest.raises(InvalidRequest, match="expected a whole number") as info:
        parse_postgres_url(f"postgresql://h/db?{query}")
    assert info.value.code == "InvalidDatabaseUrl"


# ---------------------------------------------------------------------- failures


def test_a_lost_connection_raises_database_unavailable_and_the_next_call_reconnects(
    open_store: OpenStore, database_url: str
) -> None:
    store = open_store()
    _table(store)
    store.release_reader(store.reader())
    assert _terminate_sessions(database_url) >= 2  # the writer and the idle reader
    with pytest.raises(DatabaseUnavailable) as info:
        store.release_reader(store.reader())
    assert info.value.code == "DatabaseUnavailable"
    with pytest.raises(DatabaseUnavailable):
        store.abort_write(store.begin_write())
    # Both were replaced: the store works again without being reopened.
    reader = store.reader()
    try:
        assert [t.name for t in reader.tables()] == ["t"]
    finally:
        store.release_reader(reader)
    conn = store.begin_write()
    conn.set_global("after", b"1")
    store.commit_write(conn)


def test_a_commit_waits_for_the_write_lock_at_most_lock_timeout_ms(open_store: OpenStore) -> None:
    holder = open_store()
    waiter = open_store("?lock_timeout_ms=300")
    conn = holder.begin_write()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="lock_timeout_ms") as info:
            waiter.begin_write()
        assert info.value.code == "DatabaseTimeout"
        assert 0.25 < time.monotonic() - started < 5
    finally:
        holder.commit_write(conn)
    # The waiter is usable again once the lock is free.
    waiter.commit_write(waiter.begin_write())


def _sample(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


def test_the_write_lock_s_wait_and_hold_times_are_measured(open_store: OpenStore) -> None:
    holder, waiter = open_store(), open_store()
    waits = _sample("syncline_postgres_write_lock_wait_seconds_count")
    waited = _sample("syncline_postgres_write_lock_wait_seconds_sum")
    holds = _sample("syncline_postgres_write_lock_hold_seconds_count")
    held = _sample("syncline_postgres_write_lock_hold_seconds_sum")
    conn = holder.begin_write()
    waiting = threading.Thread(target=lambda: waiter.abort_write(waiter.begin_write()))
    waiting.start()
    time.sleep(0.3)
    holder.commit_write(conn)
    waiting.join(10)
    assert _sample("syncline_postgres_write_lock_wait_seconds_count") - waits == 2
    # The second waited for the first, which held the lock that long.
    assert _sample("syncline_postgres_write_lock_wait_seconds_sum") - waited >= 0.25
    assert _sample("syncline_postgres_write_lock_hold_seconds_count") - holds == 2
    assert _sample("syncline_postgres_write_lock_hold_seconds_sum") - held >= 0.25


def test_a_statement_runs_at_most_statement_timeout_ms(open_store: OpenStore) -> None:
    store = open_store("?statement_timeout_ms=200")
    reader = store.reader()
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            reader.session.run("SELECT pg_sleep(5)", what="sleeping")  # type: ignore[attr-defined]
        assert info.value.code == "DatabaseTimeout"
    finally:
        store.release_reader(reader)


def test_a_node_opens_at_most_max_connections(open_store: OpenStore) -> None:
    store = open_store("?max_connections=4")  # one reader: 4 minus writer, listener, lease
    first = store.reader()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(store.reader()))
    thread.start()
    thread.join(0.3)
    assert not got  # waiting for the one reader
    store.release_reader(first)
    thread.join(5)
    assert got == [first]
    store.release_reader(first)


def test_a_transaction_idle_past_the_timeout_is_ended_by_the_server(open_store: OpenStore) -> None:
    """A hung node cannot hold the write lock: PostgreSQL ends its session."""
    hung = open_store("?idle_in_transaction_timeout_ms=300")
    other = open_store("?lock_timeout_ms=5000")
    hung.begin_write()  # and never finishes
    started = time.monotonic()
    other.commit_write(other.begin_write())
    assert time.monotonic() - started < 4


# ---------------------------------------------------------------------- nodes


def test_several_nodes_create_the_tables_at_once(open_store: OpenStore) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_store()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]


def test_a_commit_wakes_the_other_nodes_with_its_ts(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    wakeups = b.commit_wakeups()
    try:
        assert wakeups.receive(0.05) is None  # starts listening
        conn = a.begin_write()
        conn.append_commits([CommitRow(41, 0, b""), CommitRow(42, 0, b"")])
        conn.set_global("ts", b"42")
        a.commit_write(conn)
        deadline = time.monotonic() + 5
        heard = None
        while heard is None and time.monotonic() < deadline:
            heard = wakeups.receive(0.5)
        assert heard == 42
        # A transaction that writes no commit-log row announces nothing.
        a.commit_write(a.begin_write())
        assert wakeups.receive(0.3) is None
    finally:
        wakeups.close()


def test_the_listener_reconnects_after_its_connection_is_lost(
    open_store: OpenStore, database_url: str
) -> None:
    a, b = open_store(), open_store()
    wakeups = b.commit_wakeups()
    try:
        wakeups.receive(0.05)
        _terminate_sessions(database_url, "listener")
        deadline = time.monotonic() + 10
        heard = None
        ts = 100
        while heard is None and time.monotonic() < deadline:
            ts += 1
            conn = a.begin_write()
            conn.append_commits([CommitRow(ts, 0, b"")])
            a.commit_write(conn)
            heard = wakeups.receive(0.3)
        assert heard is not None and heard > 100
    finally:
        wakeups.close()


def test_one_lease_holder_at_a_time_and_takeover_when_it_dies(
    open_store: OpenStore, database_url: str
) -> None:
    first = open_store().exclusive_lease("scheduler")
    second = open_store().exclusive_lease("scheduler")
    assert first.try_acquire() and first.held
    assert not second.try_acquire() and not second.held
    assert first.try_acquire()  # still ours
    _terminate_backend(first._session.conn.info.backend_pid)  # type: ignore[attr-defined]
    assert not first.try_acquire() and not first.held  # it learns it lost the lease...
    assert second.try_acquire()  # ...and another takes it
    second.release()
    assert first.try_acquire()
    first.release()


def test_the_first_node_s_secret_is_every_node_s(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    assert a.shared_secret("admin_key", lambda: "one") == "one"
    assert b.shared_secret("admin_key", lambda: "two") == "one"


def test_a_server_that_cannot_be_reached_raises_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable, match="unavailable") as info:
        open_persistence("postgresql://127.0.0.1:1/none?connect_timeout=1", base=Path.cwd())
    assert info.value.code == "DatabaseUnavailable"


def test_the_listener_watches_the_notification_queue(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from syncline.persistence import postgres_notify

    monkeypatch.setattr(postgres_notify, "QUEUE_WARN_AT", 0.0)
    wakeups = open_store().commit_wakeups()
    try:
        wakeups.receive(0.01)
        assert wakeups.queue_use is not None and 0.0 <= wakeups.queue_use < 0.5  # type: ignore[attr-defined]
        assert "notification queue is 0% full" in caplog.text
        exposed = _sample("syncline_postgres_notify_queue_usage")
        assert exposed == wakeups.queue_use  # type: ignore[attr-defined]
    finally:
        wakeups.close()


# ---------------------------------------------------------------------- schema versions


def test_a_version_1_database_is_upgraded_in_place_and_gains_text_search(
    open_store: OpenStore,
) -> None:
    from syncline.persistence.base import SearchEntry, SearchIndexRow, SearchRequest
    from syncline.persistence.postgres import SCHEMA_VERSION

    store = open_store()
    writer = store.begin_write()
    writer.create_table("messages", 1)
    # What version 1 had: no search tables.
    writer.session.script(  # type: ignore[attr-defined]
        "DROP TABLE search_indexes, search_documents, search_terms, search_postings; "
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        what="downgrading",
    )
    store.commit_write(writer)
    store.close()

    upgraded = open_store()
    writer = upgraded.begin_write()
    version = writer.session.row(  # type: ignore[attr-defined]
        "SELECT value FROM meta WHERE key = 'schema_version'", (), what="reading"
    )
    assert version == (str(SCHEMA_VERSION),)
    assert [table.name for table in writer.tables()] == ["messages"]
    writer.create_search_index(SearchIndexRow(1, "s", "body", ()))
    writer.put_search_entries(1, "s", [SearchEntry("doc1", 1.0, ("hello",), ())])
    upgraded.commit_write(writer)
    reader = upgraded.reader()
    try:
        assert reader.search(1, "s", SearchRequest((), "hel", (), 10)) == ["doc1"]
    finally:
        upgraded.release_reader(reader)


def test_a_database_of_a_newer_version_is_refused(open_store: OpenStore) -> None:
    from syncline.errors import InternalError

    store = open_store()
    writer = store.begin_write()
    writer.session.run(  # type: ignore[attr-defined]
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'", what="faking a version"
    )
    store.commit_write(writer)
    store.close()
    with pytest.raises(InternalError, match="version 99"):
        open_store()
