"""The asyncio client: :class:`AsyncClient` and its query :class:`Subscription`.

One ``AsyncClient`` owns one WebSocket task (:meth:`AsyncClient._run`) that connects,
replays the client's state after every (re)connect (authentication, the query set, unanswered
mutations) and hands each server message to the state machine in ``_handle``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

import orjson

from syncline.__about__ import __version__
from syncline.client._connection import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CLOSE_TIMEOUT,
    LIVENESS_TIMEOUT,
    OPEN_TIMEOUT,
    ClientClosed,
    Connection,
    ConnectionLost,
    Credentials,
    PendingRequest,
    QueryResult,
    QueryState,
    Reconnect,
    close_reason,
    encode_args,
    fail,
    finish_despite_cancel,
    function_error,
    resolve,
    ws_url,
)
from syncline.errors import AuthError
from syncline.functions.paths import function_path
from syncline.sync.protocol import (
    INITIAL_VERSION,
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
from syncline.values.json import to_json

if TYPE_CHECKING:
    from types import TracebackType

    from websockets.asyncio.client import ClientConnection

__all__ = ["AsyncClient", "Subscription"]

logger = logging.getLogger("syncline.client")


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

    def __init__(self, client: AsyncClient, query: QueryState) -> None:
        self._client = client
        self._query = query
        self._pending: QueryResult | None = None
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

    def _push(self, result: QueryResult) -> None:
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

        self._auth: Credentials | None = None
        if auth:
            self._auth = Credentials("User", auth)
        elif admin_key:
            self._auth = Credentials("Admin", admin_key)
        self._auth_confirmed = self._auth is None
        #: the identity version, on this socket, whose Transition confirms ``_auth``
        self._auth_target: int | None = None
        self._auth_waiters: list[asyncio.Future[None]] = []
        self._synced = False
        self._sync_waiters: list[asyncio.Future[None]] = []

        self._queries: dict[tuple[str, bytes], QueryState] = {}
        self._queries_by_id: dict[int, QueryState] = {}
        self._requests: dict[int, PendingRequest] = {}
        self._next_query_id = 0
        self._next_request_id = 0

        # Per-socket protocol state.
        self._conn: Connection | None = None
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
        value = encode_args(args)
        key = (path, orjson.dumps(to_json(value), option=orjson.OPT_SORT_KEYS))
        query = self._queries.get(key)
        if query is None:
            query = QueryState(self._next_query_id, path, value, key)
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
        await self._set_auth(Credentials("User", token) if token else None)

    async def set_admin_auth(self, admin_key: str, acting_as: dict[str, Any] | None = None) -> None:
        """Authenticate with an admin key, optionally acting as the user ``acting_as``
        (UserIdentityAttributes: ``{"subject": ..., "issuer": ..., "name": ...}``)."""
        await self._set_auth(Credentials("Admin", admin_key, acting_as))

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
            fail(request.future, ClientClosed("The client was closed"))
        self._requests.clear()
        for waiter in (*self._auth_waiters, *self._sync_waiters):
            fail(waiter, ClientClosed("The client was closed"))
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
        request = PendingRequest(
            self._next_request_id, kind, path, encode_args(args), loop.create_future()
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

    async def _set_auth(self, auth: Credentials | None) -> None:
        loop = self._start()
        self._auth = auth
        if self._conn is not None:
            self._authenticate(auth)
            self._auth_confirmed = False
        elif auth is None:
            # The next socket starts unauthenticated: nothing to send or wait for.
            self._auth_confirmed = True
            for waiter in self._auth_waiters:
                resolve(waiter, None)
            return
        else:
            self._auth_confirmed = False
        await self._wait(loop, self._auth_waiters)

    def _release(self, subscription: Subscription) -> None:
        subscription._query.subscribers.discard(subscription)
        self._drop_if_unused(subscription._query)

    def _drop_if_unused(self, query: QueryState) -> None:
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

    def _authenticate(self, auth: Credentials | None) -> None:
        base = self._identity_version
        self._identity_version += 1
        self._auth_target = self._identity_version
        if auth is None:
            self._send(Authenticate(base, "None"))
        else:
            self._send(Authenticate(base, auth.token_type, auth.value, auth.acting_as))

    def _send_request(self, request: PendingRequest) -> None:
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
                resolve(waiter, None)
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
            raise Reconnect("AuthError")
        elif isinstance(msg, FatalError):
            logger.error("Fatal error from the server: %s", msg.error)
            raise Reconnect("FatalError")
        # Ping: its only purpose, resetting the liveness timer, is served by its arrival.

    def _on_transition(self, msg: Transition) -> None:
        if msg.start_version != self._version:
            logger.warning(
                "Transition starts at %s but the client is at %s; reconnecting",
                msg.start_version,
                self._version,
            )
            raise Reconnect("StartVersionMismatch")
        for mod in msg.modifications:
            query = self._queries_by_id.get(mod.query_id)
            if query is None or isinstance(mod, QueryRemoved):
                continue
            if isinstance(mod, QueryUpdated):
                result = QueryResult(mod.value)
            else:
                assert isinstance(mod, QueryFailed)
                result = QueryResult(None, True, mod.error_message, mod.error_data)
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
                resolve(waiter, None)
        if not self._synced and end.query_set >= 1:
            self._synced = True
            for waiter in self._sync_waiters:
                resolve(waiter, None)
        # Query results above are applied first, so a caller resuming from mutation() already
        # finds them in its subscriptions.
        for request in list(self._requests.values()):
            if request.committed_ts is not None and request.committed_ts <= end.ts:
                del self._requests[request.id]
                resolve(request.future, request.result)

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
            fail(request.future, function_error(msg.result, msg.error_data))

    def _on_action_response(self, msg: ActionResponse) -> None:
        request = self._requests.get(msg.request_id)
        if request is None or request.kind != "action":
            return
        del self._requests[request.id]
        self._log_lines("action", request.path, msg.log_lines)
        if msg.success:
            resolve(request.future, msg.result)
        else:
            fail(request.future, function_error(msg.result, msg.error_data))

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
            fail(waiter, AuthError(msg.error))

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
                fail(request.future, ConnectionLost("Connection lost while action was in flight"))

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
                    open_timeout=OPEN_TIMEOUT,
                    close_timeout=CLOSE_TIMEOUT,
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
        conn = Connection(ws)
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
            await finish_despite_cancel(self._close_socket(ws, (reader, writer), abort=abort))
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
        if isinstance(exc, Reconnect):
            return exc.reason, exc.abort
        if isinstance(exc, ConnectionClosed):
            return close_reason(exc), False
        logger.error("Unexpected error in the sync connection; reconnecting", exc_info=exc)
        return "InternalClientError", True

    async def _read(self, conn: Connection) -> str:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                async with asyncio.timeout(self._liveness_timeout):
                    data = await conn.ws.recv()
            except TimeoutError:
                raise Reconnect("InactiveServer", abort=True) from None
            except ConnectionClosed as exc:
                return close_reason(exc)
            try:
                msg = parse_server_message(data)
            except Exception as exc:
                logger.warning("Invalid message from the server (%s): %.200r", exc, data)
                raise Reconnect("ProtocolError") from None
            self._handle(msg)

    @staticmethod
    async def _write(conn: Connection) -> None:
        while True:
            await conn.ws.send(await conn.outbox.get())


# ---------------------------------------------------------------------- synchronous client
