"""``serve --workers N``: mutations/s over HTTP and WebSocket, and cross-worker propagation.

    python bench/workers.py [--workers 1,2] [--rounds 3] [--clients 64] [--creates 3000]
                            [--samples 300]

For each worker count a real ``syncline serve --workers N`` runs the shared
``messages`` app; 64 clients in this process (lean asyncio protocols: as
little client CPU as possible) each keep one create in flight:

* HTTP: ``POST /api/mutation messages:send`` on keep-alive connections;
* WebSocket: sync-protocol ``Mutation`` messages, each complete when its
  ``MutationResponse`` and the ``Transition`` after it have arrived.

Printed per worker count and transport, as medians over ``--rounds``:
creates/s, and the server's CPU µs per create (parent and every worker,
user + system, from /proc: the figure to trust on a shared machine).

With two or more workers it also measures commit -> subscriber propagation
across workers: a subscriber of ``messages:latest`` on one worker and a
writer on another (each connection asks ``bench:where`` which worker serves
it). The latency is the subscriber's arrival time minus the commit ts (a
wall-clock nanosecond timestamp taken at commit; same machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from http_api import HttpConn, closed_loop, create_body
from messages_app import cpu_seconds, write_functions
from realtime_stages import WSClient

from syncline._devtools import ServerProcess, add_query_message, connect_frame, launch
from syncline.sync.protocol import decode_ts

WHERE = """\
import os

from syncline import mutation


@mutation
def where(ctx):
    return float(os.getpid())
"""


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (the workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class WsMutator:
    """One sync connection with one mutation in flight (response, then its Transition)."""

    def __init__(self) -> None:
        self.ws: WSClient | None = None
        self.request_id = 0
        self.waiter: asyncio.Future[bytes] | None = None
        self.response: bytes | None = None
        #: called with (payload, arrival ns) for every Transition (subscribers)
        self.on_transition: Callable[[bytes, int], None] | None = None

    @classmethod
    async def open(cls, port: int) -> WsMutator:
        conn = cls()
        conn.ws = await WSClient.connect(port, conn._on_message)
        conn.ws.send(orjson.loads(connect_frame()))
        return conn

    def _on_message(self, payload: bytes, t: int) -> None:
        if payload.startswith(b'{"type":"MutationResponse"'):
            self.response = payload
        elif payload.startswith(b'{"type":"Transition"'):
            if self.on_transition is not None:
                self.on_transition(payload, time.time_ns())
            if self.response is not None and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.response)

    async def mutation(self, path: str, args: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        self.request_id += 1
        self.response = None
        self.waiter = asyncio.get_running_loop().create_future()
        self.ws.send(
            {"type": "Mutation", "requestId": self.request_id, "udfPath": path, "args": [args]}
        )
        answer: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.waiter, 60))
        if not answer["success"]:
            raise RuntimeError(answer)
        return answer

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


async def measure(
    pid: int, conns: list[Any], total: int, one: Callable[[Any, int], Awaitable[None]]
) -> dict[str, float]:
    cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
    await closed_loop(conns, total, one)
    wall, cpu = time.perf_counter() - t0, tree_cpu_seconds(pid) - cpu0
    return {"per_s": total / wall, "cpu_us": cpu / total * 1e6}


async def http_round(server: ServerProcess, clients: int, total: int) -> dict[str, float]:
    async def one(conn: HttpConn, i: int) -> None:
        await conn.post(b"/api/mutation", create_body(i))

    return await run_round(
        server, [await HttpConn.open(server.port) for _ in range(clients)], total, one
    )


async def ws_round(server: ServerProcess, clients: int, total: int) -> dict[str, float]:
    async def one(conn: WsMutator, i: int) -> None:
        await conn.mutation("messages:send", {"body": f"message {i}", "channel": f"c{i % 8}"})

    return await run_round(
        server, [await WsMutator.open(server.port) for _ in range(clients)], total, one
    )


async def run_round(
    server: ServerProcess, conns: list[Any], total: int, one: Callable[[Any, int], Awaitable[None]]
) -> dict[str, float]:
    """``total`` creates over ``conns`` (closed afterwards), measured."""
    try:
        assert server.pid is not None
        return await measure(server.pid, conns, total, one)
    finally:
        for c in conns:
            c.close()


async def propagation(server: ServerProcess, samples: int) -> list[float]:
    """Commit -> subscriber (ms) with the writer and the subscriber on different workers."""
    by_pid: dict[float, list[WsMutator]] = {}
    opened: list[WsMutator] = []
    for _ in range(64):
        conn = await WsMutator.open(server.port)
        opened.append(conn)
        pid = (await conn.mutation("bench:where", {}))["result"]
        by_pid.setdefault(pid, []).append(conn)
        if len(by_pid) >= 2:
            break
    if len(by_pid) < 2:
        raise RuntimeError("every connection reached the same worker")
    (writer, *_), (subscriber, *_) = list(by_pid.values())[:2]
    try:
        return await commit_to_subscriber(writer, subscriber, samples)
    finally:
        for conn in opened:
            conn.close()


async def commit_to_subscriber(
    writer: WsMutator, subscriber: WsMutator, samples: int
) -> list[float]:
    """Commit (on ``writer``'s process) -> Transition at ``subscriber`` latencies, in ms."""
    arrived: dict[str, int] = {}
    wanted: dict[str, asyncio.Future[None]] = {}

    def on_transition(payload: bytes, t_ns: int) -> None:
        for marker, future in list(wanted.items()):
            if marker.encode() in payload and not future.done():
                arrived[marker] = t_ns
                future.set_result(None)

    subscriber.on_transition = on_transition
    assert subscriber.ws is not None
    subscriber.ws.send(
        add_query_message("messages:latest", {"channel": "propagation"}, query_id=0, version=1)
    )
    await asyncio.sleep(0.5)
    latencies = []
    loop = asyncio.get_running_loop()
    for i in range(samples):
        marker = f"p-{i}-{time.time_ns()}"
        wanted[marker] = loop.create_future()
        answer = await writer.mutation("messages:send", {"body": marker, "channel": "propagation"})
        await asyncio.wait_for(wanted[marker], 10)
        del wanted[marker]
        latencies.append((arrived.pop(marker) - decode_ts(answer["ts"])) / 1e6)
        await asyncio.sleep(0.005)  # one commit at a time: latency, not queueing
    return latencies


def run_for(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        write_functions(project / "functions")
        (project / "functions" / "bench.py").write_text(WHERE)
        extra = [f"--durability={args.durability}", "--workers", str(workers)]
        server = launch(project, args=extra, timeout=60)
        try:
            time.sleep(2.0 + workers)  # every worker up (the first answers /version)
            results: dict[str, Any] = {"http": [], "ws": []}
            for _ in range(args.rounds):
                results["http"].append(asyncio.run(http_round(server, args.clients, args.creates)))
                results["ws"].append(asyncio.run(ws_round(server, args.clients, args.creates)))
            if workers >= 2:
                results["propagation"] = asyncio.run(propagation(server, args.samples))
            return results
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    print(
        f"serve --workers N: {args.clients} clients, one create in flight each, "
        f"medians of {args.rounds} rounds of {args.creates} (durability={args.durability})"
    )
    for workers in (int(w) for w in args.workers.split(",")):
        results = run_for(workers, args)
        for transport in ("http", "ws"):
            rounds = results[transport]
            rate = statistics.median(r["per_s"] for r in rounds)
            cpu = statistics.median(r["cpu_us"] for r in rounds)
            print(
                f"  --workers {workers} {transport:<4}: {rate:7.0f} creates/s   "
                f"server CPU {cpu:6.0f} µs/create   (rounds: "
                + ", ".join(f"{r['per_s']:.0f}" for r in rounds)
                + ")"
            )
        if "propagation" in results:
            lat = results["propagation"]
            print(
                f"  --workers {workers} commit -> subscriber on another worker: "
                f"p50 {statistics.median(lat):.2f} ms   p99 {_pct(lat, 99):.2f} ms "
                f"({len(lat)} samples)"
            )


if __name__ == "__main__":
    main()
