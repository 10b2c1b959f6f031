"""Per-connection limits of the sync WebSocket, against a real ``syncline serve``.

* A client flooding 4 MB Actions and never reading: the server's memory stays
  bounded (the connection stops being read while its actions are in flight)
  and other clients' latency does not move.
* A ModifyQuerySet of 50,000 queries is refused at once with a FatalError
  naming the limit.
* A client that leaves more than ``--max-send-queue-per-connection`` of
  responses unread (and takes nothing for 5 s) is disconnected with the
  close reason ``ClientTooSlow``; if it still reads nothing, the server cuts
  the TCP connection 10 s later.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from syncline._devtools import ServerProcess, launch

from .conftest import MakeProject

pytestmark = pytest.mark.slow

LIMITS_MODULE = """
    import asyncio

    from syncline import action, mutation, query, v


    @action(args={"blob": v.string()})
    async def measure(ctx, blob):
        return float(len(blob))


    @query
    def gate_open(ctx):
        return ctx.db.query("gate").first() is not None


    @mutation
    def open_gate(ctx):
        ctx.db.insert("gate", {})


    @action(args={"blob": v.string()})
    async def held(ctx, blob):
        # Holds its 4 MiB argument until the gate opens.
        while not await ctx.run_query("limits:gate_open", {}):
            await asyncio.sleep(0.05)
        return float(len(blob))


    @action(args={"n": v.number()})
    async def blob(ctx, n):
        return "x" * int(n)


    @query
    def ping(ctx):
        return "pong"
"""

SEND_QUEUE_CAP = 1024 * 1024


@pytest.fixture(scope="module")
def limited(project: MakeProject) -> Iterator[ServerProcess]:
    """A ``syncline serve`` whose send queue per connection is 1 MiB."""
    proc = launch(
        project({"limits.py": LIMITS_MODULE}),
        mode="serve",
        args=["--max-send-queue-per-connection", str(SEND_QUEUE_CAP)],
    )
    try:
        yield proc
        assert proc.alive(), f"the server died during the tests:\n{proc.log()}"
    finally:
        proc.stop()


def ws_url(server: ServerProcess) -> str:
    return server.ws_url


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect_frame() -> str:
    return json.dumps(
        {
            "type": "Connect",
            "sessionId": str(uuid.uuid4()),
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": 0,
        }
    )


def action_frame(request_id: int, path: str, args: dict[str, Any]) -> str:
    return json.dumps({"type": "Action", "requestId": request_id, "udfPath": path, "args": [args]})


async def open_non_reading(server: ServerProcess) -> ClientConnection:
    """A client whose socket takes little and that never calls ``recv``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", server.port))
    ws = await connect(
        ws_url(server), sock=sock, max_size=None, max_queue=1, compression=None, proxy=None
    )
    await ws.send(connect_frame())
    return ws


async def query_latency_s(http: httpx.AsyncClient, server: ServerProcess) -> float:
    started = time.perf_counter()
    response = await http.post(
        f"{server.url}/api/query",
        json={"path": "limits:ping", "args": {}, "format": "convex_encoded_json"},
    )
    assert response.json()["value"] == "pong"
    return time.perf_counter() - started


async def sync_latency_s(ws: ClientConnection, request_id: int) -> float:
    """Round trip of a small Action on a healthy sync connection."""
    started = time.perf_counter()
    await ws.send(action_frame(request_id, "limits:measure", {"blob": "abc"}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message["type"] == "ActionResponse" and message["requestId"] == request_id:
            assert message["success"], message
            return time.perf_counter() - started


FLOODER = """
import asyncio, json, socket, sys, uuid
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url, port, count):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    ws = await connect(url, sock=sock, max_size=None, max_queue=1, compression=None, proxy=None)
    await ws.send(json.dumps({"type": "Connect", "sessionId": str(uuid.uuid4()),
                              "connectionCount": 0, "lastCloseReason": "InitialConnect"}))
    blob = "a" * (4 * 1024 * 1024)
    sent = 0
    for request_id in range(count):
        frame = json.dumps({"type": "Action", "requestId": request_id,
                            "udfPath": "limits:held", "args": [{"blob": blob}]})
        try:
            await ws.send(frame)
        except ConnectionClosed:
            break
        sent += 1
    print(sent, flush=True)
    await asyncio.sleep(3600)  # never reads; killed by the test

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_flood_of_large_actions_from_a_non_reading_client(limited: ServerProcess) -> None:
    """150 Actions of 4 MiB from a client that reads nothing (in its own process).

    The actions hold their arguments until a gate opens: for a few seconds the
    server could hold every one of them, if it kept reading.
    """
    pid = limited.pid
    assert pid is not None

    async def main() -> dict[str, Any]:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            connect(ws_url(limited), max_size=None, proxy=None) as healthy,
        ):
            await healthy.send(connect_frame())
            baseline: list[float] = []
            for i in range(20):
                baseline += [await sync_latency_s(healthy, i), await query_latency_s(http, limited)]
            rss_before = rss_bytes(pid)
            flooder = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                FLOODER,
                ws_url(limited),
                str(limited.port),
                "150",
                stdout=asyncio.subprocess.PIPE,
            )
            assert flooder.stdout is not None
            done = asyncio.create_task(flooder.stdout.readline())
            peak = rss_before
            during: list[float] = []
            request_id = 1000
            gate_at = time.monotonic() + 4
            try:
                while not done.done():
                    peak = max(peak, rss_bytes(pid))
                    during.append(await sync_latency_s(healthy, request_id))
                    during.append(await query_latency_s(http, limited))
                    request_id += 1
                    if gate_at and time.monotonic() > gate_at:
                        gate_at = 0
                        await http.post(
                            f"{limited.url}/api/mutation",
                            json={"path": "limits:open_gate", "args": {}},
                        )
                sent = int(await done)
                peak = max(peak, rss_bytes(pid))
            finally:
                flooder.kill()
                await flooder.wait()
            return {
                "baseline": baseline,
                "during": during,
                "growth": peak - rss_before,
                "sent": sent,
            }

    result = asyncio.run(main())
    growth_mb = result["growth"] / 1e6
    base_median = statistics.median(result["baseline"])
    during_median = statistics.median(result["during"])
    print(
        f"flood: {result['sent']} x 4 MiB actions, RSS growth {growth_mb:.1f} MB, "
        f"latency median {base_median * 1000:.1f} ms before, {during_median * 1000:.1f} ms "
        f"during ({len(result['during'])} samples)"
    )
    assert result["sent"] == 150
    assert growth_mb < 100, f"server RSS grew by {growth_mb:.1f} MB"
    assert during_median < base_median + 0.05, (base_median, during_median)


def test_fifty_thousand_queries_in_one_modify_query_set_are_refused(
    limited: ServerProcess,
) -> None:
    mods = [
        {"type": "Add", "queryId": i, "udfPath": "limits:ping", "args": [{}]} for i in range(50_000)
    ]
    frame = json.dumps(
        {"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": mods}
    )

    async def main() -> tuple[dict[str, Any], float, float]:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            connect(ws_url(limited), max_size=None, proxy=None) as ws,
        ):
            await ws.send(connect_frame())
            started = time.perf_counter()
            await ws.send(frame)
            latency = await query_latency_s(http, limited)
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            elapsed = time.perf_counter() - started
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return message, elapsed, latency

    message, elapsed, latency = asyncio.run(main())
    print(
        f"50,000 queries refused after {elapsed:.2f} s; another client's query took {latency:.3f} s"
    )
    assert message["type"] == "FatalError"
    assert "TooManyQueries" in message["error"]
    assert "50000" in message["error"] and "1000" in message["error"]
    assert elapsed < 5
    assert latency < 2


def test_a_client_leaving_too_much_unread_is_disconnected(limited: ServerProcess) -> None:
    log_mark = limited.log_size()

    async def main() -> ConnectionClosed:
        ws = await open_non_reading(limited)
        # 40 responses of 256 KiB: ten times the cap, far more than socket buffers hold.
        for request_id in range(40):
            await ws.send(action_frame(request_id, "limits:blob", {"n": 256 * 1024}))
        deadline = time.monotonic() + 30
        while "dropping sync client" not in limited.log(since=log_mark):
            assert time.monotonic() < deadline, limited.log(since=log_mark)
            await asyncio.sleep(0.05)
        # The client reads now: what was queued before the drop, then the close.
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value

    closed = asyncio.run(main())
    assert closed.rcvd is not None, closed
    assert closed.rcvd.code == 1013
    assert closed.rcvd.reason.startswith("ClientTooSlow")


def test_a_client_that_never_reads_again_is_cut_off(limited: ServerProcess) -> None:
    """After the close frame, a client that still does not read loses the TCP connection."""
    log_mark = limited.log_size()

    async def main() -> None:
        ws = await open_non_reading(limited)
        port = ws.transport.get_extra_info("sockname")[1]
        assert _server_side_open(limited.port, port)
        for request_id in range(40):
            await ws.send(action_frame(request_id, "limits:blob", {"n": 256 * 1024}))
        deadline = time.monotonic() + 30
        while "dropping sync client" not in limited.log(since=log_mark):
            assert time.monotonic() < deadline, limited.log(since=log_mark)
            await asyncio.sleep(0.05)
        dropped_at = time.monotonic()
        # The server aborts the connection 10 s after the close (CLOSE_TIMEOUT_S).
        deadline = time.monotonic() + 30
        while _server_side_open(limited.port, port):
            assert time.monotonic() < deadline, "the server kept the connection open"
            await asyncio.sleep(0.25)
        print(f"connection cut {time.monotonic() - dropped_at:.1f} s after the drop")
        ws.transport.abort()

    asyncio.run(main())


def _server_side_open(server_port: int, client_port: int) -> bool:
    """Whether the server process holds a socket connected to ``client_port``.

    From /proc/net/tcp: a socket the process closed but the kernel still
    flushes (orphaned, inode 0) no longer counts.
    """
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[9] != "0":
                return True
    return False
