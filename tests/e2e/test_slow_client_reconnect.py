"""An official client dropped as ``ClientTooSlow`` reconnects and resyncs (npm ``convex``).

The client reaches the server through a TCP proxy in this process. The test
stops the proxy's server-to-client direction (the proxy then reads nothing
from the server, as a client that stopped reading would) while the client
sends mutations whose results are large: the server's send queue for the
connection goes past ``--max-send-queue-per-connection`` and, with nothing
taken for 5 s, the server drops the connection with the close reason
``ClientTooSlow``. Then the bytes flow again. The client must see the close
reason, reconnect, resync its subscription (including a write made while it
was cut off), and settle every mutation exactly once, with its own result.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness import require_node_package

from .conftest import MakeProject
from .test_js_client import JS_DIR, SteppedScenario

pytestmark = pytest.mark.slow

SLOW_MODULE = """
    from syncline import mutation, query, v


    @query(args={"prefix": v.string()})
    def titles(ctx, prefix):
        return [d["title"] for d in ctx.db.query("notes").collect() if d["title"].startswith(prefix)]


    @mutation(args={"title": v.string(), "size": v.number()})
    def add(ctx, title, size):
        ctx.db.insert("notes", {"title": title})
        return "x" * (int(size) - len(title)) + title
"""

SEND_QUEUE_CAP = 1024 * 1024
#: 40 results of 256 KiB: ten times the cap, more than the kernel's socket buffers hold
MUTATIONS = 40
RESULT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where a scenario connects: the proxy's address, the server's admin key."""

    url: str
    admin_key: str


class StallingProxy:
    """A TCP proxy (its own thread and event loop) whose server-to-client side can stop.

    While stopped, it reads nothing from the server: its upstream socket's small
    receive buffer and stream limit keep what it holds to a few tens of KiB.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop_reading(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=16 * 1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _handle(self, client_in: asyncio.StreamReader, client_out: Any) -> None:
        self.connections += 1
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        upstream.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(
                upstream, ("127.0.0.1", self.upstream_port)
            )
        except OSError:
            upstream.close()
            client_out.close()
            return
        server_in, server_out = await asyncio.open_connection(sock=upstream, limit=16 * 1024)
        pumps = [
            asyncio.ensure_future(self._pump(client_in, server_out, gate=None)),
            asyncio.ensure_future(self._pump(server_in, client_out, gate=self._flowing)),
        ]
        # The first side to end ends both (a WebSocket close is answered before either ends).
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for out in (server_out, client_out):
            out.close()

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                if gate is not None:
                    await gate.wait()
                data = await source.read(16 * 1024)
                if not data:
                    return
                sink.write(data)
                await sink.drain()


def test_a_client_dropped_as_too_slow_reconnects_and_resyncs(
    project: MakeProject, start_server: Any
) -> None:
    require_node_package(JS_DIR, "convex")
    srv = start_server(
        project({"slow.py": SLOW_MODULE}),
        args=["--max-send-queue-per-connection", str(SEND_QUEUE_CAP)],
    )
    tag = uuid.uuid4().hex[:12]
    with StallingProxy(srv.port) as proxy:
        scenario = SteppedScenario(
            "slow_reconnect.mjs",
            Endpoint(proxy.url, srv.admin_key),
            SYNCLINE_UNIQUE=tag,
            SYNCLINE_MUTATIONS=str(MUTATIONS),
            SYNCLINE_RESULT_BYTES=str(RESULT_BYTES),
        )
        try:
            scenario.wait_phase("subscribed")
            log_mark = srv.log_size()
            proxy.stop_reading()
            scenario.send("paused")
            scenario.wait_phase("sent")
            deadline = time.monotonic() + 30
            while "dropping sync client" not in srv.log(since=log_mark):
                assert time.monotonic() < deadline, (
                    "the server did not drop the client:\n" + srv.log(since=log_mark)
                )
                time.sleep(0.05)
            with httpx.Client(timeout=5) as http:
                response = http.post(
                    f"{srv.url}/api/mutation",
                    json={
                        "path": "slow:add",
                        "args": {"title": f"slow-{tag}-during", "size": 100},
                        "format": "json",
                    },
                )
                assert response.json()["status"] == "success", response.text
            proxy.resume()
            scenario.send("resumed")
            result = scenario.result(timeout=90)
        finally:
            scenario.kill()
        connections = proxy.connections
    client_log = "".join(scenario.stderr_lines)
    assert "WebSocket closed with code 1013: ClientTooSlow" in client_log, client_log
    assert result["results"]["connectionCount"] >= 2
    assert connections >= 2
