"""One client connection speaking the sync protocol.

A :class:`SyncSession` reads client messages in arrival order and keeps the
connection's version chain ``{querySet, identity, ts}``:

* ``ModifyQuerySet`` subscribes/unsubscribes live queries (``baseVersion``
  must equal the last ``newVersion``);
* ``Authenticate`` verifies the token and re-subscribes every query under the
  new identity (``baseVersion`` must equal the number of Authenticates seen);
* ``Mutation`` runs one at a time in arrival order; ``Action`` runs
  concurrently.

What one connection may hold is bounded (:class:`~syncline.sync.limits.ConnectionLimits`):
at the cap of unanswered requests the reader stops reading the socket until
one is answered; a full send queue holds answers back (and so the reader);
too many queries is a FatalError; a client that takes nothing from a full
send queue for a while is dropped with a close reason.

Transitions are built lazily, when the connection is ready to send: each one
moves every query of the client to a single ts within the validity interval
of every live query's result, and lists only the results that changed. A
slow client therefore skips intermediate states instead of queueing them.

Read-your-writes (protocol §3.4): after every MutationResponse a Transition
follows whose ts is at least the mutation's commit ts. While a mutation is in
flight, transitions are capped below its (not yet known) commit ts, so the
client never sees that ts before the response.

The transport is abstract, so the session can be driven by the WebSocket
endpoint or directly by tests: ``send`` takes messages, or ``send_frame``
takes messages' encoded texts, one or more in order, to be written together
(encoded once: the bytes counted against the send queue are the bytes written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline import metrics
from syncline.errors import AuthError
from syncline.functions.outcomes import Outcome, client_log_lines, format_error
from syncline.identity import ANONYMOUS, Identity, User, is_admin
from syncline.live_queries import LiveQuery
from syncline.sync.limits import CLIENT_TOO_SLOW, ConnectionLimits
from syncline.sync.protocol import (
    INITIAL_VERSION,
    NO_ERROR_DATA,
    Action,
    ActionResponse,
    Authenticate,
    AuthErrorMessage,
    Connect,
    Event,
    FatalError,
    ModifyQuerySet,
    Mutation,
    MutationResponse,
    Ping,
    ProtocolError,
    QueryAdd,
    QueryFailed,
    QueryRemoved,
    QueryUpdated,
    ServerMessage,
    StateModification,
    StateVersion,
    Transition,
    encode_server_frame,
    parse_client_message,
)
from syncline.sync.waiting import Mailbox, Signal

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.clock import Clock

log = logging.getLogger("syncline.sync")

PING_INTERVAL_S = 15.0
#: the longest FatalError text sent (and logged)
MAX_ERROR_LENGTH = 1000


class CloseConnection(Exception):
    """End the connection after sending ``message`` (if any)."""

    def __init__(self, message: ServerMessage | None, code: int, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class _QueryState:
    live: LiveQuery
    path: str
    args: list[Any]
    journal: str | None
    sent_digest: bytes | None = None


class SyncSession:
    def __init__(
        self,
        app: Application,
        send: Callable[[ServerMessage], Awaitable[None]] | None,
        *,
        send_frame: Callable[..., Awaitable[None]] | None = None,
        write_frame_now: Callable[..., bool] | None = None,
        ping_interval_s: float = PING_INTERVAL_S,
        limits: ConnectionLimits | None = None,
    ) -> None:
        if (send is None) == (send_frame is None):
            raise TypeError("SyncSession needs exactly one of send and send_frame")
        self.app = app
        self._send = send
        self._send_frame = send_frame
        #: writes frames at once if the socket can take them (False: it wrote nothing)
        self._write_frame_now = write_frame_now
        #: the sender is parked, waiting for a wake-up
        self._parked = False
        #: a Transition built for an immediate write the socket could not take
        self._held: tuple[Transition, bytes] | None = None
        self.ping_interval_s = ping_interval_s
        self.limits = limits or ConnectionLimits()
        self.session_id = str(uuid.uuid4())
        #: a reconnect of an earlier socket (the client may re-send mutations)
        self.reconnected = True
        self.client_clock_skew: float | None = None
        self.version: StateVersion = INITIAL_VERSION
        self.query_set_version = 0
        self.identity_version = 0
        self.identity: Identity = ANONYMOUS
        self.queries: dict[int, _QueryState] = {}
        self._removed: list[int] = []
        self._min_ts = 0
        self._need_transition = False
        self._mutation_cap: int | None = None
        #: responses waiting to be sent, each with its encoded frame
        self._outbox: deque[tuple[ServerMessage, bytes]] = deque()
        self._outbox_bytes = 0
        #: set whenever a send completes (room may have been made in the outbox)
        self._sent = Signal()
        #: loop time the pending send started at (None: no send pending)
        self._sending_since: float | None = None
        self._wake = Signal()
        self._last_sent = 0.0
        #: mutations in arrival order, each with the identity current when it arrived
        self._mutations: Mailbox[tuple[Mutation, Identity, int]] = Mailbox()
        #: runs them, one at a time; started by the first mutation (most sockets send none)
        self._mutator: asyncio.Task[None] | None = None
        #: one slot per mutation accepted and not yet answered (queued or running)
        self._mutation_slots = asyncio.Semaphore(self.limits.max_queued_mutations)
        self._action_slots = asyncio.Semaphore(self.limits.max_inflight_actions)
        #: frame bytes of the requests accepted and not yet answered
        self._request_bytes = _ByteBudget(self.limits.max_request_bytes)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: CloseConnection | None = None
        #: set when the session must end without waiting for the sender (a slow client)
        self._dropped = Signal()
        #: resolved (while ``run`` waits) when the mutation worker ends or the client is dropped
        self._stop: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ driving

    async def run(self, incoming: AsyncIterator[str | bytes]) -> CloseConnection | None:
        """Serve one connection until the client leaves or the session must close.

        Returns how to close the socket (None: the client went away).
        """
        loop = asyncio.get_running_loop()
        metrics.SYNC_SESSIONS.inc()
        reader = loop.create_task(self._reader(incoming), name="syncline-sync-reader")
        sender = loop.create_task(self._sender(), name="syncline-sync-sender")
        stop = self._stop = loop.create_future()
        try:
            await asyncio.wait({reader, sender, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, sender, self._mutator):
                if task is None or not task.done() or task.cancelled():
                    continue
                if task.exception() is not None:
                    exc = task.exception()
                    if task is sender and isinstance(exc, OSError):
                        # ASGI servers raise an OSError for a send on a connection the
                        # client already dropped: nothing failed, nobody to tell.
                        log.debug("sync client went away: %r", exc)
                        continue
                    log.error("sync connection failed", exc_info=exc)
                    if self._closing is None:
                        self._closing = CloseConnection(None, 1011, "InternalServerError")
            if self._closing is not None and not sender.done() and not self._dropped.is_set():
                # Let the sender flush what precedes the close (a FatalError, an AuthError).
                self._wake.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), timeout=5)
        finally:
            pending: set[asyncio.Future[Any]] = {reader, sender, stop, *self._tasks}
            if self._mutator is not None:
                pending.add(self._mutator)
            for future in pending:
                future.cancel()
            metrics.SYNC_SESSIONS.dec()
            metrics.SYNC_SUBSCRIPTIONS.dec(len(self.queries))
            # Release the live queries before awaiting anything: if this coroutine is
            # itself being cancelled, the await below raises and nothing after it runs.
            for state in self.queries.values():
                self.app.live.unsubscribe(self, state.live)
            self.queries.clear()
            self._outbox.clear()
            self._outbox_bytes = 0
            # `wait` (not `gather`): a cancellation of this task surfaces as the
            # canceller's own CancelledError, which anyio cancel scopes recognise.
            await asyncio.wait(pending)
            for future in pending:
                if not future.cancelled():
                    future.exception()  # retrieved: logged above if it mattered
        return self._closing

    async def _reader(self, incoming: AsyncIterator[str | bytes]) -> None:
        try:
            async for frame in incoming:
                await self._handle_frame(frame)
                if self._closing is not None:
                    return
        except CloseConnection as close:
            self._closing = close

    def wake(self) -> None:
        self._wake.set()

    # live-query callbacks (Subscriber protocol)

    def live_query_changed(self, query: LiveQuery) -> None:
        if self._may_write_now():
            self._push_transition()
        else:
            self._wake.set()

    def _may_write_now(self) -> bool:
        """Whether a frame may be written here, not by the sender task: it is parked
        with nothing queued or held, so nothing would be overtaken."""
        return (
            self._parked
            and self._write_frame_now is not None
            and not self._wake.is_set()
            and not self._outbox
            and self._held is None
            and self._closing is None
            and not self._dropped.is_set()
        )

    def _push_transition(self) -> None:
        """Build and write the Transition right here, without waking the sender task.

        Only while the sender is parked with nothing queued, so nothing is
        overtaken: one commit reaching thousands of sessions costs no task
        switch per session. Anything unusual (an expired token, a socket that
        cannot take the frame) goes back to the sender.
        """
        try:
            transition = self.build_transition()
        except CloseConnection:
            self._wake.set()  # the sender builds it again and closes
            return
        if transition is None:
            return
        frame = encode_server_frame(transition)
        assert self._write_frame_now is not None
        if self._write_frame_now(frame):
            self._last_sent = self.app.clock.monotonic()
        else:
            self._held = (transition, frame)
            self._wake.set()

    def live_query_split(self, query: LiveQuery) -> None:
        for state in self.queries.values():
            if state.live is query:
                state.journal = query.journal  # a page it pinned stays pinned
                state.live = self.app.live.subscribe(
                    self, state.path, state.args, identity=self.identity, journal=state.journal
                )
        self._wake.set()

    # ------------------------------------------------------------------ incoming

    async def _handle_frame(self, frame: str | bytes) -> None:
        try:
            message = parse_client_message(frame)
        except ProtocolError as exc:
            self._fatal(str(exc))
            return
        if isinstance(message, Connect):
            self._on_connect(message)
        elif isinstance(message, ModifyQuerySet):
            self._on_modify_query_set(message)
        elif isinstance(message, Authenticate):
            await self._on_authenticate(message)
        elif isinstance(message, Mutation):
            # Backpressure: at the cap, stop reading until a mutation is answered.
            await self._mutation_slots.acquire()
            await self._request_bytes.acquire(len(frame))
            self._mutations.put_nowait((message, self.identity, len(frame)))
            if self._mutator is None:
                self._mutator = asyncio.get_running_loop().create_task(
                    self._mutation_worker(), name="syncline-sync-mutations"
                )
                self._mutator.add_done_callback(self._stop_running)
        elif isinstance(message, Action):
            await self._action_slots.acquire()
            await self._request_bytes.acquire(len(frame))
            self._spawn(self._run_action(message, self.identity, len(frame)))
        elif isinstance(message, Event):
            pass  # client telemetry: accepted and ignored

    async def _enqueue(self, message: ServerMessage) -> None:
        """Queue a response, waiting for room; drop the client if it stopped reading."""
        frame = encode_server_frame(message)
        size = len(frame)
        limits = self.limits
        loop = asyncio.get_running_loop()
        while self._outbox and self._outbox_bytes + size > limits.max_send_queue_bytes:
            if self._dropped.is_set():
                return
            since = self._sending_since
            stalled = 0.0 if since is None else loop.time() - since
            if stalled >= limits.send_stall_timeout_s:
                self._drop_slow_client()
                return
            self._sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sent.wait(), limits.send_stall_timeout_s - stalled)
        if self._dropped.is_set():
            return
        self._outbox.append((message, frame))
        self._outbox_bytes += size
        self._wake.set()

    def _drop_slow_client(self) -> None:
        log.warning(
            "dropping sync client %s: %d bytes of responses queued and nothing taken for %.0f s",
            self.session_id,
            self._outbox_bytes,
            self.limits.send_stall_timeout_s,
        )
        self._outbox.clear()
        self._outbox_bytes = 0
        self._closing = CloseConnection(
            None,
            1013,
            f"{CLIENT_TOO_SLOW}: over {self.limits.max_send_queue_bytes} bytes of messages "
            "queued unread",
        )
        self._dropped.set()
        self._sent.set()  # release every waiting producer
        self._stop_running()

    def _fatal(self, error: str) -> None:
        if len(error) > MAX_ERROR_LENGTH:  # messages may quote client input
            error = f"{error[:MAX_ERROR_LENGTH]}... ({len(error)} characters)"
        log.warning("closing sync connection: %s", error)
        self._closing = CloseConnection(FatalError(error), 1000, "BadRequest")

    def _on_connect(self, message: Connect) -> None:
        self.session_id = message.session_id
        self.reconnected = message.connection_count > 0
        if message.client_ts:
            self.client_clock_skew = message.client_ts - self.app.clock.now_ms()
        observed = message.max_observed_timestamp
        if observed is not None and observed > self.app.live.processed_ts:
            # Our timestamps never go backwards; a larger one came from another
            # deployment (or a reset database). Serving on is harmless: versions
            # restart per socket.
            log.warning(
                "client %s has seen ts %d, newer than this server's %d",
                self.session_id,
                observed,
                self.app.live.processed_ts,
            )

    def _on_modify_query_set(self, message: ModifyQuerySet) -> None:
        if message.base_version != self.query_set_version:
            self._fatal(
                f"BaseVersionMismatch: ModifyQuerySet baseVersion {message.base_version} does not "
                f"match the current query set version {self.query_set_version}"
            )
            return
        if message.new_version <= message.base_version:
            self._fatal(
                f"ModifyQuerySet newVersion {message.new_version} must be greater than "
                f"baseVersion {message.base_version}"
            )
            return
        count = peak = len(self.queries)
        for modification in message.modifications:
            count += 1 if isinstance(modification, QueryAdd) else -1
            peak = max(peak, count)
        if peak > self.limits.max_queries:
            self._fatal(
                f"TooManyQueries: this ModifyQuerySet would subscribe {peak} queries on one "
                f"connection; the limit is {self.limits.max_queries}"
            )
            return
        for modification in message.modifications:
            if isinstance(modification, QueryAdd):
                if modification.query_id in self.queries:
                    self._fatal(f"Query id {modification.query_id} was added twice")
                    return
                live = self.app.live.subscribe(
                    self,
                    modification.udf_path,
                    modification.args,
                    identity=self.identity,
                    journal=modification.journal,
                )
                self.queries[modification.query_id] = _QueryState(
                    live, modification.udf_path, modification.args, modification.journal
                )
                metrics.SYNC_SUBSCRIPTIONS.inc()
            else:
                state = self.queries.pop(modification.query_id, None)
                if state is None:
                    raise CloseConnection(
                        None, 1011, f"InternalServerError: unknown query id {modification.query_id}"
                    )
                self.app.live.unsubscribe(self, state.live)
                metrics.SYNC_SUBSCRIPTIONS.dec()
                self._removed.append(modification.query_id)
        self.query_set_version = message.new_version
        self._wake.set()

    async def _on_authenticate(self, message: Authenticate) -> None:
        if message.base_version != self.identity_version:
            self._fatal(
                f"Authenticate baseVersion {message.base_version} does not match the identity "
                f"version {self.identity_version}"
            )
            return
        try:
            identity = await self.app.authenticate(
                message.token_type, message.value, message.impersonating
            )
        except AuthError as exc:
            log.info("rejected token on sync connection %s: %s", self.session_id, exc)
            self._closing = CloseConnection(
                AuthErrorMessage(str(exc), message.base_version, True), 1000, "AuthError"
            )
            return
        self.identity = identity
        self.identity_version += 1
        # Every query runs again as the new caller (sharing where it does not read auth).
        for state in self.queries.values():
            old = state.live
            state.journal = old.journal  # a page it pinned stays pinned
            state.live = self.app.live.subscribe(
                self, state.path, state.args, identity=identity, journal=state.journal
            )
            if state.live is not old:  # a shared query stays the same live query
                self.app.live.unsubscribe(self, old)
        self._wake.set()

    def _check_expiry(self, identity: Identity | None = None) -> None:
        """Raise the AuthError close if ``identity`` (default: the current one) has expired."""
        identity = self.identity if identity is None else identity
        expires = identity.expires_at_ms if isinstance(identity, User) else None
        if expires is not None and self.app.clock.now_ms() >= expires:
            raise CloseConnection(
                AuthErrorMessage(
                    "Token expired: sign in again (the JWT's `exp` has passed)",
                    self.identity_version,
                    False,
                ),
                1000,
                "AuthError",
            )

    # ------------------------------------------------------------------ mutations and actions

    def _stop_running(self, task: asyncio.Task[None] | None = None) -> None:
        """End ``run``'s wait: the client was dropped, or the mutation worker ended."""
        if task is not None and task.cancelled():
            return  # cancelled by run() itself, on its way out
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, CloseConnection):
            self._closing = exc
            self._wake.set()

    @property
    def _show_details(self) -> bool:
        """Full errors and function logs: in dev, and to the deployment's operator."""
        return self.app.dev or is_admin(self.identity)

    def _logs(self, outcome: Outcome) -> list[str]:
        return client_log_lines(outcome, dev=self._show_details)

    def _failure(self, outcome: Outcome) -> tuple[str, Any]:
        assert outcome.error is not None
        message, data, is_convex = format_error(
            outcome.error, request_id=outcome.request_id, dev=self._show_details
        )
        return message, (data if is_convex else NO_ERROR_DATA)

    async def _mutation_worker(self) -> None:
        while True:
            message, identity, size = await self._mutations.get()
            try:
                await self._run_mutation(message, identity)
            finally:
                self._mutation_slots.release()
                self._request_bytes.release(size)
            if self._closing is not None:
                return

    async def _run_mutation(self, message: Mutation, identity: Identity) -> None:
        try:
            self._check_expiry(identity)
        except CloseConnection as close:
            self._closing = close
            self._wake.set()
            return
        # Until the response is queued, keep transitions below the commit ts.
        self._mutation_cap = self.app.live.processed_ts
        try:
            outcome = await self.app.session_mutation(
                message.udf_path,
                message.args,
                identity=identity,
                session_id=self.session_id,
                request_id=message.request_id,
                maybe_resent=self.reconnected,
            )
            if outcome.error is None:
                response = MutationResponse(
                    message.request_id, True, outcome.value, outcome.ts, self._logs(outcome)
                )
                self._min_ts = max(self._min_ts, outcome.ts or 0)
            else:
                error, data = self._failure(outcome)
                response = MutationResponse(
                    message.request_id, False, error, None, self._logs(outcome), data
                )
            if self._respond_now(response):
                return
            await self._enqueue(response)
        finally:
            self._mutation_cap = None
        # The backend sends a Transition after every mutation, success or not.
        self._need_transition = True
        self._wake.set()

    def _respond_now(self, response: MutationResponse) -> bool:
        """Write the response and its Transition right here, without waking the sender.

        Only while :meth:`_may_write_now`; one write holds both. False (nothing
        done) otherwise: the response is queued as usual. A socket that cannot
        take the write now gets both queued, in order.
        """
        if not self._may_write_now():
            return False
        # The response is on its way: no cap any more, and a Transition is owed.
        self._mutation_cap = None
        self._need_transition = True
        try:
            transition = self.build_transition()
        except CloseConnection:
            return False  # queued as usual; the sender builds it again and closes
        metrics.flush_fanout()
        frame = encode_server_frame(response)
        if transition is None:  # a result is pending: the sender sends it when it is in
            batch: list[tuple[ServerMessage, bytes]] = [(response, frame)]
            self._wake.set()
        else:
            batch = [(response, frame), (transition, encode_server_frame(transition))]
        assert self._write_frame_now is not None  # (_may_write_now)
        if self._write_frame_now(*[frame for _, frame in batch]):
            self._last_sent = self.app.clock.monotonic()
            return True
        for item in batch:
            self._outbox.append(item)
            self._outbox_bytes += len(item[1])
        self._wake.set()
        return True

    async def _run_action(self, message: Action, identity: Identity, size: int) -> None:
        """Run an action; its slot (taken by the reader) is released when it ends."""
        try:
            self._check_expiry(identity)
            outcome = await self.app.executor.action(
                message.udf_path, message.args, identity=identity
            )
            if outcome.error is None:
                response = ActionResponse(
                    message.request_id, True, outcome.value, self._logs(outcome)
                )
            else:
                error, data = self._failure(outcome)
                response = ActionResponse(
                    message.request_id, False, error, self._logs(outcome), data
                )
            await self._enqueue(response)
        finally:
            self._action_slots.release()
            self._request_bytes.release(size)

    # ------------------------------------------------------------------ outgoing

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self.app.clock  # keepalive timing: a test's ManualClock drives the Pings
        outbox = self._outbox

        async def send(batch: list[tuple[ServerMessage, bytes | None]]) -> None:
            self._sending_since = loop.time()
            await self._deliver(batch)
            self._sending_since = None
            self._last_sent = clock.monotonic()
            self._sent.set()

        self._last_sent = clock.monotonic()  # the keepalive interval starts at connect
        pinger = _pinger(clock)
        pinger.add(self)
        try:
            while True:
                # What is queued and the Transition that follows it leave in one write
                # (a MutationResponse and its Transition: one send, one TCP segment).
                batch: list[tuple[ServerMessage, bytes | None]] = []
                if self._held is not None:
                    batch.append(self._held)
                    self._held = None
                taken = list(outbox)
                batch.extend(taken)
                closing: CloseConnection | None = None
                if self._closing is None:
                    # Cleared before building: a wake-up during the build or the send
                    # below is seen by the check after it, never lost.
                    self._wake.clear()
                    try:
                        transition = self.build_transition()
                    except CloseConnection as close:
                        closing, transition = close, None  # after what is queued
                    metrics.flush_fanout()
                    if transition is not None:
                        batch.append((transition, None))
                if batch:
                    await send(batch)
                    # Counted against the send queue until written (the queue may have
                    # been emptied meanwhile, by a drop).
                    for item in taken:
                        if not outbox or outbox[0] is not item:
                            break
                        outbox.popleft()
                        self._outbox_bytes -= len(item[1])
                if closing is not None:
                    raise closing
                if self._closing is not None:
                    if outbox:
                        continue
                    if self._closing.message is not None:
                        await self._deliver([(self._closing.message, None)])
                    return
                if outbox or self._wake.is_set():
                    continue
                # Keepalive: a Ping once nothing was *sent* for an interval. Wake-ups
                # that send nothing (a re-run with an unchanged result) do not count.
                if clock.monotonic() - self._last_sent >= self.ping_interval_s:
                    await send([(Ping(), None)])
                    continue
                self._parked = True
                try:
                    await self._wake.wait()
                finally:
                    self._parked = False
        except CloseConnection as close:
            if close.message is not None:
                with contextlib.suppress(Exception):
                    await self._deliver([(close.message, None)])
            self._closing = close
        finally:
            pinger.discard(self)

    async def _deliver(self, batch: list[tuple[ServerMessage, bytes | None]]) -> None:
        """Hand messages to the transport in order, each encoded at most once."""
        if self._send_frame is not None:
            await self._send_frame(
                *[
                    encode_server_frame(message) if frame is None else frame
                    for message, frame in batch
                ]
            )
        else:
            assert self._send is not None
            for message, _ in batch:
                await self._send(message)

    def build_transition(self) -> Transition | None:
        """The next Transition, or None if nothing needs sending or a result is pending."""
        # Runs for every session a commit reaches: plain comparisons, one pass when
        # the results are ready.
        live = self.app.live
        processed = live.processed_ts
        version = self.version
        min_ts = self._min_ts
        low = version.ts if version.ts >= min_ts else min_ts
        cap = self._mutation_cap
        high = processed if cap is None or cap >= processed else cap
        queries = self.queries
        for state in queries.values():
            query = state.live
            if query.result is None:
                return None  # its first run is under way; it will wake us
            if query.valid_from > low:
                low = query.valid_from
            invalid_at = query.invalid_at
            if invalid_at is not None and invalid_at - 1 < high:
                high = invalid_at - 1
        if low > high:
            if low > processed:
                live.wait_for_ts(self.wake)  # commit processing is behind; it will catch up
            return None
        changed = (
            self.query_set_version != version.query_set or self.identity_version != version.identity
        )
        modifications: list[StateModification] = [QueryRemoved(qid) for qid in self._removed]
        for query_id, state in queries.items():
            result = state.live.result
            assert result is not None
            if result.digest == state.sent_digest:
                continue
            if result.ok:
                modifications.append(
                    QueryUpdated(query_id, result.value, result.log_lines, result.journal)
                )
            else:
                modifications.append(
                    QueryFailed(
                        query_id,
                        result.error_message or "",
                        result.log_lines,
                        result.journal,
                        result.error_data,
                    )
                )
        if not (modifications or changed or self._need_transition or min_ts > version.ts):
            return None
        if modifications:
            self._check_expiry()
            if not changed:
                metrics.observe_fanout(high)  # new results of a commit, not of a new query
        end = StateVersion(self.query_set_version, self.identity_version, high)
        transition = Transition(
            version,
            end,
            modifications,
            client_clock_skew=self.client_clock_skew,
            server_ts=self.app.clock.now_ns(),
        )
        for state in queries.values():
            result = state.live.result
            assert result is not None
            state.sent_digest = result.digest
        if self._removed:
            self._removed.clear()
        self._need_transition = False
        self.version = end
        return transition


class _ByteBudget:
    """Bytes held by accepted requests: ``acquire`` waits while the cap would be passed.

    One request is always admitted when nothing is held, whatever its size
    (frames are capped by the WebSocket message limit anyway).
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self._freed = Signal()

    async def acquire(self, size: int) -> None:
        while self.used and self.used + size > self.cap:
            self._freed.clear()
            await self._freed.wait()
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        self._freed.set()


class _Pinger:
    """One timer per event loop (and clock) for the keepalive Pings of all its sessions.

    A per-session ``wait_for(..., timeout)`` would create a task and a timer
    on every wake-up of every session: costly when one commit wakes thousands.
    Instead this ticker wakes the sessions that have been quiet for their ping
    interval, and each sends its Ping.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sessions: set[SyncSession] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, session: SyncSession) -> None:
        self.sessions.add(session)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._tick())

    def discard(self, session: SyncSession) -> None:
        self.sessions.discard(session)
        if not self.sessions and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _tick(self) -> None:
        while self.sessions:
            shortest = min(session.ping_interval_s for session in self.sessions)
            await self.clock.sleep(min(1.0, shortest / 4))
            now = self.clock.monotonic()
            for session in list(self.sessions):
                if now - session._last_sent >= session.ping_interval_s:
                    session.wake()


_PINGERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Clock, _Pinger]] = (
    weakref.WeakKeyDictionary()
)


def _pinger(clock: Clock) -> _Pinger:
    """The ticker of the running loop for sessions timed by ``clock``."""
    per_clock = _PINGERS.setdefault(asyncio.get_running_loop(), {})
    pinger = per_clock.get(clock)
    if pinger is None:
        pinger = per_clock[clock] = _Pinger(clock)
    return pinger


__all__ = ["CloseConnection", "SyncSession"]
