"""The ``ctx`` objects handed to user functions, and the rules of what user code may touch.

| member                     | query | mutation | action |
|----------------------------|-------|----------|--------|
| db (get, query, normalize_id, system) | yes | yes | - |
| db writes (insert, patch, replace, delete) | - | yes | - |
| auth.get_user_identity()   | yes   | yes      | yes    |
| run_query / run_mutation / run_action | - | - | yes (async) |
| scheduler: run_after, run_at, cancel (added by ``syncline.scheduling.ctx_scheduler``) | - | yes | yes (async) |
| now, random, env           | yes   | yes      | yes (``now`` is real time) |
| vector_search (added by ``syncline.vectors``; a clear error elsewhere) | - | - | yes (async) |

User code reaches user tables through ``ctx.db`` and the user-visible system
tables (``_scheduled_functions``, ``_storage``) only through ``ctx.db.system``,
read-only. Everything goes through a :class:`~syncline.database.transaction.Transaction`,
which records reads and writes.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from syncline.database.catalog import SYSTEM_TABLES_BY_NAME
from syncline.database.query import Query
from syncline.database.transaction import Transaction, check_table_name
from syncline.errors import InvalidId, InvalidValue, SystemTableError
from syncline.identity import Identity, UserIdentity, user_identity_of
from syncline.values.ids import table_number_of

if TYPE_CHECKING:
    from syncline.database.reads import ReadSet


def _user_table(name: object, what: str) -> str:
    table = check_table_name(name)
    if table.startswith("_"):
        raise SystemTableError(
            f"System tables can only be accessed from db.system ({what} {table!r})"
        )
    return table


def _visible_system_table(name: object) -> str:
    if not isinstance(name, str) or not name.startswith("_"):
        raise SystemTableError(
            f"db.system only reads system tables (_scheduled_functions, _storage), got {name!r}; "
            "use db for your own tables"
        )
    spec = SYSTEM_TABLES_BY_NAME.get(name)
    if spec is None or not spec.user_visible:
        raise SystemTableError(f"{name!r} is not a system table readable by functions")
    return name


class DatabaseReader:
    """``ctx.db`` in a query: reads of user tables."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self.system = SystemReader(tx)

    def _table_of(self, doc_id: str) -> str | None:
        return self._tx.table_name_of_id(doc_id)

    def _check_id(self, doc_id: object, table: str | None, op: str) -> str:
        if not isinstance(doc_id, str) or table_number_of(doc_id) is None:
            raise InvalidId(f"Invalid argument `id` for `db.{op}`: {doc_id!r} is not a valid id")
        actual = self._table_of(doc_id)
        if actual is not None and actual.startswith("_"):
            raise SystemTableError(
                f"System tables can only be accessed with db.system (id {doc_id} is in {actual})"
            )
        if table is not None:
            _user_table(table, f"db.{op}")
            if actual is not None and actual != table:
                raise InvalidId(
                    f'InvalidTable: expected to be an Id<"{table}">, got Id<"{actual}">'
                )
        return doc_id

    def get(self, table_or_id: str, doc_id: str | None = None) -> dict[str, Any] | None:
        """``get(id)`` or ``get(table, id)``: the document, or None."""
        if doc_id is None:
            doc_id, table = table_or_id, None
        else:
            table = table_or_id
        self._check_id(doc_id, table, "get")
        return self._tx.get(doc_id)

    def query(self, table: str) -> Query:
        return Query(self._tx, _user_table(table, "db.query"))

    def normalize_id(self, table: str, doc_id: str) -> str | None:
        """``doc_id`` if it is a valid id of ``table`` (existence is not checked), else None."""
        _user_table(table, "db.normalize_id")
        if not isinstance(doc_id, str):
            return None
        return doc_id if self._table_of(doc_id) == table else None


class SystemReader:
    """``ctx.db.system``: read-only access to ``_scheduled_functions`` and ``_storage``."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def get(self, table_or_id: str, doc_id: str | None = None) -> dict[str, Any] | None:
        if doc_id is None:
            doc_id, table = table_or_id, None
        else:
            table = _visible_system_table(table_or_id)
        if not isinstance(doc_id, str) or table_number_of(doc_id) is None:
            raise InvalidId(f"Invalid argument `id` for `db.system.get`: {doc_id!r}")
        actual = self._tx.table_name_of_id(doc_id)
        if actual is None:
            return None
        _visible_system_table(actual)
        if table is not None and actual != table:
            raise InvalidId(f'InvalidTable: expected to be an Id<"{table}">, got Id<"{actual}">')
        return self._tx.get(doc_id)

    def query(self, table: str) -> Query:
        return Query(self._tx, _visible_system_table(table))

    def normalize_id(self, table: str, doc_id: str) -> str | None:
        _visible_system_table(table)
        if not isinstance(doc_id, str):
            return None
        return doc_id if self._tx.table_name_of_id(doc_id) == table else None


class DatabaseWriter(DatabaseReader):
    """``ctx.db`` in a mutation: reads plus insert, patch, replace, delete."""

    def insert(self, table: str, value: Mapping[str, Any]) -> str:
        """Insert a document and return its id. The table is created if needed."""
        return self._tx.insert(_user_table(table, "db.insert"), value)

    def _target(self, args: tuple[Any, ...], op: str) -> tuple[str, Any]:
        if len(args) == 2:
            doc_id, value = args
            table = None
        elif len(args) == 3:
            table, doc_id, value = args
        else:
            raise InvalidValue(f"db.{op} takes (id, value) or (table, id, value)")
        return self._check_id(doc_id, table, op), value

    def patch(self, *args: Any) -> None:
        """``patch(id, fields)``: shallow merge; a field set to ``UNDEFINED`` is removed."""
        doc_id, value = self._target(args, "patch")
        self._tx.patch(doc_id, value)

    def replace(self, *args: Any) -> None:
        """``replace(id, document)``: replace every user field; system fields are kept."""
        doc_id, value = self._target(args, "replace")
        self._tx.replace(doc_id, value)

    def delete(self, table_or_id: str, doc_id: str | None = None) -> None:
        if doc_id is None:
            doc_id, table = table_or_id, None
        else:
            table = table_or_id
        self._tx.delete(self._check_id(doc_id, table, "delete"))


class Auth:
    """``ctx.auth``."""

    def __init__(self, identity: Identity, read_set: ReadSet | None = None) -> None:
        self._identity = identity
        self._read_set = read_set

    def get_user_identity(self) -> UserIdentity | None:
        """The caller's identity (from their JWT), or None when not signed in."""
        if self._read_set is not None:
            # The result now depends on who asked: live queries are keyed by identity.
            self._read_set.reads_auth = True
        return user_identity_of(self._identity)


class Env(Mapping[str, str]):
    """``ctx.env``: the deployment's environment variables (read-only)."""

    def __init__(
        self, values: Mapping[str, str], on_read: Callable[[], None] | None = None
    ) -> None:
        self._values = values
        self._on_read = on_read

    def _touch(self) -> None:
        if self._on_read is not None:
            self._on_read()

    def __getitem__(self, key: str) -> str:
        self._touch()
        return self._values[key]

    def __iter__(self) -> Any:
        self._touch()
        return iter(self._values)

    def __len__(self) -> int:
        self._touch()
        return len(self._values)


#: Seeds for ``ctx.random``. Not the ``random`` module's shared state: a call seeding
#: from it would move the sequence that application (and test) code draws from.
_SEEDS = random.SystemRandom()

MemberFactory = Callable[[str, "Transaction | None", Identity], Any]
_NO_MEMBERS: Mapping[str, MemberFactory] = {}


class QueryCtx:
    """``ctx`` in a query.

    Only ``db`` and ``now`` are built with the ctx; ``auth``, ``env``, ``random``
    and the members registered with the executor (``members``: name -> factory
    ``(kind, tx, identity)``, None leaves the member out) are built on first
    access, so a call pays only for what its function uses.
    """

    _kind = "query"
    auth: Auth
    env: Mapping[str, str]

    def __init__(
        self,
        tx: Transaction,
        identity: Identity,
        *,
        now: float,
        seed: int | None = None,
        env: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        members: Mapping[str, MemberFactory] = _NO_MEMBERS,
    ) -> None:
        self.db: DatabaseReader = self._make_db(tx)
        self._tx = tx
        self._identity = identity
        self._now = now
        #: None: drawn from the system's entropy when ``random`` is first used
        self._seed = seed
        self._random: random.Random | None = None
        self._env_source = env
        self._members = members

    @staticmethod
    def _make_db(tx: Transaction) -> DatabaseReader:
        return DatabaseReader(tx)

    @property
    def now(self) -> float:
        """The function's start time in ms since the epoch, frozen for determinism."""
        # A result that read the clock is not served from the query cache.
        self._tx.read_set.reads_time = True
        return self._now

    @property
    def random(self) -> random.Random:
        """A seeded random generator: use it instead of the ``random`` module."""
        if self._random is None:
            seed = self._seed
            self._random = random.Random(_SEEDS.getrandbits(64) if seed is None else seed)
        return self._random

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not built yet; the value is kept for the next access.
        if name.startswith("__"):
            raise AttributeError(name)
        factory = self._members.get(name)
        if factory is not None:
            value = factory(self._kind, self._tx, self._identity)
            if value is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        elif name == "auth":
            value = Auth(self._identity, self._tx.read_set)
        elif name == "env":
            source = self._env_source
            value = Env((source() if callable(source) else source) or {})
        else:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), "auth", "env", *self._members})


class MutationCtx(QueryCtx):
    """``ctx`` in a mutation."""

    _kind = "mutation"
    db: DatabaseWriter

    @staticmethod
    def _make_db(tx: Transaction) -> DatabaseWriter:
        return DatabaseWriter(tx)


def transaction_of(ctx: QueryCtx) -> Transaction:
    """The transaction a query's or mutation's ``ctx`` runs in (for the server's own
    functions, :mod:`syncline.functions.system`, which read and write system tables)."""
    return ctx._tx


class ActionRunner(Protocol):
    """How an action calls other functions (implemented by the executor)."""

    def __call__(self, kind: str, ref: Any, args: Mapping[str, Any] | None) -> Awaitable[Any]: ...


class ActionCtx:
    """``ctx`` in an action: no ``db``; call queries and mutations instead.

    Each ``run_query`` / ``run_mutation`` is its own transaction, run with the
    action's identity; there is no consistency between two calls.
    """

    def __init__(
        self,
        identity: Identity,
        runner: ActionRunner,
        *,
        clock: Any,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.auth = Auth(identity)
        self._runner = runner
        self._clock = clock
        self.random = random.Random()
        self.env = Env(env or {})

    @property
    def now(self) -> float:
        """Current time in ms since the epoch (real time: actions are not deterministic)."""
        return float(self._clock.now_ms())

    async def run_query(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        """Run a query (public or internal) and return its result; its error is raised."""
        return await self._runner("query", ref, args)

    async def run_mutation(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        return await self._runner("mutation", ref, args)

    async def run_action(self, ref: Any, args: Mapping[str, Any] | None = None) -> Any:
        return await self._runner("action", ref, args)
