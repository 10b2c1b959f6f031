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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import hashlib
import io
import mimetypes
import os
import re
import struct
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from syncline.blobs.base import BlobNotFound, BlobReader, BlobStore
from syncline.database.bulk import BulkWriter
from syncline.database.catalog import (
    BY_CREATION_TIME,
    BY_ID,
    SYSTEM_TABLES_BY_NAME,
    Catalog,
    TableInfo,
)
from syncline.database.database import Database
from syncline.database.transaction import check_table_name
from syncline.errors import InvalidRequest, InvalidValue, SynclineError
from syncline.values.ids import table_number_of
from syncline.values.json import from_json, from_json_bytes, to_json, to_json_bytes
from syncline.values.types import INT64_MAX, INT64_MIN, Int64, Value
from syncline.values.validators import (
    Validator,
    ValidatorError,
    VAny,
    VObject,
    VOptional,
)

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.persistence.base import ReadConnection

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

MAX_REPORTED_ERRORS = 20
"""Bad rows reported in full by a failed import (all of them are counted)."""

TABLES_TABLE = "_tables"
STORAGE_TABLE = "_storage"
UNIFORM = "uniform"
_PROGRESS_EVERY = 1000
_LE_DOUBLE = struct.Struct("<d")
_DOCUMENTS_ENTRY = re.compile(r"(?:(.*)/)?([^/]+)/documents\.jsonl")
_SCHEMA_ENTRY = re.compile(r"(?:(.*)/)?([^/]+)/generated_schema\.jsonl")
_STORAGE_BLOB_ENTRY = re.compile(r"(?:(.*)/)?_storage/([^/.]+)(?:\.[^/]+)?")
_CSV_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_CSV_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_CSV_SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

README = """\
# Syncline snapshot export

This ZIP file holds a snapshot of the tables of a Syncline deployment, in the
layout of Convex snapshot exports:

- `_tables/documents.jsonl`: one line per table, `{"name": ..., "id": <table number>}`.
- `<table>/documents.jsonl`: one document per line, in Convex's lossless export
  JSON (int64 as JSON integers, floats always with a fraction or exponent,
  NaN/Infinity as {"$float": ...}, bytes as {"$bytes": ...}).
- `<table>/generated_schema.jsonl`: "uniform", the marker of that encoding.
- `_storage/documents.jsonl` and `_storage/<id>`: stored files and their metadata.

Restore it with `syncline import <this file>` (add --replace to overwrite
tables that have data).
"""


# --------------------------------------------------------------------------- value codecs


def to_export_json(value: Value) -> Any:
    """Encode a value in Convex's lossless export JSON (see the module docstring).

    Returns a new JSON-able structure for :func:`orjson.dumps`, which writes
    every float with a fraction or exponent (``1.0``), so int64 and float64
    stay distinguishable.
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float:
        if value - value == 0.0:  # type: ignore[operator]
            return value
        return {"$float": _b64(_LE_DOUBLE.pack(value))}  # type: ignore[arg-type]
    if t is Int64:
        return int(value)  # type: ignore[arg-type]
    if t is dict:
        return {k: to_export_json(x) for k, x in value.items()}  # type: ignore[union-attr]
    if t is list:
        return [to_export_json(x) for x in value]  # type: ignore[union-attr]
    if t is bytes:
        return {"$bytes": _b64(value)}  # type: ignore[arg-type]
    raise InvalidValue(f"{t.__qualname__} is not a Convex value")


def from_export_json(obj: Any) -> Value:
    """Decode Convex's lossless export JSON parsed by orjson (see the module docstring).

    JSON integers become :class:`Int64` (an integer outside int64's range is
    an error), other JSON numbers floats, and a one-key object whose key
    starts with ``$`` the special value it wraps. Converts ``obj`` in place.
    Raises InvalidValue naming the path of the offending part.
    """
    try:
        return _from_export(obj)
    except _ExportPathError as exc:
        where = "".join(reversed(exc.segments))
        raise InvalidValue(f"Invalid value{' at ' + where if where else ''}: {exc}") from None


class _ExportPathError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.segments: list[str] = []


def _from_export(x: Any) -> Any:
    t = type(x)
    if t is str or t is float or t is bool or x is None:
        return x
    if t is int:
        if INT64_MIN <= x <= INT64_MAX:
            return Int64(x)
        raise _ExportPathError(f"integer {x} is outside the int64 range")
    if t is dict:
        if len(x) == 1:
            (key,) = x
            if type(key) is str and key.startswith("$"):
                try:
                    return from_json(x)
                except InvalidValue as exc:
                    raise _ExportPathError(exc.message.removeprefix("Invalid value: ")) from None
        for key, item in x.items():
            t2 = type(item)
            if t2 is str or t2 is float or t2 is bool or item is None:
                continue
            try:
                x[key] = _from_export(item)
            except _ExportPathError as exc:
                exc.segments.append(f".{key}")
                raise
        return x
    if t is list:
        for i, item in enumerate(x):
            try:
                x[i] = _from_export(item)
            except _ExportPathError as exc:
                exc.segments.append(f"[{i}]")
                raise
        return x
    raise _ExportPathError(f"{t.__qualname__} is not a JSON value")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# --------------------------------------------------------------------------- progress


class Progress(Protocol):
    """Where export and import report progress (the CLI draws it with rich).

    ``start`` opens a new step (finishing the previous one); ``unit`` is
    ``"documents"``, ``"bytes"`` or ``"files"``; ``total`` is None when unknown.
    Import reports from the database's writer thread.
    """

    def start(self, label: str, total: int | None, unit: str) -> None: ...

    def advance(self, amount: int) -> None: ...


class _NoProgress:
    def start(self, label: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


# --------------------------------------------------------------------------- results & errors


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad row of an import: where it is and what is wrong with it."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class DataImportError(InvalidRequest):
    """An import that was refused or failed; nothing was imported.

    ``rows`` holds the first :data:`MAX_REPORTED_ERRORS` bad rows and
    ``bad_rows`` how many there were in all (0 when the import was refused as
    a whole, e.g. a non-empty table without ``--replace``/``--append``).
    """

    code = "ImportFailed"

    def __init__(
        self,
        message: str,
        *,
        rows: list[RowError] | None = None,
        bad_rows: int = 0,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.rows = rows or []
        self.bad_rows = bad_rows


class ImportMode(Enum):
    """What to do with imported tables that already hold documents."""

    #: refuse the import if any imported table has documents
    EMPTY = "empty"
    #: delete the imported tables' documents first
    REPLACE = "replace"
    #: keep them and add the imported ones
    APPEND = "append"


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path | None
    format: str
    #: documents written per table
    tables: dict[str, int] = field(default_factory=dict)
    #: stored files written (their bytes; ``_storage`` rows are in ``tables``)
    files: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    """What an import did (it committed)."""

    #: documents imported per table
    tables: dict[str, int] = field(default_factory=dict)
    #: documents deleted per table (``replace`` mode)
    deleted: dict[str, int] = field(default_factory=dict)
    #: stored files restored
    files: int = 0
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading the database


def _count(conn: ReadConnection, info: TableInfo) -> int:
    return conn.count(info.indexes[BY_ID].id)


def _user_tables(catalog: Catalog) -> list[TableInfo]:
    return sorted((t for t in catalog.tables() if not t.is_system), key=lambda t: t.number)


# --------------------------------------------------------------------------- export


class _AtomicOutput:
    """A file written under a temporary name and renamed into place on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.partial

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def export_snapshot(
    database: Database,
    path: str | Path,
    *,
    blobs: BlobStore | None = None,
    include_files: bool = True,
    progress: Progress | None = None,
) -> ExportResult:
    """Write a snapshot ZIP of every user table (and ``_storage``) to ``path``.

    Reads one consistent snapshot in batches and streams each table into its
    ZIP entry, so memory use does not grow with the data. The file appears at
    ``path`` only once complete. Stored files' bytes are read from ``blobs``
    (the deployment's file store) unless ``include_files`` is False; without
    them only the ``_storage`` metadata is written (with a warning). Call it
    from a thread without a running event loop (file reads use their own).
    """
    progress = progress or _NoProgress()
    path = Path(path)
    result = ExportResult(path, "zip")
    with (
        database.storage_snapshot() as (conn, catalog),
        _AtomicOutput(path) as partial,
        zipfile.ZipFile(partial, "w", allowZip64=True) as archive,
    ):
        archive.writestr(_zip_entry("README.md"), README)
        tables = _user_tables(catalog)
        lines = b"".join(orjson.dumps({"name": t.name, "id": t.number}) + b"\n" for t in tables)
        archive.writestr(_zip_entry(f"{TABLES_TABLE}/documents.jsonl"), lines)
        for info in tables:
            progress.start(info.name, _count(conn, info), "documents")
            written = 0
            entry = _zip_entry(f"{info.name}/documents.jsonl")
            with archive.open(entry, "w", force_zip64=True) as out:
                chunk: list[bytes] = []
                for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
                    chunk.append(orjson.dumps(to_export_json(from_json_bytes(raw))))
                    if len(chunk) >= _PROGRESS_EVERY:
                        out.write(b"\n".join(chunk) + b"\n")
                        written += len(chunk)
                        progress.advance(len(chunk))
                        chunk = []
                if chunk:
                    out.write(b"\n".join(chunk) + b"\n")
                    written += len(chunk)
                    progress.advance(len(chunk))
            archive.writestr(
                _zip_entry(f"{info.name}/generated_schema.jsonl"),
                orjson.dumps(UNIFORM) + b"\n",
            )
            result.tables[info.name] = written
        storage = catalog.table(STORAGE_TABLE)
        if storage is not None and _count(conn, storage):
            _export_storage(
                archive, conn, storage, blobs if include_files else None, progress, result
            )
    return result


def _export_storage(
    archive: zipfile.ZipFile,
    conn: ReadConnection,
    info: TableInfo,
    blobs: BlobStore | None,
    progress: Progress,
    result: ExportResult,
) -> None:
    total = _count(conn, info)
    progress.start(STORAGE_TABLE, total, "documents")
    files: list[tuple[str, Any]] = []
    with archive.open(_zip_entry(f"{STORAGE_TABLE}/documents.jsonl"), "w", force_zip64=True) as out:
        for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
            doc: dict[str, Any] = from_json_bytes(raw)  # type: ignore[assignment]
            out.write(orjson.dumps(_storage_line(doc)) + b"\n")
            progress.advance(1)
            files.append((doc["_id"], doc.get("contentType")))
    result.tables[STORAGE_TABLE] = total
    if blobs is None:
        result.warnings.append(
            f"{total} stored file(s): only their _storage metadata was exported, not their "
            "contents (a snapshot import restores only files whose contents it holds)"
        )
        return
    progress.start("files", len(files), "files")
    with asyncio.Runner() as runner:
        for storage_id, content_type in files:
            entry = _zip_entry(f"{STORAGE_TABLE}/{storage_id}{_extension(content_type)}")
            if _compressed(content_type):
                entry.compress_type = zipfile.ZIP_STORED
            try:
                reader = runner.run(blobs.open(storage_id))
            except BlobNotFound:
                result.warnings.append(f"stored file {storage_id} is missing from the file store")
                progress.advance(1)
                continue
            with archive.open(entry, "w", force_zip64=True) as out:
                runner.run(_copy_blob(reader, out))
            result.files += 1
            progress.advance(1)


async def _copy_blob(reader: BlobReader, out: IO[bytes]) -> None:
    try:
        async for chunk in reader:
            out.write(chunk)
    finally:
        await reader.aclose()


def _storage_line(doc: Mapping[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {"_id": doc["_id"], "_creationTime": doc["_creationTime"]}
    for key in ("sha256", "size", "contentType"):
        value = doc.get(key)
        if value is None:
            continue
        if key == "size" and isinstance(value, float) and value.is_integer():
            value = int(value)  # Convex writes the size as an integer
        line[key] = value
    return line


def _extension(content_type: Any) -> str:
    if not isinstance(content_type, str):
        return ""
    guess = mimetypes.guess_extension(content_type.split(";")[0].strip())
    return guess or ""


def _compressed(content_type: Any) -> bool:
    """Formats that are already compressed: store them rather than deflate again."""
    if not isinstance(content_type, str):
        return False
    major = content_type.split("/")[0]
    return major in ("image", "video", "audio") or content_type.endswith(
        ("/zip", "/gzip", "/x-gzip", "/zstd")
    )


def export_table(
    database: Database,
    table: str,
    out: str | Path | IO[bytes],
    *,
    fmt: str = "jsonl",
    progress: Progress | None = None,
) -> ExportResult:
    """Write one table as JSONL or CSV (see the module docstring) to a path or binary stream.

    Reads one snapshot in batches. CSV reads the table twice (the first pass
    collects the column names). Raises InvalidRequest for an unknown table
    or format; a path is written only once complete.
    """
    if fmt not in ("jsonl", "csv"):
        raise InvalidRequest(f"Unknown table export format {fmt!r}: use jsonl or csv")
    progress = progress or _NoProgress()
    with database.storage_snapshot() as (conn, catalog):
        info = catalog.table(table)
        if info is None or (info.is_system and table != STORAGE_TABLE):
            known = ", ".join(t.name for t in _user_tables(catalog)) or "none"
            raise InvalidRequest(f"No table named {table!r} (tables: {known})", code="NoSuchTable")
        if isinstance(out, str | Path):
            result = ExportResult(Path(out), fmt)
            with _AtomicOutput(Path(out)) as partial, open(partial, "wb") as stream:
                result.tables[table] = _write_table(conn, info, stream, fmt, database, progress)
            return result
        result = ExportResult(None, fmt)
        result.tables[table] = _write_table(conn, info, out, fmt, database, progress)
        return result


def _write_table(
    conn: ReadConnection,
    info: TableInfo,
    out: IO[bytes],
    fmt: str,
    database: Database,
    progress: Progress,
) -> int:
    progress.start(info.name, _count(conn, info), "documents")
    written = 0
    if fmt == "jsonl":
        chunk: list[bytes] = []
        for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
            chunk.append(raw)  # stored documents are wire JSON already
            if len(chunk) >= _PROGRESS_EVERY:
                out.write(b"\n".join(chunk) + b"\n")
                written += len(chunk)
                progress.advance(len(chunk))
                chunk = []
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
            written += len(chunk)
            progress.advance(len(chunk))
        return written
    columns = _csv_columns(conn, info, database)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
            doc: dict[str, Any] = from_json_bytes(raw)  # type: ignore[assignment]
            writer.writerow([_csv_cell(doc[c]) if c in doc else "" for c in columns])
            written += 1
            if written % _PROGRESS_EVERY == 0:
                progress.advance(_PROGRESS_EVERY)
        progress.advance(written % _PROGRESS_EVERY)
        text.flush()
    finally:
        text.detach()
    return written


def _csv_columns(conn: ReadConnection, info: TableInfo, database: Database) -> list[str]:
    """``_id``, ``_creationTime``, the schema's fields in order, then other fields seen, sorted."""
    declared: list[str] = []
    schema = database.schema
    validator = schema.validator_for(info.name) if schema is not None else None
    if isinstance(validator, VObject):
        declared = list(validator.fields)
    seen: set[str] = set()
    for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
        seen.update(orjson.loads(raw))
    extra = sorted(seen - set(declared) - {"_id", "_creationTime"})
    return ["_id", "_creationTime", *declared, *extra]


def _csv_cell(value: Any) -> str:
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is float:
        if value != value:
            return "NaN"
        if value - value != 0.0:
            return "Infinity" if value > 0 else "-Infinity"
        return orjson.dumps(value).decode()
    if t is Int64:
        return str(int(value))
    if t is bytes:
        return _b64(value)
    return to_json_bytes(value).decode()


# --------------------------------------------------------------------------- import sources


@dataclass
class _Unit:
    """One table's worth of rows to import."""

    table: str
    #: how errors name the file (``tasks/documents.jsonl``, ``data.csv``)
    label: str
    #: yields (line number, document or the error that row has)
    rows: Callable[[Transaction], Iterator[tuple[int, dict[str, Any] | SynclineError]]]
    #: the table number its ids need (None: any)
    number: int | None
    #: the size of its input in bytes (for progress)
    size: int | None


def _json_lines(
    open_stream: Callable[[], IO[bytes]],
    decode: Callable[[bytes], Any],
    progress: Progress,
) -> Generator[tuple[int, dict[str, Any] | SynclineError], None, None]:
    """(line number, document or the row's error) for each non-blank line of a JSONL stream."""
    with open_stream() as stream:
        pending = 0
        number = 0
        for line in _lines(stream):
            number += 1
            pending += len(line)
            if pending >= 1 << 16:
                progress.advance(pending)
                pending = 0
            if not line or line.isspace():
                continue
            try:
                doc = decode(line)
            except SynclineError as exc:
                yield number, exc
                continue
            if type(doc) is not dict:
                message = f"Each line must hold a JSON object (a document), got {_kind(doc)}"
                yield number, InvalidValue(message)
                continue
            yield number, doc
        progress.advance(pending)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary stream (a UTF-8 BOM dropped), read in large chunks.

    Faster than ``readline``, which for ZIP entries is Python code.
    """
    rest = stream.read(3)
    if rest == b"\xef\xbb\xbf":
        rest = b""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _decode_export_line(line: bytes) -> Any:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"Invalid JSON: {exc}") from None
    return from_export_json(parsed)


def _first_id_number(
    rows: Generator[tuple[int, dict[str, Any] | SynclineError], None, None],
) -> int | None:
    """The table number of the first row's ``_id``, if it has a valid one (closes ``rows``)."""
    with contextlib.closing(rows):
        for _line, doc in rows:
            return table_number_of(doc.get("_id")) if isinstance(doc, dict) else None
    return None


def _jsonl_unit(table: str, path: Path, progress: Progress) -> _Unit:
    def opener() -> IO[bytes]:
        return open(path, "rb")

    def rows(tx: Transaction) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
        return _json_lines(opener, from_json_bytes, progress)

    number = _first_id_number(_json_lines(opener, from_json_bytes, _NoProgress()))
    return _Unit(table, path.name, rows, number, path.stat().st_size)


def _csv_unit(table: str, path: Path, progress: Progress) -> _Unit:
    def rows(tx: Transaction) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
        return _csv_rows(path, table, tx, progress)

    number: int | None = None
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        first = next(reader, None)
        names = [h.strip() for h in header or ()]
        if first and "_id" in names and names.index("_id") < len(first):
            number = table_number_of(first[names.index("_id")])
    return _Unit(table, path.name, rows, number, path.stat().st_size)


def _csv_rows(
    path: Path, table: str, tx: Transaction, progress: Progress
) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
    fields = _csv_field_validators(tx, table)
    with open(path, "rb") as raw:
        consumed = 0

        def lines() -> Iterator[str]:
            nonlocal consumed
            for n, line in enumerate(raw):
                consumed += len(line)
                if n == 0 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidValue(f"line {n + 1} is not valid UTF-8: {exc}") from None

        reader = csv.reader(lines())
        try:
            header = next(reader, None)
        except (csv.Error, InvalidValue) as exc:
            yield 1, InvalidValue(f"Cannot read the CSV header: {exc}")
            return
        if header is None:
            return
        names = [h.strip() for h in header]
        problems = [n for n in names if not n]
        if problems or len(set(names)) != len(names):
            yield 1, InvalidValue(f"The CSV header must name distinct columns, got {names}")
            return
        reported = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except (csv.Error, InvalidValue) as exc:
                yield reader.line_num, InvalidValue(f"Malformed CSV: {exc}")
                return
            if consumed - reported >= 1 << 16:
                progress.advance(consumed - reported)
                reported = consumed
            if not cells:
                continue
            if len(cells) != len(names):
                yield (
                    reader.line_num,
                    InvalidValue(
                        f"The row has {len(cells)} cell(s) but the header has {len(names)} column(s)"
                    ),
                )
                continue
            try:
                yield reader.line_num, _csv_document(names, cells, fields, tx)
            except SynclineError as exc:
                yield reader.line_num, exc
        progress.advance(consumed - reported)


def _csv_field_validators(tx: Transaction, table: str) -> dict[str, Validator]:
    """The validators that guide reading CSV cells: the table's fields, except ``v.any()``
    ones (any reading fits those: they are read as Convex reads CSV, like unknown fields)."""
    schema = tx.schema
    validator = schema.validator_for(table) if schema is not None else None
    if not isinstance(validator, VObject):
        return {}
    return {
        name: field
        for name, field in validator.fields.items()
        if not isinstance(field.inner if isinstance(field, VOptional) else field, VAny)
    }


def _csv_document(
    names: list[str], cells: list[str], fields: Mapping[str, Validator], tx: Transaction
) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name, cell in zip(names, cells, strict=True):
        if name == "_id":
            if cell:
                doc[name] = cell
            continue
        if name == "_creationTime":
            if cell:
                number = _csv_number(cell)
                if number is None:
                    raise InvalidValue(f"`_creationTime` {cell!r} is not a number")
                doc[name] = number
            continue
        validator = fields.get(name)
        if validator is None:
            if cell:
                number = _csv_number(cell)
                doc[name] = cell if number is None else number
            continue
        if not cell:
            if not isinstance(validator, VOptional) and _accepts(validator, "", tx):
                doc[name] = ""
            continue
        doc[name] = _csv_guided(name, cell, validator, tx)
    return doc


def _csv_number(cell: str) -> float | None:
    if _CSV_NUMBER.fullmatch(cell):
        return float(cell)
    return _CSV_SPECIAL_FLOATS.get(cell)


def _csv_candidates(cell: str) -> Iterator[Any]:
    """Readings of a cell, most specific first (the first one the validator accepts wins)."""
    if cell == "null":
        yield None
    if cell in ("true", "false"):
        yield cell == "true"
    if _CSV_INTEGER.fullmatch(cell) and INT64_MIN <= int(cell) <= INT64_MAX:
        yield Int64(int(cell))
    number = _csv_number(cell)
    if number is not None:
        yield number
    if cell[:1] in ("[", "{"):
        with contextlib.suppress(orjson.JSONDecodeError, InvalidValue):
            yield from_json(orjson.loads(cell))
    with contextlib.suppress(binascii.Error, ValueError):
        yield base64.b64decode(cell, validate=True)
    yield cell


def _accepts(validator: Validator, value: Any, tx: Transaction) -> bool:
    try:
        validator.validate(value, tx)
    except ValidatorError:
        return False
    return True


def _csv_guided(name: str, cell: str, validator: Validator, tx: Transaction) -> Any:
    for candidate in _csv_candidates(cell):
        if _accepts(validator, candidate, tx):
            return candidate
    # No reading fits: keep the text, so the schema check reports the mismatch.
    return cell


# --------------------------------------------------------------------------- import


def import_table(
    database: Database,
    table: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    mode: ImportMode = ImportMode.EMPTY,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a JSONL or CSV file (``fmt``, or from the file's suffix) into one table.

    One transaction, all or nothing (see the module docstring). Raises
    :class:`DataImportError` listing bad rows by line, or when the table has
    documents and ``mode`` is EMPTY; InvalidRequest for a bad table name or
    format.
    """
    path = Path(path)
    fmt = fmt or _format_of(path)
    check_table_name(table)
    if table.startswith("_"):
        raise InvalidRequest(f"Cannot import into system table {table!r}")
    progress = progress or _NoProgress()
    if fmt == "jsonl":
        unit = _jsonl_unit(table, path, progress)
    elif fmt == "csv":
        unit = _csv_unit(table, path, progress)
    else:
        raise InvalidRequest(
            f"Cannot import {path.name} into a table: use a .jsonl or .csv file (or --format)"
        )
    return _run_import(database, [unit], mode, progress, storage=None)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".zip": "zip", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
    if suffix not in formats:
        raise InvalidRequest(
            f"Cannot tell the format of {path.name!r} from its name: pass --format "
            "(zip, jsonl or csv)"
        )
    return formats[suffix]


@dataclass
class _StorageImport:
    """Stored files found in a snapshot: their metadata rows and their contents."""

    archive: zipfile.ZipFile
    metadata: zipfile.ZipInfo | None
    #: storage id -> the ZIP entry holding the file's bytes
    contents: dict[str, zipfile.ZipInfo]
    blobs: BlobStore


def import_snapshot(
    database: Database,
    path: str | Path,
    *,
    mode: ImportMode = ImportMode.EMPTY,
    blobs: BlobStore | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Restore a snapshot ZIP (the layout in the module docstring) into its tables.

    Ids and ``_creationTime`` are restored exactly; tables get the numbers in
    ``_tables`` (or implied by their ids). Stored files are restored as
    Convex does: one ``_storage`` row per file whose contents the ZIP holds
    (written to ``blobs`` under its id, hashed on the way; a ``sha256`` in
    the metadata must match), with the metadata's ``_creationTime`` and
    ``contentType``; metadata rows without contents are skipped with a
    warning, as are files when ``blobs`` is None. One transaction, all or
    nothing (file contents written by a failed import are deleted again).
    Call it from a thread without a running event loop. Raises
    :class:`DataImportError`.
    """
    path = Path(path)
    progress = progress or _NoProgress()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataImportError(f"Cannot read {path.name} as a ZIP file: {exc}") from None
    with archive:
        units, storage, warnings = _zip_units(archive, path.name, blobs, progress)
        result = _run_import(database, units, mode, progress, storage=storage)
    result.warnings[:0] = warnings
    return result


def _zip_units(
    archive: zipfile.ZipFile, name: str, blobs: BlobStore | None, progress: Progress
) -> tuple[list[_Unit], _StorageImport | None, list[str]]:
    documents: dict[str, zipfile.ZipInfo] = {}
    schemas: dict[str, zipfile.ZipInfo] = {}
    contents: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        if "_components/" in f"/{info.filename}":
            raise DataImportError(
                f"{name} holds component data ({info.filename}); Syncline has no components"
            )
        for pattern, found in ((_DOCUMENTS_ENTRY, documents), (_SCHEMA_ENTRY, schemas)):
            match = pattern.fullmatch(info.filename)
            if match:
                table = match.group(2)
                if table in found:
                    raise DataImportError(
                        f"{name} holds two copies of {table}: "
                        f"{found[table].filename} and {info.filename}"
                    )
                found[table] = info
                break
        else:
            match = _STORAGE_BLOB_ENTRY.fullmatch(info.filename)
            if match and match.group(2) != "documents":
                contents[match.group(2)] = info
    if not documents:
        raise DataImportError(
            f"{name} is not a snapshot: it has no <table>/documents.jsonl entries"
        )
    numbers = _zip_table_numbers(archive, documents.pop(TABLES_TABLE, None))
    warnings: list[str] = []
    units: list[_Unit] = []
    storage: _StorageImport | None = None
    metadata = documents.pop(STORAGE_TABLE, None)
    if contents and blobs is None:
        warnings.append(f"{len(contents)} stored file(s) not restored: no file store")
    elif contents:
        storage = _StorageImport(archive, metadata, contents, blobs)  # type: ignore[arg-type]
    elif metadata is not None and metadata.file_size:
        warnings.append(
            "the snapshot has _storage metadata but no file contents: no files were restored"
        )
    for table in sorted(documents):
        entry = documents[table]
        if table.startswith("_"):
            warnings.append(f"skipped system table {table} (it is not restored)")
            continue
        try:
            check_table_name(table)
        except InvalidValue as exc:
            raise DataImportError(f"{entry.filename}: {exc}") from None
        decode, warning = _zip_decoder(archive, schemas.get(table), table)
        if warning:
            warnings.append(warning)
        units.append(_zip_unit(archive, entry, table, decode, numbers.get(table), progress))
    return units, storage, warnings


def _zip_table_numbers(archive: zipfile.ZipFile, entry: zipfile.ZipInfo | None) -> dict[str, int]:
    numbers: dict[str, int] = {}
    if entry is None:
        return numbers
    rows = _json_lines(lambda: archive.open(entry), from_json_bytes, _NoProgress())
    for line, row in rows:
        if isinstance(row, SynclineError):
            raise DataImportError(f"{entry.filename}:{line}: {row}")
        name, number = row.get("name"), row.get("id")
        if not isinstance(name, str) or not isinstance(number, float) or not number.is_integer():
            raise DataImportError(
                f'{entry.filename}:{line}: expected {{"name": <table>, "id": <number>}}, '
                f"got {orjson.dumps(to_json(row)).decode()[:200]}"
            )
        if name in numbers:
            raise DataImportError(f"{entry.filename}:{line}: table {name!r} is listed twice")
        numbers[name] = int(number)
    return numbers


def _zip_decoder(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo | None, table: str
) -> tuple[Callable[[bytes], Any], str | None]:
    if entry is None:
        return from_json_bytes, None
    with archive.open(entry) as f:
        first = f.readline()
    try:
        marker = orjson.loads(first) if first.strip() else None
    except orjson.JSONDecodeError:
        marker = None
    if marker == UNIFORM:
        return _decode_export_line, None
    return from_json_bytes, (
        f"{entry.filename} uses Convex's older inferred-shape format, which Syncline does not "
        f"read: int64 and bytes values of {table} were imported as strings"
    )


def _zip_unit(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    table: str,
    decode: Callable[[bytes], Any],
    number: int | None,
    progress: Progress,
) -> _Unit:
    def opener() -> IO[bytes]:
        return archive.open(entry)

    def rows(tx: Transaction) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
        return _json_lines(opener, decode, progress)

    if number is None and table != STORAGE_TABLE:
        number = _first_id_number(_json_lines(opener, decode, _NoProgress()))
    return _Unit(table, entry.filename, rows, number, entry.file_size)


class _Cancelled(BaseException):
    """Raised inside the import job when the caller gave up (Ctrl+C)."""


def _run_import(
    database: Database,
    units: list[_Unit],
    mode: ImportMode,
    progress: Progress,
    *,
    storage: _StorageImport | None,
) -> ImportResult:
    """Run the whole import as one exclusive write job and wait for it.

    On KeyboardInterrupt the job is told to stop; it rolls back, and the
    interrupt propagates once the writer is done with it.
    """
    cancel = threading.Event()
    result = ImportResult()

    def job(tx: Transaction) -> ImportResult:
        _import_in_transaction(tx, units, mode, progress, storage, result, cancel)
        return result

    future = database.submit_write(job, exclusive=True)
    try:
        return future.result().value
    except KeyboardInterrupt:
        cancel.set()
        with contextlib.suppress(BaseException):
            future.result()
        raise


def _import_in_transaction(
    tx: Transaction,
    units: list[_Unit],
    mode: ImportMode,
    progress: Progress,
    storage: _StorageImport | None,
    result: ImportResult,
    cancel: threading.Event,
) -> None:
    writer = BulkWriter(tx)
    names = [u.table for u in units] + ([STORAGE_TABLE] if storage is not None else [])
    existing = {name: tx.table(name) for name in names}
    counts = {name: writer.count(info) for name, info in existing.items() if info is not None}
    if mode is ImportMode.EMPTY:
        full = {name: n for name, n in counts.items() if n}
        if full:
            listed = ", ".join(f"`{name}` ({n} documents)" for name, n in sorted(full.items()))
            raise DataImportError(
                f"Tables already have data: {listed}. Pass --replace to replace their "
                "documents or --append to add to them; nothing was imported.",
                code="TableNotEmpty",
            )
    elif mode is ImportMode.REPLACE:
        for name, info in existing.items():
            if info is not None and counts.get(name):
                progress.start(f"clearing {name}", None, "documents")
                result.deleted[name] = writer.clear(info)
    infos = writer.assign_tables({u.table: u.number for u in units})

    errors = _Errors()
    insert = writer.insert
    for unit in units:
        info = infos[unit.table]
        progress.start(unit.table, unit.size, "bytes")
        imported = 0
        for line, doc in unit.rows(tx):
            if type(doc) is dict:
                try:
                    insert(info, doc)
                except SynclineError as exc:
                    errors.add(unit.label, line, exc)
                    continue
                imported += 1
                if not imported % _PROGRESS_EVERY and cancel.is_set():
                    raise _Cancelled
            else:
                errors.add(unit.label, line, doc)  # type: ignore[arg-type]
        result.tables[unit.table] = imported
    writer.flush()
    if storage is not None and not errors.count:
        _import_files(tx, writer, storage, progress, result, errors, cancel)
    if errors.count:
        raise errors.failure()


class _Errors:
    """Bad rows seen so far: the first :data:`MAX_REPORTED_ERRORS` kept, all counted."""

    def __init__(self) -> None:
        self.rows: list[RowError] = []
        self.count = 0

    def add(self, file: str, line: int, error: BaseException) -> None:
        self.count += 1
        if len(self.rows) < MAX_REPORTED_ERRORS:
            self.rows.append(RowError(file, line, str(error)))

    def failure(self) -> DataImportError:
        shown = "\n".join(f"  {e}" for e in self.rows)
        more = self.count - len(self.rows)
        tail = f"\n  ... and {more} more" if more else ""
        return DataImportError(
            f"{self.count} bad row(s); nothing was imported:\n{shown}{tail}",
            rows=self.rows,
            bad_rows=self.count,
        )


def _import_files(
    tx: Transaction,
    writer: BulkWriter,
    storage: _StorageImport,
    progress: Progress,
    result: ImportResult,
    errors: _Errors,
    cancel: threading.Event,
) -> None:
    """Restore stored files: contents into the blob store, one ``_storage`` row per file.

    Contents are written before their rows commit (so a row always has its
    blob); a file already in the store under that id (ids are never reused,
    and a file never changes) is only hashed. If anything fails, contents
    this import wrote are deleted again before the error propagates.
    """
    info = tx.ensure_table(STORAGE_TABLE)
    metadata: dict[str, tuple[int, dict[str, Any]]] = {}
    label = f"{STORAGE_TABLE}/documents.jsonl"
    if storage.metadata is not None:
        entry = storage.metadata
        for line, row in _json_lines(
            lambda: storage.archive.open(entry), _decode_export_line, _NoProgress()
        ):
            if isinstance(row, SynclineError):
                errors.add(label, line, row)
            elif isinstance(row.get("_id"), str):
                metadata[row["_id"]] = (line, row)
    progress.start("files", len(storage.contents), "files")
    result.tables[STORAGE_TABLE] = 0
    created: list[str] = []
    with asyncio.Runner() as runner:
        try:
            for storage_id, entry in sorted(storage.contents.items()):
                if cancel.is_set():
                    raise _Cancelled
                line, row = metadata.pop(storage_id, (0, {}))
                where = label if line else entry.filename
                try:
                    doc = _restore_file(runner, storage, storage_id, entry, row, created)
                    writer.insert(info, doc)
                except SynclineError as exc:
                    errors.add(where, line, exc)
                    continue
                result.tables[STORAGE_TABLE] += 1
                result.files += 1
                progress.advance(1)
            writer.flush()
            if errors.count:
                raise errors.failure()
        except BaseException:
            for storage_id in created:
                with contextlib.suppress(Exception):
                    runner.run(storage.blobs.delete(storage_id))
            raise
    if metadata:
        result.warnings.append(
            f"{len(metadata)} _storage row(s) had no file contents in the snapshot and were "
            "not restored"
        )


def _restore_file(
    runner: asyncio.Runner,
    storage: _StorageImport,
    storage_id: str,
    entry: zipfile.ZipInfo,
    row: Mapping[str, Any],
    created: list[str],
) -> dict[str, Any]:
    """Put one file's contents in the blob store; return its ``_storage`` document."""
    if table_number_of(storage_id) != SYSTEM_TABLES_BY_NAME[STORAGE_TABLE].number:
        raise InvalidValue(f"{storage_id!r} is not an id of the _storage table")
    if runner.run(storage.blobs.exists(storage_id)):
        digest = hashlib.sha256()
        size = 0
        with storage.archive.open(entry) as data:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        sha256 = digest.digest()
    else:
        stored = runner.run(storage.blobs.put(storage_id, _zip_chunks(storage.archive, entry)))
        created.append(storage_id)
        sha256, size = stored.sha256, stored.size
    expected = row.get("sha256")
    if isinstance(expected, str) and expected != _b64(sha256):
        raise InvalidValue(
            f"the contents of file {storage_id} have SHA-256 {_b64(sha256)}, not the "
            f"{expected} its metadata says: the snapshot is damaged",
            code="DigestMismatch",
        )
    doc: dict[str, Any] = {"_id": storage_id, "sha256": _b64(sha256), "size": float(size)}
    if "_creationTime" in row:
        doc["_creationTime"] = row["_creationTime"]
    content_type = row.get("contentType")
    if isinstance(content_type, str) and content_type:
        doc["contentType"] = content_type
    return doc


async def _zip_chunks(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> AsyncIterator[bytes]:
    with archive.open(entry) as data:
        while chunk := data.read(1 << 20):
            yield chunk
