"""Sync benchmark: a real `syncline serve` process driven over WebSocket.

    python bench/sync.py [--subscribers 1000] [--clients 64] [--samples 300]

Prints (medians and percentiles; this machine is noisy):
  * mutation round trip over WebSocket (MutationResponse + the Transition that
    completes it), p50/p99, one client;
  * mutations/s with N concurrent clients (each waits for its own completions);
  * commit -> subscriber latency p50/p99 with 1 subscriber, and with M
    subscribers on one query (time until ALL of them have the new result);
  * server memory per idle connection (RSS growth / M connections).

The clients run in this process; the server runs in its own (2 cores: one each).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import websockets

from syncline._devtools import add_query_message, connect_frame, launch

FUNCTIONS = """
from syncline import mutation, query, v

@query
def latest(ctx):
    doc = ctx.db.query("events").order("desc").first()
    return None if doc is None else doc["n"]

@mutation(args={"n": v.number()})
def emit(ctx, n):
    ctx.db.insert("events", {"n": n})

@mutation(args={"n": v.number()})
def write(ctx, n):
    ctx.db.insert("items", {"n": n})
"""


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Conn:
    """A minimal protocol client: enough to measure, nothing more."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.request_id = 0
        self.query_set = 0

    @classmethod
    async def open(cls, url: str) -> Conn:
        ws = await websockets.connect(url, max_size=None, ping_interval=None)
        conn = cls(ws)
        await ws.send(connect_frame())
        return conn

    async def subscribe(self, path: str) -> None:
        self.query_set += 1
        await self.ws.send(
            orjson.dumps(
                add_query_message(path, {}, query_id=self.query_set, version=self.query_set)
            )
        )
        await self.next_update()

    async def next_update(self) -> object:
        while True:
            msg = orjson.loads(await self.ws.recv())
            if msg["type"] == "Transition" and msg["modifications"]:
                return msg["modifications"][0].get("value")

    async def mutation(self, path: str, args: dict[str, object]) -> None:
        """Send a mutation and wait until it is complete (response, then a Transition)."""
        self.request_id += 1
        await self.ws.send(
            orjson.dumps(
                {
                    "type": "Mutation",
                    "requestId": self.request_id,
                    "udfPath": path,
                    "args": [args],
                }
            )
        )
        responded = False
        while True:
            msg = orjson.loads(await self.ws.recv())
            if msg["type"] == "MutationResponse" and msg["requestId"] == self.request_id:
                if not msg["success"]:
                    raise RuntimeError(msg["result"])
                responded = True
            elif msg["type"] == "Transition" and responded:
                return

    async def close(self) -> None:
        await self.ws.close()


async def round_trips(url: str, samples: int) -> list[float]:
    conn = await Conn.open(url)
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        await conn.mutation("bench:write", {"n": float(i)})
        times.append((time.perf_counter() - t0) * 1000)
    await conn.close()
    return times


async def throughput(url: str, clients: int, per_client: int) -> float:
    conns = await asyncio.gather(*(Conn.open(url) for _ in range(clients)))

    async def run(conn: Conn) -> None:
        for i in range(per_client):
            await conn.mutation("bench:write", {"n": float(i)})

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(c.close() for c in conns))
    return clients * per_client / elapsed


def _subscriber_process(url: str, count: int, pipe: Connection) -> None:
    """Hold ``count`` subscriptions; for each value announced, report when all have it."""

    async def run() -> None:
        subs: list[Conn] = []
        for start in range(0, count, 100):
            batch = await asyncio.gather(*(Conn.open(url) for _ in range(min(100, count - start))))
            await asyncio.gather(*(c.subscribe("bench:latest") for c in batch))
            subs.extend(batch)
        loop = asyncio.get_running_loop()
        pipe.send("ready")
        while True:
            value = await loop.run_in_executor(None, pipe.recv)
            if value is None:
                break
            waiters = [asyncio.ensure_future(_until(c, value)) for c in subs]
            pipe.send("armed")
            await asyncio.gather(*waiters)
            pipe.send(time.time())
        await asyncio.gather(*(c.close() for c in subs))

    _run(run())


def _run(coro: Any) -> Any:
    """Clients on uvloop too, so that client-side overhead stays small."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def fanout(
    url: str, subscribers: int, samples: int, server_pid: int, processes: int = 1
) -> tuple[list[float], float]:
    """Latency until ALL subscribers see a commit; also server RSS per connection.

    Subscribers are spread over ``processes`` client processes so that client-side
    frame parsing does not dominate what is measured.
    """
    rss_before = _rss_kb(server_pid)
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    share = [
        subscribers // processes + (1 if i < subscribers % processes else 0)
        for i in range(processes)
    ]
    for count in share:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_subscriber_process, args=(url, count, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    await asyncio.sleep(0.5)
    rss_per_conn = (_rss_kb(server_pid) - rss_before) * 1024 / subscribers
    writer = await Conn.open(url)
    latencies = []
    for i in range(samples):
        value = float(1_000_000 + i)
        for pipe in pipes:
            pipe.send(value)
        for pipe in pipes:
            assert pipe.recv() == "armed"
        t0 = time.time()
        await writer.mutation("bench:emit", {"n": value})
        finished = [pipe.recv() for pipe in pipes]
        latencies.append((max(finished) - t0) * 1000)
    for pipe in pipes:
        pipe.send(None)
    for proc in procs:
        proc.join(timeout=30)
    await writer.close()
    return latencies, rss_per_conn


NODE_MODULES = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "js" / "node_modules"


def node_fanout(
    url: str, subscribers: int, samples: int, server_pid: int
) -> tuple[list[float], float]:
    """The fan-out measurement with the subscribers in one Node process (cheaper clients)."""
    rss_before = _rss_kb(server_pid)
    proc = subprocess.Popen(
        ["node", str(Path(__file__).with_name("fanout_subscribers.mjs")), url, str(subscribers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert orjson.loads(proc.stdout.readline()) == "ready"
    time.sleep(0.5)
    rss_per_conn = (_rss_kb(server_pid) - rss_before) * 1024 / subscribers

    async def run() -> list[float]:
        writer = await Conn.open(url)
        latencies = []
        for i in range(samples):
            value = float(2_000_000 + i)
            proc.stdin.write(f"{value}\n")
            proc.stdin.flush()
            assert orjson.loads(proc.stdout.readline()) == "armed"
            t0 = time.time()
            await writer.mutation("bench:emit", {"n": value})
            done = orjson.loads(proc.stdout.readline())
            latencies.append(done["doneAt"] - t0 * 1000)
        await writer.close()
        return latencies

    try:
        return _run(run()), rss_per_conn
    finally:
        proc.stdin.write("null\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


async def _until(conn: Conn, value: float) -> None:
    while await conn.next_update() != value:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "functions").mkdir()
        (project / "functions" / "bench.py").write_text(FUNCTIONS)
        # (The server inherits the raised open-files limit.)
        server = launch(project, timeout=30)
        assert server.proc is not None
        pid = server.proc.pid
        try:
            url = server.ws_url

            rt = _run(round_trips(url, args.samples))
            rate = _run(throughput(url, args.clients, 50))
            one, _ = _run(fanout(url, 1, args.samples, pid))
            fan_samples = max(30, args.samples // 5)
            if shutil.which("node") and NODE_MODULES.is_dir():
                client_kind = "1 Node process"
                many, per_conn = node_fanout(url, args.subscribers, fan_samples, pid)
            else:
                client_kind = "4 Python processes"
                many, per_conn = _run(fanout(url, args.subscribers, fan_samples, pid, processes=4))
        finally:
            server.stop()

    print("sync benchmark (real server process, WebSocket clients; medians/percentiles)")
    print(
        f"  mutation round trip, 1 client        : p50 {statistics.median(rt):6.2f} ms   p99 {_pct(rt, 99):6.2f} ms"
    )
    print(f"  mutations/s, {args.clients} concurrent clients   : {rate:8.0f}")
    print(
        f"  commit -> 1 subscriber               : p50 {statistics.median(one):6.2f} ms   p99 {_pct(one, 99):6.2f} ms"
    )
    print(f"  ({args.subscribers} subscribers held by {client_kind} on this machine)")
    print(
        f"  commit -> all {args.subscribers} subscribers     : p50 {statistics.median(many):6.2f} ms   p95 {_pct(many, 95):6.2f} ms   p99 {_pct(many, 99):6.2f} ms"
    )
    print(f"  server memory per subscribed connection: {per_conn / 1024:6.1f} KB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
