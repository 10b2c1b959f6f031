"""Nodes on PostgreSQL: mutations/s with 1 and 2 nodes, and commit -> subscriber across nodes.

    python bench/postgres.py [--nodes 1,2] [--rounds 3] [--clients 64] [--creates 2000]
                             [--samples 200] [--durability full|normal]
                             [--maintenance-url postgresql://...]

For each node count, N real ``syncline serve --db postgresql://...`` nodes
(each with its own copy of the ``messages`` app, all on one fresh database
made through ``--maintenance-url`` and dropped afterwards) serve 64 HTTP
clients in this process, spread evenly over the nodes, each keeping one
create (``POST /api/mutation messages:send``) in flight. Durability is
``full`` by default (``synchronous_commit=on``: what SQLite's ``full`` promises).

Printed as medians over ``--rounds``: creates/s and the nodes' CPU µs per
create (every node process; PostgreSQL's own CPU is not counted). With two
or more nodes: commit -> subscriber latency with the writer on node 1 and the
subscriber on node 2 (LISTEN/NOTIFY wake-up, then the commit log), p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from http_api import HttpConn, closed_loop, create_body
from messages_app import write_functions
from workers import WsMutator, _pct, commit_to_subscriber, tree_cpu_seconds

from syncline._devtools import ServerProcess, launch


@contextlib.contextmanager
def fresh_database(maintenance_url: str) -> Iterator[str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"syncline_bench_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        params = conninfo_to_dict(maintenance_url)
        params["dbname"] = name
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(maintenance_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def as_url(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    auth = p.get("user", "") + (":" + p["password"] if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '')}:{p.get('port', '5432')}/{p['dbname']}"


async def http_round(nodes: list[ServerProcess], clients: int, total: int) -> dict[str, float]:
    async def one(conn: HttpConn, i: int) -> None:
        await conn.post(b"/api/mutation", create_body(i))

    conns = [await HttpConn.open(nodes[i % len(nodes)].port) for i in range(clients)]
    pids = [node.pid for node in nodes if node.pid is not None]
    try:
        cpu0, t0 = sum(map(tree_cpu_seconds, pids)), time.perf_counter()
        await closed_loop(conns, total, one)
        wall, cpu = time.perf_counter() - t0, sum(map(tree_cpu_seconds, pids)) - cpu0
    finally:
        for conn in conns:
            conn.close()
    return {"per_s": total / wall, "cpu_us": cpu / total * 1e6}


async def cross_node(nodes: list[ServerProcess], samples: int) -> list[float]:
    writer, subscriber = await WsMutator.open(nodes[0].port), await WsMutator.open(nodes[1].port)
    try:
        return await commit_to_subscriber(writer, subscriber, samples)
    finally:
        writer.close()
        subscriber.close()


def run_for(count: int, args: argparse.Namespace) -> dict[str, Any]:
    with fresh_database(args.maintenance_url) as conninfo, tempfile.TemporaryDirectory() as tmp:
        nodes: list[ServerProcess] = []
        try:
            for i in range(count):
                project = Path(tmp) / f"node{i}"
                write_functions(project / "functions")
                db = as_url(conninfo)
                nodes.append(
                    launch(
                        project, args=["--db", db, f"--durability={args.durability}"], timeout=60
                    )
                )
            time.sleep(1.0)
            results: dict[str, Any] = {
                "http": [
                    asyncio.run(http_round(nodes, args.clients, args.creates))
                    for _ in range(args.rounds)
                ]
            }
            if count >= 2:
                results["propagation"] = asyncio.run(cross_node(nodes, args.samples))
            return results
        except BaseException:
            for node in nodes:
                print(f"--- log of the node at {node.url}:\n{node.log()[-3000:]}")
            raise
        finally:
            for node in nodes:
                node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    parser.add_argument("--maintenance-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(
        f"nodes on PostgreSQL: {args.clients} HTTP clients, one create in flight each, "
        f"medians of {args.rounds} rounds of {args.creates} (durability={args.durability})"
    )
    for count in (int(n) for n in args.nodes.split(",")):
        results = run_for(count, args)
        rounds = results["http"]
        rate = statistics.median(r["per_s"] for r in rounds)
        cpu = statistics.median(r["cpu_us"] for r in rounds)
        print(
            f"  {count} node(s): {rate:7.0f} creates/s   node CPU {cpu:6.0f} µs/create   "
            "(rounds: " + ", ".join(f"{r['per_s']:.0f}" for r in rounds) + ")"
        )
        if "propagation" in results:
            lat = results["propagation"]
            print(
                f"  {count} nodes: commit -> subscriber on another node: "
                f"p50 {statistics.median(lat):.2f} ms   p99 {_pct(lat, 99):.2f} ms "
                f"({len(lat)} samples)"
            )


if __name__ == "__main__":
    main()
