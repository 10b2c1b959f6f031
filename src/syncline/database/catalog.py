"""The catalog: which tables and indexes exist, and how index keys are built.

The catalog is immutable; a change produces a new :class:`Catalog`. Readers
hold whichever catalog was current when they started; the writer swaps in a
new one only after the commit that created it (so a reader never sees a table
number that might still roll back).

Table numbers are embedded in document ids. System tables have fixed numbers
below :data:`FIRST_USER_TABLE_NUMBER`; user tables are numbered from there up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from syncline.persistence.base import BY_ID_INDEX
from syncline.values.keys import encode_key, get_field_path

FIRST_USER_TABLE_NUMBER = 10001
#: served by storage from the documents themselves: it has no stored entries
BY_ID = BY_ID_INDEX
BY_CREATION_TIME = "by_creation_time"
SYSTEM_FIELDS = ("_creationTime", "_id")


@dataclass(frozen=True, slots=True)
class SystemTableSpec:
    name: str
    number: int
    #: visible to user code through ``ctx.db.system`` (read-only)
    user_visible: bool
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


#: System tables. Numbers are part of the on-disk format: never renumber.
SYSTEM_TABLES: tuple[SystemTableSpec, ...] = (
    SystemTableSpec(
        "_scheduled_functions",
        1,
        user_visible=True,
        indexes={
            # the scheduler's queue: pending jobs in due order; inProgress ones at startup
            "by_state_and_time": ("state.kind", "scheduledTime"),
            # retention: completed rows, oldest first (pending rows lack the field)
            "by_completion": ("completedTime",),
        },
    ),
    SystemTableSpec("_storage", 2, user_visible=True),
    SystemTableSpec(
        "_cron_jobs",
        3,
        user_visible=False,
        # by_job: which cron job a finishing scheduled run belongs to
        indexes={"by_name": ("name",), "by_job": ("jobId",)},
    ),
    SystemTableSpec(
        "_environment_variables", 4, user_visible=False, indexes={"by_name": ("name",)}
    ),
    # built-in auth's signing keys (accounts/keys.py), shared by every node
    SystemTableSpec("_auth_signing_keys", 5, user_visible=False, indexes={"by_kid": ("kid",)}),
)
SYSTEM_TABLES_BY_NAME = {spec.name: spec for spec in SYSTEM_TABLES}


@dataclass(frozen=True, slots=True)
class IndexInfo:
    id: int
    table: str
    name: str
    #: the user-declared fields (empty for the built-in indexes)
    fields: tuple[str, ...]

    @property
    def key_fields(self) -> tuple[str, ...]:
        """The fields that make up a key, system fields appended."""
        if self.name == BY_ID:
            return ("_id",)
        return (*self.fields, *SYSTEM_FIELDS)

    @property
    def full_name(self) -> str:
        return f"{self.table}.{self.name}"

    def key_of(self, doc: Mapping[str, Any]) -> bytes:
        if self.name == BY_ID:
            return encode_key((doc["_id"],))
        values = [get_field_path(doc, f) for f in self.fields]
        values.append(doc["_creationTime"])
        values.append(doc["_id"])
        return encode_key(values)


@dataclass(frozen=True, slots=True)
class TableInfo:
    number: int
    name: str
    indexes: Mapping[str, IndexInfo]

    @property
    def is_system(self) -> bool:
        return self.name.startswith("_")


class Catalog:
    """An immutable view of tables and their indexes."""

    __slots__ = ("_by_name", "_by_number")

    def __init__(self, tables: Mapping[str, TableInfo]) -> None:
        self._by_name: Mapping[str, TableInfo] = MappingProxyType(dict(tables))
        self._by_number: Mapping[int, TableInfo] = MappingProxyType(
            {t.number: t for t in tables.values()}
        )

    @classmethod
    def from_rows(cls, tables: list[Any], indexes: list[Any]) -> Catalog:
        names = {t.number: t.name for t in tables}
        per_table: dict[int, dict[str, IndexInfo]] = {n: {} for n in names}
        for row in indexes:
            if row.table_number in names:
                per_table[row.table_number][row.name] = IndexInfo(
                    row.id, names[row.table_number], row.name, tuple(f for f in row.fields if f)
                )
        return cls(
            {
                name: TableInfo(number, name, MappingProxyType(per_table[number]))
                for number, name in names.items()
            }
        )

    def table(self, name: str) -> TableInfo | None:
        return self._by_name.get(name)

    def table_by_number(self, number: int) -> TableInfo | None:
        return self._by_number.get(number)

    def tables(self) -> list[TableInfo]:
        return list(self._by_name.values())

    def next_user_table_number(self) -> int:
        numbers = [n for n in self._by_number if n >= FIRST_USER_TABLE_NUMBER]
        return max(numbers, default=FIRST_USER_TABLE_NUMBER - 1) + 1

    def with_table(self, table: TableInfo) -> Catalog:
        tables = dict(self._by_name)
        tables[table.name] = table
        return Catalog(tables)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def same_as(self, other: Catalog) -> bool:
        """The same tables, numbers and indexes (ids and fields) as ``other``."""
        if self is other:
            return True
        return {n: (t.number, dict(t.indexes)) for n, t in self._by_name.items()} == {
            n: (t.number, dict(t.indexes)) for n, t in other._by_name.items()
        }

    def by_id_tables(self) -> dict[int, int]:
        """The id of every ``by_id`` index -> its table's number."""
        return {
            index.id: table.number
            for table in self._by_name.values()
            for index in table.indexes.values()
            if index.name == BY_ID
        }
