"""Export and import of a deployment's data (``syncline export`` / ``syncline import``).

Snapshot ZIP (``syncline export``, ``syncline import snapshot.zip``), the
layout of Convex's snapshot exports::

    README.md                        what this file is
    _tables/documents.jsonl          {"name": "tasks", "id": 10001} per user table, by number
    <table>/documents.jsonl          one document per line, in _creationTime order
    <table>/generated_schema.jsonl   the single line "uniform" (see below)
    _storage/documents.jsonl         one line per stored file:
                                     {"_id", "_creationTime", "sha256", "size", "contentType"}
    _storage/<id>[.<ext>]            the file's bytes (when files are included)

Documents are in Convex's lossless export JSON (``ValueFormat::ConvexExportJSON``,
marked by ``"uniform"`` in ``generated_schema.jsonl``): strings, booleans and
null as JSON; an **int64 is a JSON integer** (``5``); a **finite float64 is a
JSON number with a fraction or exponent** (``5.0``, ``-0.0``, ``1e+300``);
NaN and ±inf are ``{"$float": base64(8 bytes little-endian)}``; bytes are
``{"$bytes": base64}``; arrays and objects nest. Ids and ``_creationTime``
are written as they are stored and restored exactly. Convex's "clean" export
(int64 as a decimal string, bytes as a base64 string) cannot be read back
without type hints, which is why current Convex versions write this format
and mark it "uniform"; Syncline writes and reads it the same way. A ZIP table
without ``generated_schema.jsonl`` is read like a JSONL file (below); one
with Convex's older inferred-shape schema is read the same way, with a
warning, since that shape language is not supported.

System tables: ``_storage`` is exported (metadata, and file contents read
from the file store) and restored as Convex restores it: one ``_storage`` row
per file whose contents the ZIP holds, with its id, ``_creationTime`` and
``contentType``, ``sha256`` and ``size`` recomputed from the contents (a
mismatch with the metadata is a bad row); metadata without contents is
skipped with a warning, since a row must always have its file.
``_scheduled_functions`` is neither exported nor restored, as in Convex: its
pending jobs belong to the source deployment and would otherwise run twice.
Cron state is re-created from ``crons.py``; environment variables are not data
and stay out of snapshots.

Memory: export reads one snapshot in batches (``Database.scan_table``) and streams
each ZIP entry, so it does not grow with the data. Import streams its input
and writes in batches; what it keeps until the commit is the write set it
publishes (a few short index keys and the id per document), not documents.

Single table (``--table``): JSONL is one document per line in Convex's wire
JSON — ``{"$integer": ...}``, ``{"$float": ...}``, ``{"$bytes": ...}`` for the
values plain JSON cannot hold, and every plain JSON number a float64 (as in
Convex and its Python client) — so an exported table reads back exactly. CSV
has a header row of field names; export writes ``_id``, ``_creationTime`` and
then every field, missing fields as empty cells, strings as is, numbers as
JSON numbers (``NaN``, ``Infinity``), booleans as ``true``/``false``, null as
``null``, int64 in decimal, bytes in base64 and arrays/objects as wire JSON.
CSV import reads a cell against the table's schema when the field has a
validator (the first reading the validator accepts: null, boolean, int64,
number, JSON array/object, bytes, string); without one, as Convex does: a
number if it parses as one, else a string. An empty cell means the field is
absent (Convex would store ``""``), so exported optional fields read back.

Import is all or nothing: the whole import runs as **one write transaction**
on the database's writer (no per-transaction limits; see
:class:`~syncline.database.bulk.BulkWriter`), rows are checked against the
active schema as they are written, and if any row is bad the transaction
rolls back — every bad row is reported with its file and line (the first
:data:`MAX_REPORTED_ERRORS` in full) and nothing is imported. Modes: by
default every imported table must be empty; ``replace`` first deletes the
documents of the imported tables; ``append`` adds to them. ``_id`` and
``_creationTime`` are kept when given (ids must belong to the table and be
new) and generated when absent. Ids embed their table's number, so import
gives imported tables the numbers their ids need (from ``_tables``, else from
the first document's ``_id``), renumbering empty tables when necessary; a
table with documents is never renumbered (a clear error says what to do).

The package, one concept a module: :mod:`~syncline.snapshot.codec` (export
JSON, ZIP entry names), :mod:`~syncline.snapshot.results` (progress, results,
bad rows), :mod:`~syncline.snapshot.export`, :mod:`~syncline.snapshot.sources`
(reading JSONL, CSV and ZIP inputs), :mod:`~syncline.snapshot.importer` (the
one transaction) and :mod:`~syncline.snapshot.file_restore` (stored files).
"""

from __future__ import annotations

from syncline.snapshot.codec import from_export_json, to_export_json
from syncline.snapshot.export import export_snapshot, export_table
from syncline.snapshot.importer import import_snapshot, import_table
from syncline.snapshot.results import (
    MAX_REPORTED_ERRORS,
    DataImportError,
    ExportResult,
    ImportMode,
    ImportResult,
    Progress,
    RowError,
)

__all__ = [
    "MAX_REPORTED_ERRORS",
    "DataImportError",
    "ExportResult",
    "ImportMode",
    "ImportResult",
    "Progress",
    "RowError",
    "export_snapshot",
    "export_table",
    "from_export_json",
    "import_snapshot",
    "import_table",
    "to_export_json",
]
