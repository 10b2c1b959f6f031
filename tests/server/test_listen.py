"""Ports are bound before anything starts; a taken port is one clear error.

With several workers, sockets share a port (``SO_REUSEPORT``) and its connections."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from syncline.server.listen import SPREADS_CONNECTIONS, PortUnavailable, listen, listen_beside


def test_listen_binds_every_address_of_the_host() -> None:
    sockets = listen("127.0.0.1", 0)
    try:
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_is_reported_with_host_and_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortUnavailable) as raised:
            listen("127.0.0.1", port)
    assert raised.value.port == port
    assert str(raised.value) == f"port {port} on 127.0.0.1 is already in use"


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="SO_REUSEPORT spreads connections on Linux")
def test_sockets_beside_a_shared_one_share_its_connections() -> None:
    sockets = listen("127.0.0.1", 0, shared=True)
    beside = listen_beside(sockets)
    both = [sockets[0], beside[0]]
    try:
        port = sockets[0].getsockname()[1]
        assert beside[0].getsockname() == ("127.0.0.1", port)
        for sock in both:
            sock.listen(128)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = [0, 0]
        deadline = time.monotonic() + 5
        while sum(accepted) < len(clients) and time.monotonic() < deadline:
            for i, sock in enumerate(both):
                with contextlib.suppress(BlockingIOError):
                    sock.accept()[0].close()
                    accepted[i] += 1
        for client in clients:
            client.close()
        assert sum(accepted) == 64
        assert min(accepted) > 0, accepted  # all 64 on one socket: about 1 in 2**63
    finally:
        for sock in both:
            sock.close()


@pytest.mark.parametrize("shared_first", [False, True])
def test_a_shared_listen_never_joins_a_port_another_server_listens_on(
    shared_first: bool,
) -> None:
    taken = listen("127.0.0.1", 0, shared=shared_first)
    try:
        taken[0].listen()
        port = taken[0].getsockname()[1]
        with pytest.raises(PortUnavailable, match="already in use"):
            listen("127.0.0.1", port, shared=True)
    finally:
        taken[0].close()
