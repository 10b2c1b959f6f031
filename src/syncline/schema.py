"""Schema declarations (``define_schema`` / ``define_table``) and document validation.

A schema maps table names to :class:`TableDefinition` objects: a document
validator (a ``v.object``, a ``v.union`` of objects, or ``v.any()``; system
fields ``_id`` and ``_creationTime`` are implicit and may not be declared) plus
database, text search and vector indexes::

    schema = define_schema({
        "tasks": define_table({"title": v.string(), "userId": v.id("users")})
            .index("by_user", ["userId"])
            .search_index("search_title", search_field="title", filter_fields=["userId"]),
    })

Contracts:

- Every rule that does not depend on data is checked by :func:`define_schema`
  (names, index shapes and counts, and with ``schema_validation`` that indexed
  fields exist), raising :class:`~syncline.errors.SchemaDefinitionError` with a
  message naming the table and index. A table definition becomes read-only
  once it is part of a schema.
- :meth:`Schema.validate_document` checks and coerces a document (without
  system fields) on every write; tables not in the schema, or every table when
  ``schema_validation`` is off, are only normalized with
  :func:`~syncline.values.json.from_python`.
- :meth:`Schema.to_json` is Convex's exported schema JSON, in a canonical order
  (tables and indexes sorted by name, object fields sorted), so equal schemas
  have equal JSON and the database can detect changes by comparing it.
  :meth:`Schema.from_json` is its inverse and re-runs every definition check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from syncline.errors import SchemaDefinitionError, SchemaValidationError
from syncline.values.json import object_from_python
from syncline.values.validators import (
    ValidationContext,
    Validator,
    ValidatorError,
    VAny,
    VArray,
    VDoc,
    VFloat64,
    VId,
    VObject,
    VOptional,
    VUnion,
    as_validator,
    substitute,
    v,
    validate_object,
    validator_from_json,
    walk,
)

__all__ = [
    "IndexDefinition",
    "Schema",
    "SearchIndexDefinition",
    "TableDefinition",
    "VectorIndexDefinition",
    "define_schema",
    "define_table",
]

MAX_NAME_LEN: Final = 64
MAX_INDEXES_PER_TABLE: Final = (
    32  # all kinds together; docs say 32 (code allows 64), we follow docs
)
MAX_INDEX_FIELDS: Final = 15  # 16 with the implicit trailing `_creationTime`
MAX_SEARCH_INDEXES_PER_TABLE: Final = 4
MAX_VECTOR_INDEXES_PER_TABLE: Final = 4
MAX_FILTER_FIELDS: Final = 16
MIN_VECTOR_DIMENSIONS: Final = 2
MAX_VECTOR_DIMENSIONS: Final = 4096
RESERVED_INDEX_NAMES: Final = frozenset({"by_id", "by_creation_time"})
SYSTEM_FIELDS: Final = ("_id", "_creationTime")

_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def _is_user_name(name: object) -> bool:
    """Table and index names: identifiers of at most 64 chars not starting with `_`."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LEN and _NAME_RE.match(name) is not None


@dataclass(frozen=True, slots=True)
class IndexDefinition:
    """A database index; ``_creationTime`` and ``_id`` are appended implicitly."""

    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchIndexDefinition:
    name: str
    search_field: str
    filter_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VectorIndexDefinition:
    name: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...]


def _field_tuple(fields: Any, what: str) -> tuple[str, ...]:
    # A bare string is a classic slip (`.index("by_a", "a")`) that would otherwise
    # silently index each character.
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        raise SchemaDefinitionError(f"{what}: fields must be a list of field paths, got {fields!r}")
    result = tuple(fields)
    for field in result:
        if not isinstance(field, str):
            raise SchemaDefinitionError(f"{what}: field paths must be strings, got {field!r}")
    return result


class TableDefinition:
    """A table's document validator and indexes, built with chainable methods.

    The methods record definitions and return ``self`` (as Convex's builder
    does); the rules are checked by :func:`define_schema`, which knows the
    table's name. Once in a schema the definition is frozen.
    """

    __slots__ = ("_frozen", "_indexes", "_search_indexes", "_vector_indexes", "validator")

    def __init__(self, validator: Validator | Mapping[str, Any]) -> None:
        self.validator: Validator = as_validator(validator)
        self._indexes: list[IndexDefinition] = []
        self._search_indexes: list[SearchIndexDefinition] = []
        self._vector_indexes: list[VectorIndexDefinition] = []
        self._frozen = False

    @property
    def indexes(self) -> tuple[IndexDefinition, ...]:
        return tuple(self._indexes)

    @property
    def search_indexes(self) -> tuple[SearchIndexDefinition, ...]:
        return tuple(self._search_indexes)

    @property
    def vector_indexes(self) -> tuple[VectorIndexDefinition, ...]:
        return tuple(self._vector_indexes)

    def index(self, name: str, fields: Sequence[str]) -> TableDefinition:
        """Add a database index on ``fields`` (dotted paths reach nested fields)."""
        self._check_mutable()
        self._indexes.append(IndexDefinition(name, _field_tuple(fields, f"Index `{name}`")))
        return self

    def search_index(
        self, name: str, *, search_field: str, filter_fields: Sequence[str] = ()
    ) -> TableDefinition:
        """Add a full text search index over the string field ``search_field``."""
        self._check_mutable()
        filters = _field_tuple(filter_fields, f"Search index `{name}`")
        self._search_indexes.append(SearchIndexDefinition(name, search_field, filters))
        return self

    def vector_index(
        self,
        name: str,
        *,
        vector_field: str,
        dimensions: int,
        filter_fields: Sequence[str] = (),
    ) -> TableDefinition:
        """Add a vector index over ``vector_field`` (an array of ``dimensions`` floats)."""
        self._check_mutable()
        filters = _field_tuple(filter_fields, f"Vector index `{name}`")
        self._vector_indexes.append(VectorIndexDefinition(name, vector_field, dimensions, filters))
        return self

    def _check_mutable(self) -> None:
        if self._frozen:
            raise SchemaDefinitionError(
                "This table definition is already part of a schema; define all indexes "
                "before passing it to define_schema()"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableDefinition):
            return NotImplemented
        return _table_json("", self) == _table_json("", other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"define_table({self.validator!r})"]
        parts += [f".index({i.name!r}, {list(i.fields)!r})" for i in self._indexes]
        parts += [
            f".search_index({s.name!r}, search_field={s.search_field!r}, "
            f"filter_fields={list(s.filter_fields)!r})"
            for s in self._search_indexes
        ]
        parts += [
            f".vector_index({x.name!r}, vector_field={x.vector_field!r}, "
            f"dimensions={x.dimensions!r}, filter_fields={list(x.filter_fields)!r})"
            for x in self._vector_indexes
        ]
        return "".join(parts)


def define_table(fields_or_validator: Validator | Mapping[str, Any]) -> TableDefinition:
    """A table whose documents match ``fields_or_validator``.

    Accepts a dict of field validators, a ``v.object(...)``, a ``v.union`` of
    objects, or ``v.any()``.
    """
    validator = as_validator(fields_or_validator)
    if _object_members(validator) is None and not isinstance(validator, VAny):
        raise SchemaDefinitionError(
            "define_table() expects a dict of field validators, a v.object(...), a v.union(...) "
            f"of objects or v.any(); got {validator!r}"
        )
    return TableDefinition(validator)


def _object_members(validator: Validator) -> list[VObject] | None:
    """The object validators a table validator is made of; ``None`` if not only objects."""
    if isinstance(validator, VObject):
        return [validator]
    if isinstance(validator, VUnion):
        members: list[VObject] = []
        for member in validator.members:
            nested = _object_members(member)
            if nested is None:
                return None
            members.extend(nested)
        return members
    return None


def _field_validators(validator: Validator, path: Sequence[str]) -> list[Validator] | None:
    """Validators of the field at ``path`` across union members.

    ``None`` when the path goes through a part whose fields are unknown
    (``v.any()``, records, non-object union members), so callers skip checks.
    """
    current = [validator]
    for part in path:
        found: list[Validator] = []
        for candidate in current:
            if isinstance(candidate, VOptional):
                candidate = candidate.inner
            objects = _object_members(candidate)
            if objects is None:
                return None
            for obj in objects:
                field = obj.fields.get(part)
                if field is not None:
                    found.append(field)
        current = found
    return current


class _TableChecker:
    """Definition-time checks of one table, with messages naming it."""

    def __init__(self, table: str, definition: TableDefinition, schema_validation: bool) -> None:
        self.table = table
        self.definition = definition
        self.schema_validation = schema_validation
        self.names: set[str] = set()

    def fail(self, message: str) -> SchemaDefinitionError:
        return SchemaDefinitionError(message)

    def run(self) -> None:
        table = self.table
        if not _is_user_name(table):
            raise self.fail(
                f"Invalid table name `{table}`: table names must be identifiers "
                "([A-Za-z][A-Za-z0-9_]*) of at most 64 characters and may not start with `_`"
            )
        validator = self.definition.validator
        if _object_members(validator) is None and not isinstance(validator, VAny):
            raise self.fail(
                f"Table `{table}`: documents are objects, so the table validator must be a "
                f"v.object(...), a v.union(...) of objects or v.any(); got {validator!r}"
            )
        if any(isinstance(node, VDoc) for node in walk(validator)):
            raise self.fail(
                f"Table `{table}` uses v.doc(...): it describes function args and results, "
                "not stored fields; store the document's id (v.id(...)) instead"
            )
        for obj in _object_members(validator) or ():
            for field in obj.fields:
                if field.startswith("_"):
                    raise self.fail(
                        f"Table `{table}` declares the field `{field}`: top-level fields may not "
                        "start with `_` (system fields `_id` and `_creationTime` are added "
                        "automatically)"
                    )
        d = self.definition
        total = len(d._indexes) + len(d._search_indexes) + len(d._vector_indexes)
        if total > MAX_INDEXES_PER_TABLE:
            raise self.fail(
                f"Table `{table}` has {total} indexes; at most {MAX_INDEXES_PER_TABLE} are allowed "
                "(database, search and vector indexes together)"
            )
        if len(d._search_indexes) > MAX_SEARCH_INDEXES_PER_TABLE:
            raise self.fail(
                f"Table `{table}` has {len(d._search_indexes)} search indexes; at most "
                f"{MAX_SEARCH_INDEXES_PER_TABLE} are allowed"
            )
        if len(d._vector_indexes) > MAX_VECTOR_INDEXES_PER_TABLE:
            raise self.fail(
                f"Table `{table}` has {len(d._vector_indexes)} vector indexes; at most "
                f"{MAX_VECTOR_INDEXES_PER_TABLE} are allowed"
            )
        seen_fields: dict[tuple[str, ...], str] = {}
        for index in d._indexes:
            what = f"Index `{index.name}` on table `{table}`"
            self.check_name(index.name, what)
            if not 1 <= len(index.fields) <= MAX_INDEX_FIELDS:
                raise self.fail(
                    f"{what} has {len(index.fields)} fields; an index needs between 1 and "
                    f"{MAX_INDEX_FIELDS} fields"
                )
            self.check_fields(index.fields, what)
            other = seen_fields.get(index.fields)
            if other is not None:
                raise self.fail(
                    f"{what} has the same fields {list(index.fields)!r} as index `{other}`; "
                    "remove one of them"
                )
            seen_fields[index.fields] = index.name
        for search in d._search_indexes:
            what = f"Search index `{search.name}` on table `{table}`"
            self.check_name(search.name, what)
            self.check_filter_count(search.filter_fields, what)
            self.check_fields((search.search_field, *search.filter_fields), what)
        for vector in d._vector_indexes:
            what = f"Vector index `{vector.name}` on table `{table}`"
            self.check_name(vector.name, what)
            dims = vector.dimensions
            if (
                not isinstance(dims, int)
                or isinstance(dims, bool)
                or not MIN_VECTOR_DIMENSIONS <= dims <= MAX_VECTOR_DIMENSIONS
            ):
                raise self.fail(
                    f"{what} has dimensions {dims!r}; dimensions must be an integer between "
                    f"{MIN_VECTOR_DIMENSIONS} and {MAX_VECTOR_DIMENSIONS}"
                )
            self.check_filter_count(vector.filter_fields, what)
            self.check_fields((vector.vector_field, *vector.filter_fields), what)
            self.check_vector_type(vector.vector_field, what)

    def check_name(self, name: str, what: str) -> None:
        if not _is_user_name(name):
            raise self.fail(
                f"{what}: invalid index name; index names must be identifiers "
                "([A-Za-z][A-Za-z0-9_]*) of at most 64 characters and may not start with `_`"
            )
        if name in RESERVED_INDEX_NAMES:
            raise self.fail(f"{what}: the name `{name}` is reserved for a built-in index")
        if name in self.names:
            raise self.fail(f"{what}: table `{self.table}` already has an index named `{name}`")
        self.names.add(name)

    def check_filter_count(self, filter_fields: tuple[str, ...], what: str) -> None:
        if len(filter_fields) > MAX_FILTER_FIELDS:
            raise self.fail(
                f"{what} has {len(filter_fields)} filter fields; at most {MAX_FILTER_FIELDS} "
                "are allowed"
            )

    def check_fields(self, fields: Sequence[str], what: str) -> None:
        seen: set[str] = set()
        for field in fields:
            if not isinstance(field, str):
                raise self.fail(f"{what}: field paths must be strings, got {field!r}")
            if field in seen:
                raise self.fail(f"{what} lists the field `{field}` twice")
            seen.add(field)
            if field == "_creationTime":
                raise self.fail(
                    f"{what} contains `_creationTime`: it is added to the end of every index "
                    "automatically and may not be listed"
                )
            if field == "_id":
                raise self.fail(
                    f"{what} contains `_id`: it is added to the end of every index automatically "
                    "and may not be listed"
                )
            parts = field.split(".")
            for part in parts:
                if not part:
                    raise self.fail(f"{what} has the invalid field path `{field}`")
                if part.startswith("_"):
                    raise self.fail(
                        f"{what} has the field `{field}`: field path components starting with "
                        "`_` are reserved"
                    )
            if self.schema_validation:
                top = _field_validators(self.definition.validator, parts[:1])
                if top is not None and not top:
                    raise self.fail(
                        f"{what} references the field `{field}` that does not exist in the "
                        "table's validator"
                    )

    def check_vector_type(self, field: str, what: str) -> None:
        if not self.schema_validation:
            return
        found = _field_validators(self.definition.validator, field.split("."))
        for validator in found or ():
            if isinstance(validator, VOptional):
                validator = validator.inner
            if not (isinstance(validator, VArray) and isinstance(validator.element, VFloat64)):
                raise self.fail(
                    f"{what}: the vector field `{field}` must be v.array(v.float64()) "
                    f"(optionally v.optional), got {validator!r}"
                )


def _table_json(name: str, table: TableDefinition) -> dict[str, Any]:
    return {
        "tableName": name,
        "indexes": [
            {"indexDescriptor": i.name, "fields": list(i.fields)}
            for i in sorted(table._indexes, key=lambda i: i.name)
        ],
        "searchIndexes": [
            {
                "indexDescriptor": s.name,
                "searchField": s.search_field,
                "filterFields": list(s.filter_fields),
            }
            for s in sorted(table._search_indexes, key=lambda s: s.name)
        ],
        "vectorIndexes": [
            {
                "indexDescriptor": x.name,
                "vectorField": x.vector_field,
                "dimensions": x.dimensions,
                "filterFields": list(x.filter_fields),
            }
            for x in sorted(table._vector_indexes, key=lambda x: x.name)
        ],
        "documentType": table.validator.to_json(),
    }


class Schema:
    """A checked, immutable set of table definitions. Build with :func:`define_schema`."""

    __slots__ = ("schema_validation", "tables")

    def __init__(
        self, tables: Mapping[str, TableDefinition], *, schema_validation: bool = True
    ) -> None:
        if not isinstance(tables, Mapping):
            raise SchemaDefinitionError(
                f"define_schema() expects a dict of table name -> define_table(...), got {tables!r}"
            )
        if not isinstance(schema_validation, bool):
            raise SchemaDefinitionError("schema_validation must be True or False")
        for name, definition in tables.items():
            if not isinstance(definition, TableDefinition):
                raise SchemaDefinitionError(
                    f"Table `{name}` must be defined with define_table(...), got {definition!r}"
                )
            _TableChecker(name, definition, schema_validation).run()
        for definition in tables.values():
            definition._frozen = True
        self.tables: dict[str, TableDefinition] = dict(tables)
        self.schema_validation = schema_validation

    def validator_for(self, table: str) -> Validator | None:
        """The validator documents of ``table`` must match, or ``None`` if unchecked."""
        if not self.schema_validation:
            return None
        definition = self.tables.get(table)
        return None if definition is None else definition.validator

    def validate_document(
        self, table: str, doc: dict[str, Any], ctx: ValidationContext | None = None
    ) -> dict[str, Any]:
        """Check and coerce ``doc`` (without system fields) for a write to ``table``.

        Raises :class:`~syncline.errors.SchemaValidationError` on mismatch.
        """
        validator = self.validator_for(table)
        if validator is None:
            return object_from_python(doc)
        try:
            return validate_object(validator, doc, ctx)
        except ValidatorError as exc:
            raise SchemaValidationError(
                f'Failed to insert or update a document in table "{table}" because it does not '
                f"match the schema: {exc.detail}"
            ) from exc

    def doc(self, table: str) -> Validator:
        """The validator of full documents of ``table``, system fields included."""
        definition = self.tables.get(table)
        if definition is None:
            raise SchemaDefinitionError(f"Table `{table}` is not in the schema")
        system = {"_id": v.id(table), "_creationTime": v.number()}
        validator = definition.validator
        members = _object_members(validator)
        if members is None:
            return validator
        if isinstance(validator, VObject):
            return validator.extend(system)
        return v.union(*(m.extend(system) for m in members))

    def bind_documents(self, validator: Validator) -> Validator:
        """``validator`` with every ``v.doc(table)`` in it bound to :meth:`doc` of ``table``.

        Raises SchemaDefinitionError naming the table when the schema has none by that name.
        """

        def bind(node: Validator) -> Validator | None:
            if not isinstance(node, VDoc):
                return None
            if node.table_name not in self.tables:
                known = ", ".join(f"`{name}`" for name in sorted(self.tables)) or "none"
                raise SchemaDefinitionError(
                    f"{node!r} names a table the schema does not define (tables: {known})"
                )
            return node.bound(self.doc(node.table_name))

        return substitute(validator, bind)

    def table_names_referenced_by_ids(self) -> dict[str, tuple[str, ...]]:
        """Referenced table -> sorted names of the tables whose validator has ``v.id`` of it."""
        referenced: dict[str, set[str]] = {}
        for name, definition in self.tables.items():
            for validator in walk(definition.validator):
                if isinstance(validator, VId):
                    referenced.setdefault(validator.table_name, set()).add(name)
        return {target: tuple(sorted(sources)) for target, sources in sorted(referenced.items())}

    def to_json(self) -> dict[str, Any]:
        """Convex's exported schema JSON, in canonical order."""
        return {
            "tables": [_table_json(name, self.tables[name]) for name in sorted(self.tables)],
            "schemaValidation": self.schema_validation,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Schema:
        """Parse :meth:`to_json` output; raises SchemaDefinitionError if malformed."""
        try:
            tables: dict[str, TableDefinition] = {}
            for table in obj["tables"]:
                name = table["tableName"]
                if name in tables:
                    raise SchemaDefinitionError(f"Table `{name}` appears twice in the schema JSON")
                document_type = table.get("documentType")
                definition = define_table(
                    v.any() if document_type is None else validator_from_json(document_type)
                )
                for index in table.get("indexes", ()):
                    definition.index(index["indexDescriptor"], index["fields"])
                for search in table.get("searchIndexes", ()):
                    definition.search_index(
                        search["indexDescriptor"],
                        search_field=search["searchField"],
                        filter_fields=search.get("filterFields", ()),
                    )
                for vector in table.get("vectorIndexes", ()):
                    definition.vector_index(
                        vector["indexDescriptor"],
                        vector_field=vector["vectorField"],
                        dimensions=vector["dimensions"],
                        filter_fields=vector.get("filterFields", ()),
                    )
                tables[name] = definition
            return cls(tables, schema_validation=obj.get("schemaValidation", True))
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaDefinitionError(f"Invalid schema JSON: {exc!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        tables = ", ".join(f"{name!r}: {d!r}" for name, d in self.tables.items())
        return f"define_schema({{{tables}}}, schema_validation={self.schema_validation!r})"


def define_schema(
    tables: Mapping[str, TableDefinition], *, schema_validation: bool = True
) -> Schema:
    """Check and build a :class:`Schema`; raises SchemaDefinitionError on any broken rule."""
    return Schema(tables, schema_validation=schema_validation)
