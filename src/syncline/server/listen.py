"""Listening sockets, bound before anything else starts.

``syncline serve`` binds its ports first: a port already in use is reported
in one line, before the application opens its data folder or starts its
scheduler and crons. The bound sockets are then handed to uvicorn.
"""

from __future__ import annotations

import contextlib
import errno
import socket

from syncline.errors import SynclineError

__all__ = ["PortUnavailable", "listen"]


class PortUnavailable(SynclineError):
    """A listening port could not be bound (in use, or not allowed)."""

    code = "PortUnavailable"

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for every address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailable(
            f"cannot listen on {host}: {exc.strerror}", host=host, port=port
        ) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # "::" must not also claim the IPv4 port bound by its 0.0.0.0 sibling.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use"
        else:
            message = f"cannot listen on port {port} on {host}: {exc.strerror}"
        raise PortUnavailable(message, host=host, port=port) from None
    return sockets
