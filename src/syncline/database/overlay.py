"""An optimistic transaction's writes, buffered in memory over a snapshot.

:class:`BufferedWrites` is a :class:`WriteConnection` over a
:class:`ReadConnection`: a :class:`Transaction` runs on it as it would on the
writer's connection, but every write lands in memory, and every read merges
the snapshot with those writes (a transaction sees its own writes). The
committer later replays the buffer onto the real writer with the commit's ts
(:meth:`BufferedWrites.apply`), or drops it.

Work that changes the catalog or needs the store's write lock (creating a
table or an index, setting a global, savepoints, ...) raises
:class:`NeedsLock`: the engine then runs the whole function again on the
writer, under the lock.

Text search entries are buffered per index and replayed at commit. A search
over an index this transaction has written raises :class:`NeedsLock` too:
relevance ranks the transaction's own documents among the stored ones, which
only the store can do, so the function runs again on the writer, where its
writes are in the store's open transaction and its search sees them.

Index entries follow the discipline of ``Transaction``: an entry is deleted
only if it exists, and a key it inserts is new (index keys end with the
document's id, and a document's new key differs from its old one), so the
buffer tracks each index's count as a delta and replays deletions before
insertions.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

from syncline.persistence.base import (
    CommitRow,
    IndexRow,
    LogEntry,
    MutationRecord,
    ReadConnection,
    SearchEntry,
    SearchIndexRow,
    SearchRequest,
    TableRow,
    WriteConnection,
)
from syncline.persistence.by_id import key_of_id
from syncline.values.ids import table_number_of

__all__ = ["BufferedWrites", "NeedsLock"]

Row = tuple[bytes, str, bytes]


class NeedsLock(BaseException):
    """An optimistic transaction asked for work that must run under the store's write lock.

    A BaseException, so that user code catching ``Exception`` cannot swallow it.
    """


class BufferedWrites(WriteConnection):
    """Writes buffered over the snapshot ``base``.

    ``by_id_tables`` maps the id of every ``by_id`` index to its table's
    number: those indexes have no stored entries (their entries are the
    table's documents), so the buffer derives them from its documents.
    """

    def __init__(self, base: ReadConnection, by_id_tables: Mapping[int, int]) -> None:
        self.base = base
        self.ts = base.ts
        self.catalog_version = base.catalog_version
        self.supports_search = base.supports_search
        self._by_id_tables = by_id_tables
        #: document id -> (table number, encoded value, or None once deleted)
        self._docs: dict[str, tuple[int, bytes | None]] = {}
        #: index id -> key -> document id (entries inserted), None (entries deleted)
        self._entries: dict[int, dict[bytes, str | None]] = {}
        #: index id -> sorted keys of ``_entries[index id]`` (rebuilt after a change)
        self._sorted: dict[int, list[bytes]] = {}
        #: entries deleted (they may exist in ``base``), in order
        self._removed: dict[tuple[int, bytes], None] = {}
        self._count_delta: dict[int, int] = {}
        self._requests: list[MutationRecord] = []
        self._tokens: list[tuple[bytes, str]] = []
        #: (table number, search index) -> document id -> its entry, or None (removed)
        self._search: dict[tuple[int, str], dict[str, SearchEntry | None]] = {}

    # ------------------------------------------------------------------ state

    def is_empty(self) -> bool:
        """Nothing buffered: applying would write nothing."""
        return not (self._docs or self._requests or self._tokens)

    def apply(self, conn: WriteConnection, ts: int) -> list[MutationRecord]:
        """Replay the buffer onto the writer ``conn`` as the commit at ``ts``.

        Returns the client mutation records (stamped with ``ts``) for the caller
        to store with the rest of its group commit.
        """
        if self._removed:
            conn.delete_index_entries(list(self._removed))
        for doc_id, (table_number, value) in self._docs.items():
            if value is None:
                conn.delete_document(doc_id)
            else:
                conn.put_document(doc_id, table_number, ts, value)
        added = self._added_entries()
        if added:
            conn.insert_index_entries(added)
        for (table_number, index), changes in self._search.items():
            removed = [doc_id for doc_id, entry in changes.items() if entry is None]
            if removed:
                conn.delete_search_entries(table_number, index, removed)
            put = [entry for entry in changes.values() if entry is not None]
            if put:
                conn.put_search_entries(table_number, index, put)
        for nonce, storage_id in self._tokens:
            conn.put_used_upload_token(nonce, ts, storage_id)
        return self._records_at(ts)

    def only_puts(self) -> bool:
        """Whether replaying needs only puts: no deletion, search change or token.

        Such a buffer's rows may be written together with other commits' (see
        :meth:`put_rows`): puts of different commits in one group commit
        cannot undo each other, whatever their order.
        """
        return not (self._removed or self._search or self._tokens) and all(
            value is not None for _, value in self._docs.values()
        )

    def put_rows(
        self,
        ts: int,
        documents: list[tuple[str, int, int, bytes]],
        entries: list[tuple[int, bytes, str]],
    ) -> list[MutationRecord]:
        """:meth:`apply` for a buffer of :meth:`only_puts`: its rows added to the lists given.

        The caller writes them (``put_documents``, ``insert_index_entries``)
        before anything else touches the writer.
        """
        documents.extend(
            (doc_id, table_number, ts, value)
            for doc_id, (table_number, value) in self._docs.items()
            if value is not None
        )
        entries.extend(self._added_entries())
        return self._records_at(ts)

    def _added_entries(self) -> list[tuple[int, bytes, str]]:
        """The index entries this buffer adds, as ``(index id, key, doc id)`` rows."""
        return [
            (index_id, key, doc_id)
            for index_id, keyed in self._entries.items()
            for key, doc_id in keyed.items()
            if doc_id is not None
        ]

    def _records_at(self, ts: int) -> list[MutationRecord]:
        """The client mutation records, stamped with the commit ``ts``."""
        return [
            (s, r, ts, fingerprint, result) for s, r, _ts, fingerprint, result in self._requests
        ]

    # ------------------------------------------------------------------ reads

    def get_document(self, doc_id: str) -> tuple[int, bytes] | None:
        buffered = self._docs.get(doc_id)
        if buffered is None:
            return self.base.get_document(doc_id)
        number, value = buffered
        return None if value is None else (number, value)

    def _buffered(self, index_id: int) -> tuple[dict[bytes, str | None], list[bytes]]:
        """The index's buffered entries and their keys in order."""
        table = self._by_id_tables.get(index_id)
        if table is not None:
            entries: dict[bytes, str | None] = {
                key_of_id(doc_id): (doc_id if value is not None else None)
                for doc_id, (number, value) in self._docs.items()
                if number == table
            }
            return entries, sorted(entries)
        entries = self._entries.get(index_id, {})
        keys = self._sorted.get(index_id)
        if keys is None:
            keys = self._sorted[index_id] = sorted(entries)
        return entries, keys

    def scan(
        self, index_id: int, start: bytes, end: bytes, *, reverse: bool, limit: int
    ) -> list[Row]:
        if not self._docs and not self._entries:
            return self.base.scan(index_id, start, end, reverse=reverse, limit=limit)
        entries, keys = self._buffered(index_id)
        out: list[Row] = []
        lo, hi = start, end
        while lo < hi and len(out) < limit:
            rows = self.base.scan(index_id, lo, hi, reverse=reverse, limit=limit)
            exhausted = len(rows) < limit
            # The part of [lo, hi) this batch of the snapshot covers completely.
            if exhausted:
                covered_lo, covered_hi = lo, hi
            elif reverse:
                covered_lo, covered_hi = rows[-1][0], hi
            else:
                covered_lo, covered_hi = lo, rows[-1][0] + b"\x00"
            merged: list[Row] = []
            for key, doc_id, raw in rows:
                if key in entries:
                    continue  # deleted, or re-inserted: the buffer has the say
                own = self._docs.get(doc_id)
                if own is not None:
                    if own[1] is None:
                        continue
                    raw = own[1]
                merged.append((key, doc_id, raw))
            first = bisect.bisect_left(keys, covered_lo)
            last = bisect.bisect_left(keys, covered_hi)
            for key in keys[first:last]:
                owner = entries[key]
                if owner is None:
                    continue
                doc = self.get_document(owner)
                if doc is not None:
                    merged.append((key, owner, doc[1]))
            merged.sort(key=lambda row: row[0], reverse=reverse)
            out.extend(merged)
            if exhausted:
                break
            if reverse:
                hi = covered_lo
            else:
                lo = covered_hi
        return out[:limit]

    def count(self, index_id: int) -> int:
        table = self._by_id_tables.get(index_id)
        if table is None:
            return self.base.count(index_id) + self._count_delta.get(index_id, 0)
        delta = 0
        for doc_id, (number, value) in self._docs.items():
            if number != table:
                continue
            stored = self.base.get_document(doc_id) is not None
            delta += (value is not None) - stored
        return self.base.count(index_id) + delta

    def tables(self) -> list[TableRow]:
        return self.base.tables()

    def indexes(self) -> list[IndexRow]:
        return self.base.indexes()

    def get_global(self, key: str) -> bytes | None:
        return self.base.get_global(key)

    def log_since(self, ts: int, *, limit: int) -> list[LogEntry]:
        return self.base.log_since(ts, limit=limit)

    def commits_since(self, ts: int, *, limit: int) -> list[CommitRow]:
        return self.base.commits_since(ts, limit=limit)

    def get_mutation_request(
        self, session_id: str, request_id: int
    ) -> tuple[int, bytes, bytes] | None:
        for s, r, ts, fingerprint, result in self._requests:
            if s == session_id and r == request_id:
                return ts, fingerprint, result
        return self.base.get_mutation_request(session_id, request_id)

    def get_used_upload_token(self, nonce: bytes) -> str | None:
        for used, storage_id in self._tokens:
            if used == nonce:
                return storage_id
        return self.base.get_used_upload_token(nonce)

    def search_indexes(self) -> list[SearchIndexRow]:
        return self.base.search_indexes()

    def search(self, table_number: int, index: str, request: SearchRequest) -> list[str]:
        if (table_number, index) in self._search:
            self._locked("search over this transaction's own writes")
        return self.base.search(table_number, index, request)

    # ------------------------------------------------------------------ buffered writes

    def put_document(self, doc_id: str, table_number: int, ts: int, value: bytes) -> None:
        self._docs[doc_id] = (table_number, value)

    def delete_document(self, doc_id: str) -> None:
        number = table_number_of(doc_id)
        if number is not None:
            self._docs[doc_id] = (number, None)

    def insert_index_entries(self, entries: Iterable[tuple[int, bytes, str]]) -> None:
        for index_id, key, doc_id in entries:
            self._entries.setdefault(index_id, {})[key] = doc_id
            self._sorted.pop(index_id, None)
            self._count_delta[index_id] = self._count_delta.get(index_id, 0) + 1

    def delete_index_entries(self, entries: Iterable[tuple[int, bytes]]) -> None:
        for index_id, key in entries:
            self._entries.setdefault(index_id, {})[key] = None
            self._sorted.pop(index_id, None)
            self._removed[index_id, key] = None
            self._count_delta[index_id] = self._count_delta.get(index_id, 0) - 1

    def put_mutation_requests(self, records: Sequence[MutationRecord]) -> None:
        self._requests.extend(records)

    def put_used_upload_token(self, nonce: bytes, ts: int, storage_id: str) -> None:
        self._tokens.append((nonce, storage_id))

    def put_search_entries(
        self, table_number: int, index: str, entries: Sequence[SearchEntry]
    ) -> None:
        changes = self._search.setdefault((table_number, index), {})
        for entry in entries:
            changes[entry.doc_id] = entry

    def delete_search_entries(self, table_number: int, index: str, doc_ids: Sequence[str]) -> None:
        changes = self._search.setdefault((table_number, index), {})
        for doc_id in doc_ids:
            changes[doc_id] = None

    # ------------------------------------------------------------------ under the lock only

    def _locked(self, what: str) -> NoReturn:
        raise NeedsLock(what)

    def savepoint(self) -> None:
        self._locked("savepoint")

    def release(self) -> None:
        self._locked("release")

    def rollback_to(self) -> None:
        self._locked("rollback_to")

    def restart(self) -> None:
        self._locked("restart")

    def append_log(self, entries: Iterable[LogEntry]) -> None:
        self._locked("append_log")

    def append_commits(self, rows: Iterable[CommitRow]) -> None:
        self._locked("append_commits")

    def set_global(self, key: str, value: bytes) -> None:
        self._locked("set_global")

    def create_table(self, name: str, number: int) -> None:
        self._locked("create_table")

    def create_index(self, table_number: int, name: str, fields: tuple[str, ...]) -> int:
        self._locked("create_index")

    def drop_index(self, index_id: int) -> None:
        self._locked("drop_index")

    def create_search_index(self, row: SearchIndexRow) -> None:
        self._locked("create_search_index")

    def drop_search_index(self, table_number: int, index: str) -> None:
        self._locked("drop_search_index")

    def rename_search_index(self, table_number: int, old: str, new: str) -> None:
        self._locked("rename_search_index")

    def delete_table_documents(self, table_number: int) -> None:
        self._locked("delete_table_documents")

    def insert_bulk(
        self,
        documents: Sequence[tuple[str, int, int, bytes]],
        index_entries: Sequence[tuple[int, bytes, str]],
    ) -> None:
        self._locked("insert_bulk")

    def renumber_table(self, old_number: int, new_number: int) -> None:
        self._locked("renumber_table")

    def prune_log(self, before_ts: int) -> int:
        self._locked("prune_log")

    def prune_request_records(self, before_ts: int) -> int:
        self._locked("prune_request_records")
