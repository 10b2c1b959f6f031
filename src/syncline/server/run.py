"""Running the server with uvicorn (used by ``syncline serve`` and ``syncline dev``).

One process, one event loop, two listening ports: the API port (function
API, sync WebSocket, admin, ``/http/``) and, when ``site_port`` is given, the
site port serving HTTP actions. The API server owns signal handling; a stop
of either server stops both. With ``serve --workers N`` each worker process
runs this on sockets it inherited, and follows the other workers' commits
(:mod:`syncline.server.wakeup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Generator, Iterator
from types import FrameType
from typing import Any

import uvicorn

from syncline.application import Application
from syncline.server.app import create_app
from syncline.server.deploy import DEFAULT_MAX_DEPLOY_BYTES
from syncline.server.listen import PortUnavailable, listen
from syncline.server.protocols import guarded_http_protocol
from syncline.server.request_limits import DEFAULT_REQUEST_LIMITS, BodyGuard, RequestLimits
from syncline.server.snapshot_api import DEFAULT_MAX_IMPORT_BYTES
from syncline.server.wakeup import CommitFollower, WakeupChannel
from syncline.server.ws import SyncWebSocketProtocol
from syncline.sync.limits import ConnectionLimits

log = logging.getLogger("syncline.server")


class ShutdownRequested(BaseException):
    """SIGTERM arrived and the servers have drained: unwind so cleanup runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise ShutdownRequested


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Make SIGTERM end the process the way Ctrl-C does: through our ``finally`` blocks.

    uvicorn drains connections on SIGTERM and then re-raises the signal with
    the handler that was installed before it. With the default handler the
    process would die right there, before the application is stopped and the
    database closed (``docker stop``, systemd and Kubernetes all send SIGTERM).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def serve(
    application: Application,
    *,
    host: str = "127.0.0.1",
    port: int = 3210,
    on_ready: Callable[[], None] | None = None,
    background: Callable[[Callable[[], None]], Coroutine[Any, Any, None]] | None = None,
    site_port: int | None = None,
    sync_limits: ConnectionLimits | None = None,
    limits: RequestLimits = DEFAULT_REQUEST_LIMITS,
    api_sockets: list[socket.socket] | None = None,
    site_sockets: list[socket.socket] | None = None,
    wakeups: WakeupChannel | None = None,
    max_import_bytes: int = DEFAULT_MAX_IMPORT_BYTES,
    max_deploy_bytes: int = DEFAULT_MAX_DEPLOY_BYTES,
    dashboard: bool = True,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then shut down gracefully.

    ``on_ready`` is called once every port accepts connections. ``background``
    (the dev file watcher) runs alongside the servers; it gets a callback to
    call once it is working, and the servers accept connections only after
    that call (or after it ended): a client that reached the server, or a
    user who read the ready lines, can rely on it. The ports are
    bound before the application starts (a port in use raises
    :class:`~syncline.server.listen.PortUnavailable` with nothing started);
    pass ``api_sockets`` / ``site_sockets`` already bound with
    :func:`~syncline.server.listen.listen` to bind them earlier still.
    ``wakeups`` makes this process one worker of several: it wakes the
    others after its commits and publishes theirs (a
    :class:`~syncline.server.wakeup.CommitFollower`). A store that delivers
    wake-ups itself (PostgreSQL: LISTEN/NOTIFY) is followed the same way.
    ``dashboard=False`` serves no web dashboard (``serve --no-dashboard``).
    """
    if api_sockets is None:
        api_sockets = listen(host, port)
    if site_sockets is None and site_port is not None:
        try:
            site_sockets = listen(host, site_port)
        except PortUnavailable:
            _close(api_sockets)
            raise
    config = uvicorn.Config(
        BodyGuard(
            create_app(
                application,
                manage_lifecycle=False,
                sync_limits=sync_limits,
                max_import_bytes=max_import_bytes,
                max_deploy_bytes=max_deploy_bytes,
                dashboard=dashboard,
            ),
            body_timeout_s=limits.body_timeout_s,
        ),
        host=host,
        port=port,
        # uvicorn's own lines go through the root logger that `serve` configures (the
        # worker prefix, the format), not through uvicorn's separate handlers.
        log_config=None,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,  # LeanApi applies them, past the function API (lean_api.py)
        http=guarded_http_protocol(limits),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        ws_ping_interval=5.0,
        ws_ping_timeout=120.0,
        ws_max_size=16 * 1024 * 1024,
        ws=SyncWebSocketProtocol,
        # Compression costs more CPU per frame than it saves on loopback/LANs.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    site = None
    if site_sockets is not None:
        site_port = site_sockets[0].getsockname()[1]
        site = _site_server(application, host, site_port, limits)
    if site is not None:
        _stop_together(server, site)
    await application.start()
    follower = None
    # Nodes sharing a PostgreSQL database hear of each other's commits from it.
    channel = application.database.persistence.commit_wakeups() or wakeups
    if channel is not None:
        follower = CommitFollower(application.database, channel)
        follower.start()
    # Long-lived objects (code, schema, catalog) need no cyclic GC passes; and a
    # larger young generation keeps collections off the hot path of fan-outs.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    extra: asyncio.Task[None] | None = None
    stack = contextlib.ExitStack()
    stack.enter_context(_sigterm_unwinds())
    try:
        if background is not None:
            working = asyncio.Event()
            extra = asyncio.create_task(background(working.set))
            waiting = asyncio.create_task(working.wait())
            await asyncio.wait([waiting, extra], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if extra.done() and not extra.cancelled() and extra.exception() is not None:
                log.error("background task failed: %r", extra.exception())
        servers = [(server, asyncio.create_task(server.serve(sockets=api_sockets)))]
        if site is not None:
            servers.append((site, asyncio.create_task(site.serve(sockets=site_sockets))))

        def starting() -> bool:
            return not all(s.started for s, _ in servers) and not any(t.done() for _, t in servers)

        while starting():
            await asyncio.sleep(0.02)
        up = all(s.started for s, _ in servers)
        if up and on_ready is not None:
            on_ready()
        tasks = [t for _, t in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for s, _ in servers:
            s.should_exit = True
        # Failures (a site port already in use, say) propagate from here.
        for t in tasks:
            await t
    finally:
        stack.close()
        if extra is not None:
            extra.cancel()
            await asyncio.gather(extra, return_exceptions=True)
        await application.stop()
        if follower is not None:
            follower.stop()
            follower.channel.close()
        _close(api_sockets)
        _close(site_sockets or [])


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def _site_server(
    application: Application, host: str, port: int, limits: RequestLimits
) -> uvicorn.Server:
    from syncline.server.http_actions import SiteApp

    config = uvicorn.Config(
        BodyGuard(SiteApp(application), body_timeout_s=limits.body_timeout_s),
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        lifespan="off",
        http=guarded_http_protocol(limits),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=5,
    )
    return _SiteServer(config)


class _SiteServer(uvicorn.Server):
    """Installs no signal handlers: the API server does (a second one would replace them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _stop_together(main: uvicorn.Server, site: uvicorn.Server) -> None:
    """A signal to the API server starts the site server's shutdown at the same time."""
    handle_exit = main.handle_exit

    def handle(sig: int, frame: FrameType | None) -> None:
        site.should_exit = True
        handle_exit(sig, frame)

    main.handle_exit = handle  # type: ignore[method-assign]
