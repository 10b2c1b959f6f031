"""The sync WebSocket endpoint, as a plain ASGI app.

It sits in front of the Starlette app rather than inside it: a live query
update is one frame to each of possibly thousands of sockets, and every
middleware layer would add a wrapper call to every frame. Nothing here needs
middleware (no CORS for WebSockets, no HTTP error pages).

:class:`SyncWebSocketProtocol` is the uvicorn WebSocket protocol the server
runs with: uvicorn's own, except that a connection can be dropped even when
its client has stopped reading, and that it writes the session's encoded
frames straight to the socket (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from syncline.functions.caller import client_address
from syncline.sync.limits import ConnectionLimits
from syncline.sync.session import SyncSession
from syncline.sync.waiting import Mailbox, Signal

if TYPE_CHECKING:
    from syncline.application import Application

log = logging.getLogger("syncline.server")

#: ``/api/sync`` (Rust/Python clients) and ``/api/<client version>/sync`` (JS)
SYNC_PATH = re.compile(r"^/+api(?:/+[^/]+)?/+sync/*$")

#: how long a close frame may wait for a client that does not read
CLOSE_TIMEOUT_S = 10.0

#: the scope extension under which SyncWebSocketProtocol offers its frame writer
FRAME_WRITER = "syncline.frame_writer"
#: ... and its writer that writes at once or not at all (returns whether it wrote)
FRAME_WRITER_NOW = "syncline.frame_writer_now"


def _frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented text frame (what a server sends) holding ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def _frames(payloads: tuple[bytes, ...]) -> bytes:
    """The frames of ``payloads``, back to back (one write: one send, one TCP segment)."""
    if len(payloads) == 1:
        return _frame(payloads[0])
    return b"".join([_frame(payload) for payload in payloads])


class SyncEndpoint:
    """Routes sync WebSockets to :class:`SyncSession`; everything else to ``app``."""

    def __init__(
        self, application: Application, app: ASGIApp, limits: ConnectionLimits | None = None
    ) -> None:
        self.application = application
        self.app = app
        self.limits = limits or ConnectionLimits()

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
        peer = scope.get("client")
        client_address.set(peer[0] if peer else None)  # for abuse limits (functions/caller.py)
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

        write: Callable[..., Awaitable[None]] | None = scope.get("extensions", {}).get(FRAME_WRITER)

        async def send_frame(*frames: bytes) -> None:
            if trace:
                for frame in frames:
                    log.debug("sync -> %s", frame[:500])
            if write is not None:
                await write(*frames)
            else:  # another ASGI server: the standard message
                for frame in frames:
                    await send({"type": "websocket.send", "text": frame.decode()})

        write_now: Callable[..., bool] | None = scope.get("extensions", {}).get(FRAME_WRITER_NOW)
        if trace:
            write_now = None  # every frame through send_frame, which logs it
        session = SyncSession(
            self.application,
            None,
            send_frame=send_frame,
            write_frame_now=write_now,
            limits=self.limits,
        )
        close = await session.run(incoming())
        if close is not None:
            frame = {"type": "websocket.close", "code": close.code, "reason": close.reason[:123]}
            # A server that waits for the write buffer to drain first would wait forever
            # for a client that does not read; SyncWebSocketProtocol does not.
            with contextlib.suppress(Exception):  # the client is already gone
                await asyncio.wait_for(send(frame), CLOSE_TIMEOUT_S)


class SyncWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, able to drop a client that stopped reading.

    uvicorn writes a frame only once the socket's write buffer is below its
    high-water mark: for a client that reads nothing, never, so a close sent
    to it would wait forever and the connection would stay open. Here a close
    sent while writes are paused goes into the buffer at once, behind what
    the client has not read, and the connection is aborted unless the client
    reads up to it (and answers) within ``CLOSE_TIMEOUT_S``.

    It also offers :meth:`write_message` to the sync endpoint (as the scope
    extension ``FRAME_WRITER``): the session's frames are encoded already, and
    one fan-out writes thousands of them, so each goes to the transport as a
    header plus the payload, without the ASGI message, the str round trip and
    the websockets frame objects. That is exactly the frame websockets would
    write when no extension was negotiated (the server runs without
    compression); with one, frames take uvicorn's path.

    An idle connection is kept small (thousands of them wait for live query
    updates): the queue of received messages and the ``writable`` flag are a
    :class:`~syncline.sync.waiting.Mailbox` and a
    :class:`~syncline.sync.waiting.Signal` instead of an ``asyncio.Queue`` and
    ``Event`` (five deques, about 4 KiB, per connection), and the handshake's
    request and response (their headers) are let go once the connection is
    accepted.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn calls put_nowait/get/empty on the queue, set/clear/is_set/wait on the flag.
        self.queue = Mailbox()  # type: ignore[assignment]
        self.writable = Signal()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FRAME_WRITER] = self.write_message
            scope["extensions"][FRAME_WRITER_NOW] = self.write_message_now
        # The scope holds what the app needs of the request (path, headers).
        with contextlib.suppress(AttributeError):
            del self.request

    async def write_message(self, *payloads: bytes) -> None:
        """Write text frames (UTF-8 payloads) in one write, honouring the flow control."""
        if not self.writable.is_set():
            await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if self.close_sent or self.conn.state is not State.OPEN or self.conn.extensions:
            # Closing (uvicorn raises ClientDisconnected), or compressed: uvicorn's path.
            for payload in payloads:
                await super().send({"type": "websocket.send", "text": payload.decode()})
            return
        self.transport.write(_frames(payloads))

    def write_message_now(self, *payloads: bytes) -> bool:
        """Write text frames in one write if the socket takes them now, else nothing.

        True if written.
        """
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        self.transport.write(_frames(payloads))
        return True

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.close"
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
            and not self.writable.is_set()
        ):
            code = message.get("code", 1000)
            reason = message.get("reason") or ""
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, self._abort)
            return
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # Written: uvicorn reads the handshake response only before the accept.
            with contextlib.suppress(AttributeError):
                del self.response

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # Break the reference cycles a finished connection would otherwise leave to
        # the cyclic collector (which the server runs rarely, see ``run.py``): the
        # scope's writers are bound methods of this protocol, and websockets' parser
        # is a generator that holds its protocol. Even past the end of stream it
        # stays suspended at its last ``yield`` (websockets never resumes it), so it
        # is closed here: its frame, and with it the reference, goes away.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(FRAME_WRITER, None)
            scope["extensions"].pop(FRAME_WRITER_NOW, None)
        with contextlib.suppress(Exception):  # a parser that already failed is done too
            self.conn.receive_eof()
        self.conn.parser.close()

    def _abort(self) -> None:
        log.info(
            "sync client %s read nothing for %.0f s after its close: connection aborted",
            self.client,
            CLOSE_TIMEOUT_S,
        )
        self.transport.abort()
