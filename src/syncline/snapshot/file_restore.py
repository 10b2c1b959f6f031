"""Restoring a snapshot's stored files: contents into the blob store, one ``_storage``
row per file, inside the import transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import zipfile
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from syncline.database.bulk import BulkWriter
from syncline.database.catalog import SYSTEM_TABLES_BY_NAME
from syncline.errors import InvalidValue, SynclineError
from syncline.snapshot.codec import STORAGE_TABLE, b64, decode_export_line
from syncline.snapshot.results import Cancelled, ImportResult, NoProgress, Progress, RowErrors
from syncline.snapshot.sources import StorageImport, json_lines
from syncline.values.ids import table_number_of

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction


__all__ = [
    "import_files",
]


def import_files(
    tx: Transaction,
    writer: BulkWriter,
    storage: StorageImport,
    progress: Progress,
    result: ImportResult,
    errors: RowErrors,
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
        for line, row in json_lines(
            lambda: storage.archive.open(entry), decode_export_line, NoProgress()
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
                    raise Cancelled
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
    storage: StorageImport,
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
    if isinstance(expected, str) and expected != b64(sha256):
        raise InvalidValue(
            f"the contents of file {storage_id} have SHA-256 {b64(sha256)}, not the "
            f"{expected} its metadata says: the snapshot is damaged",
            code="DigestMismatch",
        )
    doc: dict[str, Any] = {"_id": storage_id, "sha256": b64(sha256), "size": float(size)}
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
