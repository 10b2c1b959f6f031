"""Text search indexes in the engine: what each document contributes, on every write.

The active schema declares a table's search indexes
(``define_table(...).search_index(name, search_field=..., filter_fields=[...])``);
the storage holds one per declaration (created and backfilled when the schema
is applied, ``search_schema.py``). Every write of a document of such a table
goes through :func:`write_search_entries`, in the same storage transaction as
the document, which:

* stores the document's entry (its terms and filter tokens), or removes it;
* records the old and new revision in the write set (``WriteSet.search``),
  so that searches whose results the write may change are invalidated.

A document whose search field is missing or not a string has no entry (no
search can find it), as in Convex.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.database.search_reads import SearchWrite, filter_token
from syncline.database.search_terms import tokenize
from syncline.database.writes import WriteSet
from syncline.persistence.base import SearchEntry, WriteConnection
from syncline.values.keys import get_field_path

if TYPE_CHECKING:
    from syncline.schema import Schema, SearchIndexDefinition

__all__ = ["SearchIndexSpec", "search_specs", "write_search_entries"]


@dataclass(frozen=True, slots=True)
class SearchIndexSpec:
    """One search index of one table, as the engine uses it."""

    table: str
    name: str
    search_field: str
    filter_fields: tuple[str, ...]

    @classmethod
    def of(cls, table: str, definition: SearchIndexDefinition) -> SearchIndexSpec:
        return cls(table, definition.name, definition.search_field, definition.filter_fields)

    @property
    def full_name(self) -> str:
        return f"{self.table}.{self.name}"

    def tokens(self, doc: Mapping[str, Any]) -> list[str] | None:
        """The document's terms in order, or None when it has no entry."""
        text = get_field_path(doc, self.search_field)
        if type(text) is not str:
            return None
        return tokenize(text)

    def filters(self, doc: Mapping[str, Any]) -> dict[str, str]:
        return {f: filter_token(f, get_field_path(doc, f)) for f in self.filter_fields}

    def entry(self, doc: Mapping[str, Any]) -> tuple[SearchEntry, SearchWrite] | None:
        """What the storage holds for ``doc``, and the revision as write sets see it."""
        tokens = self.tokens(doc)
        if tokens is None:
            return None
        filters = self.filters(doc)
        entry = SearchEntry(
            doc["_id"], doc["_creationTime"], tuple(tokens), tuple(filters.values())
        )
        return entry, SearchWrite(filters, frozenset(tokens))


def search_specs(schema: Schema | None, table: str) -> list[SearchIndexSpec]:
    """The search indexes ``schema`` declares on ``table``."""
    if schema is None:
        return []
    definition = schema.tables.get(table)
    if definition is None:
        return []
    return [SearchIndexSpec.of(table, d) for d in definition.search_indexes]


def write_search_entries(
    conn: WriteConnection,
    writes: WriteSet,
    specs: list[SearchIndexSpec],
    table_number: int,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> None:
    """Keep every search index in ``specs`` current for one document write.

    Both revisions go into the write set even when the entry is unchanged: a
    search returns whole documents, so any change to a document it found
    changes its result.
    """
    for spec in specs:
        before = spec.entry(old) if old is not None else None
        after = spec.entry(new) if new is not None else None
        if before is not None:
            writes.add_search(spec.full_name, before[1])
        if after is not None:
            if before is None or after[1] != before[1]:
                writes.add_search(spec.full_name, after[1])
            if before is None or after[0] != before[0]:
                conn.put_search_entries(table_number, spec.name, [after[0]])
        elif before is not None:
            conn.delete_search_entries(table_number, spec.name, [before[0].doc_id])
