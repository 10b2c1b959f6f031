"""Python clients for a Syncline (or Convex) deployment, over the sync protocol's WebSocket.

``AsyncClient`` is the asyncio client; ``Client`` is the same client for synchronous code
(it runs an ``AsyncClient`` on a private event loop in a background thread)::

    import asyncio
    from syncline.client import AsyncClient

    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:3210") as client:
            await client.set_auth(jwt)                      # optional
            task_id = await client.mutation("tasks:create", {"title": "Write docs"})
            print(await client.query("tasks:list"))
            async for tasks in client.subscribe("tasks:list"):
                print(tasks)                                # again on every change

    asyncio.run(main())

    from syncline import api
    from syncline.client import Client

    with Client("http://127.0.0.1:3210") as client:
        client.mutation(api.tasks.create, {"title": "Write docs"})
        for tasks in client.subscribe(api.tasks.list):
            ...

Semantics follow the official clients:

* One WebSocket per client, opened on first use (or by ``connect()``), reconnected with
  exponential backoff (100 ms to 10 s, with jitter) when it is lost or when the server stays
  silent for 30 s. After a reconnect the client re-authenticates, re-subscribes every query
  under its old id and re-sends every unanswered mutation with its original ``requestId``
  (one ``sessionId`` per client object lets the server de-duplicate them). Actions that were
  already sent fail with :class:`ConnectionLost`; they are never run twice.
* ``mutation()`` returns only once the server has sent a Transition at or past the mutation's
  commit timestamp, so a query issued afterwards sees the write (read-your-writes).
* Function failures raise :class:`~syncline.errors.ConvexError` (with ``data``) when the
  function raised one, else :class:`FunctionError` with the server's message.
* Arguments are a dict of values; a Python ``int`` travels as a float64, as with the official
  Python client (use ``syncline.Int64`` for int64).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from syncline.__about__ import __version__
from syncline.errors import AuthError, ConvexError, SynclineError
from syncline.functions.paths import function_path
from syncline.sync.protocol import (
    INITIAL_VERSION,
    NO_ERROR_DATA,
    Action,
    ActionResponse,
    Authenticate,
    AuthErrorMessage,
    Connect,
    FatalError,
    ModifyQuerySet,
    Mutation,
    MutationResponse,
    QueryAdd,
    QueryFailed,
    QueryRemove,
    QueryRemoved,
    QueryUpdated,
    ServerMessage,
    StateVersion,
    Transition,
    encode_client_message,
    parse_server_message,
)
from syncline.values.json import from_python, to_json

if TYPE_CHECKING:
    from types import TracebackType

    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "FunctionError",
    "Subscription",
    "SyncSubscription",
    "ws_url",
]

logger = logging.getLogger("syncline.client")

T = TypeVar("T")

LIVENESS_TIMEOUT = 30.0
"""Seconds without any message from the server before the connection is considered dead."""
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 10.0
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 1.0


class FunctionError(SynclineError):
    """A function failed with an ordinary error; ``message`` is the server's error message."""

    code = "FunctionError"


class ConnectionLost(SynclineError):
    """The connection dropped while an action was running; it may or may not have completed."""

    code = "ConnectionLost"


class ClientClosed(SynclineError):
    """The client was closed before (or while) the call completed."""

    code = "ClientClosed"


def _function_error(message: str, data: Any) -> SynclineError:
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


def _encode_args(args: dict[str, Any] | None) -> Any:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TypeError(f"Function arguments must be a dict, got {type(args).__name__}")
    return from_python(args, path="args")


async def _finish(coro: Coroutine[Any, Any, None]) -> None:
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


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True, slots=True)
class _Auth:
    token_type: Literal["User", "Admin"]
    value: str
    acting_as: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Result:
    """One query result: a value, or a failure (message and, for ConvexError, data)."""

    value: Any = None
    failed: bool = False
    error_message: str = ""
    error_data: Any = NO_ERROR_DATA

    def unwrap(self) -> Any:
        if self.failed:
            # A fresh exception per raise: re-raising one instance would pile up tracebacks.
            raise _function_error(self.error_message, self.error_data)
        return self.value

    def same_as(self, other: _Result) -> bool:
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
class _Query:
    id: int
    path: str
    args: Any
    key: tuple[str, bytes]
    # Weak, so a Subscription the caller drops (break out of ``async for``) can be collected.
    subscribers: weakref.WeakSet[Subscription] = field(default_factory=weakref.WeakSet)
    result: _Result | None = None
    journal: str | None = None
    # Set across a reconnect: the re-subscription's first result is dropped if unchanged.
    stale: bool = False


@dataclass(eq=False, slots=True)
class _Request:
    id: int
    kind: Literal["mutation", "action"]
    path: str
    args: Any
    future: asyncio.Future[Any]
    sent: bool = False
    #: a successful mutation's commit ts, once its MutationResponse arrived
    committed_ts: int | None = None
    result: Any = None


class _Connection:
    __slots__ = ("outbox", "ws")

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        # Messages are queued synchronously as state changes, so their order on the wire is
        # the order of the changes (version numbers must arrive in sequence).
        self.outbox: asyncio.Queue[str] = asyncio.Queue()


class _Reconnect(Exception):
    def __init__(self, reason: str, *, abort: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.abort = abort


def _close_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "closed with code 1006"
    return exc.rcvd.reason or f"closed with code {exc.rcvd.code}"


class Subscription:
    """The successive results of one query, as an async iterator.

    The first item is the current result; each later one is a new result pushed by the
    server. A consumer that falls behind skips intermediate results and gets the newest one.
    If the query fails, ``__anext__`` raises (:class:`~syncline.errors.ConvexError` or
    :class:`FunctionError`) and the subscription stays live: iterating again waits for the
    next result. Iteration ends when the subscription or the client is closed.

    Leaving an ``async for`` loop (``break``, an exception) releases the subscription as soon
    as it is garbage; ``close()`` / ``aclose()`` / ``async with`` release it at once. The query
    is removed from the server when its last subscription is released.
    """

    def __init__(self, client: AsyncClient, query: _Query) -> None:
        self._client = client
        self._query = query
        self._pending: _Result | None = None
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def path(self) -> str:
        return self._query.path

    @property
    def query_id(self) -> int:
        """The server-side query id (shared by subscriptions with equal path and args)."""
        return self._query.id

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._closed:
                raise StopAsyncIteration
            result = self._pending
            if result is not None:
                self._pending = None
                return result.unwrap()
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Stop the subscription (call from the client's event loop)."""
        if not self._closed:
            self._end()
            self._client._release(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _push(self, result: _Result) -> None:
        self._pending = result
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        loop = self._client._loop
        try:
            # May run in any thread (cyclic GC); the client's state belongs to its loop.
            if loop is not None:
                loop.call_soon_threadsafe(self._client._drop_if_unused, self._query)
        except RuntimeError:
            pass  # the loop is closed: there is nothing left to release


class AsyncClient:
    """An asyncio client for one deployment; see the module docstring.

    :param url: the deployment URL, ``http(s)://host[:port][/prefix]`` (``ws(s)://`` also works).
    :param auth: a user token (JWT) to authenticate with, as ``set_auth`` would.
    :param admin_key: an admin key to authenticate with, as ``set_admin_auth`` would.

    Every method must be called from one event loop (the first one used). All awaits are
    cancellable: cancelling ``mutation()`` stops waiting, but the mutation may still run.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: str | None = None,
        admin_key: str | None = None,
        _liveness_timeout: float = LIVENESS_TIMEOUT,
        _backoff_initial: float = BACKOFF_INITIAL,
        _backoff_max: float = BACKOFF_MAX,
    ) -> None:
        if auth is not None and admin_key is not None:
            raise ValueError("Pass either auth= or admin_key=, not both")
        self._url = url
        self._ws_url = ws_url(url)
        self._liveness_timeout = _liveness_timeout
        self._backoff_initial = _backoff_initial
        self._backoff_max = _backoff_max
        # One session for the client's lifetime, so the server can recognise mutations
        # re-sent after a reconnect (it de-duplicates by sessionId and requestId).
        self._session_id = str(uuid.uuid4())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

        self._auth: _Auth | None = None
        if auth:
            self._auth = _Auth("User", auth)
        elif admin_key:
            self._auth = _Auth("Admin", admin_key)
        self._auth_confirmed = self._auth is None
        #: the identity version, on this socket, whose Transition confirms ``_auth``
        self._auth_target: int | None = None
        self._auth_waiters: list[asyncio.Future[None]] = []
        self._synced = False
        self._sync_waiters: list[asyncio.Future[None]] = []

        self._queries: dict[tuple[str, bytes], _Query] = {}
        self._queries_by_id: dict[int, _Query] = {}
        self._requests: dict[int, _Request] = {}
        self._next_query_id = 0
        self._next_request_id = 0

        # Per-socket protocol state.
        self._conn: _Connection | None = None
        self._version: StateVersion = INITIAL_VERSION
        self._query_set_version = 0
        self._identity_version = 0
        self._connection_count = 0
        self._max_observed_ts: int | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def session_id(self) -> str:
        return self._session_id

    # ------------------------------------------------------------------ public API

    async def connect(self) -> None:
        """Open the connection if needed and wait until it is in sync with the server.

        Raises :class:`~syncline.errors.AuthError` if the credentials given to the
        constructor are rejected. Retries forever while the server is unreachable; wrap it in
        ``asyncio.timeout`` to bound the wait.
        """
        loop = self._start()
        if not self._auth_confirmed:
            await self._wait(loop, self._auth_waiters)
        if not self._synced:
            await self._wait(loop, self._sync_waiters)

    async def query(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        """Run a query once: subscribe, take the first result, unsubscribe."""
        subscription = self.subscribe(ref, args)
        try:
            return await subscription.__anext__()
        except StopAsyncIteration:
            raise ClientClosed("The client was closed") from None
        finally:
            subscription.close()

    async def mutation(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        """Run a mutation; returns once its writes are visible to this client's queries."""
        return await self._request("mutation", ref, args)

    async def action(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        """Run an action. Raises :class:`ConnectionLost` if the connection drops meanwhile."""
        return await self._request("action", ref, args)

    def subscribe(self, ref: Any, args: dict[str, Any] | None = None) -> Subscription:
        """Subscribe to a query: ``async for result in client.subscribe(api.tasks.list): ...``.

        Subscriptions with the same path and args share one server-side query.
        """
        self._start()
        path = function_path(ref)
        value = _encode_args(args)
        key = (path, orjson.dumps(to_json(value), option=orjson.OPT_SORT_KEYS))
        query = self._queries.get(key)
        if query is None:
            query = _Query(self._next_query_id, path, value, key)
            self._next_query_id += 1
            self._queries[key] = query
            self._queries_by_id[query.id] = query
            if self._conn is not None:
                self._modify_query_set([QueryAdd(query.id, path, [value])])
        subscription = Subscription(self, query)
        query.subscribers.add(subscription)
        if query.result is not None:
            subscription._push(query.result)
        return subscription

    async def set_auth(self, token: str | None) -> None:
        """Authenticate as a user with ``token`` (a JWT), or log out with ``None``.

        Returns once the server confirmed the new identity; raises
        :class:`~syncline.errors.AuthError` if it rejected the token (the client then
        continues unauthenticated).
        """
        await self._set_auth(_Auth("User", token) if token else None)

    async def set_admin_auth(self, admin_key: str, acting_as: dict[str, Any] | None = None) -> None:
        """Authenticate with an admin key, optionally acting as the user ``acting_as``
        (UserIdentityAttributes: ``{"subject": ..., "issuer": ..., "name": ...}``)."""
        await self._set_auth(_Auth("Admin", admin_key, acting_as))

    async def clear_auth(self) -> None:
        await self._set_auth(None)

    async def close(self) -> None:
        """Close the connection; pending calls raise :class:`ClientClosed`, subscriptions end."""
        if self._closed:
            return
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("This AsyncClient is bound to another event loop")
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                logger.error("The connection task failed", exc_info=task.exception())
        for request in self._requests.values():
            _fail(request.future, ClientClosed("The client was closed"))
        self._requests.clear()
        for waiter in (*self._auth_waiters, *self._sync_waiters):
            _fail(waiter, ClientClosed("The client was closed"))
        for query in self._queries.values():
            for subscription in list(query.subscribers):
                subscription._end()
        self._queries.clear()
        self._queries_by_id.clear()

    async def __aenter__(self) -> AsyncClient:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ calls

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise ClientClosed("The client is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncClient must be used inside a running event loop; "
                "use syncline.Client from synchronous code"
            ) from None
        if self._loop is None:
            self._loop = loop
            self._task = loop.create_task(self._run(), name=f"syncline client {self._ws_url}")
        elif loop is not self._loop:
            raise RuntimeError("This AsyncClient is bound to another event loop")
        return loop

    async def _wait(
        self, loop: asyncio.AbstractEventLoop, waiters: list[asyncio.Future[None]]
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    async def _request(self, kind: Literal["mutation", "action"], ref: Any, args: Any) -> Any:
        loop = self._start()
        path = function_path(ref)
        request = _Request(
            self._next_request_id, kind, path, _encode_args(args), loop.create_future()
        )
        self._next_request_id += 1
        self._requests[request.id] = request
        if self._conn is not None:
            self._send_request(request)
        try:
            return await request.future
        finally:
            # Also on cancellation: nobody waits any more, and a late answer is ignored.
            self._requests.pop(request.id, None)

    async def _set_auth(self, auth: _Auth | None) -> None:
        loop = self._start()
        self._auth = auth
        if self._conn is not None:
            self._authenticate(auth)
            self._auth_confirmed = False
        elif auth is None:
            # The next socket starts unauthenticated: nothing to send or wait for.
            self._auth_confirmed = True
            for waiter in self._auth_waiters:
                _resolve(waiter, None)
            return
        else:
            self._auth_confirmed = False
        await self._wait(loop, self._auth_waiters)

    def _release(self, subscription: Subscription) -> None:
        subscription._query.subscribers.discard(subscription)
        self._drop_if_unused(subscription._query)

    def _drop_if_unused(self, query: _Query) -> None:
        if query.subscribers or self._queries.get(query.key) is not query:
            return
        del self._queries[query.key]
        del self._queries_by_id[query.id]
        if self._conn is not None:
            self._modify_query_set([QueryRemove(query.id)])

    # ------------------------------------------------------------------ sending

    def _send(self, msg: Any) -> None:
        assert self._conn is not None
        self._conn.outbox.put_nowait(encode_client_message(msg))

    def _modify_query_set(self, modifications: list[QueryAdd | QueryRemove]) -> None:
        base = self._query_set_version
        self._query_set_version += 1
        self._send(ModifyQuerySet(base, self._query_set_version, modifications))

    def _authenticate(self, auth: _Auth | None) -> None:
        base = self._identity_version
        self._identity_version += 1
        self._auth_target = self._identity_version
        if auth is None:
            self._send(Authenticate(base, "None"))
        else:
            self._send(Authenticate(base, auth.token_type, auth.value, auth.acting_as))

    def _send_request(self, request: _Request) -> None:
        cls = Mutation if request.kind == "mutation" else Action
        self._send(cls(request.id, request.path, [request.args]))
        request.sent = True

    def _restart(self, last_close_reason: str) -> None:
        """Bring a fresh socket up to the client's state (the server starts from scratch)."""
        self._version = INITIAL_VERSION
        self._query_set_version = 0
        self._identity_version = 0
        self._send(
            Connect(
                self._session_id,
                self._connection_count,
                last_close_reason,
                self._max_observed_ts,
                client_ts=int(time.time() * 1000),
            )
        )
        self._connection_count += 1
        if self._auth is not None:
            self._authenticate(self._auth)
            self._auth_confirmed = False
        else:
            self._auth_target = None
            self._auth_confirmed = True
            for waiter in self._auth_waiters:
                _resolve(waiter, None)
        # Sent even when empty: its Transition tells us the socket is in sync.
        self._modify_query_set(
            [QueryAdd(q.id, q.path, [q.args], journal=q.journal) for q in self._queries.values()]
        )
        for request in sorted(self._requests.values(), key=lambda r: r.id):
            if request.kind == "mutation":
                # A mutation answered already committed; it only waits for a Transition.
                if request.committed_ts is None:
                    self._send_request(request)
            elif not request.sent:
                self._send_request(request)

    # ------------------------------------------------------------------ receiving

    def _handle(self, msg: ServerMessage) -> None:
        if isinstance(msg, Transition):
            self._on_transition(msg)
        elif isinstance(msg, MutationResponse):
            self._on_mutation_response(msg)
        elif isinstance(msg, ActionResponse):
            self._on_action_response(msg)
        elif isinstance(msg, AuthErrorMessage):
            self._on_auth_error(msg)
            raise _Reconnect("AuthError")
        elif isinstance(msg, FatalError):
            logger.error("Fatal error from the server: %s", msg.error)
            raise _Reconnect("FatalError")
        # Ping: its only purpose, resetting the liveness timer, is served by its arrival.

    def _on_transition(self, msg: Transition) -> None:
        if msg.start_version != self._version:
            logger.warning(
                "Transition starts at %s but the client is at %s; reconnecting",
                msg.start_version,
                self._version,
            )
            raise _Reconnect("StartVersionMismatch")
        for mod in msg.modifications:
            query = self._queries_by_id.get(mod.query_id)
            if query is None or isinstance(mod, QueryRemoved):
                continue
            if isinstance(mod, QueryUpdated):
                result = _Result(mod.value)
            else:
                assert isinstance(mod, QueryFailed)
                result = _Result(None, True, mod.error_message, mod.error_data)
            self._log_lines("query", query.path, mod.log_lines)
            query.journal = mod.journal
            stale, query.stale = query.stale, False
            if stale and query.result is not None and query.result.same_as(result):
                continue
            query.result = result
            for subscription in list(query.subscribers):
                subscription._push(result)
        start, end = msg.start_version, msg.end_version
        self._version = end
        self._observe(end.ts)
        if (
            end.identity > start.identity
            and self._auth_target is not None
            and end.identity >= self._auth_target
        ):
            self._auth_confirmed = True
            for waiter in self._auth_waiters:
                _resolve(waiter, None)
        if not self._synced and end.query_set >= 1:
            self._synced = True
            for waiter in self._sync_waiters:
                _resolve(waiter, None)
        # Query results above are applied first, so a caller resuming from mutation() already
        # finds them in its subscriptions.
        for request in list(self._requests.values()):
            if request.committed_ts is not None and request.committed_ts <= end.ts:
                del self._requests[request.id]
                _resolve(request.future, request.result)

    def _on_mutation_response(self, msg: MutationResponse) -> None:
        request = self._requests.get(msg.request_id)
        # Unknown or already answered: a re-sent mutation may be answered twice.
        if request is None or request.kind != "mutation" or request.committed_ts is not None:
            return
        self._log_lines("mutation", request.path, msg.log_lines)
        if msg.success:
            # Resolved by the next Transition at or past the commit ts (read-your-writes).
            request.committed_ts = msg.ts or 0
            request.result = msg.result
            self._observe(request.committed_ts)
        else:
            del self._requests[request.id]
            _fail(request.future, _function_error(msg.result, msg.error_data))

    def _on_action_response(self, msg: ActionResponse) -> None:
        request = self._requests.get(msg.request_id)
        if request is None or request.kind != "action":
            return
        del self._requests[request.id]
        self._log_lines("action", request.path, msg.log_lines)
        if msg.success:
            _resolve(request.future, msg.result)
        else:
            _fail(request.future, _function_error(msg.result, msg.error_data))

    def _on_auth_error(self, msg: AuthErrorMessage) -> None:
        if msg.auth_update_attempted:
            # Only the credentials sent last count; an older, superseded token failing
            # changes nothing (the current one is re-sent after the reconnect).
            rejected = self._auth_target == msg.base_version + 1
        else:
            # Accepted credentials went bad (e.g. the token expired). While a newer token
            # awaits confirmation this is about the old one, so it is ignored, as in JS.
            rejected = self._auth_confirmed
        if not rejected:
            return
        logger.warning("The server rejected the credentials: %s", msg.error)
        # A static token cannot be refreshed: continue unauthenticated rather than loop.
        self._auth = None
        self._auth_confirmed = True
        for waiter in self._auth_waiters:
            _fail(waiter, AuthError(msg.error))

    def _observe(self, ts: int) -> None:
        if self._max_observed_ts is None or ts > self._max_observed_ts:
            self._max_observed_ts = ts

    @staticmethod
    def _log_lines(kind: str, path: str, lines: list[str]) -> None:
        for line in lines:
            logger.info("%s %s: %s", kind, path, line)

    def _on_disconnect(self) -> None:
        self._conn = None
        self._synced = False
        self._auth_target = None
        if self._closed:
            return  # close() fails everything with ClientClosed
        for query in self._queries.values():
            query.stale = query.result is not None
        for request in list(self._requests.values()):
            if request.kind == "action" and request.sent:
                # Re-sending could run it twice; failing it matches the JS client.
                del self._requests[request.id]
                _fail(request.future, ConnectionLost("Connection lost while action was in flight"))

    # ------------------------------------------------------------------ connection

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_max, self._backoff_initial * 2 ** min(attempt, 30))
        return delay * random.uniform(0.5, 1.0)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        reason = "InitialConnect"
        attempt = 0  # consecutive connections that failed before getting in sync
        while True:
            try:
                ws = await connect(
                    self._ws_url,
                    additional_headers={"Convex-Client": f"syncline-{__version__}"},
                    # Transitions legitimately carry many results of up to 16 MiB each.
                    max_size=None,
                    open_timeout=_OPEN_TIMEOUT,
                    close_timeout=_CLOSE_TIMEOUT,
                )
            except Exception as exc:
                logger.info("Could not connect to %s: %s", self._ws_url, exc)
            else:
                try:
                    reason, synced = await self._serve(ws, reason)
                except Exception:
                    # A bug must not silently end the connection task: log it and go on.
                    logger.exception("The sync connection to %s failed", self._ws_url)
                    reason, synced = "InternalClientError", False
                if synced:
                    attempt = 0
                logger.info("Connection to %s lost (%s); reconnecting", self._ws_url, reason)
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _serve(self, ws: ClientConnection, last_close_reason: str) -> tuple[str, bool]:
        """Run one socket until it fails; returns the close reason and whether it got in sync."""
        conn = _Connection(ws)
        self._conn = conn
        self._restart(last_close_reason)
        reader = asyncio.create_task(self._read(conn))
        writer = asyncio.create_task(self._write(conn))
        abort = False
        reason = "unknown"
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, writer):
                if task.done():
                    reason, abort = self._outcome(task)
                    break
        finally:
            synced = self._synced
            self._on_disconnect()
            for task in (reader, writer):
                task.cancel()
            # Runs to the end even when close() cancels us meanwhile, so no task or socket
            # outlives the client.
            await _finish(self._close_socket(ws, (reader, writer), abort=abort))
        return reason, synced

    @staticmethod
    async def _close_socket(
        ws: ClientConnection, tasks: tuple[asyncio.Task[Any], ...], *, abort: bool
    ) -> None:
        await asyncio.wait(tasks)
        if abort:
            ws.transport.abort()
        await ws.close()  # bounded by close_timeout

    @staticmethod
    def _outcome(task: asyncio.Task[Any]) -> tuple[str, bool]:
        from websockets.exceptions import ConnectionClosed

        exc = task.exception()
        if exc is None:
            return str(task.result()), False
        if isinstance(exc, _Reconnect):
            return exc.reason, exc.abort
        if isinstance(exc, ConnectionClosed):
            return _close_reason(exc), False
        logger.error("Unexpected error in the sync connection; reconnecting", exc_info=exc)
        return "InternalClientError", True

    async def _read(self, conn: _Connection) -> str:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                async with asyncio.timeout(self._liveness_timeout):
                    data = await conn.ws.recv()
            except TimeoutError:
                raise _Reconnect("InactiveServer", abort=True) from None
            except ConnectionClosed as exc:
                return _close_reason(exc)
            try:
                msg = parse_server_message(data)
            except Exception as exc:
                logger.warning("Invalid message from the server (%s): %.200r", exc, data)
                raise _Reconnect("ProtocolError") from None
            self._handle(msg)

    @staticmethod
    async def _write(conn: _Connection) -> None:
        while True:
            await conn.ws.send(await conn.outbox.get())


# ---------------------------------------------------------------------- synchronous client


class _Portal:
    """An event loop in a daemon thread that runs coroutines for synchronous callers."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="syncline-client", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; on timeout or interrupt, cancel it."""
        if self._stopped:
            coro.close()
            raise ClientClosed("The client is closed")
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("A syncline.Client cannot be used from its own event loop thread")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop closed since the check above
            coro.close()
            raise ClientClosed("The client is closed") from None
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            # Only the loop's own shutdown cancels work we did not cancel ourselves.
            raise ClientClosed("The client was closed") from None
        except BaseException as exc:
            if not future.done():
                # A timeout or KeyboardInterrupt: stop the work, not just the waiting.
                future.cancel()
                if isinstance(exc, concurrent.futures.TimeoutError):
                    raise TimeoutError(f"The call did not complete within {timeout} s") from None
            raise

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Schedule ``fn`` on the loop without waiting (safe from any thread, even the loop's)."""
        if not self._stopped:
            try:
                self.loop.call_soon_threadsafe(fn)
            except RuntimeError:
                pass  # the loop already closed

    def shutdown(self, client: AsyncClient) -> None:
        if self._stopped:
            return
        if self.in_loop_thread():
            # Reached from garbage collection inside the loop: cannot block, so just schedule.
            self._shutdown_task = self.loop.create_task(self._close_and_stop(client))
            self._stopped = True
            return
        try:
            self.run(self._close_and_stop(client))
        finally:
            self._stopped = True
            self._thread.join()

    async def _close_and_stop(self, client: AsyncClient) -> None:
        try:
            await client.close()
        finally:
            # Refuse new work before the loop starts winding down.
            self._stopped = True
            assert self._stop is not None
            self._stop.set()


class SyncSubscription:
    """The successive results of one query, as a blocking iterator (see :class:`Subscription`).

    ``next()`` blocks until the next result; ``close()`` (from any thread) ends the iteration.
    """

    def __init__(self, portal: _Portal, subscription: Subscription) -> None:
        self._portal = portal
        self._subscription = subscription
        self._closed = False

    @property
    def path(self) -> str:
        return self._subscription.path

    @property
    def query_id(self) -> int:
        return self._subscription.query_id

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            more, value = self._portal.run(self._next())
        except ClientClosed:
            raise StopIteration from None
        if not more:
            raise StopIteration
        return value

    async def _next(self) -> tuple[bool, Any]:
        try:
            return True, await self._subscription.__anext__()
        except StopAsyncIteration:
            return False, None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._portal.call_soon(self._subscription.close)

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()


class Client:
    """A synchronous client; same semantics as :class:`AsyncClient`.

    :param timeout: seconds each call may take before it raises ``TimeoutError`` (and is
        cancelled); ``None`` waits as long as it takes, retrying the connection meanwhile.

    Thread-safe: any thread may call it. It runs an :class:`AsyncClient` on a private event
    loop in a daemon thread, which ``close()`` (or leaving the ``with`` block) stops.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: str | None = None,
        admin_key: str | None = None,
        timeout: float | None = None,
        _liveness_timeout: float = LIVENESS_TIMEOUT,
        _backoff_initial: float = BACKOFF_INITIAL,
        _backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._client = AsyncClient(
            url,
            auth=auth,
            admin_key=admin_key,
            _liveness_timeout=_liveness_timeout,
            _backoff_initial=_backoff_initial,
            _backoff_max=_backoff_max,
        )
        self._timeout = timeout
        self._portal = _Portal()
        # Stops the thread even if close() is never called; holds no reference to self.
        self._finalizer = weakref.finalize(self, self._portal.shutdown, self._client)

    @property
    def url(self) -> str:
        return self._client.url

    def connect(self) -> None:
        self._portal.run(self._client.connect(), self._timeout)

    def query(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.query(ref, args), self._timeout)

    def mutation(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.mutation(ref, args), self._timeout)

    def action(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.action(ref, args), self._timeout)

    def subscribe(self, ref: Any, args: dict[str, Any] | None = None) -> SyncSubscription:
        return SyncSubscription(self._portal, self._portal.run(self._subscribe(ref, args)))

    async def _subscribe(self, ref: Any, args: dict[str, Any] | None) -> Subscription:
        return self._client.subscribe(ref, args)

    def set_auth(self, token: str | None) -> None:
        self._portal.run(self._client.set_auth(token), self._timeout)

    def set_admin_auth(self, admin_key: str, acting_as: dict[str, Any] | None = None) -> None:
        self._portal.run(self._client.set_admin_auth(admin_key, acting_as), self._timeout)

    def clear_auth(self) -> None:
        self._portal.run(self._client.clear_auth(), self._timeout)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
