"""``serve --workers N``: a parent that supervises N worker processes on shared sockets.

The parent (:class:`Supervisor`) owns everything that must outlive a worker:
the bound listening sockets, the data folder's lock, the server record and
one wake-up socket pair per worker slot (:mod:`syncline.server.wakeup`). It
starts each worker as a fresh interpreter (``subprocess``: a spawn, never a
fork of a process that runs threads) which inherits, by file descriptor, the
listening sockets, its slot's wake-up inbox, the other slots' addresses and
the write end of a readiness pipe; what the worker needs to know about them
travels in one environment variable (:class:`WorkerFds`).

Every worker accepts on the same port (the kernel hands each connection to
one of them), serves WebSockets and HTTP, runs functions and follows the
other workers' commits. With ``spread`` (Linux), each slot has listening
sockets of its own on that port, which the kernel shares connections between
evenly (:func:`~syncline.server.listen.listen_beside`); they outlive the
slot's worker, so connections that arrive while it restarts wait for the new
one instead of being refused. Otherwise every worker accepts on the same
sockets. The parent:

* reports the server ready (``on_ready``) once every worker has said so;
* restarts a worker that exits, after a backoff that doubles from
  ``backoff_initial_s`` up to ``backoff_max_s`` (and starts again from the
  bottom once a worker has served for ``stable_after_s``);
* ends the server with an error when a slot's worker exits before it was
  ready ``startup_failures`` times in a row (broken code, a bad option: a
  restart would fail the same way);
* forwards SIGTERM and SIGINT to every worker, waits ``stop_timeout_s`` for
  their graceful shutdown, then kills what is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import FrameType

from syncline.server.listen import listen_beside
from syncline.server.wakeup import WakeupChannel, slot_pair

__all__ = ["WORKER_ENV", "Supervisor", "WorkerExit", "WorkerFds", "describe_exit"]

log = logging.getLogger("syncline.server")

#: the environment variable that hands a worker its file descriptors (JSON)
WORKER_ENV = "SYNCLINE_WORKER"
_READY = b"R"


@dataclass(frozen=True)
class WorkerFds:
    """What a worker inherits: its slot number and the descriptors it serves with."""

    index: int
    #: the parent's pid (a worker whose parent is gone stops)
    parent: int
    api: list[int]
    site: list[int]
    #: this slot's wake-up inbox, and every other slot's address
    inbox: int
    peers: list[int]
    #: written once the worker accepts connections
    ready: int

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerFds | None:
        raw = (os.environ if environ is None else environ).get(WORKER_ENV)
        return None if raw is None else cls(**json.loads(raw))

    def api_sockets(self) -> list[socket.socket]:
        return [socket.socket(fileno=fd) for fd in self.api]

    def site_sockets(self) -> list[socket.socket] | None:
        return [socket.socket(fileno=fd) for fd in self.site] or None

    def wakeups(self) -> WakeupChannel:
        return WakeupChannel(
            socket.socket(fileno=self.inbox), [socket.socket(fileno=fd) for fd in self.peers]
        )

    def signal_ready(self) -> None:
        try:
            os.write(self.ready, _READY)
        except OSError as exc:  # the parent is gone; PDEATHSIG ends us soon
            log.warning("could not tell the parent this worker is ready: %s", exc)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class WorkerExit(Exception):
    """A worker slot kept failing at start-up: the server cannot run."""


@dataclass
class _Slot:
    index: int
    inbox: socket.socket
    address: socket.socket
    #: the listening sockets this slot's workers accept on
    api_sockets: list[socket.socket] = field(default_factory=list)
    site_sockets: list[socket.socket] = field(default_factory=list)
    #: whether the slot made those sockets (and closes them), or shares the server's
    owns_sockets: bool = False
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    ready: bool = False
    started_at: float = 0.0
    #: consecutive exits before becoming ready
    failures: int = 0
    delay_s: float = 0.0
    restart_at: float | None = None
    exits: list[str] = field(default_factory=list)


class Supervisor:
    """Starts, watches and stops the worker processes of one server."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        workers: int,
        api_sockets: Sequence[socket.socket],
        site_sockets: Sequence[socket.socket] = (),
        spread: bool = False,
        env: Mapping[str, str] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_exit: Callable[[int], None] | None = None,
        startup_failures: int = 3,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        stable_after_s: float = 30.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.command = list(command)
        self.api_sockets = list(api_sockets)
        self.site_sockets = list(site_sockets)
        self.env = dict(os.environ if env is None else env)
        self.on_ready = on_ready
        #: called with the pid of every worker that exited (its metrics are forgotten)
        self.on_exit = on_exit
        self.startup_failures = startup_failures
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.stop_timeout_s = stop_timeout_s
        self.slots = [_Slot(i, *slot_pair()) for i in range(workers)]
        for slot in self.slots:
            slot.api_sockets, slot.site_sockets = self.api_sockets, self.site_sockets
        self._selector = selectors.DefaultSelector()
        self._signal_r, self._signal_w = socket.socketpair()
        self._stop_signal: int | None = None
        #: workers started in all (restarts included)
        self.starts = 0
        if spread:
            try:
                self._spread()
            except BaseException:
                self._close()
                raise

    def _spread(self) -> None:
        """Sockets of their own for every slot but the first (which has the server's)."""
        for slot in self.slots[1:]:
            slot.owns_sockets = True
            slot.api_sockets = listen_beside(self.api_sockets)
            slot.site_sockets = listen_beside(self.site_sockets)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (then stop every worker) or a fatal start-up failure.

        Raises :class:`WorkerExit` for the latter, after stopping the others.
        """
        self._signal_r.setblocking(False)
        self._signal_w.setblocking(False)
        self._selector.register(self._signal_r, selectors.EVENT_READ, None)
        previous_fd = signal.set_wakeup_fd(self._signal_w.fileno(), warn_on_full_buffer=False)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        announced = False
        try:
            for slot in self.slots:
                self._start(slot)
            while self._stop_signal is None:
                self._wait()
                self._reap()
                self._restart_due()
                if not announced and all(slot.ready for slot in self.slots):
                    announced = True
                    if self.on_ready is not None:
                        self.on_ready()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            self._close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and self._stop_signal is None:
            self._stop_signal = signum

    def _start(self, slot: _Slot) -> None:
        ready_r, ready_w = os.pipe()
        fds = WorkerFds(
            index=slot.index,
            parent=os.getpid(),
            api=[s.fileno() for s in slot.api_sockets],
            site=[s.fileno() for s in slot.site_sockets],
            inbox=slot.inbox.fileno(),
            peers=[s.address.fileno() for s in self.slots if s is not slot],
            ready=ready_w,
        )
        env = {**self.env, WORKER_ENV: fds.to_env()}
        passed = (*fds.api, *fds.site, fds.inbox, *fds.peers, ready_w)
        try:
            slot.proc = subprocess.Popen(self.command, env=env, pass_fds=passed)
        finally:
            os.close(ready_w)
        self.starts += 1
        os.set_blocking(ready_r, False)
        slot.ready_fd = ready_r
        slot.ready = False
        slot.started_at = time.monotonic()
        slot.restart_at = None
        self._selector.register(ready_r, selectors.EVENT_READ, slot)

    def _wait(self) -> None:
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        timeout = max(0.0, min(due) - now) if due else 1.0
        for key, _ in self._selector.select(min(timeout, 1.0)):
            slot = key.data
            if slot is None:
                with contextlib.suppress(OSError):
                    while self._signal_r.recv(512):
                        pass
                continue
            self._read_ready(slot)

    def _read_ready(self, slot: _Slot) -> None:
        try:
            data = os.read(slot.ready_fd, 64)
        except BlockingIOError:
            return
        if _READY in data and not slot.ready:
            slot.ready = True
            slot.failures = 0
            log.debug("worker %d (pid %s) is ready", slot.index, slot.proc and slot.proc.pid)
        if not data:  # the worker closed it (exited): _reap handles the exit
            self._forget_ready_fd(slot)

    def _forget_ready_fd(self, slot: _Slot) -> None:
        if slot.ready_fd >= 0:
            self._selector.unregister(slot.ready_fd)
            os.close(slot.ready_fd)
            slot.ready_fd = -1

    def _reap(self) -> None:
        for slot in self.slots:
            proc = slot.proc
            if proc is None or proc.poll() is None:
                continue
            if slot.ready_fd >= 0:
                self._read_ready(slot)  # a ready message sent just before it died counts
                self._forget_ready_fd(slot)
            slot.proc = None
            if self.on_exit is not None:
                self.on_exit(proc.pid)
            how = describe_exit(proc.returncode)
            slot.exits.append(how)
            if self._stop_signal is not None:
                continue
            if not slot.ready:
                slot.failures += 1
                if slot.failures >= self.startup_failures:
                    raise WorkerExit(
                        f"worker {slot.index} exited during start-up {slot.failures} times in "
                        f"a row (last: {how}); its output is above. Stopping the server."
                    )
            ran_s = time.monotonic() - slot.started_at
            if slot.ready and ran_s >= self.stable_after_s:
                slot.delay_s = self.backoff_initial_s
            else:
                slot.delay_s = min(
                    max(slot.delay_s * 2, self.backoff_initial_s), self.backoff_max_s
                )
            slot.restart_at = time.monotonic() + slot.delay_s
            log.warning(
                "worker %d (pid %d) %s; restarting it in %.1f s",
                slot.index,
                proc.pid,
                how,
                slot.delay_s,
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is None and slot.restart_at is not None and slot.restart_at <= now:
                self._start(slot)

    # ------------------------------------------------------------------ stopping

    def _stop_all(self) -> None:
        sig = signal.SIGTERM
        procs = [s.proc for s in self.slots if s.proc is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        for slot in self.slots:
            self._forget_ready_fd(slot)
            slot.proc = None

    def _close(self) -> None:
        self._selector.close()
        for sock in (self._signal_r, self._signal_w):
            sock.close()
        for slot in self.slots:
            slot.inbox.close()
            slot.address.close()
            if slot.owns_sockets:
                for sock in (*slot.api_sockets, *slot.site_sockets):
                    sock.close()
