"""Export: a consistent snapshot of the database to a snapshot ZIP, or one table to
JSONL or CSV, streamed in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import mimetypes
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from syncline.blobs.base import BlobNotFound, BlobReader, BlobStore
from syncline.database.catalog import (
    BY_CREATION_TIME,
    BY_ID,
    Catalog,
    TableInfo,
)
from syncline.database.database import Database
from syncline.errors import InvalidRequest
from syncline.snapshot.codec import STORAGE_TABLE, TABLES_TABLE, UNIFORM, b64, to_export_json
from syncline.snapshot.results import PROGRESS_EVERY, ExportResult, NoProgress, Progress
from syncline.values.json import document_from_json_bytes, from_json_bytes, to_json_bytes
from syncline.values.types import Int64
from syncline.values.validators import VObject

if TYPE_CHECKING:
    from syncline.persistence.base import ReadConnection

__all__ = [
    "README",
    "export_snapshot",
    "export_table",
]

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


def _count(conn: ReadConnection, info: TableInfo) -> int:
    return conn.count(info.indexes[BY_ID].id)


def _user_tables(catalog: Catalog) -> list[TableInfo]:
    return sorted((t for t in catalog.tables() if not t.is_system), key=lambda t: t.number)


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
    out: str | Path | IO[bytes],
    *,
    blobs: BlobStore | None = None,
    include_files: bool = True,
    progress: Progress | None = None,
    on_snapshot: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write a snapshot ZIP of every user table (and ``_storage``) to a path or binary stream.

    Reads one consistent snapshot in batches and streams each table into its
    ZIP entry, so memory use does not grow with the data; writes that commit
    meanwhile are not in it. ``on_snapshot(ts)`` is called once the snapshot
    is open, with the ts of the last commit it holds (also in the result's
    ``ts``). A path is written under a temporary name and appears only once
    complete; a stream need not be seekable. Stored files' bytes are read
    from ``blobs`` (the deployment's file store) unless ``include_files`` is
    False; without them only the ``_storage`` metadata is written (with a
    warning). Call it from a thread without a running event loop (file reads
    use their own).
    """
    progress = progress or NoProgress()
    with database.storage_snapshot() as (conn, catalog):
        if on_snapshot is not None:
            on_snapshot(conn.ts)
        if isinstance(out, str | Path):
            result = ExportResult(Path(out), "zip", ts=conn.ts)
            with _AtomicOutput(Path(out)) as partial:
                _write_zip(
                    partial, conn, catalog, blobs if include_files else None, progress, result
                )
        else:
            result = ExportResult(None, "zip", ts=conn.ts)
            _write_zip(out, conn, catalog, blobs if include_files else None, progress, result)
    return result


def _write_zip(
    out: Path | IO[bytes],
    conn: ReadConnection,
    catalog: Catalog,
    blobs: BlobStore | None,
    progress: Progress,
    result: ExportResult,
) -> None:
    with zipfile.ZipFile(out, "w", allowZip64=True) as archive:
        archive.writestr(_zip_entry("README.md"), README)
        tables = _user_tables(catalog)
        lines = b"".join(orjson.dumps({"name": t.name, "id": t.number}) + b"\n" for t in tables)
        archive.writestr(_zip_entry(f"{TABLES_TABLE}/documents.jsonl"), lines)
        for info in tables:
            progress.start(info.name, _count(conn, info), "documents")
            entry = _zip_entry(f"{info.name}/documents.jsonl")
            with archive.open(entry, "w", force_zip64=True) as stream:
                written = _write_lines(
                    stream,
                    (
                        orjson.dumps(to_export_json(from_json_bytes(raw)))
                        for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME)
                    ),
                    progress,
                )
            archive.writestr(
                _zip_entry(f"{info.name}/generated_schema.jsonl"),
                orjson.dumps(UNIFORM) + b"\n",
            )
            result.tables[info.name] = written
        storage = catalog.table(STORAGE_TABLE)
        if storage is not None and _count(conn, storage):
            _export_storage(archive, conn, storage, blobs, progress, result)


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
            doc = document_from_json_bytes(raw)
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
    on_snapshot: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write one table as JSONL or CSV (see :mod:`syncline.snapshot`) to a path or binary stream.

    Reads one snapshot in batches. CSV reads the table twice (the first pass
    collects the column names). Raises InvalidRequest for an unknown table
    or format; a path is written only once complete. ``on_snapshot(ts)``:
    as for :func:`export_snapshot` (called once the table is found).
    """
    if fmt not in ("jsonl", "csv"):
        raise InvalidRequest(f"Unknown table export format {fmt!r}: use jsonl or csv")
    progress = progress or NoProgress()
    with database.storage_snapshot() as (conn, catalog):
        info = catalog.table(table)
        if info is None or (info.is_system and table != STORAGE_TABLE):
            known = ", ".join(t.name for t in _user_tables(catalog)) or "none"
            raise InvalidRequest(f"No table named {table!r} (tables: {known})", code="NoSuchTable")
        if on_snapshot is not None:
            on_snapshot(conn.ts)
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
    if fmt == "jsonl":
        # Stored documents are wire JSON already.
        rows = Database.scan_table(conn, info, BY_CREATION_TIME)
        return _write_lines(out, (raw for _id, raw in rows), progress)
    written = 0
    columns = _csv_columns(conn, info, database)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for _id, raw in Database.scan_table(conn, info, BY_CREATION_TIME):
            doc = document_from_json_bytes(raw)
            writer.writerow([_csv_cell(doc[c]) if c in doc else "" for c in columns])
            written += 1
            if written % PROGRESS_EVERY == 0:
                progress.advance(PROGRESS_EVERY)
        progress.advance(written % PROGRESS_EVERY)
        text.flush()
    finally:
        text.detach()
    return written


def _write_lines(out: IO[bytes], lines: Iterable[bytes], progress: Progress) -> int:
    """Write each of ``lines`` and a newline, reporting progress in chunks; returns how many."""
    written = 0
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= PROGRESS_EVERY:
            out.write(b"\n".join(chunk) + b"\n")
            written += len(chunk)
            progress.advance(len(chunk))
            chunk = []
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
        written += len(chunk)
        progress.advance(len(chunk))
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
        return value
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
        return b64(value)
    return to_json_bytes(value).decode()
