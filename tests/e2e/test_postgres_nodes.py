"""Several ``syncline serve --db postgresql://...`` nodes on one database.

Each node is its own process with its own project folder (its data folder lock
and files), as on separate machines; they share only the database. Clients
are the official Python client (``convex``):

* a subscriber on one node receives a mutation committed on another;
* a counter incremented by clients spread over three nodes ends at exactly
  the number of increments, and every node committed some;
* bank transfers between accounts, made through three nodes, never create or
  destroy money, and no subscriber on any node ever sees a total that is off;
* the randomized live-query consistency check (``tests/sync/test_consistency.py``)
  with writers on two nodes and subscribers on two (one of them writer-free):
  every subscriber's results follow the commit order, and all end on the same state;
* a node cut off from PostgreSQL (through a TCP proxy the test breaks)
  answers 503 on ``/version`` and fails calls with ``DatabaseUnavailable``,
  then serves again by itself once the database is back;
* the scheduler runs on one node; SIGKILL it mid-run and another node takes
  over, with every scheduled mutation run exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from harness import require_module
from postgres_databases import make_conninfo_url
from server.conftest import AsyncWs
from sync import test_consistency as consistency
from syncline._devtools import ServerProcess

from .conftest import StartNode
from .test_workers import (
    assert_consistent,
    call,
    consistency_scenario,
    finish_clients,
    start_clients,
    start_watchers,
)

pytestmark = pytest.mark.slow

#: servers of the load tests log no sync frames: tracing each is a cost that is not the test's
QUIET = {"SYNCLINE_TRACE_PROTOCOL": ""}


def _job_runs(node: ServerProcess, at_least: int, timeout: float = 60) -> list[list[float]]:
    deadline = time.monotonic() + timeout
    while True:
        runs: list[list[float]] = call(node, "query", "workers:job_runs")
        if len(runs) >= at_least:
            return runs
        assert time.monotonic() < deadline, f"{len(runs)} of {at_least} jobs ran"
        time.sleep(0.05)


def test_a_subscriber_on_one_node_sees_a_mutation_made_on_another(start_node: StartNode) -> None:
    convex = require_module("convex", "pip install convex")
    a, b = start_node(), start_node()
    seen: list[float] = []

    async def watch() -> None:
        client = convex.ConvexClient(a.url)
        subscription = client.subscribe("workers:counter", {"name": "x"})
        while True:
            value = await asyncio.wait_for(subscription.__anext__(), 20)
            seen.append(value)
            if value == 0.0 and len(seen) == 1:
                # Subscribed on node A: now commit on node B.
                result = await asyncio.to_thread(
                    call, b, "mutation", "workers:increment", {"name": "x"}
                )
                assert int(result["pid"]) == b.pid
            if value == 1.0:
                return

    asyncio.run(watch())
    assert seen[0] == 0.0 and seen[-1] == 1.0


def test_a_counter_counts_every_increment_made_through_three_nodes(
    start_node: StartNode,
) -> None:
    require_module("convex", "pip install convex")
    nodes = [start_node() for _ in range(3)]
    procs = [p for node in nodes for p in start_clients(node.url, "count", "hot", 1, 4, 50)]
    outs = finish_clients(procs)
    errors = [e for out in outs for e in out["errors"]]
    assert not errors, errors[:10]
    for node in nodes:
        assert call(node, "query", "workers:counter", {"name": "hot"}) == 600.0
    served = collections.Counter(
        pid for out in outs for pids in out["acked"].values() for pid in pids
    )
    assert sum(served.values()) == 600
    assert set(served) == {node.pid for node in nodes}, served


def test_transfers_through_three_nodes_keep_the_total(start_node: StartNode) -> None:
    require_module("convex", "pip install convex")
    nodes = [start_node(env=QUIET) for _ in range(3)]
    watchers: list[subprocess.Popen[str]] = []
    try:
        call(nodes[0], "mutation", "bank:open_accounts", {"n": 10.0, "balance": 100.0})
        for node in nodes:
            started: list[subprocess.Popen[str]] = []
            start_watchers(started, node.url, 1, 2)
            watchers += started
        procs = [p for node in nodes for p in start_clients(node.url, "bank", "bank", 1, 3, 40)]
        outs = finish_clients(procs)
        # The subscribers stop once they see the flag, set after every transfer.
        call(nodes[1], "mutation", "bank:finish")
        seen = finish_clients(watchers, timeout=60)
    finally:
        for proc in watchers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    errors = [e for out in outs for e in out["errors"]]
    assert not errors, errors[:10]
    bad = [b for out in seen for b in out["bad"]]
    assert not bad, bad[:10]
    # Each node's subscribers saw transfers go by, committed on every node.
    assert all(out["results"] >= 2 * 2 for out in seen), [out["results"] for out in seen]
    pids = {pid for out in outs for pids in out["acked"].values() for pid in pids}
    assert pids == {node.pid for node in nodes}
    assert sum(out["refused"] for out in outs) < 3 * 3 * 40  # some moved money
    for node in nodes:
        summary = call(node, "query", "bank:summary")
        assert summary["total"] == 1000.0 and summary["lowest"] >= 0 and summary["done"]


def test_live_queries_stay_consistent_with_writers_and_subscribers_on_other_nodes(
    start_node: StartNode,
) -> None:
    nodes = [start_node(env=QUIET) for _ in range(3)]

    async def scenario() -> tuple[consistency.World, list[consistency.Client], int]:
        # Writers on nodes 0 and 1; subscribers on nodes 1 and 2: each subscriber sees
        # commits of its own node and of others, and node 2's only through PostgreSQL.
        writers = [await _client(f"writer{i}", nodes[i % 2]) for i in range(consistency.WRITERS)]
        subscribers = [
            await _client(f"subscriber{i}", nodes[1 + i % 2])
            for i in range(consistency.SUBSCRIBERS)
        ]
        return await consistency_scenario(writers, subscribers)

    world, clients, mutations = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert_consistent(world, clients, mutations)
    totals = {json.dumps(call(node, "query", "items:total")) for node in nodes}
    assert len(totals) == 1, totals


async def _client(name: str, node: ServerProcess) -> consistency.Client:
    client = consistency.Client(name, await AsyncWs.open(node.ws_url))
    await client.start()
    return client


class _Proxy:
    """A TCP proxy to PostgreSQL that the test can cut (connections reset, new ones refused).

    The listening socket stays bound from start to :meth:`close`: while cut, it
    accepts and resets at once. Closing it to cut would free its port, and the
    kernel may hand that port to any new socket meanwhile (another test's server,
    or an outgoing connection's ephemeral port), so binding it again to restore
    failed with ``EADDRINUSE``.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._cut:
                    _reset(client)
                    _reset(upstream)
                    continue
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def cut(self) -> None:
        """Reset every open connection and every new one until :meth:`restore`."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self.cut()
        self._listener.close()


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset, as a peer that went away does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _wait_for_status(node: ServerProcess, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{node.url}/version", timeout=10)
        if response.status_code == status:
            return
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.1)


# The proxy's sockets of connections still open when the test ends are closed by
# their threads as the node stops, after the test's own check for unclosed sockets.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_node_cut_off_from_postgres_answers_503_and_recovers_by_itself(
    start_node: StartNode, database_url: str
) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(database_url)
    proxy = _Proxy((str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)))
    via_proxy = make_conninfo_url(
        make_conninfo("", **{**params, "host": "127.0.0.1", "port": proxy.port})
    )
    try:
        node = start_node(via_proxy)
        other = start_node()
        call(node, "mutation", "workers:increment", {"name": "cut"})
        proxy.cut()
        _wait_for_status(node, 503)
        response = httpx.post(
            f"{node.url}/api/mutation",
            json={"path": "workers:increment", "args": {"name": "cut"}, "format": "json"},
            timeout=30,
        )
        body: dict[str, Any] = response.json()
        assert body["status"] == "error" and "DatabaseUnavailable" in body["errorMessage"], body
        # The other node carries on meanwhile.
        assert call(other, "mutation", "workers:increment", {"name": "cut"})["value"] == 2.0
        proxy.restore()
        _wait_for_status(node, 200)
        deadline = time.monotonic() + 30
        while True:
            try:
                result = call(node, "mutation", "workers:increment", {"name": "cut"})
                break
            except AssertionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert result["value"] == 3.0
        assert call(other, "query", "workers:counter", {"name": "cut"}) == 3.0
    finally:
        proxy.close()


def test_the_scheduler_moves_to_another_node_when_its_node_is_killed(
    start_node: StartNode,
) -> None:
    jobs, every_ms = 100, 20.0
    nodes = [start_node() for _ in range(3)]
    call(nodes[0], "mutation", "workers:schedule", {"n": 1.0, "every_ms": 0.0, "first": -1.0})
    leader_pid = int(_job_runs(nodes[0], 1)[0][1])
    leader = next(node for node in nodes if node.pid == leader_pid)
    survivor = next(node for node in nodes if node is not leader)
    call(
        survivor,
        "mutation",
        "workers:schedule",
        {"n": float(jobs), "every_ms": every_ms, "first": 0.0},
    )
    _job_runs(survivor, 1 + 20)
    assert leader.pid is not None
    os.kill(leader.pid, signal.SIGKILL)
    runs = _job_runs(survivor, 1 + jobs, timeout=120)
    time.sleep(1.0)  # a job run twice would show up now
    runs = [run for run in call(survivor, "query", "workers:job_runs") if run[0] >= 0]
    assert sorted(int(i) for i, _ in runs) == list(range(jobs))
    order = [int(pid) for _, pid in runs]
    switch = order.index(next(pid for pid in order if pid != leader_pid))
    assert switch >= 20 and set(order[:switch]) == {leader_pid}
    assert len(set(order[switch:])) == 1 and order[switch] in {n.pid for n in nodes}
