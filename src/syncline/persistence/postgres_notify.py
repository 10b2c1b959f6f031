"""Commit wake-ups between nodes on one PostgreSQL database: ``LISTEN syncline_commits``.

Every commit that writes commit-log rows sends ``NOTIFY syncline_commits,
'<ts>'`` inside its transaction (:mod:`syncline.persistence.postgres`);
PostgreSQL delivers it when the transaction commits, in commit order, to every
session listening on the database. Each node keeps one connection that only
listens, and wakes its commit tail with the ts (the payload is only a hint:
the commit log says what changed).

No replay: a node whose listening connection drops misses the wake-ups sent
meanwhile. Its tail's backstop poll catches up regardless; this object
reconnects with backoff (0.1 s doubling to 5 s) and never raises.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from collections.abc import Callable

from syncline import metrics
from syncline.errors import SynclineError
from syncline.persistence.postgres import NOTIFY_CHANNEL
from syncline.persistence.postgres_session import Session, translate_errors

__all__ = ["PostgresCommitWakeups"]

log = logging.getLogger("syncline.persistence")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
#: how often the notification queue's use is checked, and the share that is warned about
QUEUE_CHECK_S = 10.0
QUEUE_WARN_AT = 0.5


class PostgresCommitWakeups:
    """Implements :class:`~syncline.persistence.base.CommitWakeups` with LISTEN/NOTIFY.

    ``connect`` opens a session on the database. Used by one thread (the
    commit tail); :meth:`interrupt` may be called from any.
    """

    def __init__(self, connect: Callable[[], Session]) -> None:
        self._connect = connect
        self._session: Session | None = None
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self._next_queue_check = 0.0
        #: the share of PostgreSQL's notification queue in use when last checked
        self.queue_use: float | None = None
        #: times the listening connection was (re)opened
        self.connections = 0
        self._interrupt_r, self._interrupt_w = socket.socketpair()
        self._interrupt_w.setblocking(False)
        self._interrupt_r.setblocking(False)

    def notify(self, ts: int) -> None:
        """Nothing to do: the commit's own transaction sent the NOTIFY."""

    def _listening(self) -> Session | None:
        """The listening session, (re)opened when due; None while PostgreSQL is unreachable."""
        if self._session is not None and not self._session.broken:
            return self._session
        self._drop()
        now = time.monotonic()
        if now < self._next_attempt:
            return None
        try:
            session = self._connect()
        except SynclineError as exc:
            self._backoff_s = min(_BACKOFF_MAX_S, max(_BACKOFF_FIRST_S, self._backoff_s * 2))
            self._next_attempt = now + self._backoff_s
            log.warning("cannot listen for other nodes' commits (retrying): %s", exc)
            return None
        try:
            session.run(f"LISTEN {NOTIFY_CHANNEL}", what="listening for commits")
        except SynclineError:
            session.close()
            return None
        if self.connections:
            log.info("listening for other nodes' commits again")
        self.connections += 1
        self._backoff_s = 0.0
        self._session = session
        return session

    def receive(self, timeout_s: float) -> int | None:
        if time.monotonic() >= self._next_queue_check:
            self._check_queue()
        session = self._listening()
        waiting: list[int | socket.socket] = [self._interrupt_r]
        if session is not None:
            waiting.append(session.conn.fileno())
        readable, _, _ = select.select(waiting, [], [], timeout_s)
        if self._interrupt_r in readable:
            with contextlib.suppress(OSError):
                while self._interrupt_r.recv(64):
                    pass
            return None
        if session is None or not readable:
            return None
        newest: int | None = None
        try:
            with translate_errors("receiving commit notifications"):
                for notice in session.conn.notifies(timeout=0):
                    with contextlib.suppress(ValueError):
                        ts = int(notice.payload)
                        newest = ts if newest is None else max(newest, ts)
        except SynclineError as exc:
            log.warning("the connection listening for commits broke: %s", exc)
            self._drop()
        return newest

    def queue_usage(self) -> float | None:
        """The fraction of PostgreSQL's notification queue in use (None: not connected).

        A listener that stops reading fills the queue, and once it is full every
        NOTIFY -- so every commit -- fails: watch this.
        """
        session = self._listening()
        if session is None:
            return None
        try:
            row = session.row(
                "SELECT pg_notification_queue_usage()", (), what="reading the notify queue"
            )
        except SynclineError:
            self._drop()
            return None
        return None if row is None else float(row[0])

    def _check_queue(self) -> None:
        self._next_queue_check = time.monotonic() + QUEUE_CHECK_S
        self.queue_use = self.queue_usage()
        if self.queue_use is not None:
            metrics.POSTGRES_NOTIFY_QUEUE_USAGE.set(self.queue_use)
        if self.queue_use is not None and self.queue_use >= QUEUE_WARN_AT:
            log.warning(
                "PostgreSQL's notification queue is %.0f%% full: a session that LISTENs "
                "without reading holds it up, and once it is full every commit fails "
                "(find it in pg_stat_activity)",
                self.queue_use * 100,
            )

    def interrupt(self) -> None:
        with contextlib.suppress(OSError):
            self._interrupt_w.send(b"x")

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def close(self) -> None:
        self._drop()
        for sock in (self._interrupt_r, self._interrupt_w):
            with contextlib.suppress(OSError):
                sock.close()
