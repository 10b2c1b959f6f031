"""Test your Syncline functions with the real engine, in-process.

::

    from syncline.testing import TestBackend
    from syncline import api

    def test_create_task(tmp_path):
        with TestBackend("functions") as t:
            t.mutation(api.tasks.create, {"title": "write tests"})
            assert [x["title"] for x in t.query(api.tasks.list)] == ["write tests"]

``TestBackend`` runs your functions folder on a temporary SQLite database
(deleted on close) with a :class:`~syncline.clock.ManualClock`, so time only
moves when the test says so (``t.clock.advance(ms)``). Nothing is mocked: it
is the same engine that ``syncline dev`` runs. Calls raise the function's
error (a :class:`~syncline.ConvexError` keeps its ``data``); internal
functions are callable, as from the dashboard.

Scheduled functions and cron jobs run only when the test says so:
``t.advance(ms)`` moves the clock and runs what comes due on the way,
``t.run_scheduled_functions()`` runs what is due now, and
``t.finish_scheduled_functions()`` runs everything scheduled (like
convex-test's ``finishAllScheduledFunctions``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from syncline.application import Application
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.database.transaction import Transaction
from syncline.files.service import open_file_storage
from syncline.functions.context import MutationCtx
from syncline.functions.http.response import HttpResponse
from syncline.functions.paths import function_path
from syncline.identity import ANONYMOUS, Admin, Identity, User, UserIdentity
from syncline.persistence import open_persistence

T = TypeVar("T")

__all__ = ["ManualClock", "TestBackend"]


class TestBackend:
    """A throwaway deployment of a functions folder."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        functions: str | Path | None = None,
        *,
        clock: ManualClock | None = None,
        data_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = clock or ManualClock()
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="syncline-test-"))
        )
        persistence = open_persistence(
            f"sqlite:///{self.data_dir / 'test.sqlite3'}", base=Path.cwd(), durability="off"
        )
        database = Database(persistence, clock=self.clock)
        self.app = Application(database, functions, clock=self.clock)
        try:
            self.app.use_storage(
                open_file_storage(
                    self.data_dir / "files",
                    database=database,
                    secret_dir=self.data_dir,
                    clock=self.clock,
                    origin=lambda: self.app.public_url,
                )
            )
            self.app.load()
            if env:
                self.app.env.update(env)
        except BaseException:
            self.close()
            raise
        self._identity: Identity = ANONYMOUS

    @property
    def database(self) -> Database:
        return self.app.database

    def with_identity(self, attributes: Mapping[str, Any]) -> TestBackend:
        """A view of this backend whose calls carry a signed-in user.

        ``attributes`` are UserIdentity attributes (``subject``, ``issuer``,
        ``name``, ``email``, ... or ``tokenIdentifier``); missing issuer and
        subject get test defaults.
        """
        attrs = dict(attributes)
        if "tokenIdentifier" not in attrs:
            attrs = {"issuer": "https://test.syncline.dev", "subject": "test-user", **attrs}
        view = object.__new__(TestBackend)
        view.__dict__.update(self.__dict__)
        view._identity = User(UserIdentity.from_attributes(attrs), None, "")
        return view

    def as_admin(self) -> TestBackend:
        view = object.__new__(TestBackend)
        view.__dict__.update(self.__dict__)
        view._identity = Admin()
        return view

    def query(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        outcome = self.app.executor.query_sync(
            function_path(ref), dict(args or {}), identity=self._identity, allow_internal=True
        )
        return outcome.unwrap()

    def mutation(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        outcome = self.app.executor.mutation_sync(
            function_path(ref), dict(args or {}), identity=self._identity, allow_internal=True
        )
        return outcome.unwrap()

    def run(self, fn: Callable[[MutationCtx], T]) -> T:
        """Run ``fn(ctx)`` as a mutation: direct database access for setup and checks."""

        def body(tx: Transaction) -> T:
            return fn(self.app.executor.mutation_context(tx, self._identity, seed=0))

        return self.database.write_sync(body).value

    def action(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        """Run an action (internal ones too) and return its result; its error is raised."""
        outcome = _run_sync(
            self.app.executor.action(
                function_path(ref), dict(args or {}), identity=self._identity, allow_internal=True
            )
        )
        return outcome.unwrap()

    # -------------------------------------------------------------- scheduled functions

    def run_scheduled_functions(self) -> int:
        """Run every scheduled function due now (and those they make due now); return how many.

        Each runs as in production: a mutation exactly once, an action at most
        once, with no identity; its row in ``_scheduled_functions`` records the outcome.
        """
        return _run_sync(self.app.scheduler.run_due())

    def advance(self, ms: float, *, max_runs: int = 10_000) -> int:
        """Move the clock ``ms`` forward, running scheduled functions and cron jobs as they
        come due, each at its own scheduled time; return how many ran."""
        return _run_sync(self._advance(ms, max_runs))

    def finish_scheduled_functions(self, *, max_runs: int = 10_000) -> int:
        """Run scheduled functions until none is left (like convex-test's
        ``finishAllScheduledFunctions``), moving the clock to each one's time.

        Cron jobs run as their times come but do not keep this going: it
        returns once only cron runs are pending. Raises RuntimeError after
        ``max_runs`` runs (a function that keeps scheduling itself).
        """
        return _run_sync(self._finish_scheduled(max_runs))

    async def _advance(self, ms: float, max_runs: int) -> int:
        scheduler = self.app.scheduler
        target = self.clock.now_ms() + ms
        ran = await scheduler.run_due(limit=max_runs)
        while True:
            _check_runs(ran, max_runs)
            next_at = await scheduler.next_pending_time()
            if next_at is None or next_at > target:
                break
            self.clock.set(max(next_at, self.clock.now_ms()))
            ran += await scheduler.run_due(limit=max_runs - ran)
        self.clock.set(max(target, self.clock.now_ms()))
        ran += await scheduler.run_due(limit=max_runs - ran)
        _check_runs(ran, max_runs)
        return ran

    async def _finish_scheduled(self, max_runs: int) -> int:
        scheduler = self.app.scheduler
        ran = 0
        while True:
            ran += await scheduler.run_due(limit=max_runs - ran)
            _check_runs(ran, max_runs)
            cron_runs = self.app.crons.current_run_ids()
            if await scheduler.next_pending_time(exclude=cron_runs) is None:
                return ran
            next_at = await scheduler.next_pending_time()
            assert next_at is not None
            self.clock.set(max(next_at, self.clock.now_ms()))

    def set_env(self, name: str, value: str | None) -> None:
        """Set (or with None, remove) an environment variable, as ``syncline env set`` does.

        Live queries that read it re-run; the next call of any function sees it.
        """
        self.app.env.update({name: value})

    async def afetch(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Call an HTTP action of ``functions/http.py`` (like convex-test's ``t.fetch``).

        ``path`` may carry a query string (``"/search?q=x"``). A dict or list
        ``body`` is sent as JSON. The response's body is read whole (streams
        included). A signed-in view (:meth:`with_identity`) sets ``ctx.auth``;
        otherwise an ``Authorization: Bearer`` header is verified as the server does.
        """
        import orjson

        from syncline.functions.http.request import Headers, HttpRequest
        from syncline.server.http_actions import dispatch, read_whole

        if not path.startswith("/"):
            raise ValueError(f"fetch() takes a path starting with '/', got {path!r}")
        pairs = Headers(headers).multi_items()
        if isinstance(body, dict | list):
            data = orjson.dumps(body)
            if not any(name == "content-type" for name, _ in pairs):
                pairs.append(("content-type", "application/json"))
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b""
        request = HttpRequest(method, f"http://testserver{path}", pairs, data)
        identity = None if self._identity is ANONYMOUS else self._identity
        response = await dispatch(self.app, request, identity=identity)
        return await read_whole(response, head=request.method == "HEAD")

    def fetch(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Blocking :meth:`afetch` (from async code, ``await t.afetch(...)`` instead)."""
        import asyncio
        import concurrent.futures

        call = self.afetch(path, method=method, body=body, headers=headers)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(call)
        # A loop already runs in this thread: give the call a loop of its own.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, call).result()

    def store_file(self, data: bytes, content_type: str | None = None) -> str:
        """Store a file as an upload would; return its storage id (for ``ctx.storage``)."""
        assert self.app.storage is not None
        return _run_sync(self.app.storage.store(data, content_type=content_type))

    def get_file(self, storage_id: str) -> bytes | None:
        """A stored file's contents, or None if there is no such file (deleted?)."""
        assert self.app.storage is not None
        storage = self.app.storage

        async def read() -> bytes | None:
            reader = await storage.open(storage_id)
            if reader is None:
                return None
            async with reader:
                return await reader.read()

        return _run_sync(read())

    def close(self) -> None:
        app = getattr(self, "app", None)
        if app is not None:
            app.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> TestBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_runs(ran: int, max_runs: int) -> None:
    if ran >= max_runs:
        raise RuntimeError(
            f"{ran} scheduled functions ran and more are due: does one keep scheduling "
            "itself? (raise max_runs if this is expected)"
        )


def _run_sync(call: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous test code (even inside a running loop)."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call).result()
