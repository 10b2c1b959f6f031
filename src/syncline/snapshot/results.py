"""What export and import report: progress, results and bad rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from syncline.errors import InvalidRequest

__all__ = [
    "MAX_REPORTED_ERRORS",
    "PROGRESS_EVERY",
    "Cancelled",
    "DataImportError",
    "ExportResult",
    "ImportMode",
    "ImportResult",
    "NoProgress",
    "Progress",
    "RowError",
    "RowErrors",
]

MAX_REPORTED_ERRORS = 20
"""Bad rows reported in full by a failed import (all of them are counted)."""
#: documents between progress reports (and checks for a cancelled import)
PROGRESS_EVERY = 1000


class Progress(Protocol):
    """Where export and import report progress (the CLI draws it with rich).

    ``start`` opens a new step (finishing the previous one); ``unit`` is
    ``"documents"``, ``"bytes"`` or ``"files"``; ``total`` is None when unknown.
    Import reports from the database's writer thread.
    """

    def start(self, label: str, total: int | None, unit: str) -> None: ...

    def advance(self, amount: int) -> None: ...


class NoProgress:
    def start(self, label: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


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
    #: the ts of the snapshot read: the data is the database as of this commit
    ts: int | None = None


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


class RowErrors:
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


class Cancelled(BaseException):
    """Raised inside the import job when the caller gave up (Ctrl+C)."""
