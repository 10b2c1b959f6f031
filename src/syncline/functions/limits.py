"""Limits on running user code: a time limit per call, a memory ceiling per process.

User code runs on our threads: queries on the read pool, mutations on the single
writer, action steps on the action loops. A query that loops forever would keep
a read thread forever, and a looping mutation would stop every write. So every
call runs under a :class:`Watchdog` that can interrupt it.

How a call is interrupted
-------------------------

CPython can raise an exception in another thread between two bytecodes
(``PyThreadState_SetAsyncExc``); that stops pure-Python code such as
``while True: pass``, which no cooperative check would. It must never land in
our own code, so it is confined:

* A call *enters* user code (:meth:`Watchdog.call`) and *leaves* it under one
  lock; the watchdog injects only under that lock, into a call marked inside,
  and an exception still pending for the thread when it leaves lands there (it is
  never cleared: see :func:`_let_pending_land`). Commits, the
  writer's bookkeeping and everything after the handler returns run outside.
* Storage calls made from user code (``ctx.db`` reaching SQLite) are
  *shielded* (:meth:`Watchdog.shield`): no injection while one runs; when it
  returns and the limit has passed, the call fails right there, synchronously.
* Leaving is done twice in nested ``finally`` blocks, so an injection that
  lands in the few bytecodes between the handler's return and the lock still
  ends with the call marked outside before our code goes on.
* User code may catch the exception (``except BaseException``). The watchdog
  injects again every :data:`REINJECT_S` while the call stays inside, and a
  call past its limit fails when it leaves, whatever the handler returned.

What is not interrupted: a single C call that does not return to Python
(``time.sleep(60)``, a huge regular expression) holds its thread until it
returns; the call then fails with the limit error. The interrupted call's
transaction is discarded (a mutation writes nothing).

Actions are coroutines on the action loops: their limit is enforced by
cancellation while they await and by the same injection, step by step, while
they compute (:meth:`Watchdog.step`).

The watchdog thread wakes every :data:`SAMPLE_S` while calls come (and for
:data:`IDLE_TICKS` samples after the last one), then sleeps until the next call
wakes it: a call entering user code while it is awake wakes no thread, which
would cost a context switch per call.

When the server stops, :meth:`Watchdog.interrupt_all` interrupts every call
still inside user code (``ServerShuttingDown``), so a runaway call cannot hold
the writer, a read thread or the shutdown.

The memory ceiling
------------------

The watchdog samples the process's resident set size (``/proc/self/statm``,
about 10 µs) every :data:`SAMPLE_S` while user code runs. Growth between two
samples (taken while the watchdog is awake, so a call's baseline is fresh) is
attributed to the calls inside user code in proportion to the CPU
time their threads used (``pthread_getcpuclockid``): allocating is work. When
the RSS passes the ceiling, the call with the largest attributed growth is
interrupted with :class:`MemoryLimitExceeded`; its objects are freed as it
unwinds and ``malloc_trim`` returns the pages to the system. Calls that did
not grow the process are left alone.

Alternatives weighed: ``tracemalloc`` traces every allocation (a large
slowdown, and its total is still per process, not per call);
``RLIMIT_AS`` bounds address space, not memory (each thread's malloc arena
reserves 64 MiB, stacks 8 MiB), and the resulting ``MemoryError`` would hit
whichever thread allocates next, the writer's commit included. Sampling cannot
stop one allocation larger than the free memory (the kernel's OOM killer acts
first): run the server under a container or cgroup limit as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from syncline.errors import (
    ActionTimeout,
    FunctionTimeout,
    InternalError,
    MemoryLimitExceeded,
    SynclineError,
)

T = TypeVar("T")

DEFAULT_FUNCTION_TIMEOUT_S = 1.0
DEFAULT_ACTION_TIMEOUT_S = 600.0
#: how often the watchdog looks at deadlines and memory while user code runs
SAMPLE_S = 0.02
#: how long a call that swallowed its interruption runs before the next one
REINJECT_S = 0.05
#: samples with no call inside user code before the watchdog sleeps until the next call
#: (while calls keep coming it keeps ticking, so entering a call never has to wake it)
IDLE_TICKS = 50


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory_bytes() -> int:
    """Half the machine's memory, at least 1 GiB (2 GiB where the total is unknown)."""
    total = total_memory_bytes()
    if total is None:
        return 2 * 1024**3
    return max(total // 2, 1024**3)


@dataclass(frozen=True)
class ExecutionLimits:
    """The limits user code runs under (``--function-timeout``, ``--action-timeout``, ``--max-memory``)."""

    function_timeout_s: float = DEFAULT_FUNCTION_TIMEOUT_S
    action_timeout_s: float = DEFAULT_ACTION_TIMEOUT_S
    #: resident memory of the whole process; None: no ceiling
    max_memory_bytes: int | None = None


class Interrupted(BaseException):
    """Raised into a thread running user code; converted to the limit error on leaving."""


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_inject = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


def _let_pending_land() -> None:
    """Run a few bytecodes, so an exception injected into this thread is raised now.

    A pending injection is raised at the thread's next check of the eval breaker
    (a loop's backward jump, a Python function's entry). Clearing it instead, with
    ``PyThreadState_SetAsyncExc(id, NULL)``, would leave the interpreter-wide
    "async exception pending" flag set on CPython 3.11, and every thread would
    then take the slow path at every check until another injection lands.
    """
    for _ in range(64):
        pass


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def resident_bytes() -> int:
    """The process's resident set size (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _thread_cpu_clock() -> int | None:
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None


def _cpu_time(clock: int | None) -> float:
    if clock is None:
        return 0.0
    try:
        return time.clock_gettime(clock)
    except OSError:  # the thread is gone
        return 0.0


class _Run:
    """One call under the watchdog."""

    __slots__ = (
        "cpu",
        "cpu_clock",
        "deadline",
        "growth",
        "injected_at",
        "inside",
        "kind",
        "limit_s",
        "path",
        "reason",
        "shield",
        "thread_id",
    )

    def __init__(self, kind: str, path: str, limit_s: float) -> None:
        self.kind = kind
        self.path = path
        self.limit_s = limit_s
        self.deadline = time.monotonic() + limit_s
        self.thread_id = 0
        self.cpu_clock: int | None = None
        self.cpu = 0.0
        self.inside = False
        self.shield = 0
        #: "timeout" or "memory" once the call must stop
        self.reason: str | None = None
        self.injected_at = 0.0
        self.growth = 0

    def error(self, max_memory: int | None) -> SynclineError:
        what = "Action" if self.kind in ("action", "http_action") else self.kind.capitalize()
        if self.reason == "shutdown":
            return InternalError(
                f"{what} {self.path} was stopped: the server is shutting down",
                code="ServerShuttingDown",
            )
        if self.reason == "memory":
            ceiling = f"{max_memory / 1024**2:.0f} MiB" if max_memory else "the ceiling"
            return MemoryLimitExceeded(
                f"{what} {self.path} was stopped: the server's memory passed its ceiling "
                f"of {ceiling} (--max-memory) while it allocated"
            )
        cls = ActionTimeout if what == "Action" else FunctionTimeout
        flag = "--action-timeout" if what == "Action" else "--function-timeout"
        return cls(
            f"{what} {self.path} timed out: it ran longer than its limit of "
            f"{self.limit_s:g} s ({flag})"
        )


class _Shield:
    """Our own code called from user code: never interrupted inside; the limit checked after.

    A reusable context manager (one per watchdog; state is per thread).
    """

    __slots__ = ("_watchdog",)

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog

    def __enter__(self) -> None:
        watchdog = self._watchdog
        run: _Run | None = getattr(watchdog._local, "run", None)
        if run is not None:
            with watchdog._lock:
                run.shield += 1
                pending = run.injected_at
            if pending:
                # One injected just before may still be pending: it lands here and is
                # dropped (the limit is checked on the way out instead).
                try:
                    _let_pending_land()
                except Interrupted:
                    pass

    def __exit__(self, *exc: object) -> None:
        watchdog = self._watchdog
        run: _Run | None = getattr(watchdog._local, "run", None)
        if run is None:
            return
        with watchdog._lock:
            run.shield -= 1
        if run.reason is not None and exc[0] is None:
            # A safe point: fail now rather than wait for the next injection.
            raise Interrupted


class Watchdog:
    """Enforces time limits and the memory ceiling on calls running user code."""

    def __init__(self, *, max_memory_bytes: int | None = None) -> None:
        self.max_memory_bytes = max_memory_bytes
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._runs: set[_Run] = set()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_rss = 0
        self._last_sample = 0.0
        #: the watchdog thread waits for a call (or is not started): the next call wakes it
        self._sleeping = True
        #: enter around our own code called from user code (storage calls)
        self.shield = _Shield(self)

    # ------------------------------------------------------------------ calls

    def start(self, kind: str, path: str, limit_s: float) -> _Run:
        """A run record for a call of ``kind`` at ``path``; its clock starts now."""
        return _Run(kind, path, limit_s)

    def call(self, run: _Run, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` as user code of ``run``; the limit error if it passes a limit.

        Nested in another call on the same thread (the test kit running a
        function from inside one), ``fn`` runs under the outer call's limit.
        """
        if getattr(self._local, "run", None) is not None:
            return fn(*args, **kwargs)
        self._enter(run)
        try:
            try:
                result = fn(*args, **kwargs)
            finally:
                try:
                    self._leave(run)
                finally:
                    self._leave(run)
        except BaseException as exc:
            if run.reason is None:
                raise
            # Keep where it stopped (file:line), not what it held: the frames'
            # locals (the memory a hog allocated) are released now.
            tb = exc.__traceback__
            traceback.clear_frames(tb)
            del exc
            raise self._failure(run).with_traceback(tb) from None
        if run.reason is not None:
            del result
            raise self._failure(run)
        return result

    def step(self, run: _Run, fn: Callable[..., T], /, *args: Any) -> T:
        """One step of a coroutine (``coro.send``) as user code: like :meth:`call`."""
        return self.call(run, fn, *args)

    def check(self, run: _Run) -> None:
        """Raise the limit error if ``run`` has passed a limit (from a safe point)."""
        if run.reason is not None or time.monotonic() >= run.deadline:
            if run.reason is None:
                run.reason = "timeout"
            raise self._failure(run)

    def _failure(self, run: _Run) -> SynclineError:
        if run.reason == "memory" and _malloc_trim is not None:
            _malloc_trim(0)
        return run.error(self.max_memory_bytes)

    def _enter(self, run: _Run) -> None:
        run.thread_id = threading.get_ident()
        if self.max_memory_bytes is not None:
            # Only the memory ceiling needs the CPU time (to attribute growth).
            run.cpu_clock = _thread_cpu_clock()
            run.cpu = _cpu_time(run.cpu_clock)
        self._local.run = run
        with self._lock:
            run.inside = True
            self._runs.add(run)
            if self._sleeping:
                # Waking a thread costs a context switch: done only when the watchdog
                # went to sleep after IDLE_TICKS samples without a call inside.
                now = time.monotonic()
                if self.max_memory_bytes is not None and now - self._last_sample > SAMPLE_S:
                    # A fresh baseline, so growth from now on is this call's.
                    self._last_rss = resident_bytes()
                    self._last_sample = now
                self._sleeping = False
                self._ensure_thread()
                self._wake.notify()

    def _leave(self, run: _Run) -> None:
        pending = 0.0
        # ``inside`` is set only by this thread, so once it is False there is nothing to do.
        if run.inside:
            with self._lock:
                run.inside = False
                self._runs.discard(run)
                pending = run.injected_at
        if pending:
            # Marked outside, so nothing more is injected; one still pending lands
            # here, not in our code after the call.
            try:
                _let_pending_land()
            except Interrupted:
                pass
        self._local.run = None

    # ------------------------------------------------------------------ the watchdog thread

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._watch, name="syncline-watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        idle = 0
        with self._lock:
            while not self._closed:
                if self._runs:
                    idle = 0
                    self._tick(time.monotonic())
                elif idle >= IDLE_TICKS:
                    self._sleeping = True
                    self._wake.wait()
                    idle = 0
                    continue
                else:
                    idle += 1
                    if self.max_memory_bytes is not None:
                        # Keep the baseline fresh: growth while no call is inside is no call's.
                        self._last_rss = resident_bytes()
                        self._last_sample = time.monotonic()
                self._wake.wait(SAMPLE_S)

    def _tick(self, now: float) -> None:
        """Under the lock: flag calls past their deadline or over memory, interrupt them."""
        for run in self._runs:
            if run.reason is None and now >= run.deadline:
                run.reason = "timeout"
        if self.max_memory_bytes is not None:
            self._sample_memory()
        for run in self._runs:
            if (
                run.reason is not None
                and run.inside
                and run.shield == 0
                and now - run.injected_at >= REINJECT_S
            ):
                run.injected_at = now
                _inject(run.thread_id, Interrupted)

    def _sample_memory(self) -> None:
        rss = resident_bytes()
        self._last_sample = time.monotonic()
        grown = rss - self._last_rss
        self._last_rss = rss
        used = {}
        for run in self._runs:
            cpu = _cpu_time(run.cpu_clock)
            used[run] = max(cpu - run.cpu, 0.0)
            run.cpu = cpu
        total = sum(used.values())
        if grown > 0 and total > 0:
            for run, share in used.items():
                run.growth += int(grown * share / total)
        assert self.max_memory_bytes is not None
        if rss <= self.max_memory_bytes:
            return
        candidates = [r for r in self._runs if r.reason is None and r.growth > 0]
        if candidates:
            max(candidates, key=lambda r: r.growth).reason = "memory"

    def interrupt_all(self, wait_s: float = 5.0) -> None:
        """Stop every call inside user code now (the server is stopping); wait until they left."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            for run in self._runs:
                if run.reason is None:
                    run.reason = "shutdown"
                    run.deadline = 0.0
            if self._runs:
                self._sleeping = False
                self._ensure_thread()
                self._wake.notify()
            while self._runs and self._thread is not None and time.monotonic() < deadline:
                self._wake.wait(SAMPLE_S)

    def close(self, wait_s: float = 5.0) -> None:
        """Interrupt what still runs (:meth:`interrupt_all`), then stop the watchdog thread."""
        self.interrupt_all(wait_s)
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
