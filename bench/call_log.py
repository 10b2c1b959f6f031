"""The log history's write cost as it grows: request ids that lead with time, or random ones.

    python bench/call_log.py [--records 200000] [--batch 500] [--rounds 3]

Appends ``--records`` call records in batches of ``--batch`` (as the log writer
does) to a fresh log file, once with Syncline's request ids (the millisecond
first) and once with random 64-bit ids, and prints the writer's CPU per record
over the first and the last 20% of the batches (median over rounds). The log
indexes calls by request id: random ids land on a random page of that index
each, and the cost per record grows with the file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncline.call_log.store import LogStore
from syncline.functions.outcomes import new_request_id


def record(request_id: str) -> dict[str, Any]:
    return {
        "timestamp": time.time() * 1000,
        "path": "messages:send",
        "kind": "mutation",
        "status": "success",
        "durationMs": 0.2,
        "requestId": request_id,
        "caller": None,
        "logLines": [],
        "cached": False,
        "error": None,
        "traceback": None,
    }


def run(make_id: Callable[[], str], records: int, batch: int) -> tuple[float, float]:
    """CPU µs per record over the first and the last fifth of the batches."""
    folder = Path(tempfile.mkdtemp(prefix="syncline-bench-log-"))
    try:
        store = LogStore(folder / "logs.sqlite3", max_bytes=1 << 40, max_age_ms=1e15)
        spent: list[float] = []
        for _ in range(records // batch):
            rows = [record(make_id()) for _ in range(batch)]
            started = time.thread_time()
            store.append(rows)
            spent.append(time.thread_time() - started)
        store.close()
        fifth = max(1, len(spent) // 5)
        per = 1e6 / (fifth * batch)
        return sum(spent[:fifth]) * per, sum(spent[-fifth:]) * per
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name, make_id in (
        ("time first (Syncline's)", new_request_id),
        ("random", lambda: os.urandom(8).hex()),
    ):
        results = [run(make_id, args.records, args.batch) for _ in range(args.rounds)]
        first = statistics.median(r[0] for r in results)
        last = statistics.median(r[1] for r in results)
        print(
            f"{name:24s} CPU per record: first 20% {first:5.2f} µs, "
            f"last 20% {last:5.2f} µs ({args.records:,} records)"
        )


if __name__ == "__main__":
    main()
