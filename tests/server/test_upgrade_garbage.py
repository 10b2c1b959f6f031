"""A WebSocket upgrade leaves no cyclic garbage behind.

After the upgrade the HTTP protocol object is no longer the transport's
protocol, so uvicorn never calls its ``connection_lost`` (which is where it
drops its parser). Parser and protocol refer to each other: unless the cycle
is broken at the upgrade, every WebSocket connection leaves ~30 objects for
the cyclic collector, which the server runs rarely (``gc.set_threshold`` in
``server/run.py``), so RSS creeps up under reconnects.
"""

from __future__ import annotations

import asyncio
import gc
import time

from server.conftest import AsyncWs, LiveServer


def _http_protocols() -> int:
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "GuardedHttpProtocol")


def test_closed_websocket_connections_leave_no_http_protocol_behind(
    live_server: LiveServer,
) -> None:
    async def connect_and_close(n: int) -> None:
        for _ in range(n):
            ws = await AsyncWs.open(live_server.ws_url)
            await ws.connect()
            await ws.close()

    gc.collect()
    gc.disable()
    try:
        before = _http_protocols()
        asyncio.run(connect_and_close(20))
        time.sleep(0.2)  # the server thread finishes closing the last sockets
        left = _http_protocols() - before
    finally:
        gc.enable()
    assert left <= 1, f"{left} upgraded HTTP protocol objects wait for the cyclic collector"
