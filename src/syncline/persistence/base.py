"""What the database engine needs from a storage backend.

A backend stores four things (design §3.1):

* current documents (id -> table number, ts of last write, encoded value);
* index entries (index id, order-preserving key) -> document id; an index
  named ``by_id`` (:data:`BY_ID_INDEX`) has none stored: its entries are its
  table's documents, keyed ``encode_key((id,))``, and the backend serves its
  scans and counts from the documents (the engine never writes its entries);
* a commit log of document revisions (ts, id, table, value or deletion);
* a log of commits (:class:`CommitRow`: ts, flags and the engine's encoded
  write set), from which another process learns what changed;
* a few globals (the last commit ts, the catalog version, the active schema,
  ...) and the catalog of tables and indexes.

Optionally (``ReadConnection.supports_search``), text search indexes: per
index, each document's terms and filter tokens (:class:`SearchEntry`),
matched and ranked by :meth:`ReadConnection.search`. The engine tokenises;
the backend stores, matches and ranks what it is given.

Everything several processes must agree on lives here, not in a process:
a snapshot names its last commit ts and its catalog version, and so does the
writer's transaction when it begins (read under the store's write lock).

The engine talks to a backend only through a :class:`ReadConnection` (one
consistent snapshot) or a :class:`WriteConnection` (the single writer's
transaction, with one level of savepoint). Values cross this boundary as bytes: the
engine owns the encoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from syncline.errors import InternalError

#: how hard a commit is made to survive a crash (SQLite's ``synchronous``: ``full``
#: fsyncs every commit, ``normal`` survives a process crash only, ``off`` is for tests)
Durability = Literal["full", "normal", "off"]

#: the index whose entries are its table's documents in id order (see the module docs)
BY_ID_INDEX = "by_id"

#: the global holding the last commit's ts (a snapshot's :attr:`ReadConnection.ts`)
TS_GLOBAL = "ts"
#: the global the engine bumps with every commit that changes the catalog or schema
CATALOG_VERSION_GLOBAL = "catalog_version"
#: the global :meth:`WriteConnection.prune_log` sets: the ts of the newest commit-log
#: row it removed (a reader whose last commit is older has missed commits)
LOG_PRUNED_GLOBAL = "log_pruned_to"

#: a client mutation's outcome: (session id, request id, commit ts, call fingerprint,
#: encoded result)
MutationRecord = tuple[str, int, int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class TableRow:
    number: int
    name: str


@dataclass(frozen=True, slots=True)
class IndexRow:
    id: int
    table_number: int
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LogEntry:
    ts: int
    doc_id: str
    table_number: int
    value: bytes | None  # None: the document was deleted


@dataclass(frozen=True, slots=True)
class CommitRow:
    """One commit in the commit log: its ts, the engine's flags and its encoded write set."""

    ts: int
    flags: int
    writes: bytes


@dataclass(frozen=True, slots=True)
class SearchIndexRow:
    """A text search index as stored: its table, name and indexed fields."""

    table_number: int
    name: str
    search_field: str
    filter_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchEntry:
    """What a text search index holds for one document.

    ``tokens`` are the search field's terms in order (repeats kept: they weigh
    in relevance); ``filters`` one opaque token per filter field, equal
    exactly when the field's values are equal.
    """

    doc_id: str
    creation_time: float
    tokens: tuple[str, ...]
    filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A text search: documents holding any of ``terms`` (``prefix``: any term starting
    with it) and every one of the ``filters`` tokens, most relevant first (ties: the
    newest creation time first), at most ``limit``."""

    terms: tuple[str, ...]
    prefix: str | None
    filters: tuple[str, ...]
    limit: int


def search_unsupported(what: str) -> InternalError:
    """The error of a text search operation on a backend without text search."""
    return InternalError(
        f"Text search is not supported on this storage backend yet ({what})",
        code="SearchNotSupported",
    )


class CommitWakeups(Protocol):
    """Wakes a process when another process sharing the store commits.

    A hint only (the commit log says what changed): :meth:`receive` may miss
    or repeat commits, and its caller also polls.
    """

    def notify(self, ts: int) -> None:
        """Announce this process's commits up to ``ts`` (a no-op where the store announces)."""

    def receive(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s``; the highest ts announced meanwhile, or None."""

    def interrupt(self) -> None:
        """End the current (or next) :meth:`receive` now."""

    def close(self) -> None: ...


class Lease(Protocol):
    """An exclusive claim among processes that ends when its holder dies."""

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool:
        """True if the lease is ours now (it may already have been)."""

    def release(self) -> None: ...


class ReadConnection(ABC):
    """A consistent snapshot.

    ``ts`` is the last commit visible in it and ``catalog_version`` the
    :data:`CATALOG_VERSION_GLOBAL` as of that commit, both read when the
    snapshot began (0 when unset).
    """

    ts: int
    catalog_version: int
    #: whether this backend stores text search indexes (see :meth:`search`)
    supports_search: bool = False

    @abstractmethod
    def get_document(self, doc_id: str) -> tuple[int, bytes] | None:
        """(table number, encoded value) of the current revision, or None."""

    @abstractmethod
    def scan(
        self, index_id: int, start: bytes, end: bytes, *, reverse: bool, limit: int
    ) -> list[tuple[bytes, str, bytes]]:
        """Entries with ``start <= key < end`` in key order (or reversed).

        Returns up to ``limit`` rows of (key, document id, encoded document).
        """

    @abstractmethod
    def count(self, index_id: int) -> int: ...

    @abstractmethod
    def tables(self) -> list[TableRow]: ...

    @abstractmethod
    def indexes(self) -> list[IndexRow]: ...

    @abstractmethod
    def get_global(self, key: str) -> bytes | None: ...

    @abstractmethod
    def log_since(self, ts: int, *, limit: int) -> list[LogEntry]:
        """Log entries with ``entry.ts > ts`` in ts order."""

    @abstractmethod
    def commits_since(self, ts: int, *, limit: int) -> list[CommitRow]:
        """Commit-log rows with ``row.ts > ts``, in ts order (at most ``limit``)."""

    @abstractmethod
    def get_mutation_request(
        self, session_id: str, request_id: int
    ) -> tuple[int, bytes, bytes] | None:
        """(commit ts, call fingerprint, encoded result) of a client mutation already done."""

    @abstractmethod
    def get_used_upload_token(self, nonce: bytes) -> str | None:
        """The storage id of the upload that used the token with ``nonce``, if it was used."""

    # Text search is an optional capability (``supports_search``): a backend without
    # it holds no search index, and creating or querying one raises InternalError
    # (code SearchNotSupported).

    def search_indexes(self) -> list[SearchIndexRow]:
        """The text search indexes stored (none on a backend without search)."""
        return []

    def search(self, table_number: int, index: str, request: SearchRequest) -> list[str]:
        """The ids of the best matches of ``request``, best first (at most its limit)."""
        raise search_unsupported("search")


class WriteConnection(ReadConnection):
    """The writer's open transaction. Every change lands at commit or not at all.

    It holds the store's write lock (across processes), taken when it began;
    ``ts`` and ``catalog_version`` are the store's as of that moment, so they
    include every other process's commits.
    """

    @abstractmethod
    def savepoint(self) -> None:
        """Open the savepoint (one at a time: release or roll back before the next)."""

    @abstractmethod
    def release(self) -> None:
        """Keep what was done since :meth:`savepoint`, in the transaction."""

    @abstractmethod
    def rollback_to(self) -> None:
        """Undo what was done since :meth:`savepoint`, and close it."""

    @abstractmethod
    def restart(self) -> None:
        """Undo everything this transaction did; it stays open (and the only writer)."""

    @abstractmethod
    def put_document(self, doc_id: str, table_number: int, ts: int, value: bytes) -> None: ...

    def put_documents(self, rows: Sequence[tuple[str, int, int, bytes]]) -> None:
        """``put_document(doc_id, table_number, ts, value)`` for each row, in order."""
        for doc_id, table_number, ts, value in rows:
            self.put_document(doc_id, table_number, ts, value)

    @abstractmethod
    def delete_document(self, doc_id: str) -> None: ...

    @abstractmethod
    def insert_index_entries(self, entries: Iterable[tuple[int, bytes, str]]) -> None: ...

    @abstractmethod
    def delete_index_entries(self, entries: Iterable[tuple[int, bytes]]) -> None: ...

    @abstractmethod
    def append_log(self, entries: Iterable[LogEntry]) -> None: ...

    @abstractmethod
    def append_commits(self, rows: Iterable[CommitRow]) -> None:
        """Add rows to the commit log (in the transaction that makes those commits)."""

    @abstractmethod
    def set_global(self, key: str, value: bytes) -> None: ...

    def set_globals(self, values: Mapping[str, bytes]) -> None:
        """Set several globals (backends may do it in one statement)."""
        for key, value in values.items():
            self.set_global(key, value)

    @abstractmethod
    def create_table(self, name: str, number: int) -> None: ...

    @abstractmethod
    def create_index(self, table_number: int, name: str, fields: tuple[str, ...]) -> int:
        """Register an index and return its new id (entries are added separately)."""

    @abstractmethod
    def drop_index(self, index_id: int) -> None:
        """Remove an index and all of its entries."""

    @abstractmethod
    def delete_table_documents(self, table_number: int) -> None:
        """Remove every document of a table and its index entries."""

    def insert_bulk(
        self,
        documents: Sequence[tuple[str, int, int, bytes]],
        index_entries: Sequence[tuple[int, bytes, str]],
    ) -> None:
        """Store many *new* documents (bulk import), their index entries and their log entries.

        ``documents`` are ``(doc_id, table_number, ts, value)`` rows whose ids
        are not stored yet; each also gets its commit-log entry (same ts, id,
        table and value). Backends may batch this (this default writes row by row).
        """
        for doc_id, table_number, ts, value in documents:
            self.put_document(doc_id, table_number, ts, value)
        self.insert_index_entries(index_entries)
        self.append_log(
            [LogEntry(ts, doc_id, number, value) for doc_id, number, ts, value in documents]
        )

    @abstractmethod
    def renumber_table(self, old_number: int, new_number: int) -> None:
        """Give an empty table (and its indexes) another number; ``new_number`` must be free.

        Ids embed their table's number, so only a table without documents can
        be renumbered (import uses this to restore a snapshot's ids).
        """

    @abstractmethod
    def prune_log(self, before_ts: int) -> int:
        """Forget log entries and commit-log rows older than ``before_ts``; returns how many.

        Sets :data:`LOG_PRUNED_GLOBAL` to the ts of the newest commit-log row
        removed, when any was (in the same transaction).
        """

    @abstractmethod
    def put_mutation_requests(self, records: Sequence[MutationRecord]) -> None:
        """Record client mutations' outcomes (in the transaction that commits them).

        The fingerprint identifies the call (function, arguments, caller): a
        replay of the request ids is answered only for the same call. The
        engine records a whole group commit's mutations at once.
        """

    @abstractmethod
    def put_used_upload_token(self, nonce: bytes, ts: int, storage_id: str) -> None:
        """Record that the upload token with ``nonce`` stored ``storage_id``.

        Kept apart from the mutation records: client-chosen session ids must
        never reach (or burn) a token's record.
        """

    @abstractmethod
    def prune_request_records(self, before_ts: int) -> int:
        """Forget mutation records and used upload tokens older than ``before_ts``."""

    def create_search_index(self, row: SearchIndexRow) -> None:
        """Register an empty text search index (entries are added separately)."""
        raise search_unsupported("create_search_index")

    def drop_search_index(self, table_number: int, index: str) -> None:
        """Remove a text search index and all of its entries."""
        raise search_unsupported("drop_search_index")

    def rename_search_index(self, table_number: int, old: str, new: str) -> None:
        """Give a text search index (and its entries) another name; ``new`` must be free."""
        raise search_unsupported("rename_search_index")

    def put_search_entries(
        self, table_number: int, index: str, entries: Sequence[SearchEntry]
    ) -> None:
        """Index documents (an entry replaces the document's previous one)."""
        raise search_unsupported("put_search_entries")

    def delete_search_entries(self, table_number: int, index: str, doc_ids: Sequence[str]) -> None:
        """Remove documents' entries (a document without one is skipped)."""
        raise search_unsupported("delete_search_entries")


class Persistence(ABC):
    """A storage backend: hands out snapshots and the single writer connection."""

    #: whether its connections store text search indexes: the same as their
    #: ``ReadConnection.supports_search`` (known before any is opened)
    supports_search: bool = False

    @abstractmethod
    def reader(self) -> ReadConnection:
        """Open a snapshot; the caller must :meth:`release_reader` it."""

    @abstractmethod
    def release_reader(self, conn: ReadConnection) -> None: ...

    @abstractmethod
    def begin_write(self) -> WriteConnection:
        """Start the writer's transaction, under the store's write lock.

        One per persistence object at a time; several processes (or several
        persistence objects over one store) take turns on the lock.
        """

    @abstractmethod
    def commit_write(self, conn: WriteConnection) -> None:
        """Commit the write transaction; it is over (lock released) even if this raises."""

    @abstractmethod
    def abort_write(self, conn: WriteConnection) -> None: ...

    def head_ts(self) -> int | None:
        """The ts of the newest commit in the store, read cheaply (a few microseconds,
        never waiting for a writer) from any thread; None: the store cannot tell that
        cheaply. Used to know that no process committed past what this one follows.
        """
        return None

    def commit_wakeups(self) -> CommitWakeups | None:
        """Wake-ups the store itself delivers across processes (None: it has none)."""
        return None

    def exclusive_lease(self, name: str) -> Lease | None:
        """A lease named ``name`` held in the store (None: use one in the file system)."""
        return None

    def shared_secret(self, name: str, make: Callable[[], str]) -> str | None:
        """The secret ``name`` every process on the store shares (``make()`` gives the first).

        None: the store keeps no secrets (they live in the data folder's files).
        """
        return None

    def ping(self) -> None:  # noqa: B027 (optional: a local file needs no check)
        """Raise :class:`~syncline.errors.DatabaseUnavailable` if the store cannot be reached."""

    @abstractmethod
    def close(self) -> None: ...
