"""Soak test: minutes of ordinary mixed load on a real `syncline serve`.

    python bench/soak.py [--minutes 10] [--subscribers 40] [--writers 4]
                         [--warmup 20] [--max-warmup 300]

Starts a server on free ports and, for the given time, keeps up at once:

  * subscribers: WebSocket clients holding a live query over one of a few
    channels (``update``: time from a mutation's send to the subscriber seeing
    its message);
  * writers: WebSocket mutations at a steady rate (``mutation``: until the
    MutationResponse);
  * action callers: WebSocket actions that run a mutation and a query
    (``action``);
  * HTTP callers: ``POST /api/query`` (``http_query``);
  * reconnects: a client that connects, subscribes, receives its first result
    and closes, over and over (``reconnect``).

The load stays well inside every server limit: the soak checks that normal use
neither leaks nor slows down. It prints, per minute and kind of operation, the
count, p50 and p99 latency and the errors, and the server's RSS each minute;
then the RSS at the start (the end of the warm-up) and at the end, and the
growth between them. It exits 1 when RSS grew by 10 % or more, or when any
operation failed.

The warm-up lasts ``--warmup`` seconds, then goes on while the server's RSS
still grows (by over 1 % in the last 60 s), for at most ``--max-warmup``
seconds: what the server bounds fills under load and then stays (SQLite's
page caches, the writer's first of all, fill over minutes at this load). A
server that keeps growing is still growing when the warm-up gives up, and the
measured window shows it. The RSS of the fresh server and how long the
warm-up took are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from syncline._devtools import add_query_message, connect_frame, launch

FUNCTIONS = """
from syncline import action, mutation, query, v

KEEP = 30


@query(args={"channel": v.string()})
def recent(ctx, channel):
    return (
        ctx.db.query("messages")
        .with_index("by_channel", lambda q: q.eq("channel", channel))
        .order("desc")
        .take(10)
    )


@mutation(args={"channel": v.string(), "body": v.string(), "sentAt": v.number()})
def post(ctx, channel, body, sentAt):
    ctx.db.insert("messages", {"channel": channel, "body": body, "sentAt": sentAt})
    # Keep each channel short: the soak measures the server, not a growing table.
    old = (
        ctx.db.query("messages")
        .with_index("by_channel", lambda q: q.eq("channel", channel))
        .order("desc")
        .collect()[KEEP:]
    )
    for doc in old:
        ctx.db.delete(doc["_id"])


@action(args={"channel": v.string(), "sentAt": v.number()})
async def post_and_read(ctx, channel, sentAt):
    await ctx.run_mutation("soak:post", {"channel": channel, "body": "via action", "sentAt": sentAt})
    return len(await ctx.run_query("soak:recent", {"channel": channel}))
"""

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "messages": define_table(
            {"channel": v.string(), "body": v.string(), "sentAt": v.number()}
        ).index("by_channel", ["channel"]),
    }
)
"""

CHANNELS = [f"room-{i}" for i in range(5)]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Stats:
    """Latencies (ms) and errors per (minute, kind)."""

    started: float = field(default_factory=time.monotonic)
    measuring: bool = False
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[tuple[int, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60) + 1

    def record(self, kind: str, ms: float) -> None:
        if self.measuring:
            self.latencies[(self.minute(), kind)].append(ms)

    def error(self, kind: str, what: str) -> None:
        # Errors count during warm-up too: none is expected at any time.
        self.errors[(max(self.minute(), 1) if self.measuring else 0, kind)].append(what)


class Conn:
    """A sync protocol client with a reader task: requests and subscriptions interleave."""

    def __init__(self, ws: Any, stats: Stats) -> None:
        self.ws = ws
        self.stats = stats
        self.request_id = 0
        self.query_set = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.first_values: dict[int, asyncio.Future[Any]] = {}
        self.seen_sent_at = 0.0
        self.measure_updates = False
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, stats: Stats) -> Conn:
        ws = await websockets.connect(url, max_size=None, ping_interval=None)
        await ws.send(connect_frame())
        return cls(ws, stats)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                message = orjson.loads(raw)
                kind = message["type"]
                if kind in ("MutationResponse", "ActionResponse"):
                    future = self.pending.pop(message["requestId"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif kind == "Transition":
                    self._transition(message)
                elif kind == "FatalError":
                    self.stats.error("protocol", str(message.get("error")))

    def _transition(self, message: dict[str, Any]) -> None:
        now = time.time()
        for modification in message["modifications"]:
            query_id = modification.get("queryId")
            if modification["type"] == "QueryFailed":
                self.stats.error("query", str(modification.get("errorMessage")))
                continue
            if modification["type"] != "QueryUpdated":
                continue
            value = modification["value"]
            waiter = self.first_values.pop(query_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(value)
            newest = max((doc["sentAt"] for doc in value), default=0.0)
            if self.measure_updates and newest > self.seen_sent_at and self.seen_sent_at:
                self.stats.record("update", (now - newest) * 1000)
            self.seen_sent_at = max(self.seen_sent_at, newest)

    async def subscribe(self, path: str, args: dict[str, Any]) -> Any:
        self.query_set += 1
        first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.first_values[self.query_set] = first
        await self.ws.send(
            orjson.dumps(
                add_query_message(path, args, query_id=self.query_set, version=self.query_set)
            )
        )
        return await asyncio.wait_for(first, 30)

    async def request(self, kind: str, path: str, args: dict[str, Any]) -> dict[str, Any]:
        self.request_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.request_id] = future
        await self.ws.send(
            orjson.dumps(
                {"type": kind, "requestId": self.request_id, "udfPath": path, "args": [args]}
            )
        )
        return await asyncio.wait_for(future, 30)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def timed(stats: Stats, kind: str, call: Any) -> None:
    started = time.perf_counter()
    try:
        result = await call
    except Exception as exc:  # every failure is an unexpected error here
        stats.error(kind, f"{type(exc).__name__}: {exc}")
        return
    if isinstance(result, dict) and result.get("success") is False:
        stats.error(kind, str(result.get("result")))
        return
    if isinstance(result, httpx.Response) and (
        result.status_code != 200 or result.json().get("status") != "success"
    ):
        stats.error(kind, f"HTTP {result.status_code}: {result.text[:200]}")
        return
    stats.record(kind, (time.perf_counter() - started) * 1000)


async def writer(url: str, stats: Stats, stop: asyncio.Event, period: float) -> None:
    conn = await Conn.open(url, stats)
    while not stop.is_set():
        args = {"channel": random.choice(CHANNELS), "body": "hello", "sentAt": time.time()}
        await timed(stats, "mutation", conn.request("Mutation", "soak:post", args))
        await asyncio.sleep(period * random.uniform(0.5, 1.5))
    await conn.close()


async def action_caller(url: str, stats: Stats, stop: asyncio.Event, period: float) -> None:
    conn = await Conn.open(url, stats)
    while not stop.is_set():
        args = {"channel": random.choice(CHANNELS), "sentAt": time.time()}
        await timed(stats, "action", conn.request("Action", "soak:post_and_read", args))
        await asyncio.sleep(period * random.uniform(0.5, 1.5))
    await conn.close()


async def http_caller(base: str, stats: Stats, stop: asyncio.Event, period: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while not stop.is_set():
            body = {"path": "soak:recent", "args": {"channel": random.choice(CHANNELS)}}
            await timed(stats, "http_query", http.post("/api/query", json=body))
            await asyncio.sleep(period * random.uniform(0.5, 1.5))


async def reconnecter(url: str, stats: Stats, stop: asyncio.Event, period: float) -> None:
    async def once() -> None:
        conn = await Conn.open(url, stats)
        try:
            await conn.subscribe("soak:recent", {"channel": random.choice(CHANNELS)})
        finally:
            await conn.close()

    while not stop.is_set():
        await timed(stats, "reconnect", once())
        await asyncio.sleep(period * random.uniform(0.5, 1.5))


#: the warm-up goes on while RSS grew by more than this over the last WARMUP_WINDOW_S
WARMUP_STEADY = 0.01
WARMUP_WINDOW_S = 60.0


async def warm_up(pid: int, least_s: float, most_s: float) -> float:
    """Wait ``least_s``, then until RSS grows less than 1 % in 60 s (``most_s`` at most)."""
    started = time.monotonic()
    await asyncio.sleep(least_s)
    samples = [(time.monotonic(), rss_kb(pid))]
    while time.monotonic() - started < most_s:
        await asyncio.sleep(5)
        now = time.monotonic()
        samples.append((now, rss_kb(pid)))
        window = [rss for at, rss in samples if now - at <= WARMUP_WINDOW_S]
        if now - samples[0][0] >= WARMUP_WINDOW_S and window[-1] <= window[0] * (1 + WARMUP_STEADY):
            break
    return time.monotonic() - started


async def soak(args: argparse.Namespace, base: str, ws_url: str, pid: int) -> int:
    rss_fresh = rss_kb(pid)
    stats = Stats()
    stop = asyncio.Event()
    subscribers = []
    for i in range(args.subscribers):
        conn = await Conn.open(ws_url, stats)
        await conn.subscribe("soak:recent", {"channel": CHANNELS[i % len(CHANNELS)]})
        conn.measure_updates = True
        subscribers.append(conn)
    tasks = [asyncio.ensure_future(writer(ws_url, stats, stop, 0.05)) for _ in range(args.writers)]
    tasks += [asyncio.ensure_future(action_caller(ws_url, stats, stop, 0.2)) for _ in range(2)]
    tasks += [asyncio.ensure_future(http_caller(base, stats, stop, 0.1)) for _ in range(2)]
    tasks.append(asyncio.ensure_future(reconnecter(ws_url, stats, stop, 0.25)))

    print(f"warming up for {args.warmup:g} to {args.max_warmup:g} s ...", flush=True)
    warmup_s = await warm_up(pid, args.warmup, args.max_warmup)
    rss_start = rss_kb(pid)
    print(
        f"warm-up: {warmup_s:.0f} s, RSS {rss_fresh / 1024:.1f} MB (fresh, no load) -> "
        f"{rss_start / 1024:.1f} MB",
        flush=True,
    )
    stats.started = time.monotonic()
    stats.measuring = True
    rss_by_minute = []
    for minute in range(1, args.minutes + 1):
        await asyncio.sleep(60)
        rss_by_minute.append(rss_kb(pid))
        report_minute(stats, minute, rss_by_minute[-1])
    stats.measuring = False
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in subscribers), return_exceptions=True)

    rss_end = rss_by_minute[-1]
    growth = (rss_end - rss_start) / rss_start * 100
    errors = sum(len(v) for v in stats.errors.values())
    print()
    print(
        f"RSS at start: {rss_start / 1024:.1f} MB   at end: {rss_end / 1024:.1f} MB   "
        f"growth: {growth:+.1f} %"
    )
    print(
        f"operations: {sum(len(v) for v in stats.latencies.values())}   unexpected errors: {errors}"
    )
    for (minute, kind), whats in sorted(stats.errors.items()):
        print(f"  minute {minute} {kind}: {len(whats)} x {whats[0]}")
    ok = growth < 10 and errors == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


KINDS = ["mutation", "action", "http_query", "reconnect", "update"]


def report_minute(stats: Stats, minute: int, rss: int) -> None:
    if minute == 1:
        print(f"{'minute':>6} {'kind':<11} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind in KINDS:
        values = stats.latencies.get((minute, kind), [])
        errors = len(stats.errors.get((minute, kind), []))
        p50 = f"{percentile(values, 50):8.1f}" if values else f"{'-':>8}"
        p99 = f"{percentile(values, 99):8.1f}" if values else f"{'-':>8}"
        print(f"{minute:>6} {kind:<11} {len(values):>7} {p50} {p99} {errors:>6}")
    print(f"{minute:>6} {'server RSS':<11} {rss / 1024:>7.1f} MB", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=40)
    parser.add_argument("--writers", type=int, default=4, help="each ~20 mutations/s")
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds of load before measuring, at least"
    )
    parser.add_argument(
        "--max-warmup",
        type=float,
        default=300.0,
        help="seconds of load before measuring, at most (while RSS still grows)",
    )
    args = parser.parse_args()
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")

    folder = Path(tempfile.mkdtemp(prefix="syncline-soak-"))
    try:
        project = folder / "app"
        (project / "functions").mkdir(parents=True)
        (project / "functions" / "soak.py").write_text(FUNCTIONS)
        (project / "functions" / "schema.py").write_text(SCHEMA)
        server = launch(project, timeout=30)
        assert server.proc is not None
        try:
            print(f"server {server.url} (pid {server.proc.pid}); {args.minutes} min of load")
            return asyncio.run(soak(args, server.url, server.ws_url, server.proc.pid))
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
