"""A snapshot that begins at its first read, for optimistic mutations.

A mutation that only inserts (the common write: a chat message, an event)
reads nothing from the store, yet beginning a snapshot for it and ending it
again (a read transaction and a query of the store's head) cost about as much
as writing its document. :class:`LazySnapshot` is handed to the mutation in
place of a snapshot and begins one only when something reads.

Until then it stands at an *assumed* point: ``ts`` is the last commit the
process published and ``catalog_version`` the catalog it holds. A snapshot
begun later is at least as new as that ts (commits are published after they
are durable), so:

* a transaction that never read has an empty read set, and nothing committed
  meanwhile can conflict with it; the committer still checks the catalog
  version it assumed, as for any attempt;
* a transaction that read did so at :attr:`ts` as updated when the snapshot
  began, which is what its reads are checked against at commit;
* the catalog version the caller assumed is kept: if the snapshot begun later
  names a newer one, the attempt is run again at commit (as for any attempt
  whose catalog changed before it committed).
"""

from __future__ import annotations

from collections.abc import Callable

from syncline.persistence.base import (
    CommitRow,
    IndexRow,
    LogEntry,
    ReadConnection,
    SearchIndexRow,
    SearchRequest,
    TableRow,
)

__all__ = ["LazySnapshot"]


class LazySnapshot(ReadConnection):
    """Reads from a snapshot opened (``open_reader()``) at the first read, or from ``opened``.

    The caller releases :attr:`opened` (if any) when it is done, as it would a
    snapshot it had opened itself.
    """

    def __init__(
        self,
        open_reader: Callable[[], ReadConnection],
        *,
        ts: int,
        catalog_version: int,
        supports_search: bool,
        opened: ReadConnection | None = None,
    ) -> None:
        self._open_reader = open_reader
        #: the snapshot, once begun (or the one the caller already had open)
        self.opened = opened
        self.ts = opened.ts if opened is not None else ts
        self.catalog_version = opened.catalog_version if opened is not None else catalog_version
        self.supports_search = supports_search

    def _conn(self) -> ReadConnection:
        conn = self.opened
        if conn is None:
            conn = self.opened = self._open_reader()
            self.ts = conn.ts
        return conn

    def get_document(self, doc_id: str) -> tuple[int, bytes] | None:
        return self._conn().get_document(doc_id)

    def scan(
        self, index_id: int, start: bytes, end: bytes, *, reverse: bool, limit: int
    ) -> list[tuple[bytes, str, bytes]]:
        return self._conn().scan(index_id, start, end, reverse=reverse, limit=limit)

    def count(self, index_id: int) -> int:
        return self._conn().count(index_id)

    def tables(self) -> list[TableRow]:
        return self._conn().tables()

    def indexes(self) -> list[IndexRow]:
        return self._conn().indexes()

    def get_global(self, key: str) -> bytes | None:
        return self._conn().get_global(key)

    def log_since(self, ts: int, *, limit: int) -> list[LogEntry]:
        return self._conn().log_since(ts, limit=limit)

    def commits_since(self, ts: int, *, limit: int) -> list[CommitRow]:
        return self._conn().commits_since(ts, limit=limit)

    def get_mutation_request(
        self, session_id: str, request_id: int
    ) -> tuple[int, bytes, bytes] | None:
        return self._conn().get_mutation_request(session_id, request_id)

    def get_used_upload_token(self, nonce: bytes) -> str | None:
        return self._conn().get_used_upload_token(nonce)

    def search_indexes(self) -> list[SearchIndexRow]:
        return self._conn().search_indexes()

    def search(self, table_number: int, index: str, request: SearchRequest) -> list[str]:
        return self._conn().search(table_number, index, request)
