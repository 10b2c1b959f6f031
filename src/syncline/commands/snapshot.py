"""``syncline export`` and ``syncline import``: a project's data to and from files.

With ``--url`` (or the project file's ``url``), or when a ``syncline
dev|serve`` runs on the project's data folder, a snapshot ZIP or one table's
JSONL or CSV file is exported from, or imported into, that running server (``/api/admin/export|import``,
:mod:`syncline.server.snapshot_api`) while it keeps serving. Otherwise both
work on the data folder directly. Formats and import semantics are described
in :mod:`syncline.snapshot`.

Exit status 0 on success; 1 with an ``error:`` message (for a failed import,
every bad row reported with its file and line) when nothing was changed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncline.commands.console import fail, warn
from syncline.commands.deployment import Remote, data_dir_for, database_file_for, find_server
from syncline.commands.options import (
    admin_key_option,
    combine,
    db_option,
    project_option,
    url_option,
)
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgressBar

    from syncline.application import Application

__all__ = ["export_command", "import_command"]

_FORMATS = ("zip", "jsonl", "csv")
#: the running server's snapshot endpoints (syncline.server.snapshot_api)
EXPORT_PATH = "/api/admin/export"
IMPORT_PATH = "/api/admin/import"
TS_HEADER = "x-syncline-snapshot-ts"


_project_options = combine(
    project_option,
    db_option,
    url_option,
    admin_key_option,
    click.option(
        "--files",
        "files_dir",
        help="The project's file store, if not the default (PROJECT/.syncline/files): "
        "a directory or s3://bucket/prefix, as given to `syncline serve --files`.",
    ),
)


# --------------------------------------------------------------------------- opening


def _holder_pid(data_dir: Path) -> str:
    try:
        pid = (data_dir / "lock").read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


@contextmanager
def open_project(
    project: Path,
    db: str | None,
    files_dir: str | None,
    *,
    command: str,
    load: bool,
    functions: Path | None = None,
) -> Iterator[Application]:
    """The project's application, opened on its data folder (which it locks).

    ``load``: load the functions folder (and apply its schema); otherwise the
    database must exist already (nothing is created for a mistyped --dir).
    """
    from syncline.application import Application

    if not load:
        db_file = database_file_for(project, db)
        if db_file is not None and not db_file.exists():
            fail(f"No Syncline data at {db_file}: is --dir the project's folder?")
    try:
        app = Application.open(project, functions=functions, db=db, files=files_dir, load=load)
    except SynclineError as exc:
        if exc.code == "DataDirLocked":
            data_dir = data_dir_for(project, db)
            fail(
                f"The data folder {data_dir} is in use by a running Syncline server"
                f"{_holder_pid(data_dir)}. Stop the server (Ctrl+C in its terminal), then "
                f"run `syncline {command}` again."
            )
        fail(str(exc))
    try:
        yield app
    finally:
        app.close()


# --------------------------------------------------------------------------- progress


class _RichProgress:
    """Draws :class:`syncline.snapshot.Progress` reports with rich on stderr (terminals only)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar: RichProgressBar = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            _count_column(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: Any = None

    def start(self, label: str, total: int | None, unit: str) -> None:
        self._finish_task()
        self._task = self.bar.add_task(label, total=total, unit=unit)

    def advance(self, amount: int) -> None:
        if self._task is not None and amount:
            self.bar.advance(self._task, amount)

    def _finish_task(self) -> None:
        """Show the current step as complete (its total becomes what was done, if unknown)."""
        if self._task is None:
            return
        task = next(t for t in self.bar.tasks if t.id == self._task)
        total = task.completed if task.total is None else task.total
        self.bar.update(self._task, total=total, completed=total)
        self._task = None

    def __enter__(self) -> _RichProgress:
        self.bar.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._finish_task()
        self.bar.stop()


def _count_column() -> Any:
    """A rich column showing ``1,234/5,000 documents``, or ``1.2/4.8 MB`` for byte counts."""
    from rich.filesize import decimal
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class CountColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            unit = task.fields.get("unit", "")
            if unit == "bytes":
                done = decimal(int(task.completed))
                total = "?" if task.total is None else decimal(int(task.total))
                return Text(f"{done}/{total}", style="progress.download")
            total_text = "?" if task.total is None else f"{int(task.total):,}"
            return Text(f"{int(task.completed):,}/{total_text} {unit}", style="progress.download")

    return CountColumn()


@contextmanager
def progress_display() -> Iterator[Any]:
    """A progress display on stderr when it is a terminal; no output otherwise."""
    from rich.console import Console

    from syncline.snapshot.results import NoProgress

    console = Console(stderr=True)
    if not console.is_terminal:
        yield NoProgress()
        return
    with _RichProgress(console) as progress:
        yield progress


# --------------------------------------------------------------------------- export


def _default_export_name(table: str | None, fmt: str) -> str:
    if table is None:
        return f"snapshot_{time.strftime('%Y%m%d-%H%M%S')}.zip"
    return f"{table}.{fmt}"


@click.command("export")
@click.option(
    "--path",
    "out_path",
    help="Where to write: a file, or a folder (an existing one, or any path ending in /, "
    "created if missing) to write the default name in "
    "(snapshot_<date>-<time>.zip, or <table>.<format> with --table). "
    "'-' writes a --table export to stdout.",
)
@click.option("--table", help="Export only this table, as JSONL (default) or CSV.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    help="zip (a snapshot of every table, the default) or, with --table, jsonl or csv.",
)
@click.option(
    "--include-file-storage/--exclude-file-storage",
    default=True,
    show_default=True,
    help="Put stored files' contents in the snapshot (their _storage metadata is always there).",
)
@_project_options
def export_command(
    out_path: str | None,
    table: str | None,
    fmt: str | None,
    include_file_storage: bool,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    files_dir: str | None,
) -> None:
    """Export the project's data: a snapshot ZIP, or one table as JSONL or CSV.

    The snapshot has Convex's layout (<table>/documents.jsonl, _tables,
    _storage) and restores exactly with `syncline import`. From a running
    server (--url, or the one serving the project) the snapshot is the
    database at one commit, taken while writes go on (a single table too);
    without a server the data folder is read directly.

    \b
    Examples:
      syncline export                            # snapshot_<date>-<time>.zip
      syncline export --path backups/            # into a folder
      syncline export --url https://api.example.com --admin-key "$KEY"
      syncline export --table tasks --format csv --path tasks.csv
      syncline export --table tasks --path - | head
      syncline export --table tasks --format csv --url https://api.example.com
    """
    from syncline import snapshot

    if fmt is None:
        fmt = "zip" if table is None else _format_from_suffix(out_path, default="jsonl")
    if table is None and fmt != "zip":
        fail(f"--format {fmt} exports one table: name it with --table")
    if table is not None and fmt == "zip":
        fail("A snapshot ZIP holds every table: drop --table, or use --format jsonl or csv")
    if out_path == "-" and table is None:
        fail("--path - (stdout) works with --table only; a snapshot ZIP needs a file")
    target: Path | None = None
    if out_path != "-":
        target = export_target(out_path, _default_export_name(table, fmt))

    remote = find_server(project, db, url, admin_key)
    if remote is not None:
        if table is not None:
            _export_remote_table(remote, table, fmt, target)
            return
        assert target is not None
        _export_remote(remote, target, include_file_storage)
        return
    with open_project(project, db, files_dir, command="export", load=False) as app:
        blobs = app.storage.blobs if app.storage is not None else None
        try:
            with progress_display() as progress:
                if table is None:
                    assert target is not None
                    result = snapshot.export_snapshot(
                        app.database,
                        target,
                        blobs=blobs,
                        include_files=include_file_storage,
                        progress=progress,
                    )
                elif target is None:
                    result = snapshot.export_table(
                        app.database, table, sys.stdout.buffer, fmt=fmt, progress=progress
                    )
                    sys.stdout.buffer.flush()
                else:
                    result = snapshot.export_table(
                        app.database, table, target, fmt=fmt, progress=progress
                    )
        except SynclineError as exc:
            fail(str(exc))
    for warning in result.warnings:
        warn(warning)
    if target is None:
        return
    documents = sum(result.tables.values())
    files = f" and {result.files:,} file(s)" if result.files else ""
    click.echo(
        f"Exported {documents:,} document(s) from {len(result.tables)} table(s){files} to {target}",
        err=True,
    )


def _export_remote(remote: Remote, target: Path, include_files: bool) -> None:
    """Stream the running server's snapshot into ``target`` (renamed into place when whole)."""
    import os
    import zipfile

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    params = {} if include_files else {"includeFiles": "false"}
    try:
        with progress_display() as progress, partial.open("wb") as out:
            progress.start("downloading", None, "bytes")
            headers = remote.download(EXPORT_PATH, out, params=params, on_chunk=progress.advance)
        with zipfile.ZipFile(partial) as archive:
            names = archive.namelist()
        os.replace(partial, target)
    except zipfile.BadZipFile:
        fail(f"The export from {remote.url} ended before the snapshot was complete; try again")
    finally:
        partial.unlink(missing_ok=True)
    tables = sum(1 for n in names if n.endswith("/documents.jsonl") and not n.startswith("_"))
    click.echo(
        f"Exported a snapshot of {tables} table(s) from {remote.url} at ts "
        f"{headers.get(TS_HEADER, '?')} to {target}",
        err=True,
    )


def _export_remote_table(remote: Remote, table: str, fmt: str, target: Path | None) -> None:
    """Stream one table from the running server to ``target`` (or stdout), read at one ts."""
    params = {"table": table, "format": fmt}
    if target is None:
        remote.download(EXPORT_PATH, sys.stdout.buffer, params=params)
        sys.stdout.buffer.flush()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with progress_display() as progress, partial.open("wb") as out:
            progress.start("downloading", None, "bytes")
            headers = remote.download(EXPORT_PATH, out, params=params, on_chunk=progress.advance)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(
        f"Exported table {table} from {remote.url} at ts {headers.get(TS_HEADER, '?')} to {target}",
        err=True,
    )


def export_target(out_path: str | None, default_name: str) -> Path:
    """Where ``--path`` writes: a file, or ``default_name`` in a folder.

    A path ending in ``/`` names a folder, created if missing (so
    ``--path backups/`` never writes a file called ``backups``); so does an
    existing folder.
    """
    if not out_path:
        return Path(default_name)
    target = Path(out_path)
    if out_path.endswith(("/", os.sep)) or target.is_dir():
        return target / default_name
    return target


def _format_from_suffix(path: str | None, *, default: str) -> str:
    if not path or path == "-":
        return default
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".zip": "zip"}.get(
        suffix, default
    )


# --------------------------------------------------------------------------- import


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--table", help="Destination table (required for JSONL and CSV files).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    help="The file's format (default: from its suffix: .zip, .jsonl, .csv).",
)
@click.option("--replace", is_flag=True, help="Delete the imported tables' documents first.")
@click.option("--append", is_flag=True, help="Add to the documents the tables already have.")
@click.option(
    "--functions",
    type=click.Path(file_okay=False, path_type=Path),
    help="Functions folder whose schema checks the data (default: PROJECT/functions).",
)
@_project_options
def import_command(
    path: Path,
    table: str | None,
    fmt: str | None,
    replace: bool,
    append: bool,
    functions: Path | None,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    files_dir: str | None,
) -> None:
    """Import a snapshot ZIP, or a JSONL or CSV file into one table.

    All or nothing: every document is checked against the project's schema,
    and if any row is bad each bad row is reported (file and line) and
    nothing is imported. By default the imported tables must be empty; pass
    --replace or --append otherwise. A snapshot restores ids, _creationTime
    and stored files exactly. Into a running server (--url, or the one
    serving the project) the file is applied as one commit that subscribed
    clients see at once.

    \b
    Examples:
      syncline import snapshot_20250101-120000.zip
      syncline import --replace backup.zip
      syncline import --replace backup.zip --url https://api.example.com --admin-key "$KEY"
      syncline import --table tasks tasks.jsonl
      syncline import --table tasks --append more_tasks.csv
    """
    from syncline import snapshot

    if replace and append:
        fail("Pass --replace or --append, not both")
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = {".zip": "zip", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(suffix)
        if fmt is None:
            fail(f"Cannot tell the format of {path.name} from its suffix: pass --format")
    if fmt == "zip" and table is not None:
        fail("A snapshot ZIP names its own tables: drop --table")
    if fmt != "zip" and table is None:
        fail(f"Importing a {fmt.upper()} file needs the destination table: pass --table")
    mode = (
        snapshot.ImportMode.REPLACE
        if replace
        else snapshot.ImportMode.APPEND
        if append
        else snapshot.ImportMode.EMPTY
    )

    remote = find_server(project, db, url, admin_key)
    if remote is not None:
        params = {"mode": mode.value}
        if table is not None:
            params.update(table=table, format=fmt)
        _import_remote(remote, path, params)
        return
    with open_project(
        project, db, files_dir, command="import", load=True, functions=functions
    ) as app:
        try:
            with progress_display() as progress:
                if fmt == "zip":
                    blobs = app.storage.blobs if app.storage is not None else None
                    result = snapshot.import_snapshot(
                        app.database, path, mode=mode, blobs=blobs, progress=progress
                    )
                else:
                    assert table is not None
                    result = snapshot.import_table(
                        app.database, table, path, fmt=fmt, mode=mode, progress=progress
                    )
        except SynclineError as exc:
            fail(str(exc))
    for warning in result.warnings:
        warn(warning)
    for name, count in sorted(result.tables.items()):
        deleted = result.deleted.get(name)
        replaced = f" (replacing {deleted:,})" if deleted else ""
        click.echo(f"Imported {count:,} document(s) into {name}{replaced}")
    if result.files:
        click.echo(f"Restored {result.files:,} stored file(s)")


def _import_remote(remote: Remote, path: Path, params: dict[str, str]) -> None:
    """Upload a snapshot ZIP (or one table's file) to the running server: one commit."""
    with progress_display() as progress, path.open("rb") as source:
        progress.start("uploading", path.stat().st_size, "bytes")
        answer = remote.upload(IMPORT_PATH, source, params=params, on_chunk=progress.advance)
    for warning in answer.get("warnings", []):
        warn(warning)
    deleted = answer.get("deleted", {})
    for name, count in sorted(answer.get("tables", {}).items()):
        replaced = f" (replacing {deleted[name]:,})" if deleted.get(name) else ""
        click.echo(f"Imported {count:,} document(s) into {name}{replaced}")
    if answer.get("files"):
        click.echo(f"Restored {answer['files']:,} stored file(s)")
    click.echo(f"Committed at ts {answer.get('ts')} on {remote.url}", err=True)
