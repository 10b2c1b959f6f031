"""Write sets and commit records: what a commit changed, for invalidation.

For every document a transaction wrote, the write set holds the old and the
new key of that document in every index of its table (design §3.2). A
subscription whose read set contains any of those keys is invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class WriteSet:
    #: index full name -> encoded keys touched (old and new)
    keys: dict[str, list[bytes]] = field(default_factory=dict)
    #: document ids written (inserted, updated or deleted)
    doc_ids: set[str] = field(default_factory=set)
    #: tables written
    tables: set[str] = field(default_factory=set)

    def add_key(self, index_name: str, key: bytes) -> None:
        self.keys.setdefault(index_name, []).append(key)

    def is_empty(self) -> bool:
        return not self.doc_ids


@dataclass(frozen=True, slots=True)
class Commit:
    """One committed transaction, published to listeners in ts order."""

    ts: int
    writes: WriteSet
