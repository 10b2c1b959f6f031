"""Three ``serve --db postgresql://...`` nodes under write load while something fails.

Writers are threads posting ``workers:record`` (a numbered row per writer)
to ``/api/mutation``; a write is *acknowledged* once its HTTP answer says
success. A call that failed may or may not have committed (its answer may be
what was lost), so it is only *uncertain*. After each fault:

* every acknowledged write is stored, exactly once, and nothing is stored
  that was never sent;
* the writers go on committing after the fault, and every node serves the
  same rows.

Faults: one node SIGKILLed (its writers carry on through the next node), and
PostgreSQL itself crashed and restarted (a private cluster, stopped with
``pg_ctl -m immediate``): every node reconnects by itself.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from postgres_cluster import private_cluster
from syncline._devtools import ServerProcess

from .conftest import StartNode
from .test_workers import call

pytestmark = pytest.mark.slow

QUIET = {"SYNCLINE_TRACE_PROTOCOL": ""}


@dataclass
class Writer:
    """One thread writing ``seq`` 0, 1, 2, ... through ``nodes[at]`` until stopped."""

    name: str
    nodes: list[ServerProcess]
    at: int
    acked: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    #: the seq of each acknowledged write after :meth:`mark` was called
    acked_after_mark: list[int] = field(default_factory=list)
    marked: bool = False
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event, skip: Callable[[ServerProcess], bool]) -> None:
        seq = 0
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                node = self.nodes[self.at % len(self.nodes)]
                if skip(node):
                    self.at += 1
                    continue
                try:
                    response = http.post(
                        f"{node.url}/api/mutation",
                        json={
                            "path": "workers:record",
                            "args": {"client": self.name, "seq": float(seq)},
                            "format": "json",
                        },
                    )
                    ok = response.json()["status"] == "success"
                    if not ok:
                        self.errors.append(response.text[:300])
                except (httpx.HTTPError, ValueError) as exc:
                    ok = False
                    self.errors.append(repr(exc))
                if ok:
                    self.acked.append(seq)
                    if self.marked:
                        self.acked_after_mark.append(seq)
                else:
                    self.uncertain.append(seq)
                    time.sleep(0.05)  # a node restarting its pool: do not spin
                seq += 1


class Load:
    """``per_node`` writers starting on each node, in threads, until :meth:`stop`."""

    def __init__(
        self,
        nodes: list[ServerProcess],
        per_node: int,
        skip: Callable[[ServerProcess], bool] = lambda node: False,
    ) -> None:
        self.writers = [
            Writer(f"w{i}-{j}", nodes, i) for i in range(len(nodes)) for j in range(per_node)
        ]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=w.run, args=(self._stop, skip), daemon=True)
            for w in self.writers
        ]
        for thread in self._threads:
            thread.start()

    def acked(self) -> int:
        return sum(len(w.acked) for w in self.writers)

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked() < count:
            assert time.monotonic() < deadline, f"{self.acked()} of {count} writes acknowledged"
            time.sleep(0.05)

    def mark(self) -> None:
        """From now on, count each writer's acknowledged writes apart."""
        for writer in self.writers:
            writer.marked = True

    def wait_until_each_acked_after_mark(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while any(len(w.acked_after_mark) < count for w in self.writers):
            late = {w.name: len(w.acked_after_mark) for w in self.writers}
            assert time.monotonic() < deadline, (late, [w.errors[-3:] for w in self.writers])
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "a writer is stuck"


def assert_nothing_acknowledged_lost(load: Load, nodes: list[ServerProcess]) -> None:
    for writer in load.writers:
        stored = collections.Counter(int(seq) for seq, _ in _rows_on_every_node(writer, nodes))
        doubled = [seq for seq, n in stored.items() if n > 1]
        assert not doubled, (writer.name, doubled)
        missing = sorted(set(writer.acked) - set(stored))
        assert not missing, f"{writer.name}: acknowledged writes {missing[:20]} are not stored"
        unknown = sorted(set(stored) - set(writer.acked) - set(writer.uncertain))
        assert not unknown, (writer.name, unknown)


def _rows_on_every_node(writer: Writer, nodes: list[ServerProcess]) -> list[list[float]]:
    """``writer``'s rows, once every node serves the same (a node learns of the others'
    commits a moment after they are made)."""
    deadline = time.monotonic() + 15
    while True:
        rows = [call(node, "query", "workers:records", {"client": writer.name}) for node in nodes]
        if all(r == rows[0] for r in rows):
            return rows[0]
        assert time.monotonic() < deadline, f"the nodes disagree on {writer.name}'s rows"
        time.sleep(0.1)


def test_a_node_killed_under_write_load_loses_no_acknowledged_write(
    start_node: StartNode,
) -> None:
    nodes = [start_node(env=QUIET) for _ in range(3)]
    victim = nodes[2]
    dead: set[int] = set()
    load = Load(nodes, 2, skip=lambda node: node.pid in dead)
    try:
        load.wait_for_acks(150)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        dead.add(victim.pid)
        load.mark()
        # The killed node's writers moved on to another node and commit there.
        load.wait_until_each_acked_after_mark(20)
    finally:
        load.stop()
    survivors = nodes[:2]
    assert_nothing_acknowledged_lost(load, survivors)
    # Only the killed node's writers failed calls (those in flight, or sent as it died).
    for writer in load.writers:
        if not writer.name.startswith("w2-"):
            assert not writer.uncertain, (writer.name, writer.errors[:5])
    # The nodes still serve, and the killed node's commits are there.
    pids = {
        int(pid)
        for writer in load.writers
        for _, pid in call(survivors[0], "query", "workers:records", {"client": writer.name})
    }
    assert pids == {node.pid for node in nodes}


# Its own deadlines (acks 60 s, recovery 90 s, writers' calls 30 s) must fail it with
# their message before the run's 120 s per-test limit ends the whole run.
@pytest.mark.timeout(300)
def test_postgres_restarted_under_write_load_loses_no_acknowledged_write(
    start_node: StartNode,
) -> None:
    with private_cluster() as cluster:
        nodes = [start_node(db=cluster.url, env=QUIET) for _ in range(3)]
        load = Load(nodes, 2)
        try:
            load.wait_for_acks(150)
            # A crash (no shutdown checkpoint; recovery replays the WAL), then a start.
            cluster.stop("immediate")
            time.sleep(1.0)
            cluster.start()
            load.mark()
            # Every writer commits again through its own node: each node reconnected.
            load.wait_until_each_acked_after_mark(20, timeout=90)
        finally:
            load.stop()
        for node in nodes:
            response = httpx.get(f"{node.url}/version", timeout=10)
            assert response.status_code == 200, response.text
        assert sum(len(w.uncertain) for w in load.writers) > 0  # the crash did fail calls
        assert_nothing_acknowledged_lost(load, nodes)
