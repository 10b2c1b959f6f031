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
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from syncline.application import Application
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.database.transaction import Transaction
from syncline.functions.context import MutationCtx
from syncline.functions.paths import function_path
from syncline.identity import ANONYMOUS, Admin, Identity, User, UserIdentity

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
    ) -> None:
        self.clock = clock or ManualClock()
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="syncline-test-"))
        )
        database = Database.open_sqlite(
            str(self.data_dir / "test.sqlite3"), durability="off", clock=self.clock
        )
        self.app = Application(database, functions, clock=self.clock)
        try:
            self.app.load()
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
            ctx = MutationCtx(tx, self._identity, now=self.clock.now_ms(), seed=0)
            self.app.executor._add_members(ctx, "mutation", tx, self._identity)
            return fn(ctx)

        return self.database.write_sync(body).value

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
