"""Running functions: resolve, validate, execute in the right place, report.

* Queries run on the database's read thread pool, each on a fresh snapshot.
* Mutations run on the database's single writer (serialized, group-committed).
* Every call yields an :class:`Outcome`: the value or the error, the log lines
  the function printed, the snapshot or commit ts, and the read set (queries)
  or write set (mutations). User errors never escape as exceptions here; the
  edges (sync protocol, HTTP, the Python test kit) decide how to report them.
"""

from __future__ import annotations

import inspect
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncline.clock import Clock
from syncline.errors import (
    ArgumentValidationError,
    ConvexError,
    ReturnsValidationError,
    SynclineError,
)
from syncline.functions import sandbox
from syncline.functions.context import ActionCtx, MutationCtx, QueryCtx
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.identity import ANONYMOUS, Identity, is_admin
from syncline.values.json import from_python, to_json_string
from syncline.values.size import check_value_limits
from syncline.values.validators import ValidatorError

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.reads import ReadSet
    from syncline.database.transaction import Transaction
    from syncline.database.writes import WriteSet
    from syncline.functions.loader import FunctionRegistry

MAX_ARGS_BYTES = 16 * 1024 * 1024


@dataclass
class Outcome:
    """What one function call did."""

    path: str
    kind: FunctionKind | None
    value: Any = None
    error: BaseException | None = None
    log_lines: list[str] = field(default_factory=list)
    #: snapshot ts (query) or commit ts (mutation)
    ts: int | None = None
    read_set: ReadSet | None = None
    writes: WriteSet | None = None
    #: a paginated query's end cursor, to replay the same page extent on re-runs
    journal: str | None = None
    duration_ms: float = 0.0
    _request_id: str | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = os.urandom(8).hex()
        return self._request_id

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


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
    fn: RegisteredFunction, args: dict[str, Any], tx: Transaction | None
) -> dict[str, Any]:
    try:
        value = fn.args.validate(args, tx) if fn.args is not None else from_python(args)
    except ValidatorError as exc:
        raise ArgumentValidationError(f"ArgumentValidationError: {exc.detail}") from None
    except SynclineError as exc:
        raise ArgumentValidationError(f"ArgumentValidationError: {exc}") from None
    check_value_limits(value, max_size=MAX_ARGS_BYTES, what="arguments")
    return value  # type: ignore[return-value]


def validate_result(fn: RegisteredFunction, value: Any, tx: Transaction | None) -> Any:
    if fn.returns is not None:
        try:
            value = fn.returns.validate(value, tx)
        except ValidatorError as exc:
            raise ReturnsValidationError(f"ReturnsValidationError: {exc.detail}") from None
    else:
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

    __slots__ = ("names", "required", "var_keyword")

    def __init__(self, handler: Callable[..., Any]) -> None:
        params = list(inspect.signature(handler).parameters.values())[1:]
        kinds = inspect.Parameter
        self.var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        self.names = frozenset(p.name for p in named)
        self.required = frozenset(p.name for p in named if p.default is kinds.empty)


def bind_args(fn: RegisteredFunction, args: dict[str, Any]) -> None:
    """Check that the handler accepts these arguments, before running it."""
    params = fn.__dict__.get("_params")
    if params is None:
        params = fn.__dict__["_params"] = _Params(fn.handler)
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


def client_log_lines(outcome: Outcome, *, dev: bool) -> list[str]:
    """The log lines a caller may see: all of them in dev, none in production.

    As in Convex, production redacts function logs to clients (they stay in the
    server's own log stream); what a function prints can be private.
    """
    return outcome.log_lines if dev else []


def format_error(exc: BaseException, *, request_id: str, dev: bool) -> tuple[str, Any, bool]:
    """(message, errorData, is_convex_error) for reporting a failed call to a client."""
    if isinstance(exc, ConvexError):
        message = f"[Request ID: {request_id}] Server Error\nUncaught ConvexError: {exc.message}"
        return message, exc.data, True
    if isinstance(exc, SynclineError) and exc.http_status < 500:
        # Errors of the caller's own making: safe and useful to show in full.
        return f"[Request ID: {request_id}] Server Error\n{exc.message}", None, False
    if not dev:
        return f"[Request ID: {request_id}] Server Error", None, False
    name = type(exc).__name__
    frames = _user_frames(exc)
    message = f"[Request ID: {request_id}] Server Error\nUncaught {name}: {exc}"
    if frames:
        message += "\n" + frames
    return message, None, False


def _user_frames(exc: BaseException) -> str:
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)
    lines = [
        f"    at {frame.name} ({frame.filename}:{frame.lineno})"
        for frame in tb
        if "/syncline/" not in frame.filename.replace("\\", "/")
    ]
    return "\n".join(lines[-10:])


class Executor:
    """Runs registered functions against a database."""

    def __init__(
        self,
        database: Database,
        registry: Callable[[], FunctionRegistry],
        *,
        clock: Clock,
        env: Callable[[], Mapping[str, str]] | None = None,
        log_echo: Callable[[str, str], None] | None = None,
        action_timeout_s: float = 600.0,
    ) -> None:
        self.database = database
        self._registry = registry
        self.clock = clock
        self._env = env or (lambda: {})
        self._log_echo = log_echo
        self.action_timeout_s = action_timeout_s
        self._ctx_members: dict[str, CtxMemberFactory] = {}
        #: called with every finished call's Outcome (dev console, log streams)
        self.observers: list[Callable[[Outcome], None]] = []

    def _observe(self, outcome: Outcome) -> Outcome:
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer must never break a call
                import logging

                logging.getLogger("syncline.executor").exception("outcome observer failed")
        return outcome

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
        ctx = MutationCtx(
            tx,
            identity,
            now=self.clock.now_ms(),
            seed=random.getrandbits(64) if seed is None else seed,
            env=self._env(),
        )
        self._add_members(ctx, "mutation", tx, identity)
        return ctx

    def resolve(
        self, path: str, kind: FunctionKind, identity: Identity, *, allow_internal: bool = False
    ) -> RegisteredFunction:
        return self._registry().resolve(
            path, kind=kind, allow_internal=allow_internal or is_admin(identity)
        )

    def _collector(self, path: str) -> sandbox.LogCollector:
        echo = self._log_echo
        return sandbox.LogCollector(None if echo is None else (lambda line: echo(path, line)))

    # ------------------------------------------------------------------ queries

    def _query_body(
        self,
        fn: RegisteredFunction,
        args: dict[str, Any],
        identity: Identity,
        collector: sandbox.LogCollector,
        journal: str | None,
    ) -> Callable[[Transaction], Any]:
        def body(tx: Transaction) -> Any:
            tx.journal = journal
            try:
                with sandbox.running("query", collector):
                    validated = validate_args(fn, args, tx)
                    ctx = QueryCtx(
                        tx,
                        identity,
                        now=self.clock.now_ms(),
                        seed=random.getrandbits(64),
                        env=self._env(),
                    )
                    self._add_members(ctx, "query", tx, identity)
                    bind_args(fn, validated)
                    result = fn.handler(ctx, **validated)
                    return validate_result(fn, result, tx)
            except Exception as exc:
                # Returned, not raised: a failed query's read set still matters
                # (the error may go away when the data it read changes).
                return _Failure(exc)

        return body

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
        started = time.perf_counter()
        outcome = Outcome(path, FunctionKind.QUERY)
        collector = self._collector(path)
        try:
            fn = self.resolve(path, FunctionKind.QUERY, identity, allow_internal=allow_internal)
            outcome.path = fn.path or path
            body = self._query_body(fn, normalize_args(args), identity, collector, journal)
            self._finish_query(outcome, await self.database.read(body))
        except Exception as exc:
            outcome.error = exc
        outcome.log_lines = collector.lines
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return self._observe(outcome)

    def query_sync(
        self, path: str, args: Any, *, identity: Identity = ANONYMOUS, allow_internal: bool = False
    ) -> Outcome:
        """Like :meth:`query`, in the calling thread (for CLIs and tests without a loop)."""
        started = time.perf_counter()
        outcome = Outcome(path, FunctionKind.QUERY)
        collector = self._collector(path)
        try:
            fn = self.resolve(path, FunctionKind.QUERY, identity, allow_internal=allow_internal)
            outcome.path = fn.path or path
            body = self._query_body(fn, normalize_args(args), identity, collector, None)
            self._finish_query(outcome, self.database.run_read(body))
        except Exception as exc:
            outcome.error = exc
        outcome.log_lines = collector.lines
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return self._observe(outcome)

    # ------------------------------------------------------------------ mutations

    def _mutation_body(
        self,
        fn: RegisteredFunction,
        args: dict[str, Any],
        identity: Identity,
        collector: sandbox.LogCollector,
        extra: Callable[[Transaction, Any], None] | None,
        idempotency_key: tuple[str, int] | None = None,
        check_resent: bool = True,
    ) -> Callable[[Transaction], Any]:
        def body(tx: Transaction) -> Any:
            if idempotency_key is not None and check_resent:
                done = tx.recorded_request(*idempotency_key)
                if done is not None:
                    return _Replayed(*done)
            with sandbox.running("mutation", collector):
                validated = validate_args(fn, args, tx)
                ctx = MutationCtx(
                    tx,
                    identity,
                    now=self.clock.now_ms(),
                    seed=random.getrandbits(64),
                    env=self._env(),
                )
                self._add_members(ctx, "mutation", tx, identity)
                bind_args(fn, validated)
                result = fn.handler(ctx, **validated)
                value = validate_result(fn, result, tx)
            if extra is not None:
                extra(tx, value)
            if idempotency_key is not None:
                tx.record_request(*idempotency_key, value)
            return value

        return body

    def _prepare_mutation(
        self,
        path: str,
        args: Any,
        identity: Identity,
        allow_internal: bool,
        extra: Callable[[Transaction, Any], None] | None,
        outcome: Outcome,
        collector: sandbox.LogCollector,
        idempotency_key: tuple[str, int] | None = None,
        check_resent: bool = True,
    ) -> Callable[[Transaction], Any]:
        fn = self.resolve(path, FunctionKind.MUTATION, identity, allow_internal=allow_internal)
        outcome.path = fn.path or path
        return self._mutation_body(
            fn, normalize_args(args), identity, collector, extra, idempotency_key, check_resent
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
        idempotency_key: tuple[str, int] | None = None,
        check_resent: bool = True,
    ) -> Outcome:
        """Run a mutation on the writer. ``extra(tx, result)`` runs in its transaction after it.

        With ``idempotency_key`` (a client's session id and request id), a
        mutation that already succeeded is not run again: its recorded result
        and commit ts are returned (protocol §3.4).
        """
        started = time.perf_counter()
        outcome = Outcome(path, FunctionKind.MUTATION)
        collector = self._collector(path)
        try:
            body = self._prepare_mutation(
                path,
                args,
                identity,
                allow_internal,
                extra,
                outcome,
                collector,
                idempotency_key,
                check_resent,
            )
            self._finish_mutation(outcome, await self.database.write(body))
        except Exception as exc:
            outcome.error = exc
        outcome.log_lines = collector.lines
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return self._observe(outcome)

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
        started = time.perf_counter()
        outcome = Outcome(path, FunctionKind.MUTATION)
        collector = self._collector(path)
        try:
            body = self._prepare_mutation(
                path, args, identity, allow_internal, extra, outcome, collector
            )
            self._finish_mutation(outcome, self.database.write_sync(body))
        except Exception as exc:
            outcome.error = exc
        outcome.log_lines = collector.lines
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return self._observe(outcome)

    async def action(
        self, path: str, args: Any, *, identity: Identity = ANONYMOUS, allow_internal: bool = False
    ) -> Outcome:
        """Run an action on the event loop (it may await any I/O)."""
        outcome = await _run_action(
            self, path, args, identity=identity, allow_internal=allow_internal
        )
        return self._observe(outcome)

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
        """Run an HTTP action ``handler(ctx, request)`` on the event loop.

        ``ctx`` is an action ctx (registered members included, built for kind
        "action"); ``prepare_ctx(ctx)`` may adjust it first. ``finish`` turns
        the handler's return value into the outcome's value, and its errors
        count as the call's. ``path`` labels the call (``"POST /hook"``).
        Logs are captured as for actions; the action timeout applies.
        """
        import asyncio

        started = time.perf_counter()
        outcome = Outcome(path, FunctionKind.HTTP_ACTION)
        collector = self._collector(path)
        try:
            ctx = ActionCtx(
                identity,
                _action_runner(self, identity, collector),
                clock=self.clock,
                env=self._env(),
            )
            self._add_members(ctx, "action", None, identity)
            if prepare_ctx is not None:
                prepare_ctx(ctx)
            with sandbox.running(None, collector):
                result = await asyncio.wait_for(
                    handler(ctx, request), timeout=self.action_timeout_s
                )
            outcome.value = finish(result) if finish is not None else result
        except TimeoutError:
            outcome.error = SynclineError(
                f"HTTP action {path} timed out after {self.action_timeout_s:g} s",
                code="ActionTimeout",
            )
        except Exception as exc:
            outcome.error = exc
        outcome.log_lines = collector.lines
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return self._observe(outcome)


def result_json(outcome: Outcome) -> str:
    """The outcome's value as wire JSON text (for CLIs and logs)."""
    return to_json_string(outcome.value)


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
) -> Callable[[str, Any, Mapping[str, Any] | None], Awaitable[Any]]:
    """How an action's ``ctx.run_*`` calls run: as its identity, internal functions allowed."""
    from syncline.functions.paths import function_path

    async def runner(kind: str, ref: Any, call_args: Mapping[str, Any] | None) -> Any:
        target = function_path(ref)
        if kind == "query":
            nested = await executor.query(
                target, dict(call_args or {}), identity=identity, allow_internal=True
            )
        elif kind == "mutation":
            nested = await executor.mutation(
                target, dict(call_args or {}), identity=identity, allow_internal=True
            )
        else:
            nested = await executor.action(
                target, dict(call_args or {}), identity=identity, allow_internal=True
            )
        for line in nested.log_lines:
            collector.add_line(line)
        return nested.unwrap()

    return runner


async def _run_action(
    executor: Executor,
    path: str,
    args: Any,
    *,
    identity: Identity,
    allow_internal: bool,
) -> Outcome:
    import asyncio

    started = time.perf_counter()
    outcome = Outcome(path, FunctionKind.ACTION)
    collector = executor._collector(path)
    runner = _action_runner(executor, identity, collector)

    try:
        fn = executor.resolve(path, FunctionKind.ACTION, identity, allow_internal=allow_internal)
        outcome.path = fn.path or path
        validated = validate_args(fn, normalize_args(args), _CatalogIds(executor.database))  # type: ignore[arg-type]
        bind_args(fn, validated)
        ctx = ActionCtx(identity, runner, clock=executor.clock, env=executor._env())
        executor._add_members(ctx, "action", None, identity)
        with sandbox.running(None, collector):
            result = await asyncio.wait_for(
                fn.handler(ctx, **validated), timeout=executor.action_timeout_s
            )
        outcome.value = validate_result(fn, result, _CatalogIds(executor.database))  # type: ignore[arg-type]
    except TimeoutError:
        outcome.error = SynclineError(
            f"Action {outcome.path} timed out after {executor.action_timeout_s:g} s",
            code="ActionTimeout",
        )
    except Exception as exc:
        outcome.error = exc
    outcome.log_lines = collector.lines
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome
