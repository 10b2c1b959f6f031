"""Commit wake-ups between workers: datagrams to every other slot, and the backstop poll."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncline.database.database import Database
from syncline.database.writes import Commit
from syncline.persistence.sqlite import SqlitePersistence
from syncline.server.wakeup import CommitFollower, CommitTail, WakeupChannel, slot_pair

Slots = list[tuple[socket.socket, socket.socket]]
_open: list[WakeupChannel] = []


@pytest.fixture
def slots() -> Iterator[Slots]:
    pairs = [slot_pair() for _ in range(3)]
    yield pairs
    while _open:
        _open.pop().close()
    for inbox, address in pairs:
        inbox.close()
        address.close()


def channel(slots: Slots, index: int) -> WakeupChannel:
    """Slot ``index``'s channel (closed with the fixture)."""
    inbox = slots[index][0]
    opened = WakeupChannel(inbox, [a for i, (_, a) in enumerate(slots) if i != index])
    _open.append(opened)
    return opened


def test_a_notice_reaches_every_other_slot_and_not_its_sender(slots: Slots) -> None:
    sender, first, second = (channel(slots, i) for i in range(3))
    sender.notify(41)
    sender.notify(42)  # coalesced by the receiver: the newest ts wins
    assert first.receive(1.0) == 42
    assert second.receive(1.0) == 42
    assert sender.receive(0.01) is None
    assert first.receive(0.01) is None  # drained


def test_a_full_inbox_drops_the_notice_instead_of_blocking(slots: Slots) -> None:
    sender, stalled = channel(slots, 0), channel(slots, 1)
    sent = 0
    while sender.dropped == 0:
        sender.notify(sent)
        sent += 1
        assert sent < 1_000_000, "never filled"
    assert stalled.receive(1.0) is not None  # what fitted is still there


class FakeStore:
    """A store whose last ts moves when a test says, and a catch-up that publishes it."""

    def __init__(self) -> None:
        self.stored = 0
        self.published = 0
        self.catch_ups = 0
        self.caught_up = threading.Event()

    def catch_up(self) -> int:
        self.catch_ups += 1
        count = self.stored - self.published
        self.published = self.stored
        self.caught_up.set()
        return count


def tail_for(store: FakeStore, wakeups: WakeupChannel, poll_s: float = 60.0) -> CommitTail:
    return CommitTail(
        wakeups,
        catch_up=store.catch_up,
        published_ts=lambda: store.published,
        poll_interval_s=poll_s,
    )


def test_a_wake_up_catches_up(slots: Slots) -> None:
    store = FakeStore()
    tail = tail_for(store, channel(slots, 1))
    store.stored = 3
    channel(slots, 0).notify(3)
    assert tail.step() == 3
    assert tail.woken == 3 and tail.polled == 0


def test_a_wake_up_for_what_is_published_already_reads_nothing(slots: Slots) -> None:
    store = FakeStore()
    store.stored = store.published = 5
    tail = tail_for(store, channel(slots, 1))
    channel(slots, 0).notify(5)
    assert tail.step() == 0
    assert store.catch_ups == 0


def test_the_backstop_poll_finds_commits_whose_wake_up_was_lost(slots: Slots) -> None:
    store = FakeStore()
    tail = tail_for(store, channel(slots, 1), poll_s=0.01)
    assert tail.step() == 0  # nothing new
    store.stored = 2  # committed, but no wake-up sent
    assert tail.step() == 2
    assert tail.polled == 2


def test_the_thread_follows_until_stopped(slots: Slots) -> None:
    store = FakeStore()
    tail = tail_for(store, channel(slots, 1))
    tail.start()
    try:
        store.stored = 7
        channel(slots, 2).notify(7)
        assert store.caught_up.wait(5)
    finally:
        tail.stop()
    assert store.published == 7


def test_a_commit_in_one_process_reaches_the_others_listeners_by_wake_up(
    tmp_path: Path, slots: Slots
) -> None:
    """Two databases over one file stand for two workers; only the wake-up can deliver
    (the backstop poll is an hour away)."""
    path = tmp_path / "shared.sqlite3"
    databases = [Database(SqlitePersistence(path, durability="off")) for _ in range(2)]
    followers = [
        CommitFollower(db, channel(slots, i), poll_interval_s=3600)
        for i, db in enumerate(databases)
    ]
    heard: list[tuple[int, bool]] = []
    arrived = threading.Event()

    def listen(commits: list[Commit]) -> None:
        heard.extend((c.ts, c.local) for c in commits)
        arrived.set()

    databases[1].add_commit_listener(listen)
    for follower in followers:
        follower.start()
    try:
        written = databases[0].write_sync(lambda tx: tx.insert("t", {"n": 1.0}))
        assert arrived.wait(10), "the other worker never heard of the commit"
        assert heard == [(written.ts, False)]
        # The tail counts a wake-up once catch_up returns, after the listeners ran.
        deadline = time.monotonic() + 5
        while followers[1].tail.woken < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert followers[1].tail.woken == 1
    finally:
        for follower in followers:
            follower.stop()
        for db in databases:
            db.close()
