"""A finished WebSocket connection leaves no cyclic garbage behind on the server.

The server runs the cyclic collector rarely (``gc.set_threshold`` in
``server/run.py``), so anything a connection leaves in a reference cycle waits
long to be freed, and RSS creeps up under reconnects. Two cycles used to form:
after the upgrade, uvicorn never calls the HTTP protocol's ``connection_lost``
(which drops its parser, and parser and protocol refer to each other); and the
WebSocket protocol kept its frame writers (its own bound methods) in the
connection's scope, and websockets' parser generator held its protocol.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter

from server.conftest import AsyncWs, LiveServer

SERVER_TYPES = {"GuardedHttpProtocol", "SyncWebSocketProtocol", "ServerProtocol"}


def test_closed_websocket_connections_leave_no_cycles_on_the_server(
    live_server: LiveServer,
) -> None:
    async def connect_and_close(n: int) -> None:
        for _ in range(n):
            ws = await AsyncWs.open(live_server.ws_url)
            await ws.connect()
            await ws.close()

    asyncio.run(connect_and_close(2))  # warm up: first-use caches are not garbage
    gc.collect()
    gc.disable()
    try:
        asyncio.run(connect_and_close(20))
        time.sleep(0.3)  # the server thread finishes closing the last sockets
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    left = {name: n for name, n in garbage.items() if name in SERVER_TYPES}
    assert not left, f"finished connections left these in reference cycles: {left}"
