"""Running the server with uvicorn (used by ``syncline serve`` and ``syncline dev``)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import uvicorn

from syncline.application import Application
from syncline.server.app import create_app

log = logging.getLogger("syncline.server")


async def serve(
    application: Application,
    *,
    host: str = "127.0.0.1",
    port: int = 3210,
    on_ready: Callable[[], None] | None = None,
    background: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then shut down gracefully."""
    config = uvicorn.Config(
        create_app(application, manage_lifecycle=False),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ws_ping_interval=5.0,
        ws_ping_timeout=120.0,
        ws_max_size=16 * 1024 * 1024,
        # Compression costs more CPU per frame than it saves on loopback/LANs.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    await application.start()
    # Long-lived objects (code, schema, catalog) need no cyclic GC passes; and a
    # larger young generation keeps collections off the hot path of fan-outs.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    extra: asyncio.Task[None] | None = None
    try:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready()
        if background is not None and server.started:
            extra = asyncio.create_task(background())
        await task
    finally:
        if extra is not None:
            extra.cancel()
            await asyncio.gather(extra, return_exceptions=True)
        await application.stop()
