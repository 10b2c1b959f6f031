"""Nodes on PostgreSQL: mutations/s, cross-node latency, fan-out and write-lock hold time.

    python bench/postgres.py [--nodes 1,2,3] [--rounds 3] [--clients 64] [--creates 2000]
                             [--samples 100] [--subscribers 1000] [--fanout-samples 30]
                             [--durability full|normal] [--phase-timeout 240]
                             [--maintenance-url postgresql://...]

For each node count, N real ``syncline serve --db postgresql://...`` nodes
(each with its own copy of the ``messages`` app, all on one fresh database
made through ``--maintenance-url`` and dropped afterwards) are measured in
three phases, each repeated ``--rounds`` times and printed as medians:

* throughput: 64 HTTP clients in this process, spread evenly over the nodes,
  each keeping one create (``POST /api/mutation messages:send``) in flight.
  Creates/s and the nodes' CPU µs per create (every node process;
  PostgreSQL's own CPU is not counted). From the nodes' ``/metrics``
  (``syncline_postgres_write_lock_hold_seconds`` and ``_wait_seconds``,
  differences over the round): commit batches, commits per batch, the mean
  time a batch holds the cross-node write lock (exact: sum / count) and its
  p50/p99 (the histogram bucket holding them: an upper bound), and the mean
  time a batch waits for the lock.
* cross-node latency: the writer on one node, a subscriber of
  ``messages:latest`` on the next (LISTEN/NOTIFY wake-up, then the commit
  log); latency = arrival minus the commit ts, p50/p99. With one node both
  are on it: the baseline the cross-node figure adds to.
* fan-out: ``--subscribers`` WebSocket subscribers of one query, dealt
  round-robin over the nodes (held by one Node process,
  ``fanout_subscribers.mjs``: cheap clients), and a writer that moves from
  node to node; the time from sending the mutation until every subscriber
  has the new result, p50/p95 (needs ``node`` and ``npm ci`` in tests/e2e/js).

Durability is ``full`` by default (``synchronous_commit=on``: what SQLite's
``full`` promises). Every phase has a deadline (``--phase-timeout``) and the
nodes are always stopped (SIGTERM, then SIGKILL). Clients, nodes and
PostgreSQL share the machine: on a small one the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from http_api import HttpConn, closed_loop, create_body
from messages_app import SCHEMA, write_functions
from prometheus_client.parser import text_string_to_metric_families
from workers import WsMutator, _pct, commit_to_subscriber, tree_cpu_seconds

from syncline._devtools import ServerProcess, launch

T = TypeVar("T")

#: The fan-out query and its writer (next to the ``messages`` app, in its schema).
FANOUT = """\
from syncline import mutation, query, v

@query
def latest(ctx):
    doc = ctx.db.query("events").order("desc").first()
    return None if doc is None else doc["n"]

@mutation(args={"n": v.number()})
def emit(ctx, n):
    ctx.db.insert("events", {"n": n})
"""
FANOUT_CLIENTS = Path(__file__).with_name("fanout_subscribers.mjs")
NODE_MODULES = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "js" / "node_modules"
LOCK_METRICS = (
    "syncline_postgres_write_lock_hold_seconds",
    "syncline_postgres_write_lock_wait_seconds",
)


class PhaseTimeout(Exception):
    """A phase passed its deadline (the nodes are stopped all the same)."""


def within(phase: str, seconds: float, coro: Awaitable[T]) -> T:
    """Run ``coro`` to completion, or raise PhaseTimeout after ``seconds``."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, seconds)
        except TimeoutError:
            raise PhaseTimeout(f"{phase}: no result after {seconds:g} s") from None

    return asyncio.run(bounded())


@contextlib.contextmanager
def fresh_database(maintenance_url: str) -> Iterator[str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"syncline_bench_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        params = conninfo_to_dict(maintenance_url)
        params["dbname"] = name
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def as_url(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    auth = p.get("user", "") + (":" + p["password"] if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '')}:{p.get('port', '5432')}/{p['dbname']}"


def write_app(functions: Path) -> None:
    """The ``messages`` app plus the fan-out module and its ``events`` table."""
    write_functions(functions)
    head = "schema = define_schema({\n"
    assert head in SCHEMA
    events = '    "events": define_table({"n": v.number()}),\n'
    (functions / "schema.py").write_text(SCHEMA.replace(head, head + events))
    (functions / "bench.py").write_text(FANOUT)


# ------------------------------------------------------------------ lock metrics


async def lock_histograms(nodes: list[ServerProcess]) -> dict[str, dict[str, float]]:
    """Every node's write-lock histograms, summed: {metric: {"count", "sum", "le=<bound>"...}}."""
    totals: dict[str, dict[str, float]] = {name: {} for name in LOCK_METRICS}
    async with httpx.AsyncClient(timeout=10) as http:
        for node in nodes:
            response = await http.get(
                f"{node.url}/metrics", headers={"authorization": f"Convex {node.admin_key}"}
            )
            response.raise_for_status()
            for family in text_string_to_metric_families(response.text):
                if family.name not in totals:
                    continue
                into = totals[family.name]
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        key = "le=" + sample.labels["le"]
                    elif sample.name.endswith("_count"):
                        key = "count"
                    elif sample.name.endswith("_sum"):
                        key = "sum"
                    else:
                        continue
                    into[key] = into.get(key, 0.0) + sample.value
    return totals


def bucket_quantile(delta: dict[str, float], q: float) -> float:
    """The upper bound (seconds) of the bucket holding quantile ``q`` of a histogram delta."""
    count = delta.get("count", 0.0)
    bounds = sorted(
        (float(key[3:]), value) for key, value in delta.items() if key.startswith("le=")
    )
    for bound, cumulative in bounds:
        if count and cumulative >= q * count:
            return bound
    return float("nan")


def lock_figures(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], commits: int
) -> dict[str, float]:
    hold, wait = ({key: after[m].get(key, 0.0) - before[m].get(key, 0.0) for key in after[m]}
                  for m in LOCK_METRICS)  # fmt: skip
    batches = hold.get("count", 0.0)
    return {
        "batches": batches,
        "per_batch": commits / batches if batches else float("nan"),
        "hold_mean_ms": hold["sum"] / batches * 1e3 if batches else float("nan"),
        "hold_p50_ms": bucket_quantile(hold, 0.50) * 1e3,
        "hold_p99_ms": bucket_quantile(hold, 0.99) * 1e3,
        "wait_mean_ms": wait["sum"] / wait["count"] * 1e3 if wait.get("count") else float("nan"),
    }


# ------------------------------------------------------------------ phases


async def http_round(nodes: list[ServerProcess], clients: int, total: int) -> dict[str, float]:
    async def one(conn: HttpConn, i: int) -> None:
        await conn.post(b"/api/mutation", create_body(i))

    conns = [await HttpConn.open(nodes[i % len(nodes)].port) for i in range(clients)]
    pids = [node.pid for node in nodes if node.pid is not None]
    try:
        locks0 = await lock_histograms(nodes)
        cpu0, t0 = sum(map(tree_cpu_seconds, pids)), time.perf_counter()
        await closed_loop(conns, total, one)
        wall, cpu = time.perf_counter() - t0, sum(map(tree_cpu_seconds, pids)) - cpu0
        locks = lock_figures(locks0, await lock_histograms(nodes), total)
    finally:
        for conn in conns:
            conn.close()
    return {"per_s": total / wall, "cpu_us": cpu / total * 1e6, **locks}


async def cross_node(nodes: list[ServerProcess], samples: int, round_: int) -> dict[str, Any]:
    """Writer on node ``round_``, subscriber on the next one: latencies (ms), and the
    write lock's hold per commit when commits come one at a time."""
    writer_node = nodes[round_ % len(nodes)]
    subscriber_node = nodes[(round_ + 1) % len(nodes)]
    writer = await WsMutator.open(writer_node.port)
    subscriber = await WsMutator.open(subscriber_node.port)
    try:
        locks0 = await lock_histograms(nodes)
        latencies = await commit_to_subscriber(writer, subscriber, samples)
        locks = lock_figures(locks0, await lock_histograms(nodes), samples)
        return {"latencies": latencies, **locks}
    finally:
        writer.close()
        subscriber.close()


class FanoutClients:
    """``fanout_subscribers.mjs`` holding ``count`` subscribers dealt over ``nodes``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, nodes: list[ServerProcess], count: int) -> FanoutClients:
        urls = ",".join(node.ws_url for node in nodes)
        proc = await asyncio.create_subprocess_exec(
            "node", str(FANOUT_CLIENTS), urls, str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
            limit=1 << 20,
        )  # fmt: skip
        clients = cls(proc)
        try:
            if await clients.read() != "ready":
                raise RuntimeError("the fan-out clients did not get ready")
        except BaseException:
            await clients.close()
            raise
        return clients

    async def read(self) -> Any:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fan-out clients exited (code {await self.proc.wait()})")
        return orjson.loads(line)

    async def arm(self, value: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{value}\n".encode())
        await self.proc.stdin.drain()
        if await self.read() != "armed":
            raise RuntimeError("the fan-out clients did not arm")

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"null\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def fanout_rounds(
    nodes: list[ServerProcess], subscribers: int, samples: int, rounds: int
) -> list[list[float]]:
    """Per round: ms from sending ``bench:emit`` until all subscribers have its value."""
    clients = await FanoutClients.start(nodes, subscribers)
    writers = [await WsMutator.open(node.port) for node in nodes]
    try:
        results = []
        for r in range(rounds):
            latencies = []
            for i in range(samples):
                value = float(1_000_000 * (r + 1) + i)
                await clients.arm(value)
                t0 = time.time()
                await writers[i % len(writers)].mutation("bench:emit", {"n": value})
                done = await clients.read()
                latencies.append(done["doneAt"] - t0 * 1000)
                await asyncio.sleep(0.01)  # one commit at a time: latency, not queueing
            results.append(latencies)
        return results
    finally:
        for writer in writers:
            writer.close()
        await clients.close()


def run_for(count: int, args: argparse.Namespace) -> dict[str, Any]:
    limit = args.phase_timeout
    with fresh_database(args.maintenance_url) as conninfo, tempfile.TemporaryDirectory() as tmp:
        nodes: list[ServerProcess] = []
        try:
            for i in range(count):
                project = Path(tmp) / f"node{i}"
                write_app(project / "functions")
                nodes.append(
                    launch(
                        project,
                        args=["--db", as_url(conninfo), f"--durability={args.durability}"],
                        timeout=60,
                    )
                )
            time.sleep(1.0)
            results: dict[str, Any] = {
                "http": [
                    within("throughput", limit, http_round(nodes, args.clients, args.creates))
                    for _ in range(args.rounds)
                ]
            }
            # With one node: the same-node baseline for the cross-node figure.
            results["propagation"] = [
                within("commit -> subscriber", limit, cross_node(nodes, args.samples, r))
                for r in range(args.rounds)
            ]
            if args.subscribers and fanout_available():
                results["fanout"] = within(
                    "fan-out",
                    limit,
                    fanout_rounds(nodes, args.subscribers, args.fanout_samples, args.rounds),
                )
            return results
        except BaseException:
            for node in nodes:
                print(f"--- log of the node at {node.url}:\n{node.log()[-3000:]}")
            raise
        finally:
            for node in nodes:
                node.stop()


def fanout_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "ws").is_dir()


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


def report(count: int, results: dict[str, Any], args: argparse.Namespace) -> None:
    rounds = results["http"]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(
        f"  {count} node(s): {med('per_s'):7.0f} creates/s   node CPU {med('cpu_us'):6.0f} µs/create"
        "   (rounds: " + ", ".join(f"{r['per_s']:.0f}" for r in rounds) + ")"
    )
    print(
        f"    write lock per commit batch: held mean {med('hold_mean_ms'):.2f} ms "
        f"(p50 <= {med('hold_p50_ms'):g} ms, p99 <= {med('hold_p99_ms'):g} ms), "
        f"{med('per_batch'):.1f} commits/batch, waited for mean {med('wait_mean_ms'):.2f} ms"
    )
    if "propagation" in results:
        lat = [r["latencies"] for r in results["propagation"]]
        hold = statistics.median(r["hold_mean_ms"] for r in results["propagation"])
        where = "another node" if count > 1 else "the same node (baseline)"
        print(
            f"    commit -> subscriber on {where}: "
            f"p50 {statistics.median(statistics.median(r) for r in lat):.2f} ms   "
            f"p99 {statistics.median(_pct(r, 99) for r in lat):.2f} ms "
            f"({len(lat)} rounds of {len(lat[0])}; write lock held {hold:.2f} ms per commit)"
        )
    if "fanout" in results:
        fan = results["fanout"]
        print(
            f"    mutation -> all {args.subscribers} subscribers ({count} node(s)): "
            f"p50 {statistics.median(statistics.median(r) for r in fan):.1f} ms   "
            f"p95 {statistics.median(_pct(r, 95) for r in fan):.1f} ms "
            f"({len(fan)} rounds of {len(fan[0])})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=1000, help="0: no fan-out phase")
    parser.add_argument("--fanout-samples", type=int, default=30)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    parser.add_argument("--phase-timeout", type=float, default=240.0)
    parser.add_argument("--maintenance-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    # The nodes inherit the raised open-files limit (one descriptor per subscriber).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print(
        f"nodes on PostgreSQL: {args.clients} HTTP clients, one create in flight each, "
        f"medians of {args.rounds} rounds of {args.creates} (durability={args.durability}); "
        f"{machine()}"
    )
    if args.subscribers and not fanout_available():
        print("  (no fan-out phase: needs node and `npm ci` in tests/e2e/js)")
    for count in (int(n) for n in args.nodes.split(",")):
        report(count, run_for(count, args), args)
    print(f"  (afterwards: {machine()})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, also into a file
    main()
