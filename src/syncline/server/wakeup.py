"""Commit wake-ups between worker processes, and the tail that follows the commit log.

(Nodes on one PostgreSQL database are followed by the same tail, woken by
LISTEN/NOTIFY instead of datagrams: any
:class:`~syncline.persistence.base.CommitWakeups` drives it.)

Every worker of ``syncline serve --workers N`` keeps its live queries (and
its scheduler, if it leads) current by publishing, in ts order, the commits
that other workers made. The commit log in the store is the source of truth
(:meth:`Database.catch_up` reads it); this module only decides *when* to read it.

How a worker learns of another's commit
---------------------------------------

The parent creates one ``AF_UNIX``/``SOCK_DGRAM`` socket pair per worker
slot before starting any worker: the slot's *inbox* (its receiving end) and
its *address* (the connected sending end). Each worker inherits its own
inbox and every other slot's address. After a commit batch that holds a
local commit, the committing thread sends one 8-byte datagram (the newest
commit's ts) to every other slot, non-blocking; a tail thread in each worker
blocks on its inbox and calls ``catch_up`` as soon as a datagram arrives.

Why this shape:

* one hop, kernel to kernel: no relay through the parent (a second wake-up,
  and a parent that must stay responsive for commits to propagate);
* datagrams are atomic, so several writers may share one address with no
  framing and no locking;
* the pair belongs to the *slot*, not to the process: a restarted worker
  inherits the same inbox, and its peers' addresses never change; nothing
  lives in the file system;
* a full inbox (a stalled worker) never blocks a committer: the send fails
  with ``EAGAIN`` and is dropped. A lost wake-up costs latency, not
  correctness, because

**the backstop**: the tail also wakes every ``poll_interval_s`` (0.1 s) with
no datagram and calls ``catch_up`` anyway, which reads only the store's last
ts when nothing is new; a commit it missed is published then. So propagation is bounded by the poll
interval even if every datagram is lost, and the log, not the wake-up,
carries what changed (a wake-up's payload is only a hint of the ts).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from syncline.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.writes import Commit
    from syncline.persistence.base import CommitWakeups

log = logging.getLogger("syncline.server")

__all__ = ["DEFAULT_POLL_INTERVAL_S", "CommitFollower", "CommitTail", "WakeupChannel", "slot_pair"]

#: how often a tail checks the store when no wake-up arrives (the backstop)
DEFAULT_POLL_INTERVAL_S = 0.1

_TS = struct.Struct("<q")
#: wake-ups read per drain before catching up (they are coalesced: one catch-up reads all)
_DRAIN_MAX = 1024


def slot_pair() -> tuple[socket.socket, socket.socket]:
    """(inbox, address) of one worker slot: a connected datagram pair, both inheritable."""
    inbox, address = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (inbox, address):
        sock.set_inheritable(True)
    address.setblocking(False)
    return inbox, address


class WakeupChannel:
    """One worker's ends: its inbox and the addresses of every other worker."""

    def __init__(self, inbox: socket.socket, peers: Sequence[socket.socket]) -> None:
        self.inbox = inbox
        self.peers = list(peers)
        for peer in self.peers:
            peer.setblocking(False)
        #: wake-ups that could not be sent (a peer's inbox was full, or it is gone)
        self.dropped = 0
        self.inbox.setblocking(False)
        # Ends a receive() early (on stop): a pair of our own, never shared.
        self._interrupt_r, self._interrupt_w = socket.socketpair()
        self._interrupt_w.setblocking(False)

    def notify(self, ts: int) -> None:
        """Tell every other worker that commits up to ``ts`` exist. Never blocks."""
        payload = _TS.pack(ts)
        for peer in self.peers:
            try:
                peer.send(payload)
            except OSError:
                # Full (a stalled peer) or gone (restarting): its backstop poll catches up.
                self.dropped += 1

    def receive(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for wake-ups; the highest ts received, or None.

        None also when :meth:`interrupt` was called.
        """
        readable, _, _ = select.select([self.inbox, self._interrupt_r], [], [], timeout_s)
        if self.inbox not in readable:
            return None
        newest: int | None = None
        for _ in range(_DRAIN_MAX):
            try:
                data = self.inbox.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            if len(data) >= _TS.size:
                ts = _TS.unpack_from(data)[0]
                newest = ts if newest is None else max(newest, ts)
        return newest

    def interrupt(self) -> None:
        """End the current (or next) :meth:`receive` now."""
        with contextlib.suppress(OSError):
            self._interrupt_w.send(b"x")

    def close(self) -> None:
        for sock in (self.inbox, *self.peers, self._interrupt_r, self._interrupt_w):
            with contextlib.suppress(OSError):
                sock.close()


class CommitTail:
    """A thread that publishes other workers' commits as soon as it hears of them.

    ``catch_up()`` publishes every stored commit newer than the last one
    published (and returns how many; when nothing is new it reads only the
    store's last ts); ``published_ts()`` is the newest ts published so far.
    The thread calls ``catch_up`` on every wake-up for a ts not yet
    published, and on every backstop poll.
    """

    def __init__(
        self,
        channel: CommitWakeups,
        *,
        catch_up: Callable[[], int],
        published_ts: Callable[[], int],
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.channel = channel
        self._catch_up = catch_up
        self._published_ts = published_ts
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: commits published by wake-ups and by the backstop poll (for tests and stats)
        self.woken = 0
        self.polled = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="syncline-commit-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.channel.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        unreachable = False
        while not self._stop.is_set():
            try:
                self.step()
            except DatabaseUnavailable as exc:
                # Said once, not every poll: the store is down and the poll keeps trying.
                if not unreachable:
                    log.warning("cannot follow other processes' commits (retrying): %s", exc)
                    unreachable = True
                self._stop.wait(self.poll_interval_s)
                continue
            except Exception:
                # The store may be busy or briefly unreadable: the next poll tries again.
                log.exception("following other workers' commits failed; retrying")
                self._stop.wait(self.poll_interval_s)
                continue
            if unreachable:
                log.info("following other processes' commits again")
                unreachable = False

    def step(self) -> int:
        """Wait for one wake-up (or the poll interval); publish what is new. Returns how many."""
        hint = self.channel.receive(self.poll_interval_s)
        if hint is not None:
            if hint <= self._published_ts():
                return 0  # already published (by our own commit's catch-up, say)
            published = self._catch_up()
            self.woken += published
            return published
        published = self._catch_up()
        self.polled += published
        return published


class CommitFollower:
    """One worker's side: wake the others after local commits, publish theirs as they come.

    ``start()`` after the application started (its commit listeners are in
    place), ``stop()`` before the database closes.
    """

    def __init__(
        self,
        database: Database,
        channel: CommitWakeups,
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.database = database
        self.channel = channel
        self._published = database.last_ts
        self.tail = CommitTail(
            channel,
            catch_up=database.catch_up,
            published_ts=lambda: self._published,
            poll_interval_s=poll_interval_s,
        )

    def start(self) -> None:
        self.database.add_commit_listener(self._on_commits)
        self.tail.start()

    def stop(self) -> None:
        self.tail.stop()
        with contextlib.suppress(ValueError):
            self.database.remove_commit_listener(self._on_commits)

    def _on_commits(self, commits: list[Commit]) -> None:
        # The publishing thread, before callers hear back: the other workers start
        # catching up while the mutation's response is still on its way.
        self._published = max(self._published, commits[-1].ts)
        for commit in reversed(commits):
            if commit.local:
                self.channel.notify(commit.ts)
                return
