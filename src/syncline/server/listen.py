"""Listening sockets, bound before anything else starts.

``syncline serve`` binds its ports first: a port already in use is reported
in one line, before the application opens its data folder or starts its
scheduler and crons. The bound sockets are then handed to uvicorn.

With several workers on Linux, each worker gets sockets of its own on the
same port (``SO_REUSEPORT``, :func:`listen_beside`): the kernel spreads new
connections evenly over them. Workers sharing one socket instead take
connections as fast as each wakes up, and one burst of connections (64
clients opening at once) can land mostly on one worker while the other idles.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
from collections.abc import Sequence
from typing import Any

from syncline.errors import SynclineError

__all__ = ["SPREADS_CONNECTIONS", "PortUnavailable", "listen", "listen_beside"]

#: Whether sockets sharing a port with ``SO_REUSEPORT`` share its connections evenly:
#: Linux hashes each connection to one of them (elsewhere the option means other things).
SPREADS_CONNECTIONS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class PortUnavailable(SynclineError):
    """A listening port could not be bound (in use, or not allowed)."""

    code = "PortUnavailable"

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


def listen(host: str, port: int, *, shared: bool = False) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for every address ``host`` resolves to.

    ``shared``: with ``SO_REUSEPORT``, so that :func:`listen_beside` can add
    sockets on the same addresses (only where :data:`SPREADS_CONNECTIONS`).
    The port is first bound without it, and released: a port another server
    listens on is reported as in use, never joined.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailable(
            f"cannot listen on {host}: {exc.strerror}", host=host, port=port
        ) from None
    addresses: list[tuple[int, int, int, Any]] = []
    seen: set[tuple[int, object]] = set()
    for family, kind, proto, _, address in infos:
        if (family, address) not in seen:
            seen.add((family, address))
            addresses.append((family, kind, proto, address))
    try:
        if shared:
            _close_all(_bind_each(addresses, reuse_port=False))
        return _bind_each(addresses, reuse_port=shared)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use"
        else:
            message = f"cannot listen on port {port} on {host}: {exc.strerror}"
        raise PortUnavailable(message, host=host, port=port) from None


def listen_beside(sockets: Sequence[socket.socket]) -> list[socket.socket]:
    """New bound sockets on the addresses of ``sockets`` (made by ``listen(shared=True)``).

    Once each is listening, the kernel hands every new connection to one
    listening socket of the port, spread evenly by its addresses and ports.
    """
    return _bind_each(
        [(s.family, s.type, s.proto, s.getsockname()) for s in sockets], reuse_port=True
    )


def _bind_each(
    addresses: Sequence[tuple[int, int, int, Any]], *, reuse_port: bool
) -> list[socket.socket]:
    """One bound, inheritable socket per ``(family, type, proto, address)``; all or none."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in addresses:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # "::" must not also claim the IPv4 port bound by its 0.0.0.0 sibling.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.set_inheritable(True)
    except BaseException:
        _close_all(sockets)
        raise
    return sockets


def _close_all(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
