"""Import as one write transaction: all rows or none (see :mod:`syncline.snapshot`)."""

from __future__ import annotations

import contextlib
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from syncline.blobs.base import BlobStore
from syncline.database.bulk import BulkWriter
from syncline.database.database import Database
from syncline.database.transaction import check_table_name
from syncline.errors import InvalidRequest, SynclineError
from syncline.snapshot.codec import STORAGE_TABLE
from syncline.snapshot.file_restore import import_files
from syncline.snapshot.results import (
    PROGRESS_EVERY,
    Cancelled,
    DataImportError,
    ImportMode,
    ImportResult,
    NoProgress,
    Progress,
    RowErrors,
)
from syncline.snapshot.sources import (
    StorageImport,
    Unit,
    csv_unit,
    format_of,
    jsonl_unit,
    zip_units,
)

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction


__all__ = [
    "import_snapshot",
    "import_table",
]


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

    One transaction, all or nothing (see :mod:`syncline.snapshot`). Raises
    :class:`DataImportError` listing bad rows by line, or when the table has
    documents and ``mode`` is EMPTY; InvalidRequest for a bad table name or
    format.
    """
    path = Path(path)
    fmt = fmt or format_of(path)
    check_table_name(table)
    if table.startswith("_"):
        raise InvalidRequest(f"Cannot import into system table {table!r}")
    progress = progress or NoProgress()
    if fmt == "jsonl":
        unit = jsonl_unit(table, path, progress)
    elif fmt == "csv":
        unit = csv_unit(table, path, progress)
    else:
        raise InvalidRequest(
            f"Cannot import {path.name} into a table: use a .jsonl or .csv file (or --format)"
        )
    return _run_import(database, [unit], mode, progress, storage=None)


def import_snapshot(
    database: Database,
    path: str | Path,
    *,
    mode: ImportMode = ImportMode.EMPTY,
    blobs: BlobStore | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Restore a snapshot ZIP (the layout in :mod:`syncline.snapshot`) into its tables.

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
    progress = progress or NoProgress()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataImportError(f"Cannot read {path.name} as a ZIP file: {exc}") from None
    with archive:
        units, storage, warnings = zip_units(archive, path.name, blobs, progress)
        result = _run_import(database, units, mode, progress, storage=storage)
    result.warnings[:0] = warnings
    return result


def _run_import(
    database: Database,
    units: list[Unit],
    mode: ImportMode,
    progress: Progress,
    *,
    storage: StorageImport | None,
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
    units: list[Unit],
    mode: ImportMode,
    progress: Progress,
    storage: StorageImport | None,
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

    errors = RowErrors()
    insert = writer.insert
    for unit in units:
        info = infos[unit.table]
        progress.start(unit.table, unit.size, "bytes")
        imported = 0
        for line, doc in unit.rows(tx):
            if isinstance(doc, SynclineError):
                errors.add(unit.label, line, doc)
                continue
            try:
                insert(info, doc)
            except SynclineError as exc:
                errors.add(unit.label, line, exc)
                continue
            imported += 1
            if not imported % PROGRESS_EVERY and cancel.is_set():
                raise Cancelled
        result.tables[unit.table] = imported
    writer.flush()
    if storage is not None and not errors.count:
        import_files(tx, writer, storage, progress, result, errors, cancel)
    if errors.count:
        raise errors.failure()
