"""What the clients keep per connection, query and request, and the errors they raise.

Shared by :mod:`syncline.client._async` and :mod:`syncline.client._sync`: the sync
endpoint of a deployment URL, argument encoding, timing constants, the client errors,
and the small records the protocol state machine keeps for each query and request.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from syncline.errors import ConvexError, SynclineError
from syncline.sync.protocol import NO_ERROR_DATA
from syncline.values.json import from_python, to_json

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed

    from syncline.client._async import Subscription

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "CLOSE_TIMEOUT",
    "LIVENESS_TIMEOUT",
    "OPEN_TIMEOUT",
    "ClientClosed",
    "Connection",
    "ConnectionLost",
    "Credentials",
    "FunctionError",
    "PendingRequest",
    "QueryResult",
    "QueryState",
    "Reconnect",
    "close_reason",
    "encode_args",
    "fail",
    "finish_despite_cancel",
    "function_error",
    "resolve",
    "ws_url",
]

LIVENESS_TIMEOUT = 30.0
"""Seconds without any message from the server before the connection is considered dead."""
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 10.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 1.0


class FunctionError(SynclineError):
    """A function failed with an ordinary error; ``message`` is the server's error message."""

    code = "FunctionError"


class ConnectionLost(SynclineError):
    """The connection dropped while an action was running; it may or may not have completed."""

    code = "ConnectionLost"


class ClientClosed(SynclineError):
    """The client was closed before (or while) the call completed."""

    code = "ClientClosed"


def function_error(message: str, data: Any) -> SynclineError:
    if data is NO_ERROR_DATA:
        return FunctionError(message)
    error = ConvexError(data)
    error.add_note(message)
    return error


def ws_url(url: str) -> str:
    """The sync endpoint for a deployment URL: ``http://h:3210/x`` -> ``ws://h:3210/x/api/sync``.

    Unlike the official Python client, a path prefix is kept (as the JS client does), so a
    deployment behind a reverse proxy at ``https://example.com/backend`` works.
    """
    scheme, sep, rest = url.partition("://")
    schemes = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}
    if not sep or scheme.lower() not in schemes or not rest.strip("/"):
        raise ValueError(f"Invalid deployment URL {url!r}: expected http(s)://host[:port][/path]")
    rest = rest.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return f"{schemes[scheme.lower()]}://{rest}/api/sync"


def encode_args(args: dict[str, Any] | None) -> Any:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TypeError(f"Function arguments must be a dict, got {type(args).__name__}")
    return from_python(args, path="args")


async def finish_despite_cancel(coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` to completion even if cancelled meanwhile; then re-raise the cancellation."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True, slots=True)
class Credentials:
    token_type: Literal["User", "Admin"]
    value: str
    acting_as: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query result: a value, or a failure (message and, for ConvexError, data)."""

    value: Any = None
    failed: bool = False
    error_message: str = ""
    error_data: Any = NO_ERROR_DATA

    def unwrap(self) -> Any:
        if self.failed:
            # A fresh exception per raise: re-raising one instance would pile up tracebacks.
            raise function_error(self.error_message, self.error_data)
        return self.value

    def same_as(self, other: QueryResult) -> bool:
        if self.failed or other.failed:
            return (self.failed, self.error_message, self._data()) == (
                other.failed,
                other.error_message,
                other._data(),
            )
        # Compared in wire form: NaN equals itself there, and 1.0 differs from Int64(1).
        return orjson.dumps(to_json(self.value)) == orjson.dumps(to_json(other.value))

    def _data(self) -> bytes | None:
        return None if self.error_data is NO_ERROR_DATA else orjson.dumps(to_json(self.error_data))


@dataclass(eq=False, slots=True)
class QueryState:
    id: int
    path: str
    args: Any
    key: tuple[str, bytes]
    # Weak, so a Subscription the caller drops (break out of ``async for``) can be collected.
    subscribers: weakref.WeakSet[Subscription] = field(default_factory=weakref.WeakSet)
    result: QueryResult | None = None
    journal: str | None = None
    # Set across a reconnect: the re-subscription's first result is dropped if unchanged.
    stale: bool = False


@dataclass(eq=False, slots=True)
class PendingRequest:
    id: int
    kind: Literal["mutation", "action"]
    path: str
    args: Any
    future: asyncio.Future[Any]
    sent: bool = False
    #: a successful mutation's commit ts, once its MutationResponse arrived
    committed_ts: int | None = None
    result: Any = None


class Connection:
    __slots__ = ("outbox", "ws")

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        # Messages are queued synchronously as state changes, so their order on the wire is
        # the order of the changes (version numbers must arrive in sequence).
        self.outbox: asyncio.Queue[str] = asyncio.Queue()


class Reconnect(Exception):
    def __init__(self, reason: str, *, abort: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.abort = abort


def close_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "closed with code 1006"
    return exc.rcvd.reason or f"closed with code {exc.rcvd.code}"
