"""Import sources: the rows of JSONL, CSV and snapshot ZIP inputs, one :class:`Unit` per
table, read lazily inside the import transaction.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import re
import zipfile
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from syncline.blobs.base import BlobStore
from syncline.database.transaction import check_table_name
from syncline.errors import InvalidRequest, InvalidValue, SynclineError
from syncline.snapshot.codec import STORAGE_TABLE, TABLES_TABLE, UNIFORM, decode_export_line
from syncline.snapshot.results import DataImportError, NoProgress, Progress
from syncline.values.ids import table_number_of
from syncline.values.json import from_json, from_json_bytes, to_json
from syncline.values.types import INT64_MAX, INT64_MIN, Int64
from syncline.values.validators import (
    Validator,
    ValidatorError,
    VAny,
    VObject,
    VOptional,
)

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction

__all__ = [
    "StorageImport",
    "Unit",
    "csv_unit",
    "format_of",
    "json_lines",
    "jsonl_unit",
    "zip_units",
]

_DOCUMENTS_ENTRY = re.compile(r"(?:(.*)/)?([^/]+)/documents\.jsonl")
_SCHEMA_ENTRY = re.compile(r"(?:(.*)/)?([^/]+)/generated_schema\.jsonl")
_STORAGE_BLOB_ENTRY = re.compile(r"(?:(.*)/)?_storage/([^/.]+)(?:\.[^/]+)?")
_CSV_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_CSV_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_CSV_SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


@dataclass
class Unit:
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


def json_lines(
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


def _first_id_number(
    rows: Generator[tuple[int, dict[str, Any] | SynclineError], None, None],
) -> int | None:
    """The table number of the first row's ``_id``, if it has a valid one (closes ``rows``)."""
    with contextlib.closing(rows):
        for _line, doc in rows:
            return table_number_of(doc.get("_id")) if isinstance(doc, dict) else None
    return None


def jsonl_unit(table: str, path: Path, progress: Progress) -> Unit:
    def opener() -> IO[bytes]:
        return open(path, "rb")

    def rows(tx: Transaction) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
        return json_lines(opener, from_json_bytes, progress)

    number = _first_id_number(json_lines(opener, from_json_bytes, NoProgress()))
    return Unit(table, path.name, rows, number, path.stat().st_size)


def csv_unit(table: str, path: Path, progress: Progress) -> Unit:
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
    return Unit(table, path.name, rows, number, path.stat().st_size)


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


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".zip": "zip", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
    if suffix not in formats:
        raise InvalidRequest(
            f"Cannot tell the format of {path.name!r} from its name: pass --format "
            "(zip, jsonl or csv)"
        )
    return formats[suffix]


@dataclass
class StorageImport:
    """Stored files found in a snapshot: their metadata rows and their contents."""

    archive: zipfile.ZipFile
    metadata: zipfile.ZipInfo | None
    #: storage id -> the ZIP entry holding the file's bytes
    contents: dict[str, zipfile.ZipInfo]
    blobs: BlobStore


def zip_units(
    archive: zipfile.ZipFile, name: str, blobs: BlobStore | None, progress: Progress
) -> tuple[list[Unit], StorageImport | None, list[str]]:
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
    units: list[Unit] = []
    storage: StorageImport | None = None
    metadata = documents.pop(STORAGE_TABLE, None)
    if contents and blobs is not None:
        storage = StorageImport(archive, metadata, contents, blobs)
    elif contents:
        warnings.append(f"{len(contents)} stored file(s) not restored: no file store")
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
    rows = json_lines(lambda: archive.open(entry), from_json_bytes, NoProgress())
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
        return decode_export_line, None
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
) -> Unit:
    def opener() -> IO[bytes]:
        return archive.open(entry)

    def rows(tx: Transaction) -> Iterator[tuple[int, dict[str, Any] | SynclineError]]:
        return json_lines(opener, decode, progress)

    if number is None and table != STORAGE_TABLE:
        number = _first_id_number(json_lines(opener, decode, NoProgress()))
    return Unit(table, entry.filename, rows, number, entry.file_size)
