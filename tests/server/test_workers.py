"""The supervisor of ``serve --workers N``, with stand-in worker processes.

A stand-in worker records its start (slot, pid, the port of the socket it
inherited) in a file, says it is ready and waits for SIGTERM; ``FAIL_SLOT``
makes one slot's worker exit at start-up instead. The supervisor itself runs
in its own process (it handles signals, which needs a main thread).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncline.server.listen import SPREADS_CONNECTIONS
from syncline.server.workers import WorkerFds, describe_exit

WORKER = textwrap.dedent(
    """
    import json, os, signal, socket, sys, time
    from syncline.server.workers import WorkerFds

    fds = WorkerFds.from_env()
    sock = socket.socket(fileno=fds.api[0])

    def record(event):
        with open(os.environ["OUT"], "a") as f:
            f.write(json.dumps({"slot": fds.index, "pid": os.getpid(), "event": event,
                                "port": sock.getsockname()[1], "peers": len(fds.peers),
                                "socket": os.fstat(fds.api[0]).st_ino}) + "\\n")

    record("start")
    if os.environ.get("FAIL_SLOT") == str(fds.index):
        sys.exit(3)

    def stop(signum, frame):
        record("stop")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    fds.signal_ready()
    while True:
        time.sleep(1)
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import os, sys
    from syncline.server.listen import listen
    from syncline.server.workers import Supervisor, WorkerExit

    spread = bool(os.environ.get("SPREAD"))
    sockets = listen("127.0.0.1", 0, shared=spread)
    supervisor = Supervisor(
        [sys.executable, "-c", sys.argv[2]],
        workers=int(sys.argv[1]),
        api_sockets=sockets,
        spread=spread,
        on_ready=lambda: print("READY", sockets[0].getsockname()[1], flush=True),
        backoff_initial_s=0.05,
        stop_timeout_s=5,
    )
    try:
        supervisor.run()
    except WorkerExit as exc:
        print("EXIT", exc, flush=True)
        sys.exit(1)
    print("STOPPED", flush=True)
    """
)


class Run:
    def __init__(self, tmp_path: Path, workers: int, env: dict[str, str]) -> None:
        self.out = tmp_path / "events.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, str(workers), WORKER],
            env={**os.environ, "OUT": str(self.out), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def line(self) -> str:
        """The supervisor's next READY / EXIT / STOPPED line (log lines are skipped)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line or line.startswith(("READY", "EXIT", "STOPPED")):
                return line.strip()

    def events(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def wait_for(self, predicate: Any, timeout_s: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.02)
        raise AssertionError(f"timed out; events: {self.events()}")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    runs: list[Run] = []

    def start(workers: int, **env: str) -> Run:
        runs.append(Run(tmp_path, workers, env))
        return runs[-1]

    yield start
    for r in runs:
        if r.proc.poll() is None:
            r.proc.kill()
        r.proc.wait()
        if r.proc.stdout is not None:
            r.proc.stdout.close()


def starts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "start"]


def test_every_worker_serves_the_inherited_socket_and_stops_with_the_parent(run: Any) -> None:
    r = run(3)
    ready = r.line()
    assert ready.startswith("READY"), ready
    port = int(ready.split()[1])
    started = starts(r.events())
    assert sorted(e["slot"] for e in started) == [0, 1, 2]
    assert {e["port"] for e in started} == {port}
    assert {e["peers"] for e in started} == {2}  # every other slot's wake-up address

    r.proc.send_signal(signal.SIGTERM)
    assert r.line() == "STOPPED"
    assert r.proc.wait(10) == 0
    stopped = [e["pid"] for e in r.events() if e["event"] == "stop"]
    assert sorted(stopped) == sorted(e["pid"] for e in started)


def test_a_killed_worker_is_restarted_in_its_slot(run: Any) -> None:
    r = run(2)
    assert r.line().startswith("READY")
    victim = starts(r.events())[0]
    os.kill(victim["pid"], signal.SIGKILL)
    events = r.wait_for(lambda ev: len(starts(ev)) == 3)
    replacement = starts(events)[-1]
    assert replacement["slot"] == victim["slot"] and replacement["pid"] != victim["pid"]
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(10) == 0


def test_every_worker_shares_one_socket_unless_spread(run: Any) -> None:
    r = run(2)
    assert r.line().startswith("READY")
    assert len({e["socket"] for e in starts(r.events())}) == 1
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(10) == 0


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="SO_REUSEPORT spreads connections on Linux")
def test_spread_gives_each_slot_its_own_socket_on_the_port_kept_across_restarts(
    run: Any,
) -> None:
    r = run(3, SPREAD="1")
    ready = r.line()
    assert ready.startswith("READY"), ready
    started = {e["slot"]: e for e in starts(r.events())}
    assert {e["port"] for e in started.values()} == {int(ready.split()[1])}
    assert len({e["socket"] for e in started.values()}) == 3
    os.kill(started[1]["pid"], signal.SIGKILL)
    events = r.wait_for(lambda ev: len(starts(ev)) == 4)
    replacement = starts(events)[-1]
    assert replacement["slot"] == 1 and replacement["socket"] == started[1]["socket"]
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(10) == 0


def test_a_worker_that_keeps_failing_at_start_up_ends_the_server(run: Any) -> None:
    r = run(2, FAIL_SLOT="1")
    message = r.line()
    assert message.startswith("EXIT worker 1 exited during start-up 3 times in a row"), message
    assert "exit code 3" in message
    assert r.proc.wait(10) == 1
    events = r.events()
    assert [e["slot"] for e in starts(events)].count(1) == 3
    # The healthy worker was stopped with the server, not left behind.
    healthy = [e["pid"] for e in starts(events) if e["slot"] == 0]
    assert [e["pid"] for e in events if e["event"] == "stop"] == healthy


def test_worker_fds_travel_in_the_environment() -> None:
    fds = WorkerFds(index=2, parent=10, api=[3, 4], site=[5], inbox=6, peers=[7, 8], ready=9)
    assert WorkerFds.from_env({"SYNCLINE_WORKER": fds.to_env()}) == fds
    assert WorkerFds.from_env({}) is None


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
