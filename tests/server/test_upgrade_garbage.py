"""A finished WebSocket connection is freed at once, without the cyclic collector.

The server runs the cyclic collector rarely (``gc.set_threshold`` in
``server/run.py``), so anything a connection leaves in a reference cycle waits
long to be freed, and RSS creeps up under reconnects. Three cycles used to form:
after the upgrade, uvicorn never calls the HTTP protocol's ``connection_lost``
(which drops its parser, and parser and protocol refer to each other); the
WebSocket protocol kept its frame writers (its own bound methods) in the
connection's scope; and websockets' parser, a generator holding its protocol,
stays suspended at its last ``yield`` even after the end of stream.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter

from server.conftest import AsyncWs, LiveServer

SERVER_TYPES = {"GuardedHttpProtocol", "SyncWebSocketProtocol", "ServerProtocol", "SyncSession"}


def test_closed_websocket_connections_are_freed_without_the_cyclic_collector(
    live_server: LiveServer,
) -> None:
    async def connect_and_close(n: int) -> None:
        for i in range(n):
            ws = await AsyncWs.open(live_server.ws_url)
            await ws.connect()
            if i % 2:  # half of them with a live query, as a client reconnecting
                await ws.modify(
                    {
                        "type": "Add",
                        "queryId": 0,
                        "udfPath": "messages:list",
                        "args": [{"channel": "a"}],
                    }
                )
                assert (await ws.receive())["type"] == "Transition"
            await ws.close()

    asyncio.run(connect_and_close(2))  # warm up: first-use caches are not garbage
    gc.collect()
    gc.disable()
    try:
        asyncio.run(connect_and_close(20))
        time.sleep(0.3)  # the server thread finishes closing the last sockets
        left = Counter(name for o in gc.get_objects() if (name := type(o).__name__) in SERVER_TYPES)
    finally:
        gc.enable()
    assert not left, f"finished connections are still alive (in reference cycles): {left}"


def test_finished_http_requests_are_freed_without_the_cyclic_collector(
    live_server: LiveServer,
) -> None:
    """The whole-response ``send`` installed on each request's cycle must not outlive it."""
    import socket

    body = b'{"path": "messages:list", "args": {"channel": "a"}, "format": "json"}'
    request = (
        b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    def run(n: int) -> None:
        with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
            for _ in range(n):
                sock.sendall(request)
                reply = b""
                while b"\r\n\r\n" not in reply:
                    reply += sock.recv(65536)
                head, _, rest = reply.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += sock.recv(65536)
                assert head.startswith(b"HTTP/1.1 200"), head

    run(2)  # warm up: first-use caches are not garbage
    gc.collect()
    gc.disable()
    try:
        run(20)
        time.sleep(0.3)
        left = sum(1 for o in gc.get_objects() if type(o).__name__ == "RequestResponseCycle")
    finally:
        gc.enable()
    # The connection's current cycle may stay referenced until its next request.
    assert left <= 1, f"{left} finished request cycles are still alive (in reference cycles)"
