"""Scheduler guarantees across a crash: a real ``syncline serve`` killed with SIGKILL.

200 scheduled mutations each increment a counter and record their number; 50
scheduled actions each append their number to a file outside the database
(some then wait 1.5 s) before recording themselves through a mutation. The
server is killed while jobs are in flight, restarted, and once everything
has settled:

* every scheduled mutation ran exactly once (one effect per job, counter = 200);
* no action ran twice (the file's lines are unique);
* the actions cut off by the kill are ``failed`` with the transient error, and
  were not run again; every other action succeeded.

At most once promises no second run, not no effect: an action cut off by the
kill may have written its line, and even committed its ``action_done``
mutation, before the kill (the kill can land between that commit and the
``success`` state). The test asserts exactly that: every effect of a failed
action happened before the kill, and nothing ran twice.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

MUTATIONS = 200
ACTIONS = 50
TRANSIENT = "Transient error while executing action"

JOBS = """
import asyncio
import os

from syncline import internal, internal_action, internal_mutation, mutation, query, v

SIDE_EFFECTS = {side_effects!r}


@mutation(args={{"mutations": v.number(), "actions": v.number()}})
def start(ctx, mutations, actions):
    for i in range(int(mutations)):
        ctx.scheduler.run_after(i * 10, internal.crashjobs.bump, {{"i": i}})
    for i in range(int(actions)):
        ctx.scheduler.run_after(
            i * 40, internal.crashjobs.side_effect, {{"i": i, "slow": i % 3 == 0}}
        )


@internal_mutation(args={{"i": v.number()}})
def bump(ctx, i):
    counter = ctx.db.query("counter").first()
    if counter is None:
        ctx.db.insert("counter", {{"n": 1.0}})
    else:
        ctx.db.patch(counter["_id"], {{"n": counter["n"] + 1}})
    ctx.db.insert("effects", {{"i": i}})


@internal_mutation(args={{"i": v.number()}})
def action_done(ctx, i):
    ctx.db.insert("action_effects", {{"i": i}})


@internal_action(args={{"i": v.number(), "slow": v.boolean()}})
async def side_effect(ctx, i, slow):
    with open(SIDE_EFFECTS, "a") as f:
        f.write(f"{{int(i)}}\\n")
        f.flush()
        os.fsync(f.fileno())
    if slow:
        await asyncio.sleep(1.5)
    await ctx.run_mutation(internal.crashjobs.action_done, {{"i": i}})


@query
def status(ctx):
    jobs = ctx.db.system.query("_scheduled_functions").collect()
    counter = ctx.db.query("counter").first()
    return {{
        "jobs": [{{"name": j["name"], "i": j["args"][0]["i"], "state": j["state"]}} for j in jobs],
        "effects": [e["i"] for e in ctx.db.query("effects").collect()],
        "action_effects": [e["i"] for e in ctx.db.query("action_effects").collect()],
        "counter": counter["n"] if counter else 0,
    }}
"""


def call(http: httpx.Client, url: str, kind: str, path: str, args: dict[str, Any]) -> Any:
    response = http.post(f"{url}/api/{kind}", json={"path": path, "args": args, "format": "json"})
    body = response.json()
    assert body.get("status") == "success", body
    return body["value"]


def kinds(status: dict[str, Any], name: str) -> collections.Counter[str]:
    return collections.Counter(j["state"]["kind"] for j in status["jobs"] if j["name"] == name)


@pytest.mark.slow
def test_sigkill_keeps_exactly_once_mutations_and_at_most_once_actions(
    project: Callable[..., Path], start_server: Callable[..., Any], tmp_path: Path
) -> None:
    side_effects = tmp_path / "side_effects.txt"
    root = project({"crashjobs.py": JOBS.format(side_effects=str(side_effects))}, auth=False)
    server = start_server(root)
    with httpx.Client(timeout=10) as http:
        call(
            http,
            server.url,
            "mutation",
            "crashjobs:start",
            {"mutations": MUTATIONS, "actions": ACTIONS},
        )
        # Kill it mid-flight: mutations done and not done, an action in progress.
        deadline = time.monotonic() + 15
        while True:
            status = call(http, server.url, "query", "crashjobs:status", {})
            # A slow action (asleep for 1.5 s) in progress is sure to be cut off by the kill.
            slow_running = [
                j
                for j in status["jobs"]
                if j["name"] == "crashjobs:side_effect"
                and j["state"]["kind"] == "inProgress"
                and j["i"] % 3 == 0
            ]
            if len(status["effects"]) >= 40 and slow_running:
                break
            assert time.monotonic() < deadline, f"no jobs in flight: {status}"
            time.sleep(0.02)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        server.stop()
        lines_at_kill = side_effects.read_text().split()
        assert len(status["effects"]) < MUTATIONS, "everything ran before the kill"

        server.start()
        server.wait_ready()
        deadline = time.monotonic() + 20
        while True:
            status = call(http, server.url, "query", "crashjobs:status", {})
            states = collections.Counter(j["state"]["kind"] for j in status["jobs"])
            if not states["pending"] and not states["inProgress"]:
                break
            assert time.monotonic() < deadline, f"jobs did not settle: {states}"
            time.sleep(0.05)

    # Exactly once: one effect per scheduled mutation, and the counter agrees.
    assert kinds(status, "crashjobs:bump") == {"success": MUTATIONS}
    assert sorted(status["effects"]) == list(range(MUTATIONS))
    assert status["counter"] == MUTATIONS

    # At most once: no action wrote its side effect twice, before or after the restart.
    lines = [int(x) for x in side_effects.read_text().split()]
    assert len(lines) == len(set(lines)), collections.Counter(lines).most_common(3)
    actions = {j["i"]: j["state"] for j in status["jobs"] if j["name"] == "crashjobs:side_effect"}
    assert len(actions) == ACTIONS
    failed = {i for i, state in actions.items() if state["kind"] == "failed"}
    succeeded = {i for i, state in actions.items() if state["kind"] == "success"}
    assert failed | succeeded == set(actions)
    # The ones cut off by the kill failed with the transient error and never ran again...
    assert failed, "no action was interrupted"
    assert all(actions[i]["error"] == TRANSIENT for i in failed)
    # An interrupted action may or may not have had its effects (its line, even its
    # committed action_done mutation), but only before the kill: never a second run.
    before_kill = {int(x) for x in lines_at_kill}
    assert {i for i in lines if i in failed} <= before_kill
    action_effects = status["action_effects"]
    assert len(action_effects) == len(set(action_effects)), action_effects
    assert set(action_effects) & failed <= before_kill
    # ...and every other action ran exactly once, to the end.
    assert set(action_effects) - failed == succeeded
    assert set(lines) >= succeeded
