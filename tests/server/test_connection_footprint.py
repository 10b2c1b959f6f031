"""What an idle subscribed sync connection keeps on the server.

Thousands of connections may sit waiting for live query updates, so each one's
objects count. ``asyncio.Queue`` and ``asyncio.Event`` allocate deques of
waiters (760 bytes each) when built; a connection used to hold fourteen of
them (its session's events and mutation queue, and uvicorn's receive queue
and ``writable`` event) and five tasks. The clients here speak the protocol
over plain blocking sockets, so every asyncio object counted is the server's.
"""

from __future__ import annotations

import gc
import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

from server.conftest import LiveServer
from syncline._devtools import connect_frame

COUNTED = ("deque", "Task", "Event", "Queue")
CONNECTIONS = 20
SHARED = 2


def _receive_until(
    sock: socket.socket, client: ClientProtocol, done: Callable[[object], bool]
) -> None:
    while True:
        for event in client.events_received():
            if done(event):
                return
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        client.receive_data(data)


@contextmanager
def _subscribed(port: int) -> Iterator[None]:
    """A sync connection with one live query, over a blocking socket."""
    client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/api/sync"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        client.send_request(client.connect())
        sock.sendall(b"".join(client.data_to_send()))
        _receive_until(sock, client, lambda e: isinstance(e, Response))
        add = {"type": "Add", "queryId": 0, "udfPath": "messages:list", "args": [{"channel": "a"}]}
        modify = {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [add],
        }
        client.send_text(connect_frame().encode())
        client.send_text(json.dumps(modify).encode())
        sock.sendall(b"".join(client.data_to_send()))
        _receive_until(
            sock, client, lambda e: isinstance(e, Frame) and b'"Transition"' in bytes(e.data)
        )
        yield


def _count() -> Counter[str]:
    gc.collect()
    return Counter(name for o in gc.get_objects() if (name := type(o).__name__) in COUNTED)


def test_an_idle_subscribed_connection_holds_no_asyncio_queues_or_events(
    live_server: LiveServer,
) -> None:
    with _subscribed(live_server.port):
        pass  # first-use caches are not per connection
    time.sleep(0.2)
    before = _count()
    with ExitStack() as stack:
        for _ in range(CONNECTIONS):
            stack.enter_context(_subscribed(live_server.port))
        time.sleep(0.2)  # the server settles (its sessions are parked)
        held = _count() - before
    # Allowed per connection: the session's outbox (a deque); the session's reader
    # and sender, and uvicorn's task for the connection. ``SHARED`` more may be made
    # once for all of them (a keepalive ticker, say).
    allowed = {"deque": 1, "Task": 3, "Event": 0, "Queue": 0}
    over = {
        name: f"{held[name]} for {CONNECTIONS} connections"
        for name, each in allowed.items()
        if held[name] > each * CONNECTIONS + SHARED
    }
    assert not over, over
