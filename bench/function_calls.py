"""Per-call cost of running a user function, in process, through the executor.

    python bench/function_calls.py [--rounds 5] [--calls 2000] [--concurrency 1]
                                   [--only send,get,latest,echo] [--durability normal]
    python bench/function_calls.py --callgrind [--only send] [--calls 200]

Calls go through ``Executor.mutation`` / ``Executor.query`` as the server makes
them (path string, args as decoded from the wire, the anonymous identity), on
one event loop: mutations on the writer thread, queries on the read pool. The
app is the one the side-by-side harness serves:

    messages:send(body, channel)   mutation, inserts a message, returns its id
    messages:get(id)               query, a point read by id
    messages:latest(channel)       query, newest 20 of a channel (index range, desc)
    messages:echo(text, n)         query, no storage: the function layer alone

Prints the process CPU time per call (every thread: event loop, writer, read
pool, watchdog), the median of ``--rounds`` rounds, and the wall time per call
for reference (meaningless on a busy machine; CPU time is not).

``--callgrind`` runs each scenario under ``valgrind --tool=callgrind`` twice,
with ``--calls`` and twice as many calls, and prints the instructions per call
(the difference divided by ``--calls``): repeatable on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from messages_app import write_functions

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.functions.limits import ExecutionLimits, default_max_memory_bytes
from syncline.persistence.sqlite import SqlitePersistence

SCENARIOS = ("send", "get", "latest", "echo")
SEED_MESSAGES = 500


def open_app(root: Path, durability: str) -> Application:
    functions = root / "functions"
    write_functions(functions)
    database = Database(
        SqlitePersistence(str(root / "data.sqlite3"), durability=durability), clock=SystemClock()
    )
    # The limits `syncline serve` runs with by default: the memory ceiling is on.
    limits = ExecutionLimits(max_memory_bytes=default_max_memory_bytes())
    app = Application(database, functions, limits=limits)
    app.load()
    return app


async def seed(app: Application) -> list[str]:
    ids = []
    for i in range(SEED_MESSAGES):
        outcome = await app.executor.mutation(
            "messages:send", {"body": f"seed message {i}", "channel": f"c{i % 5}"}
        )
        ids.append(outcome.unwrap())
    return ids


def make_call(app: Application, scenario: str, ids: list[str]) -> Callable[[int], Awaitable[Any]]:
    executor = app.executor
    if scenario == "send":
        return lambda i: executor.mutation(
            "messages:send", {"body": f"hello from the bench {i}", "channel": f"c{i % 5}"}
        )
    if scenario == "get":
        return lambda i: executor.query("messages:get", {"id": ids[i % len(ids)]})
    if scenario == "latest":
        return lambda i: executor.query("messages:latest", {"channel": f"c{i % 5}"})
    if scenario == "echo":
        return lambda i: executor.query("messages:echo", {"text": "some text", "n": float(i)})
    raise ValueError(scenario)


async def run_calls(
    call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for ``calls`` calls, ``concurrency`` in flight."""

    async def worker(start: int) -> None:
        for i in range(start, calls, concurrency):
            outcome = await call(i)
            if outcome.error is not None:
                raise outcome.error

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def measure(args: argparse.Namespace, scenarios: list[str]) -> dict[str, list[float]]:
    cpu: dict[str, list[float]] = {s: [] for s in scenarios}
    wall: dict[str, list[float]] = {s: [] for s in scenarios}
    with tempfile.TemporaryDirectory() as tmp:
        app = open_app(Path(tmp), args.durability)
        try:
            ids = await seed(app)
            for _ in range(args.rounds):
                for scenario in scenarios:
                    call = make_call(app, scenario, ids)
                    await run_calls(call, min(args.calls, 200), args.concurrency)  # warm up
                    c, w = await run_calls(call, args.calls, args.concurrency)
                    cpu[scenario].append(c / args.calls * 1e6)
                    wall[scenario].append(w / args.calls * 1e6)
        finally:
            app.close()
    if not args.quiet:
        print(
            f"function calls through the executor (durability={args.durability}, "
            f"concurrency {args.concurrency}, {args.calls} calls x {args.rounds} rounds, medians)"
        )
        for scenario in scenarios:
            c, w = cpu[scenario], wall[scenario]
            print(
                f"  {scenario:7s} CPU {statistics.median(c):7.1f} us/call "
                f"(min {min(c):6.1f}, max {max(c):6.1f})   wall {statistics.median(w):7.1f} us/call"
            )
    return cpu


_COLLECTED = re.compile(rb"Collected : (\d+)")


def _instructions(scenario: str, calls: int, durability: str) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--only",
        scenario,
        "--calls",
        str(calls),
        "--rounds",
        "1",
        "--durability",
        durability,
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]!r}")
    return int(found.group(1))


def callgrind(args: argparse.Namespace, scenarios: list[str]) -> None:
    print(
        f"instructions per call (callgrind; ({args.calls * 2} calls - {args.calls} calls) "
        f"/ {args.calls})"
    )
    for scenario in scenarios:
        once = _instructions(scenario, args.calls, args.durability)
        twice = _instructions(scenario, args.calls * 2, args.durability)
        print(f"  {scenario:7s} {(twice - once) / args.calls:12,.0f} instructions/call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--durability", default="normal", choices=["full", "normal", "off"])
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    scenarios = [s for s in args.only.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    if args.callgrind:
        callgrind(args, scenarios)
    else:
        asyncio.run(measure(args, scenarios))


if __name__ == "__main__":
    main()
