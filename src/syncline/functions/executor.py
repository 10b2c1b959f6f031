"""Running functions: resolve, validate, execute in the right place, report.

* Queries run on the database's read thread pool, each on a fresh snapshot.
* Mutations run on the database's single writer (serialized, group-committed).
* Actions and HTTP actions run on the action loops (``action_loops.py``), never
  on the server's I/O loop.
* User code runs under the execution limits (``limits.py``): a time limit per
  call and the process's memory ceiling.
* Every call goes through :meth:`Executor._call` and yields an :class:`Outcome`:
  the value or the error, the log lines the function printed, the snapshot or
  commit ts, and the read set (queries) or write set (mutations). User errors
  never escape as exceptions here; the edges (sync protocol, HTTP, the Python
  test kit) decide how to report them, with ``outcomes.py`` (the
  :class:`Outcome` itself, error messages and data for callers). A failed call
  is also written to the ``syncline.functions`` log with its request id and
  traceback (``outcomes.log_failure``): the request id is the one the caller
  is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import types
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Mapping,
)
from typing import TYPE_CHECKING, Any

from syncline.clock import Clock
from syncline.errors import (
    ArgumentValidationError,
    FunctionTimeout,
    ReturnsValidationError,
    SynclineError,
)
from syncline.functions import sandbox
from syncline.functions.action_loops import DEFAULT_ACTION_LOOPS, ActionLoops
from syncline.functions.context import ActionCtx, ActionRunner, MutationCtx, QueryCtx
from syncline.functions.limits import ExecutionLimits, Interrupted, Watchdog
from syncline.functions.outcomes import Outcome, expected_failure, log_failure
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.functions.system import SYSTEM_PREFIX, SystemFunctions, is_system_path
from syncline.identity import ANONYMOUS, Admin, Identity, is_admin
from syncline.metrics import UNKNOWN_FUNCTION, observe_call
from syncline.values.json import from_python, object_from_python
from syncline.values.size import NOT_FAST, check_value_limits, copy_within_limits
from syncline.values.validators import ValidationContext, ValidatorError, validate_object

if TYPE_CHECKING:
    from syncline.database.database import Database, ReadResult
    from syncline.database.transaction import RequestKey, Transaction
    from syncline.functions.loader import FunctionRegistry

MAX_ARGS_BYTES = 16 * 1024 * 1024

log = logging.getLogger("syncline.functions")


def normalize_args(args: Any) -> dict[str, Any]:
    """Accept ``{...}`` or the wire's ``[{...}]``; anything else is an argument error."""
    if isinstance(args, list):
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgumentValidationError(
                "Expected to receive a single object as the function's argument, "
                f"got {len(args)} argument(s)"
            )
        args = args[0]
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise ArgumentValidationError(
            f"Function arguments must be an object (dict), got {type(args).__name__}"
        )
    return dict(args)


def validate_args(
    fn: RegisteredFunction, args: dict[str, Any], tx: ValidationContext | None
) -> dict[str, Any]:
    if fn.args is None:
        value = copy_within_limits(args, max_size=MAX_ARGS_BYTES)
        if value is not NOT_FAST:
            return value
    try:
        value = (
            validate_object(fn.args, args, tx) if fn.args is not None else object_from_python(args)
        )
    except ValidatorError as exc:
        raise ArgumentValidationError(f"ArgumentValidationError: {exc.detail}") from None
    except SynclineError as exc:
        raise ArgumentValidationError(f"ArgumentValidationError: {exc}") from None
    check_value_limits(value, max_size=MAX_ARGS_BYTES, what="arguments")
    return value


def validate_result(fn: RegisteredFunction, value: Any, tx: ValidationContext | None) -> Any:
    if fn.returns is not None:
        try:
            value = fn.returns.validate(value, tx)
        except ValidatorError as exc:
            raise ReturnsValidationError(f"ReturnsValidationError: {exc.detail}") from None
    else:
        copy = copy_within_limits(value)
        if copy is not NOT_FAST:
            return copy
        value = from_python(value)
    check_value_limits(value, what="return value")
    return value


CtxMemberFactory = Callable[[str, "Transaction | None", Identity], Any]


class _Replayed:
    """A mutation found already done: its original result and commit ts."""

    __slots__ = ("ts", "value")

    def __init__(self, value: Any, ts: int) -> None:
        self.value = value
        self.ts = ts


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Params:
    """What a handler accepts after ``ctx``, precomputed once per function."""

    __slots__ = ("always_binds", "names", "required", "var_keyword")

    def __init__(self, fn: RegisteredFunction) -> None:
        params = list(inspect.signature(fn.handler).parameters.values())[1:]
        kinds = inspect.Parameter
        self.var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        self.names = frozenset(p.name for p in named)
        self.required = frozenset(p.name for p in named if p.default is kinds.empty)
        # Validated arguments hold every required field of the validator and no other
        # field: when those fit the handler, they always bind and need no check.
        self.always_binds = False
        if fn.args is not None:
            fields = fn.args.fields
            required_fields = {name for name, f in fields.items() if not f.is_optional}
            self.always_binds = (self.var_keyword or self.names.issuperset(fields)) and (
                self.required <= required_fields
            )


def _params(fn: RegisteredFunction) -> _Params:
    params: _Params | None = fn.__dict__.get("_params")
    if params is None:
        params = fn.__dict__["_params"] = _Params(fn)
    return params


def bind_args(fn: RegisteredFunction, args: dict[str, Any]) -> None:
    """Check that the handler accepts these arguments, before running it."""
    params = _params(fn)
    keys = args.keys()
    unexpected = [] if params.var_keyword else sorted(keys - params.names)
    missing = sorted(params.required - keys)
    if unexpected or missing:
        problems = []
        if unexpected:
            problems.append(f"unexpected argument(s) {unexpected}")
        if missing:
            problems.append(f"missing argument(s) {missing}")
        raise ArgumentValidationError(
            f"ArgumentValidationError: {fn.path or fn.__name__} cannot be called with "
            f"arguments {sorted(keys)}: {'; '.join(problems)}"
        )


def bind_validated_args(fn: RegisteredFunction, args: dict[str, Any]) -> None:
    """:func:`bind_args` for arguments that passed ``fn.args``: skipped when they always bind."""
    if not _params(fn).always_binds:
        bind_args(fn, args)


class _Call:
    """One call in progress: its outcome and log collector (see :meth:`Executor._call`).

    A plain context manager rather than a generator one: it runs on every call.
    """

    __slots__ = ("collector", "executor", "outcome", "started")

    def __init__(
        self, executor: Executor, outcome: Outcome, collector: sandbox.LogCollector
    ) -> None:
        self.executor = executor
        self.outcome = outcome
        self.collector = collector
        self.started = 0.0

    def __enter__(self) -> _Call:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        outcome = self.outcome
        suppress = False
        if exc is not None:
            if isinstance(exc, Exception):
                outcome.error = exc
            elif isinstance(exc, Interrupted):
                # Landed after user code returned: still the limit's doing.
                outcome.error = FunctionTimeout(f"{outcome.path} was stopped by its time limit")
            else:
                return False  # cancellation and the like go on
            suppress = True
        outcome.log_lines = self.collector.lines
        seconds = time.perf_counter() - self.started
        outcome.duration_ms = seconds * 1000
        executor = self.executor
        if outcome.path.startswith(SYSTEM_PREFIX) and isinstance(outcome.caller, Admin):
            # The dashboard's own calls: not the deployment's traffic (functions/system.py).
            if outcome.error is not None and executor.log_failures:
                log_failure(outcome)
            return suppress
        if executor.count_calls:
            executor.count(outcome, seconds)
        if outcome.error is not None and executor.log_failures:
            log_failure(outcome)
        for observer in executor.observers:
            try:
                observer(outcome)
            except Exception:  # an observer must never break a call
                log.exception("outcome observer failed")
        return suppress


class _StartedQuery:
    """A query already handed to the read threads (:meth:`Executor.start_query`).

    An awaitable, not a coroutine: one that is dropped unawaited (its live
    query was cancelled) leaves no "never awaited" warning behind.
    """

    __slots__ = ("call", "started")

    def __init__(self, call: _Call, started: asyncio.Future[ReadResult[Any]] | None) -> None:
        self.call = call
        #: None: it failed before it could start (already counted as it failed)
        self.started = started

    def __await__(self) -> Generator[Any, None, Outcome]:
        call, started = self.call, self.started
        if started is not None:
            with call:
                Executor._finish_query(call.outcome, (yield from started.__await__()))
        return call.outcome


class Executor:
    """Runs registered functions against a database, under the execution limits."""

    def __init__(
        self,
        database: Database,
        registry: Callable[[], FunctionRegistry],
        *,
        clock: Clock,
        env: Callable[[], Mapping[str, str]] | None = None,
        log_echo: Callable[[str, str], None] | None = None,
        limits: ExecutionLimits | None = None,
        action_loops: int = DEFAULT_ACTION_LOOPS,
    ) -> None:
        self.database = database
        self._registry = registry
        self.clock = clock
        self._env = env or (lambda: {})
        self._log_echo = log_echo
        self.limits = limits or ExecutionLimits()
        self._watchdog = Watchdog(max_memory_bytes=self.limits.max_memory_bytes)
        self._action_loops = ActionLoops(action_loops)
        self._ctx_members: dict[str, CtxMemberFactory] = {}
        #: functions built into the server (``_system/...``), for admin callers only
        self.system = SystemFunctions()
        #: called with every finished call's Outcome (dev console, log streams)
        self.observers: list[Callable[[Outcome], None]] = []
        #: write failed calls (with request id and traceback) to the ``syncline.functions`` log
        self.log_failures = True
        #: count every call in the ``syncline_function_*`` metrics (:mod:`syncline.metrics`)
        self.count_calls = True

    @property
    def action_timeout_s(self) -> float:
        return self.limits.action_timeout_s

    def interrupt_running(self) -> None:
        """Stop all user code running now (the server is stopping): it fails, it writes nothing.

        Blocking: waits (up to a few seconds) until the interrupted calls left
        user code; call it off the event loop.
        """
        self._watchdog.interrupt_all()

    def close(self) -> None:
        """Stop the action loops and the watchdog (after the server stopped taking calls)."""
        # User code still running is interrupted first: a runaway call must not hold
        # the read pool, the writer or an action loop (and so the shutdown) forever.
        self._watchdog.close()
        self._action_loops.close(timeout=2.0)

    def _call(self, path: str, kind: FunctionKind, identity: Identity) -> _Call:
        """Time one call, collect its logs, turn any error into its outcome, report it.

        ``with self._call(path, kind, identity) as call: ...`` never raises (but
        for cancellation): an error leaving the block becomes
        ``call.outcome.error``. Then the outcome is counted, logged if it
        failed and handed to the observers.
        """
        return _Call(self, Outcome(path, kind, caller=identity), self._collector(path))

    def count(self, outcome: Outcome, seconds: float) -> None:
        """Count a finished call in the metrics, under a bounded ``function`` label.

        A path that names no loaded function (a client's typo) is counted as
        ``unknown``; HTTP actions are labelled by their route.
        """
        kind = outcome.kind
        assert kind is not None
        function = outcome.path
        if kind is not FunctionKind.HTTP_ACTION and function not in self._registry().functions:
            function = UNKNOWN_FUNCTION
        error = outcome.error
        if error is None:
            status = "success"
        else:
            status = "user_error" if expected_failure(error) else "system_error"
        observe_call(kind.value, function, status, seconds)

    def record_cached(self, cached: Outcome, identity: Identity) -> None:
        """Count and report a query answered from the query cache, as if it ran (in no time)."""
        outcome = Outcome(
            cached.path,
            FunctionKind.QUERY,
            value=cached.value,
            ts=cached.ts,
            read_set=cached.read_set,
            caller=identity,
            cached=True,
        )
        if self.count_calls:
            self.count(outcome, 0.0)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer must never break a call
                log.exception("outcome observer failed")

    def register_ctx_member(self, name: str, factory: CtxMemberFactory) -> None:
        """Add ``ctx.<name>`` to functions: ``factory(kind, tx, identity)`` builds it.

        ``kind`` is "query", "mutation" or "action"; ``tx`` is the function's
        transaction (None for actions). Return None to leave the member out
        for that kind (accessing it then raises AttributeError).
        """
        self._ctx_members[name] = factory

    def _add_members(self, ctx: Any, kind: str, tx: Transaction | None, identity: Identity) -> Any:
        for name, factory in self._ctx_members.items():
            member = factory(kind, tx, identity)
            if member is not None:
                setattr(ctx, name, member)
        return ctx

    def mutation_context(
        self, tx: Transaction, identity: Identity, *, seed: int | None = None
    ) -> MutationCtx:
        """The ``ctx`` a mutation running in ``tx`` gets, registered members included.

        For code that runs as a mutation without being a registered function
        (the test kit's ``run``). ``seed`` fixes ``ctx``'s random numbers.
        """
        return MutationCtx(
            tx,
            identity,
            now=self.clock.now_ms(),
            seed=seed,
            env=self._env,
            members=self._ctx_members,
        )

    def resolve(
        self,
        path: str,
        kind: FunctionKind | None,
        identity: Identity,
        *,
        allow_internal: bool = False,
    ) -> RegisteredFunction:
        """The function a caller with this identity may run at ``path`` (any kind if None).

        Internal functions need ``allow_internal`` or the admin key; system
        functions (``_system/...``) the admin key, whatever ``allow_internal``
        says: a user's action or scheduled job cannot reach them.
        """
        if is_system_path(path):
            return self.system.resolve(path, kind=kind, identity=identity)
        return self._registry().resolve(
            path, kind=kind, allow_internal=allow_internal or is_admin(identity)
        )

    def _collector(self, path: str) -> sandbox.LogCollector:
        echo = self._log_echo
        return sandbox.LogCollector(None if echo is None else (lambda line: echo(path, line)))

    def _run_handler(
        self,
        fn: RegisteredFunction,
        kind: str,
        tx: Transaction,
        ctx: Any,
        args: dict[str, Any],
    ) -> Any:
        """The handler as user code: under the time limit, storage calls shielded."""
        run = self._watchdog.start(kind, fn.path or fn.__name__, self.limits.function_timeout_s)
        previous, tx.storage_guard = tx.storage_guard, self._watchdog.shield
        try:
            return self._watchdog.call(run, fn.handler, ctx, **args)
        finally:
            tx.storage_guard = previous

    # ------------------------------------------------------------------ queries

    def _query_body(
        self,
        fn: RegisteredFunction,
        args: dict[str, Any],
        identity: Identity,
        collector: sandbox.LogCollector,
        journal: str | None,
    ) -> Callable[[Transaction], Any]:
        members = self._ctx_members

        def body(tx: Transaction) -> Any:
            tx.journal = journal
            try:
                with sandbox.running("query", collector):
                    validated = validate_args(fn, args, tx)
                    ctx = QueryCtx(
                        tx, identity, now=self.clock.now_ms(), env=self._env, members=members
                    )
                    bind_validated_args(fn, validated)
                    result = self._run_handler(fn, "query", tx, ctx, validated)
                    return validate_result(fn, result, tx)
            except Exception as exc:
                # Returned, not raised: a failed query's read set still matters
                # (the error may go away when the data it read changes).
                return _Failure(exc)

        return body

    def _prepare_query(
        self,
        call: _Call,
        path: str,
        args: Any,
        identity: Identity,
        allow_internal: bool,
        journal: str | None,
    ) -> Callable[[Transaction], Any]:
        fn = self.resolve(path, FunctionKind.QUERY, identity, allow_internal=allow_internal)
        call.outcome.path = fn.path or path
        return self._query_body(fn, normalize_args(args), identity, call.collector, journal)

    @staticmethod
    def _finish_query(outcome: Outcome, result: Any) -> None:
        outcome.ts, outcome.read_set = result.ts, result.read_set
        if isinstance(result.value, _Failure):
            outcome.error = result.value.error
        else:
            outcome.value = result.value
            outcome.journal = result.journal

    async def query(
        self,
        path: str,
        args: Any,
        *,
        identity: Identity = ANONYMOUS,
        allow_internal: bool = False,
        journal: str | None = None,
    ) -> Outcome:
        return await self.start_query(
            path, args, identity=identity, allow_internal=allow_internal, journal=journal
        )

    def start_query(
        self,
        path: str,
        args: Any,
        *,
        identity: Identity = ANONYMOUS,
        allow_internal: bool = False,
        journal: str | None = None,
    ) -> Awaitable[Outcome]:
        """Like :meth:`query`, but handed to the read threads before this returns.

        A read thread can start waking up while the event loop finishes what it
        is doing: a live query re-run, scheduled while a commit is processed,
        starts then rather than when its task first runs. Await the outcome.
        """
        call = self._call(path, FunctionKind.QUERY, identity).__enter__()
        try:
            body = self._prepare_query(call, path, args, identity, allow_internal, journal)
            return _StartedQuery(call, self.database.start_read(body))
        except BaseException as exc:
            if not call.__exit__(type(exc), exc, exc.__traceback__):
                raise
            return _StartedQuery(call, None)

    def query_sync(
        self, path: str, args: Any, *, identity: Identity = ANONYMOUS, allow_internal: bool = False
    ) -> Outcome:
        """Like :meth:`query`, in the calling thread (for CLIs and tests without a loop)."""
        with self._call(path, FunctionKind.QUERY, identity) as call:
            body = self._prepare_query(call, path, args, identity, allow_internal, None)
            self._finish_query(call.outcome, self.database.run_read(body))
        return call.outcome

    # ------------------------------------------------------------------ mutations

    def _mutation_body(
        self,
        fn: RegisteredFunction,
        args: dict[str, Any],
        identity: Identity,
        collector: sandbox.LogCollector,
        extra: Callable[[Transaction, Any], None] | None,
        idempotency_key: RequestKey | None = None,
        check_resent: bool = True,
    ) -> Callable[[Transaction], Any]:
        members = self._ctx_members

        def body(tx: Transaction) -> Any:
            # The database may run a mutation more than once (an optimistic attempt
            # that conflicted): the call's log is its final attempt's.
            collector.lines.clear()
            if idempotency_key is not None and check_resent:
                done = tx.recorded_request(idempotency_key)
                if done is not None:
                    return _Replayed(*done)
            with sandbox.running("mutation", collector):
                validated = validate_args(fn, args, tx)
                ctx = MutationCtx(
                    tx, identity, now=self.clock.now_ms(), env=self._env, members=members
                )
                bind_validated_args(fn, validated)
                result = self._run_handler(fn, "mutation", tx, ctx, validated)
                value = validate_result(fn, result, tx)
            if extra is not None:
                extra(tx, value)
            if idempotency_key is not None:
                tx.record_request(idempotency_key, value)
            return value

        return body

    def _prepare_mutation(
        self,
        call: _Call,
        path: str,
        args: Any,
        identity: Identity,
        allow_internal: bool,
        extra: Callable[[Transaction, Any], None] | None,
        idempotency_key: RequestKey | None = None,
        check_resent: bool = True,
    ) -> Callable[[Transaction], Any]:
        fn = self.resolve(path, FunctionKind.MUTATION, identity, allow_internal=allow_internal)
        call.outcome.path = fn.path or path
        return self._mutation_body(
            fn, normalize_args(args), identity, call.collector, extra, idempotency_key, check_resent
        )

    @staticmethod
    def _finish_mutation(outcome: Outcome, result: Any) -> None:
        outcome.value, outcome.ts = result.value, result.ts
        outcome.read_set, outcome.writes = result.read_set, result.writes
        if isinstance(result.value, _Replayed):
            outcome.value, outcome.ts = result.value.value, result.value.ts

    async def mutation(
        self,
        path: str,
        args: Any,
        *,
        identity: Identity = ANONYMOUS,
        allow_internal: bool = False,
        extra: Callable[[Transaction, Any], None] | None = None,
        idempotency_key: RequestKey | None = None,
        check_resent: bool = True,
    ) -> Outcome:
        """Run a mutation on the writer. ``extra(tx, result)`` runs in its transaction after it.

        With ``idempotency_key`` (a client's session id and request id, and the
        call's fingerprint), a mutation that already succeeded is not run again:
        its recorded result and commit ts are returned (protocol §3.4).
        """
        with self._call(path, FunctionKind.MUTATION, identity) as call:
            body = self._prepare_mutation(
                call, path, args, identity, allow_internal, extra, idempotency_key, check_resent
            )
            self._finish_mutation(call.outcome, await self.database.write(body))
        return call.outcome

    def mutation_sync(
        self,
        path: str,
        args: Any,
        *,
        identity: Identity = ANONYMOUS,
        allow_internal: bool = False,
        extra: Callable[[Transaction, Any], None] | None = None,
    ) -> Outcome:
        """Like :meth:`mutation`, blocking the calling thread (CLIs, tests without a loop)."""
        with self._call(path, FunctionKind.MUTATION, identity) as call:
            body = self._prepare_mutation(call, path, args, identity, allow_internal, extra)
            self._finish_mutation(call.outcome, self.database.write_sync(body))
        return call.outcome

    # ------------------------------------------------------------------ actions

    async def action(
        self, path: str, args: Any, *, identity: Identity = ANONYMOUS, allow_internal: bool = False
    ) -> Outcome:
        """Run an action on an action loop (it may await any I/O, or block only itself)."""
        return await self._on_action_loop(
            self._action(path, args, identity=identity, allow_internal=allow_internal)
        )

    async def _action(
        self, path: str, args: Any, *, identity: Identity, allow_internal: bool
    ) -> Outcome:
        with self._call(path, FunctionKind.ACTION, identity) as call:
            fn = self.resolve(path, FunctionKind.ACTION, identity, allow_internal=allow_internal)
            call.outcome.path = fn.path or path
            ids = _CatalogIds(self.database)
            validated = validate_args(fn, normalize_args(args), ids)
            bind_validated_args(fn, validated)
            ctx = ActionCtx(
                identity,
                _action_runner(self, identity, call.collector),
                clock=self.clock,
                env=self._env(),
            )
            self._add_members(ctx, "action", None, identity)
            with sandbox.running(None, call.collector):
                result = await self._run_action_code(
                    "action", call.outcome.path, fn.handler(ctx, **validated)
                )
            call.outcome.value = validate_result(fn, result, ids)
        return call.outcome

    async def http_action(
        self,
        handler: Callable[[Any, Any], Awaitable[Any]],
        request: Any,
        *,
        path: str,
        identity: Identity = ANONYMOUS,
        prepare_ctx: Callable[[ActionCtx], None] | None = None,
        finish: Callable[[Any], Any] | None = None,
    ) -> Outcome:
        """Run an HTTP action ``handler(ctx, request)`` on an action loop.

        ``ctx`` is an action ctx (registered members included, built for kind
        "action"); ``prepare_ctx(ctx)`` may adjust it first. ``finish`` turns
        the handler's return value into the outcome's value, and its errors
        count as the call's. ``path`` labels the call (``"POST /hook"``).
        Logs are captured as for actions; the action timeout applies. A
        streamed request body is read, and a streamed response body produced,
        on the loops they belong to.
        """
        if not self._action_loops.current():
            bridge_request_body(request, asyncio.get_running_loop())
        outcome = await self._on_action_loop(
            self._http_action(handler, request, path, identity, prepare_ctx, finish)
        )
        return outcome

    async def _http_action(
        self,
        handler: Callable[[Any, Any], Awaitable[Any]],
        request: Any,
        path: str,
        identity: Identity,
        prepare_ctx: Callable[[ActionCtx], None] | None,
        finish: Callable[[Any], Any] | None,
    ) -> Outcome:
        with self._call(path, FunctionKind.HTTP_ACTION, identity) as call:
            ctx = ActionCtx(
                identity,
                _action_runner(self, identity, call.collector),
                clock=self.clock,
                env=self._env(),
            )
            self._add_members(ctx, "action", None, identity)
            if prepare_ctx is not None:
                prepare_ctx(ctx)
            with sandbox.running(None, call.collector):
                result = await self._run_action_code("http_action", path, handler(ctx, request))
            value = finish(result) if finish is not None else result
            bridge_response_body(value, asyncio.get_running_loop())
            call.outcome.value = value
        return call.outcome

    async def _on_action_loop(self, coro: Coroutine[Any, Any, Outcome]) -> Outcome:
        if self._action_loops.current():
            return await coro  # an action's ctx.run_action: already off the I/O loop
        return await self._action_loops.run(coro)

    async def _run_action_code(self, kind: str, path: str, coro: Awaitable[Any]) -> Any:
        """Await user code under the action time limit: cancelled while it waits,
        interrupted (step by step) while it computes."""
        run = self._watchdog.start(kind, path, self.limits.action_timeout_s)
        try:
            return await asyncio.wait_for(
                _stepped(self._watchdog, run, coro), timeout=self.limits.action_timeout_s
            )
        except TimeoutError:
            run.reason = "timeout"
            raise run.error(None) from None


@types.coroutine
def _stepped(watchdog: Watchdog, run: Any, coro: Awaitable[Any]) -> Generator[Any, Any, Any]:
    """Drive ``coro`` one step at a time, each step as user code under ``run``'s limits."""
    inner = coro.__await__()
    send: Any = None
    throw: BaseException | None = None
    try:
        while True:
            try:
                if throw is not None:
                    yielded = watchdog.step(run, inner.throw, throw)
                else:
                    yielded = watchdog.step(run, inner.send, send)
            except StopIteration as stop:
                return stop.value
            send, throw = None, None
            try:
                send = yield yielded
            except BaseException as exc:  # cancellation included: the coroutine decides
                throw = exc
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


def bridge_request_body(request: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Make a streamed request body readable from an action loop: chunks are read on ``loop``.

    ``_source`` / ``_stream`` are the body iterables of ``HttpRequest`` /
    ``HttpResponse`` (``functions/http/``); a test streams both across loops.
    """
    source = getattr(request, "_source", None)
    if source is not None:
        request._source = pull_on(loop, source)


def bridge_response_body(response: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Make a streamed response body produced on ``loop`` (an action loop) readable anywhere."""
    stream = getattr(response, "_stream", None)
    if stream is not None:
        response._stream = pull_on(loop, stream)


async def pull_on(
    loop: asyncio.AbstractEventLoop, source: AsyncIterable[Any]
) -> AsyncIterator[Any]:
    """Iterate ``source`` on ``loop`` (where it belongs) from whatever loop iterates this."""
    iterator = source.__aiter__()
    done = object()

    async def next_item() -> Any:
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            return done

    try:
        while True:
            if asyncio.get_running_loop() is loop:
                item = await next_item()
            else:
                future = asyncio.run_coroutine_threadsafe(next_item(), loop)
                item = await asyncio.wrap_future(future)
            if item is done:
                return
            yield item
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            if asyncio.get_running_loop() is loop:
                await close()
            elif not loop.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop))


class _CatalogIds:
    """Validation context for code outside a transaction (action args): ids by catalog."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def table_name_of_id(self, doc_id: str) -> str | None:
        from syncline.values.ids import table_number_of

        number = table_number_of(doc_id)
        if number is None:
            return None
        info = self._database.catalog.table_by_number(number)
        return info.name if info is not None else None


def _action_runner(
    executor: Executor, identity: Identity, collector: sandbox.LogCollector
) -> ActionRunner:
    """How an action's ``ctx.run_*`` calls run: as its identity, internal functions allowed."""
    from syncline.functions.paths import function_path

    async def runner(kind: str, ref: Any, args: Mapping[str, Any] | None) -> Any:
        target = function_path(ref)
        if kind == "query":
            nested = await executor.query(
                target, dict(args or {}), identity=identity, allow_internal=True
            )
        elif kind == "mutation":
            nested = await executor.mutation(
                target, dict(args or {}), identity=identity, allow_internal=True
            )
        else:
            nested = await executor.action(
                target, dict(args or {}), identity=identity, allow_internal=True
            )
        for line in nested.log_lines:
            collector.add_line(line)
        return nested.unwrap()

    return runner
