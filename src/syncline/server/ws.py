"""The sync WebSocket endpoint, as a plain ASGI app.

It sits in front of the Starlette app rather than inside it: a live query
update is one frame to each of possibly thousands of sockets, and every
middleware layer would add a wrapper call to every frame. Nothing here needs
middleware (no CORS for WebSockets, no HTTP error pages).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from syncline.sync.protocol import ServerMessage, encode_server_message
from syncline.sync.session import SyncSession

if TYPE_CHECKING:
    from syncline.application import Application

log = logging.getLogger("syncline.server")

#: ``/api/sync`` (Rust/Python clients) and ``/api/<client version>/sync`` (JS)
SYNC_PATH = re.compile(r"^/+api(?:/+[^/]+)?/+sync/*$")


class SyncEndpoint:
    """Routes sync WebSockets to :class:`SyncSession`; everything else to ``app``."""

    def __init__(self, application: Application, app: ASGIApp) -> None:
        self.application = application
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and SYNC_PATH.match(scope["path"]):
            await self.serve(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        trace = log.isEnabledFor(logging.DEBUG)

        async def incoming() -> AsyncIterator[str | bytes]:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return  # websocket.disconnect
                frame = message.get("text")
                if frame is None:
                    frame = message.get("bytes") or b""
                if trace:
                    log.debug("sync <- %s", frame[:500])
                yield frame

        async def send_message(message: ServerMessage) -> None:
            text = encode_server_message(message)
            if trace:
                log.debug("sync -> %s", text[:500])
            await send({"type": "websocket.send", "text": text})

        session = SyncSession(self.application, send_message)
        close = await session.run(incoming())
        if close is not None:
            try:
                await send(
                    {"type": "websocket.close", "code": close.code, "reason": close.reason[:123]}
                )
            except Exception:
                pass  # the client is already gone
