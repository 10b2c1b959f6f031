"""Write sets and commit records: what a commit changed, for invalidation.

For every document a transaction wrote, the write set holds the old and the
new key of that document in every index of its table (design §3.2). A
subscription whose read set contains any of those keys is invalid, and so is
an optimistic transaction that read any of them after its snapshot.

Every commit's write set is stored with it in the commit log
(:func:`encode_write_set`), so that another process sharing the store can
invalidate its own subscriptions and check its own transactions from the log
alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from syncline.database.search_reads import SearchWrite
from syncline.errors import InternalError

#: commit flags stored with each commit in the commit log
CATALOG_CHANGED = 1
SCHEMA_CHANGED = 2
#: never stored: a process that fell behind the commit log's retention publishes one
#: commit with this flag in place of the commits it can no longer read (any document
#: may have changed; its write set names every table but no keys or documents)
EVERYTHING_CHANGED = 4


@dataclass(slots=True)
class WriteSet:
    #: index full name -> encoded keys touched (old and new)
    keys: dict[str, list[bytes]] = field(default_factory=dict)
    #: document ids written (inserted, updated or deleted)
    doc_ids: set[str] = field(default_factory=set)
    #: tables written
    tables: set[str] = field(default_factory=set)
    #: text search index full name -> written revisions (old and new) as it sees them
    search: dict[str, list[SearchWrite]] = field(default_factory=dict)

    def add_key(self, index_name: str, key: bytes) -> None:
        self.keys.setdefault(index_name, []).append(key)

    def add_search(self, index_name: str, revision: SearchWrite) -> None:
        self.search.setdefault(index_name, []).append(revision)

    def is_empty(self) -> bool:
        return not self.doc_ids


@dataclass(frozen=True, slots=True)
class Commit:
    """One committed transaction, published to listeners in ts order.

    ``local`` is True for a commit this process made, False for one another
    process made (learnt from the commit log). ``flags`` are the
    :data:`CATALOG_CHANGED` / :data:`SCHEMA_CHANGED` / :data:`EVERYTHING_CHANGED` bits.
    """

    ts: int
    writes: WriteSet
    local: bool = True
    flags: int = 0

    @property
    def changes_everything(self) -> bool:
        """Stands for commits that can no longer be read: anything up to ``ts`` may differ."""
        return bool(self.flags & EVERYTHING_CHANGED)


def encode_write_set(writes: WriteSet) -> bytes:
    """The commit log's form of a write set: JSON, keys in hex (see :func:`decode_write_set`)."""
    data: dict[str, object] = {
        "k": {name: [key.hex() for key in keys] for name, keys in writes.keys.items()},
        "d": list(writes.doc_ids),
        "t": list(writes.tables),
    }
    if writes.search:
        data["s"] = {name: [r.to_json() for r in revs] for name, revs in writes.search.items()}
    return orjson.dumps(data)


def decode_write_set(raw: bytes) -> WriteSet:
    """The write set :func:`encode_write_set` stored; InternalError if ``raw`` is not one."""
    try:
        data = orjson.loads(raw)
        return WriteSet(
            {name: [bytes.fromhex(key) for key in keys] for name, keys in data["k"].items()},
            set(data["d"]),
            set(data["t"]),
            {
                name: [SearchWrite.from_json(r) for r in revisions]
                for name, revisions in data.get("s", {}).items()
            },
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InternalError(f"Commit log entry is not an encoded write set: {exc}") from None
