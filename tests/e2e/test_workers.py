"""``syncline serve --workers N``: several processes, one database, one set of ports.

Every mutation here returns the pid of the process that ran it, so a test
can prove where its calls went. Clients are the official Python client
(``convex``, the Rust core), several per process in threads, in several
processes, as real applications would be:

* a hot counter incremented from 4 x 8 connections over 4 workers ends at
  exactly the number of increments, and every worker served some;
* bank transfers across workers never create or destroy money, and no
  subscriber on any worker ever sees a total that is off;
* the randomized live-query consistency check (see
  ``tests/sync/test_consistency.py``) with writers and subscribers on
  different workers;
* SIGKILL of the worker that runs the scheduler, under load: no write is
  lost, none is doubled but a call in flight on the killed worker (which the
  Python client re-sends under a new session id), its clients carry on
  through another worker, the scheduler moves to one other worker, and no
  scheduled job runs twice.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.conftest import AsyncWs
from sync import test_consistency as consistency
from syncline._devtools import ServerProcess, launch

from .conftest import MakeProject

pytestmark = pytest.mark.slow

WORKER_FILES = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "accounts": define_table({"name": v.string(), "balance": v.float64()})
                .index("by_name", ["name"]),
            "records": define_table({"client": v.string(), "seq": v.float64(), "pid": v.float64()})
                .index("by_client", ["client"]),
            "job_runs": define_table({"i": v.float64(), "pid": v.float64()}),
            "flags": define_table({"name": v.string()}),
            "counters": define_table({"name": v.string(), "value": v.float64()}),
            "items": define_table({"group": v.string(), "value": v.float64()})
                .index("by_group", ["group"]),
        })
    """,
    "workers.py": """
        import os

        from syncline import internal, internal_mutation, mutation, query, v


        def _pid():
            return float(os.getpid())


        @mutation
        def where(ctx):
            # Which worker serves the caller's connection (writes nothing).
            return _pid()


        @mutation(args={"name": v.string()})
        def increment(ctx, name):
            doc = ctx.db.query("counters").filter(lambda q: q.eq(q.field("name"), name)).first()
            if doc is None:
                ctx.db.insert("counters", {"name": name, "value": 1.0})
                return {"value": 1.0, "pid": _pid()}
            ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
            return {"value": doc["value"] + 1, "pid": _pid()}


        @query(args={"name": v.string()})
        def counter(ctx, name):
            doc = ctx.db.query("counters").filter(lambda q: q.eq(q.field("name"), name)).first()
            return 0.0 if doc is None else doc["value"]


        @mutation(args={"client": v.string(), "seq": v.float64()})
        def record(ctx, client, seq):
            ctx.db.insert("records", {"client": client, "seq": seq, "pid": _pid()})
            return {"pid": _pid()}


        @query(args={"client": v.string()})
        def records(ctx, client):
            # [seq, pid of the worker that committed it], in commit order
            rows = ctx.db.query("records").with_index("by_client", lambda q: q.eq("client", client))
            return [[d["seq"], d["pid"]] for d in rows]


        @mutation(args={"n": v.float64(), "every_ms": v.float64(), "first": v.float64()})
        def schedule(ctx, n, every_ms, first):
            for i in range(int(n)):
                ctx.scheduler.run_after(i * every_ms, internal.workers.job, {"i": first + i})


        @internal_mutation(args={"i": v.float64()})
        def job(ctx, i):
            ctx.db.insert("job_runs", {"i": i, "pid": _pid()})


        @query
        def job_runs(ctx):
            return [[d["i"], d["pid"]] for d in ctx.db.query("job_runs").collect()]
    """,
    "items.py": consistency.FILES["items.py"],
    "bank.py": """
        import os

        from syncline import mutation, query, v


        def _account(ctx, name):
            return ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()


        @mutation(args={"n": v.float64(), "balance": v.float64()})
        def open_accounts(ctx, n, balance):
            for i in range(int(n)):
                ctx.db.insert("accounts", {"name": f"a{i}", "balance": balance})


        @mutation(args={"src": v.string(), "dst": v.string(), "amount": v.float64()})
        def transfer(ctx, src, dst, amount):
            a, b = _account(ctx, src), _account(ctx, dst)
            if a["balance"] < amount:
                return {"ok": False, "pid": float(os.getpid())}
            ctx.db.patch(a["_id"], {"balance": a["balance"] - amount})
            ctx.db.patch(b["_id"], {"balance": b["balance"] + amount})
            return {"ok": True, "pid": float(os.getpid())}


        @query
        def summary(ctx):
            balances = [d["balance"] for d in ctx.db.query("accounts").collect()]
            done = ctx.db.query("flags").first() is not None
            return {"total": sum(balances), "lowest": min(balances, default=0.0),
                    "count": float(len(balances)), "done": done}


        @mutation
        def finish(ctx):
            ctx.db.insert("flags", {"name": "done"})
    """,
}

#: one client process: THREADS connections (official client), each making CALLS mutations
CLIENT = textwrap.dedent(
    """
    import json, os, random, sys, threading, time
    from convex import ConvexClient

    url, mode, name, threads, calls = sys.argv[1:6]
    threads, calls = int(threads), int(calls)
    # optional: the pid of a worker that the first thread's connection must reach
    pin = int(sys.argv[6]) if len(sys.argv) > 6 else None
    out = {"errors": [], "acked": {}, "failed": {}, "refused": 0}
    lock = threading.Lock()

    def connect(t):
        client = ConvexClient(url)
        if pin is None or t:
            return client
        # The kernel hands each connection to any worker, unevenly: try for a while.
        deadline = time.monotonic() + 120
        while int(client.mutation("workers:where")) != pin:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no connection reached worker {pin}")
            client = ConvexClient(url)
        return client

    def run(t):
        client = connect(t)
        rng = random.Random(f"{name}-{t}")
        me = f"{name}-{t}"
        pids = []
        for i in range(calls):
            try:
                if mode == "count":
                    result = client.mutation("workers:increment", {"name": name.split("/")[0]})
                elif mode == "bank":
                    src, dst = rng.sample(range(10), 2)
                    result = client.mutation("bank:transfer", {
                        "src": f"a{src}", "dst": f"a{dst}", "amount": float(rng.randint(1, 40))})
                    if not result["ok"]:
                        with lock:
                            out["refused"] += 1
                else:
                    result = client.mutation("workers:record", {"client": me, "seq": float(i)})
            except Exception as exc:
                with lock:
                    out["errors"].append(f"{me} call {i}: {exc!r}")
                    out["failed"].setdefault(me, []).append(i)
                continue
            pids.append(int(result["pid"]))
        with lock:
            out["acked"][me] = pids

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps(out), flush=True)
    # The official client's Rust threads can crash the interpreter's finalization
    # (PyGILState_Release while finalizing): the report is out, skip it.
    os._exit(0)
    """
)

#: one process of THREADS subscribers of bank:summary (the official client's async
#: subscriptions: its blocking next() would hold the GIL); each checks the invariant
#: in every result pushed until the summary says the test is over
WATCHER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from convex import ConvexClient

    url, count = sys.argv[1], int(sys.argv[2])
    out = {"bad": [], "results": 0, "pids": []}

    async def watch(client, subscribed):
        out["pids"].append(int(client.mutation("workers:where")))
        sub = client.subscribe("bank:summary")
        while True:
            value = await asyncio.wait_for(sub.__anext__(), 30)
            subscribed.set()
            out["results"] += 1
            if value["count"] and (value["total"] != 1000.0 or value["lowest"] < 0):
                out["bad"].append(value)
            if value["done"]:
                return

    async def main():
        events = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(watch(ConvexClient(url), e)) for e in events]
        await asyncio.gather(*(e.wait() for e in events))
        print("SUBSCRIBED", flush=True)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    print(json.dumps(out), flush=True)
    os._exit(0)  # as CLIENT: no interpreter finalization under the client's threads
    """
)


def start_clients(
    url: str, mode: str, name: str, processes: int, threads: int, calls: int, pin: int | None = None
) -> list[subprocess.Popen[str]]:
    """Client processes; with ``pin``, the first one's first connection is to the worker ``pin``."""
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT,
                url,
                mode,
                f"{name}/{p}",
                str(threads),
                str(calls),
                *([str(pin)] if pin is not None and p == 0 else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]


def finish_clients(
    procs: list[subprocess.Popen[str]], timeout: float = 240
) -> list[dict[str, Any]]:
    """Each client process's JSON report; any process still running on a failure is killed."""
    outs = []
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"client process timed out (pid {proc.pid})") from None
            assert proc.returncode == 0, f"client failed ({proc.returncode}):\n{err[-3000:]}"
            outs.append(json.loads(out.splitlines()[-1]))  # after any progress lines
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    return outs


def start_watchers(
    procs: list[subprocess.Popen[str]], url: str, processes: int, connections: int
) -> None:
    """Start processes of bank:summary subscribers into ``procs``; return once all have a result."""
    for _ in range(processes):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WATCHER, url, str(connections)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "SUBSCRIBED\n", (line, proc.stderr.read() if proc.stderr else "")


def serve_workers(project: Path, workers: int) -> ServerProcess:
    """A ``serve --workers N`` server, returned once every worker is serving."""
    server = launch(project, mode="serve", args=["--workers", str(workers)])
    deadline = time.monotonic() + 30
    while f"{workers} workers) serving" not in server.log():
        assert server.alive(), server.log()
        assert time.monotonic() < deadline, f"workers not ready:\n{server.log()}"
        time.sleep(0.05)
    assert len(worker_pids(server)) == workers
    return server


def worker_pids(server: ServerProcess) -> set[int]:
    """The server's worker processes (its children)."""
    assert server.pid is not None
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def call(server: ServerProcess, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{server.url}/api/{kind}",
        json={"path": path, "args": args or {}, "format": "json"},
        timeout=30,
    )
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


@pytest.fixture
def workers_project(project: MakeProject) -> Path:
    return project(WORKER_FILES, auth=False)


def test_a_hot_counter_counts_every_increment_across_four_workers(workers_project: Path) -> None:
    server = serve_workers(workers_project, 4)
    try:
        outs = finish_clients(start_clients(server.url, "count", "hot", 4, 8, 250))
        errors = [e for out in outs for e in out["errors"]]
        assert not errors, errors[:10]
        assert call(server, "query", "workers:counter", {"name": "hot"}) == 8000.0
        served = collections.Counter(
            pid for out in outs for pids in out["acked"].values() for pid in pids
        )
        assert sum(served.values()) == 8000
        # Connections landed on every worker, and each worker committed increments.
        assert set(served) == worker_pids(server), served
    finally:
        server.stop()


def _cache_hits(server: ServerProcess) -> float:
    response = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Convex {server.admin_key}"}
    )
    response.raise_for_status()
    found = re.search(
        r'^syncline_query_cache_lookups_total\{result="hit"\} (\S+)$', response.text, re.M
    )
    return float(found.group(1)) if found else 0.0


def _pinned_clients(server: ServerProcess) -> dict[int, httpx.Client]:
    """One keep-alive HTTP connection to each worker, by worker pid."""
    clients: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + 60
    while len(clients) < len(worker_pids(server)):
        assert time.monotonic() < deadline, f"reached only workers {set(clients)}"
        client = httpx.Client(base_url=server.url, timeout=30)
        body = {"path": "workers:where", "args": {}, "format": "json"}
        pid = int(client.post("/api/mutation", json=body).json()["value"])
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
    return clients


def test_a_cached_query_on_any_worker_sees_a_write_acknowledged_by_another(
    workers_project: Path,
) -> None:
    """A write acknowledged by one worker, then at once the same query on the other, whose
    query cache holds the answer from before the write: it must not serve that answer."""
    server = serve_workers(workers_project, 2)
    clients = _pinned_clients(server)
    try:
        first, second = clients.values()
        increment = {"path": "workers:increment", "args": {"name": "seen"}, "format": "json"}
        counter = {"path": "workers:counter", "args": {"name": "seen"}, "format": "json"}
        for expected in range(1, 201):
            writer, reader = (first, second) if expected % 2 else (second, first)
            reader.post("/api/query", json=counter)  # the reader's cache holds the old answer
            assert writer.post("/api/mutation", json=increment).json()["status"] == "success"
            for _ in range(2):  # the second may be answered from the cache
                assert reader.post("/api/query", json=counter).json()["value"] == expected
        assert _cache_hits(server) > 0  # the cached path was taken
    finally:
        for client in clients.values():
            client.close()
        server.stop()


def test_transfers_across_workers_keep_the_total(workers_project: Path) -> None:
    server = serve_workers(workers_project, 3)
    watchers: list[subprocess.Popen[str]] = []
    try:
        call(server, "mutation", "bank:open_accounts", {"n": 10.0, "balance": 100.0})
        start_watchers(watchers, server.url, 2, 3)
        outs = finish_clients(start_clients(server.url, "bank", "bank", 3, 4, 60))
        # The subscribers stop once they see the flag, set after every transfer.
        call(server, "mutation", "bank:finish")
        seen = finish_clients(watchers, timeout=60)
        errors = [e for out in outs for e in out["errors"]]
        assert not errors, errors[:10]
        bad = [b for out in seen for b in out["bad"]]
        assert not bad, bad[:10]
        assert all(out["results"] >= 2 for out in seen)  # they saw transfers go by
        summary = call(server, "query", "bank:summary")
        assert summary["total"] == 1000.0 and summary["lowest"] >= 0
        pids = {pid for out in outs for pids in out["acked"].values() for pid in pids}
        assert len(pids) >= 2, "the transfers all went through one worker"
        assert sum(out["refused"] for out in outs) < 3 * 4 * 60  # some moved money
    finally:
        for proc in watchers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        server.stop()


# ----------------------------------------------------------------------------- consistency


async def placed_clients(
    url: str, want_writers: int, want_subscribers: int
) -> tuple[list[consistency.Client], list[consistency.Client]]:
    """Writers all on one worker, subscribers all on others (connections land where they may)."""
    by_pid: dict[int, list[consistency.Client]] = collections.defaultdict(list)
    opened: list[consistency.Client] = []
    try:
        for i in range(60):
            client = consistency.Client(f"client{i}", await AsyncWs.open(url))
            opened.append(client)
            await client.start()
            answer = await asyncio.wait_for(await client.mutate("workers:where", {}), 10)
            by_pid[int(answer["result"])].append(client)
            groups = sorted(by_pid.values(), key=len, reverse=True)
            if len(groups) >= 2 and len(groups[0]) >= want_writers:
                others = [c for g in groups[1:] for c in g]
                if len(others) >= want_subscribers:
                    writers = groups[0][:want_writers]
                    subscribers = others[:want_subscribers]
                    break
        else:
            raise AssertionError(f"connections did not spread: {dict(by_pid)}")
    except BaseException:
        for client in opened:
            await client.stop()
        raise
    for client in opened:
        if client not in writers and client not in subscribers:
            await client.stop()
    return writers, subscribers


async def cross_worker_scenario(
    url: str,
) -> tuple[consistency.World, list[consistency.Client], int]:
    writers, subscribers = await placed_clients(url, consistency.WRITERS, consistency.SUBSCRIBERS)
    return await consistency_scenario(writers, subscribers)


async def consistency_scenario(
    writers: list[consistency.Client], subscribers: list[consistency.Client]
) -> tuple[consistency.World, list[consistency.Client], int]:
    """Random writes by ``writers`` while ``subscribers`` change queries; stops every client."""
    rng = random.Random(consistency.SEED)
    world = consistency.World()
    clients = [*writers, *subscribers]
    try:
        for i in range(12):
            future = await writers[0].mutate(
                "items:insert",
                {"group": consistency.GROUPS[i % 3], "value": float(rng.randint(0, 50))},
            )
            world.record(await asyncio.wait_for(future, 10))
        for sub in subscribers:
            await sub.change_queries(
                [world.random_query(rng) for _ in range(rng.randint(3, 5))], []
            )
        for w in writers:
            await w.change_queries([("items:total", {})], [])
        until = asyncio.get_running_loop().time() + consistency.WRITE_SECONDS
        results = await asyncio.gather(
            *(consistency.writer(w, world, random.Random(rng.random()), until) for w in writers),
            *(
                consistency.subscriber(s, world, random.Random(rng.random()), until)
                for s in subscribers
            ),
        )
        mutations = sum(r for r in results if r is not None)
        last_ts = max(ts for ts, _ in world.log)
        for client in clients:
            await client.change_queries([("items:total", {})], [])
        for client in clients:
            version = client.ws.query_set
            await consistency.wait_for(lambda c=client, v=version: consistency.caught_up(c, v))
            assert client.ws.state.ts >= last_ts, client.name
        return world, clients, mutations
    finally:
        for client in clients:
            await client.stop()


def assert_consistent(
    world: consistency.World, clients: list[consistency.Client], mutations: int
) -> None:
    """Every client saw each of its queries as of each Transition's ts, and ends on the final state."""
    problems = [p for c in clients for p in c.problems]
    assert not problems, "\n".join(problems[:20])
    assert mutations > 50, mutations
    # Every accepted Transition shows every subscribed query as of its ts: where the
    # subscribers are, the writers' commits arrived in order and complete.
    mismatches = consistency.transition_mismatches(world, clients)
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:20])
    assert sum(len(c.snapshots) for c in clients) > 100
    (final_state,) = world.states_at([max(ts for ts, _ in world.log)]).values()
    for client in clients:
        for query_id, result in client.ws.state.results.items():
            assert result[1] == consistency.evaluate(client.queries[query_id], final_state)


def test_live_queries_stay_consistent_with_writers_and_subscribers_on_other_workers(
    workers_project: Path,
) -> None:
    server = serve_workers(workers_project, 2)
    try:
        world, clients, mutations = asyncio.run(
            asyncio.wait_for(cross_worker_scenario(server.ws_url), 90)
        )
    finally:
        server.stop()
    assert_consistent(world, clients, mutations)


# ----------------------------------------------------------------------------- SIGKILL


def job_runs(server: ServerProcess, at_least: int) -> list[list[float]]:
    """``workers:job_runs`` ([i, pid] in run order), once it holds ``at_least`` runs."""
    deadline = time.monotonic() + 30
    while len(runs := call(server, "query", "workers:job_runs")) < at_least:
        assert time.monotonic() < deadline, f"{len(runs)} of {at_least} jobs ran"
        time.sleep(0.05)
    return runs


def test_a_killed_worker_loses_no_write_and_the_scheduler_moves_once(
    workers_project: Path,
) -> None:
    jobs, every_ms = 150, 20.0
    server = serve_workers(workers_project, 3)
    try:
        before = worker_pids(server)
        # One worker runs the scheduler: a first job (i = -1) names it.
        call(server, "mutation", "workers:schedule", {"n": 1.0, "every_ms": 0.0, "first": -1.0})
        leader = int(job_runs(server, 1)[0][1])
        assert leader in before
        procs = start_clients(server.url, "load", "load", 2, 6, 150, pin=leader)
        # Kill it mid-stream: once the pinned client writes through it, and it has run jobs.
        deadline = time.monotonic() + 150
        while leader not in {
            int(pid) for _, pid in call(server, "query", "workers:records", {"client": "load/0-0"})
        }:
            assert time.monotonic() < deadline, (
                "the first client never wrote through the scheduler's worker"
            )
            assert procs[0].poll() is None, finish_clients(procs)
            time.sleep(0.05)
        call(
            server,
            "mutation",
            "workers:schedule",
            {"n": float(jobs), "every_ms": every_ms, "first": 0.0},
        )
        runs = job_runs(server, 1 + 30)
        assert {int(pid) for _, pid in runs} == {leader}
        os.kill(leader, signal.SIGKILL)
        killed_at = len(call(server, "query", "workers:job_runs")) - 1
        outs = finish_clients(procs)
        acked = {me: pids for out in outs for me, pids in out["acked"].items()}
        failed = {me: calls for out in outs for me, calls in out["failed"].items()}
        stored = {me: call(server, "query", "workers:records", {"client": me}) for me in acked}
        job_runs(server, 1 + jobs)
        time.sleep(0.5)  # a job run twice would show up now
        runs = [run for run in call(server, "query", "workers:job_runs") if run[0] >= 0]
        log = server.log()
        after = worker_pids(server)
    finally:
        server.stop()

    # No write is lost, and none is doubled but as the official Python client allows.
    # It fails a call made while its socket breaks ("channel closed") yet keeps it, and
    # re-sends every unanswered call on its next connection under a new session id
    # (protocol.md §3.4): a call the killed worker committed but never answered may run
    # again elsewhere, which no server can tell from a new call.
    errors = [e for out in outs for e in out["errors"]]
    assert all("channel closed" in e for e in errors), errors[:10]
    assert len(acked) == 12
    for me, pids in acked.items():
        assert len(failed.get(me, [])) <= 1 and len(pids) + len(failed.get(me, [])) == 150, me
    for me, rows in stored.items():
        seqs = collections.Counter(seq for seq, _ in rows)
        assert sorted(seqs) == [float(i) for i in range(150)], me
        doubled = [seq for seq, n in seqs.items() if n > 1]
        assert len(doubled) <= 1, (me, doubled)
        for seq in doubled:
            committers = [int(pid) for s, pid in rows if s == seq]
            # one by the killed worker (its answer lost), one by another
            assert len(committers) == 2 and leader in committers, (me, rows)
            assert len(set(committers)) == 2, (me, rows)
    # The clients of the killed worker went on through another one.
    moved = [me for me, pids in acked.items() if leader in pids]
    assert moved, "no client was connected to the killed worker"
    for me in moved:
        pids = acked[me]
        last_on_leader = max(i for i, pid in enumerate(pids) if pid == leader)
        assert last_on_leader < len(pids) - 1, f"{me} never continued after the kill"
        assert all(pid != leader for pid in pids[last_on_leader + 1 :])
    # Exactly one scheduler at a time: every job ran once; in run order, the
    # pids go from the killed leader to one successor and never back.
    assert sorted(int(i) for i, _ in runs) == list(range(jobs))
    order = [int(pid) for _, pid in runs]
    switch = order.index(next(pid for pid in order if pid != leader))
    assert 30 <= switch <= killed_at and set(order[:switch]) == {leader}
    assert len(set(order[switch:])) == 1 and order[switch] != leader
    assert log.count("runs the scheduler and crons") == 2, log
    # The killed worker was replaced.
    assert leader not in after and len(after) == 3


# ----------------------------------------------------------------------------- dev


def test_dev_workers_each_reload_the_code_and_the_schema_is_pushed_once(
    project: MakeProject,
) -> None:
    root = project(WORKER_FILES, auth=False)
    server = launch(root, mode="dev", args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 30
        while "2 workers) serving" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        call(server, "mutation", "bank:open_accounts", {"n": 3.0, "balance": 1.0})
        schema = root / "functions" / "schema.py"
        schema.write_text(
            schema.read_text().replace(
                '.index("by_name", ["name"])',
                '.index("by_name", ["name"]).index("by_balance", ["balance"])',
            )
        )
        (root / "functions" / "rich.py").write_text(
            textwrap.dedent(
                """
                import os

                from syncline import query


                @query
                def rich(ctx):
                    rows = ctx.db.query("accounts").with_index("by_balance", lambda q: q.gte("balance", 1.0))
                    return {"n": float(len(rows.collect())), "pid": float(os.getpid())}
                """
            )
        )
        # Every worker serves the new code (each connection lands on either one).
        answered: set[float] = set()
        deadline = time.monotonic() + 30
        while len(answered) < 2:
            assert time.monotonic() < deadline, (answered, server.log())
            body = httpx.post(
                f"{server.url}/api/query", json={"path": "rich:rich", "args": {}}, timeout=10
            ).json()
            if body["status"] == "success":
                assert body["value"]["n"] == 3.0
                answered.add(body["value"]["pid"])
            time.sleep(0.05)
        log = server.log()
    finally:
        server.stop()
    assert log.count("indexes added: accounts.by_balance") == 1, log
    assert log.count("Reloaded") >= 2, log


def test_uvicorn_lines_of_a_worker_carry_its_prefix(workers_project: Path) -> None:
    server = serve_workers(workers_project, 2)
    try:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            conn.recv(1024)  # uvicorn answers 400 and closes
        deadline = time.monotonic() + 10
        while "Invalid HTTP request received" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        line = next(
            line for line in server.log().splitlines() if "Invalid HTTP request received" in line
        )
        assert re.search(r"\[worker [01]\] uvicorn\.error: Invalid HTTP request received", line), (
            line
        )
    finally:
        server.stop()
