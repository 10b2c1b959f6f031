"""What counting a call costs: the metrics hook and the log history, in ns per call.

    python bench/metrics.py [--rounds 7] [--calls 20000]

Calls ``Executor.query_sync`` on a query that touches no storage (the
function layer alone, so the overhead is as visible as it gets), in three
settings, interleaved round by round:

    off        ``executor.count_calls = False``, no observer
    metrics    the ``syncline_function_*`` counter and histogram (the default)
    history    metrics, plus the log-history observer (its writer thread on,
               writing batches to ``logs.sqlite3`` as ``serve`` does)

and prints the process CPU time per call (every thread) of each, the median
of ``--rounds`` rounds, and the difference to ``off``. Also the hooks alone:
``Executor.count`` and ``CallLog.observe`` per call, in a tight loop.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from syncline.application import Application
from syncline.call_log.store import LogStore, store_path
from syncline.call_log.writer import CallLog
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.functions.outcomes import Outcome
from syncline.functions.registration import FunctionKind
from syncline.persistence.sqlite import SqlitePersistence

FUNCTIONS = """
from syncline import query, v


@query(args={"text": v.string()})
def echo(ctx, text):
    return text
"""


def open_app(root: Path) -> Application:
    functions = root / "functions"
    functions.mkdir()
    (functions / "bench.py").write_text(textwrap.dedent(FUNCTIONS))
    database = Database(
        SqlitePersistence(str(root / "data.sqlite3"), durability="normal"), clock=SystemClock()
    )
    app = Application(database, functions)
    app.load()
    return app


def cpu_ns_per_call(run: Callable[[], object], calls: int) -> float:
    started = time.process_time_ns()
    for _ in range(calls):
        run()
    return (time.process_time_ns() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        app = open_app(root)
        executor = app.executor
        clock = SystemClock()
        log = CallLog(
            now_ms=clock.now_ms,
            store=LogStore(store_path(root), max_bytes=256 << 20, max_age_ms=86_400_000.0),
        )
        log.start()

        def call() -> object:
            return executor.query_sync("bench:echo", {"text": "hello"})

        def setting(name: str) -> None:
            executor.count_calls = name != "off"
            executor.observers[:] = [log.observe] if name == "history" else []

        results: dict[str, list[float]] = {"off": [], "metrics": [], "history": []}
        for name in results:  # warm up
            setting(name)
            cpu_ns_per_call(call, options.calls // 10)
        for _ in range(options.rounds):
            for name, samples in results.items():
                setting(name)
                samples.append(cpu_ns_per_call(call, options.calls))
        log.close()

        outcome = Outcome("bench:echo", FunctionKind.QUERY, duration_ms=0.01)
        count_ns = statistics.median(
            cpu_ns_per_call(lambda: executor.count(outcome, 0.00001), options.calls)
            for _ in range(options.rounds)
        )
        idle = CallLog(now_ms=clock.now_ms, max_pending=1 << 30)

        def observe() -> None:
            idle.observe(outcome)

        observe_ns = statistics.median(
            cpu_ns_per_call(observe, options.calls) for _ in range(options.rounds)
        )
        app.close()

    base = statistics.median(results["off"])
    print(f"query_sync, CPU ns per call (median of {options.rounds} rounds of {options.calls}):")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:<8} {median:9.0f} ns   {median - base:+7.0f} ns vs off")
    print(f"Executor.count alone:   {count_ns:6.0f} ns per call")
    print(f"CallLog.observe alone:  {observe_ns:6.0f} ns per call")


if __name__ == "__main__":
    main()
