"""Deployment environment variables: storage, limits, and ``ctx.env``.

Variables live in the private system table ``_environment_variables``
(documents ``{"name", "value"}``, index ``by_name``), so a change is an
ordinary commit: durable, ordered, and visible to invalidation.

``ctx.env`` by function kind:

* queries and mutations read through their transaction: ``ctx.env["KEY"]``
  reads the ``by_name`` point of ``KEY`` and iterating reads the whole index,
  so those reads are in the read set. A live query that read a variable is
  re-run when it changes; one that did not is left alone.
* actions and HTTP actions read an in-memory snapshot of all variables,
  refreshed after every commit that touches the table (they are not
  transactional, so there is nothing to invalidate).

Rules and limits (semantics §14 and §17): a name starts with a letter,
contains only ``[A-Za-z0-9_]`` and is at most 256 characters; a value is a
string of at most 8 KiB (UTF-8); at most 512 variables. Breaking one raises
:class:`EnvVarError` with a stable code (``InvalidEnvVarName``,
``InvalidEnvVarValue``, ``EnvVarValueTooLarge``, ``TooManyEnvVars``) and
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.database.query import Query
from syncline.errors import InvalidRequest
from syncline.functions.context import Env

if TYPE_CHECKING:
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction
    from syncline.database.writes import Commit
    from syncline.identity import Identity

log = logging.getLogger("syncline.env")

TABLE = "_environment_variables"
BY_NAME = "by_name"
MAX_NAME_LENGTH = 256
MAX_VALUE_BYTES = 8 * 1024
MAX_VARIABLES = 512
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class EnvVarError(InvalidRequest):
    """A name, value or count that breaks the environment variable rules."""

    code = "InvalidEnvVar"


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise EnvVarError(
            f"Environment variable names are strings, got {type(name).__name__}",
            code="InvalidEnvVarName",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise EnvVarError(
            f"Environment variable name {name[:40]!r}... is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}",
            code="InvalidEnvVarName",
        )
    if not _NAME.fullmatch(name):
        raise EnvVarError(
            f"Invalid environment variable name {name!r}: names start with a letter and "
            "contain only letters, digits and underscores",
            code="InvalidEnvVarName",
        )
    return name


def check_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise EnvVarError(
            f"The value of environment variable {name} must be a string, "
            f"got {type(value).__name__}",
            code="InvalidEnvVarValue",
        )
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        raise EnvVarError(
            f"The value of environment variable {name} is {size} bytes; "
            f"the limit is {MAX_VALUE_BYTES} bytes (8 KiB)",
            code="EnvVarValueTooLarge",
        )
    return value


def _find(tx: Transaction, name: str) -> dict[str, Any] | None:
    return Query(tx, TABLE).with_index(BY_NAME, lambda q: q.eq("name", name)).first()


def read_all(tx: Transaction) -> dict[str, str]:
    """Every variable, by name, read through ``tx`` (recorded in its read set)."""
    return {doc["name"]: doc["value"] for doc in Query(tx, TABLE).with_index(BY_NAME)}


class TransactionEnv(Mapping[str, str]):
    """The variables as seen by one transaction; every lookup is a recorded read."""

    __slots__ = ("_all", "_cache", "_tx")

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._cache: dict[str, str | None] = {}
        self._all: dict[str, str] | None = None

    def __getitem__(self, name: str) -> str:
        if self._all is not None:
            return self._all[name]
        if not isinstance(name, str):
            raise KeyError(name)
        if name not in self._cache:
            doc = _find(self._tx, name)
            self._cache[name] = None if doc is None else doc["value"]
        value = self._cache[name]
        if value is None:
            raise KeyError(name)
        return value

    def _everything(self) -> dict[str, str]:
        if self._all is None:
            self._all = read_all(self._tx)
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


@dataclass(frozen=True, slots=True)
class Change:
    """What an update did to one variable."""

    name: str
    #: "created", "updated", "unchanged", "removed" or "absent" (removing a missing one)
    result: str


def normalize_changes(
    changes: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
) -> list[tuple[str, str | None]]:
    """``changes`` as (name, value or None) pairs, checked: names, values, no name twice."""
    pairs = list(changes.items() if isinstance(changes, Mapping) else changes)
    seen: set[str] = set()
    out = []
    for name, value in pairs:
        check_name(name)
        if name in seen:
            raise EnvVarError(
                f"Environment variable {name} appears twice in one update",
                code="DuplicateEnvVar",
            )
        seen.add(name)
        out.append((name, None if value is None else check_value(name, value)))
    return out


def write_changes(
    tx: Transaction, changes: Mapping[str, str | None] | Iterable[tuple[str, str | None]]
) -> list[Change]:
    """Set (a string) or remove (None) variables in ``tx``; :class:`EnvVarError` if one
    breaks the rules (the caller's transaction then fails and nothing is written)."""
    return _write(tx, normalize_changes(changes))


def _write(tx: Transaction, changes: list[tuple[str, str | None]]) -> list[Change]:
    done: list[Change] = []
    for name, value in changes:
        doc = _find(tx, name)
        if value is None:
            if doc is None:
                done.append(Change(name, "absent"))
            else:
                tx.delete(doc["_id"])
                done.append(Change(name, "removed"))
        elif doc is None:
            tx.insert(TABLE, {"name": name, "value": value})
            done.append(Change(name, "created"))
        elif doc["value"] != value:
            tx.patch(doc["_id"], {"value": value})
            done.append(Change(name, "updated"))
        else:
            done.append(Change(name, "unchanged"))
    if any(c.result == "created" for c in done):
        count = tx.count(TABLE)
        if count > MAX_VARIABLES:
            raise EnvVarError(
                f"Too many environment variables: {count} (the limit is {MAX_VARIABLES})",
                code="TooManyEnvVars",
            )
    return done


class EnvironmentVariables:
    """One deployment's environment variables (owned by the Application)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._snapshot: dict[str, str] = {}
        self._snapshot_ts = -1
        #: ts of the newest commit known to have touched the table
        self._changed_ts = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._install(*self._load_sync())
        database.add_commit_listener(self._on_commits)

    # ------------------------------------------------------------------ ctx.env

    def ctx_member(self, kind: str, tx: Transaction | None, identity: Identity) -> Env:
        """The ``ctx.env`` factory registered with the executor."""
        if tx is not None:
            return Env(TransactionEnv(tx))
        return Env(self.snapshot())

    def snapshot(self) -> dict[str, str]:
        """The variables for an action: the latest snapshot.

        Refreshed in the background after a change; when no event loop serves
        this deployment (CLI, sync tests) a stale snapshot is reloaded here.
        """
        if self._stale and self._loop is None:
            self._install(*self._load_sync())
        return self._snapshot

    @property
    def _stale(self) -> bool:
        return self._changed_ts > self._snapshot_ts

    def _load_sync(self) -> tuple[dict[str, str], int]:
        result = self.database.run_read(read_all)
        return result.value, result.ts

    def _install(self, values: dict[str, str], ts: int) -> None:
        with self._lock:
            if ts >= self._snapshot_ts:
                self._snapshot, self._snapshot_ts = values, ts

    def _on_commits(self, commits: list[Commit]) -> None:
        # Runs on the writer thread: only note the change and hand the reload to the loop.
        touched = [c.ts for c in commits if TABLE in c.writes.tables]
        if not touched:
            return
        with self._lock:
            self._changed_ts = max(self._changed_ts, *touched)
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._schedule_refresh)
            except RuntimeError:
                pass  # the loop is closed: the next sync snapshot() reloads

    def _schedule_refresh(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.refresh())

    async def refresh(self) -> None:
        """Reload the snapshot (off the event loop)."""
        # A listener marks the table changed only once the commit is visible, so a
        # read that starts after it sees the change. A read that had started before
        # returns an older snapshot: read again (a listener that ran meanwhile found
        # this task running and left the work to it).
        while self._stale:
            result = await self.database.read(read_all)
            self._install(result.value, result.ts)

    def start(self) -> None:
        """Refresh in the background on the running loop from now on."""
        self._loop = asyncio.get_running_loop()
        if self._stale:
            self._schedule_refresh()

    async def stop(self) -> None:
        self._loop = None
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ admin

    def list_all(self) -> dict[str, str]:
        """Every variable, sorted by name (a fresh read; blocking)."""
        values, _ts = self._load_sync()
        return dict(sorted(values.items()))

    async def alist_all(self) -> dict[str, str]:
        result = await self.database.read(read_all)
        return dict(sorted(result.value.items()))

    @staticmethod
    def _apply(changes: list[tuple[str, str | None]]) -> Any:
        def body(tx: Transaction) -> tuple[list[Change], dict[str, str]]:
            return _write(tx, changes), read_all(tx)

        return body

    def update(
        self, changes: Mapping[str, str | None] | Iterable[tuple[str, str | None]]
    ) -> list[Change]:
        """Set (a string) or remove (None) variables, all in one commit (blocking)."""
        normalized = normalize_changes(changes)
        result = self.database.write_sync(self._apply(normalized))
        done, values = result.value
        self._install(values, result.ts)
        return done

    async def aupdate(
        self, changes: Mapping[str, str | None] | Iterable[tuple[str, str | None]]
    ) -> list[Change]:
        """Like :meth:`update`, awaiting the writer instead of blocking."""
        normalized = normalize_changes(changes)
        result = await self.database.write(self._apply(normalized))
        done, values = result.value
        self._install(values, result.ts)
        return done
