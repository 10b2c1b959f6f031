"""Ports are bound before anything starts; a taken port is one clear error."""

from __future__ import annotations

import socket

import pytest

from syncline.server.listen import PortUnavailable, listen


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
