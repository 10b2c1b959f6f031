"""``syncline migrate``: move a deployment's data to another database (SQLite to PostgreSQL).

One command for the export-then-import path of the deployment guide, through
the same code: the source is exported as a snapshot ZIP
(:func:`syncline.snapshot.export_snapshot`, one consistent read) into a
temporary folder, and imported into the target
(:func:`syncline.snapshot.import_snapshot`, one transaction, all or
nothing). On top of what a snapshot carries (tables with their ids and
``_creationTime``, stored files), the pending scheduled functions (with their
ids, so ``ctx.scheduler.cancel`` still finds them) and the environment
variables are copied, each in one more transaction. The target must be
empty: no documents, no stored files, no environment variables; otherwise
nothing is changed.

A snapshot leaves scheduled functions out because a restored deployment
would run them a second time; a migration moves them instead (the source
must not be started again). Not carried: the current runs of cron jobs
(the target schedules them again from ``crons.py``) and actions that were
running when the source stopped (at most once: they are counted in a
warning).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncline.commands.console import fail, warn
from syncline.commands.deployment import database_file_for
from syncline.commands.options import functions_option, project_option
from syncline.commands.snapshot import open_project, progress_display
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction

__all__ = ["migrate"]

STORAGE_TABLE = "_storage"


def database_url(value: str) -> str:
    """``--from``/``--to`` as a ``--db`` URL: URLs as they are, a file path as ``sqlite:///``."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _contents(tx: Transaction) -> list[str]:
    """What a database holds that an import would mix with: tables with documents, files."""
    held = []
    for table in sorted(tx.catalog.tables(), key=lambda t: t.name):
        if table.is_system and table.name != STORAGE_TABLE:
            continue
        count = tx.count(table.name)
        if count:
            what = (
                "stored file(s)"
                if table.name == STORAGE_TABLE
                else f"document(s) in `{table.name}`"
            )
            held.append(f"{count:,} {what}")
    return held


def _scheduled(tx: Transaction) -> tuple[list[dict[str, Any]], int]:
    """The pending scheduled functions (cron runs aside), and how many actions were running."""
    from syncline.database.query import Query
    from syncline.scheduling.cron_runner import CRON_JOBS
    from syncline.scheduling.jobs import (
        BY_STATE_AND_TIME,
        IN_PROGRESS,
        PENDING,
        SCHEDULED_FUNCTIONS,
        SYSTEM_LIMITS,
    )

    if tx.table(SCHEDULED_FUNCTIONS) is None:
        return [], 0
    tx.limits = SYSTEM_LIMITS
    # A cron job's current run is scheduled again from crons.py on the target.
    cron_runs = set()
    if tx.table(CRON_JOBS) is not None:
        cron_runs = {row.get("jobId") for row in Query(tx, CRON_JOBS)}

    def in_state(state: str) -> list[dict[str, Any]]:
        rows = Query(tx, SCHEDULED_FUNCTIONS).with_index(
            BY_STATE_AND_TIME, lambda r: r.eq("state.kind", state)
        )
        return [dict(row) for row in rows if row["_id"] not in cron_runs]

    return in_state(PENDING), len(in_state(IN_PROGRESS))


def _restore_jobs(rows: list[dict[str, Any]]) -> Callable[[Transaction], int]:
    """Write ``rows`` into the target's ``_scheduled_functions`` with their ids (one transaction)."""
    from syncline.database.bulk import BulkWriter
    from syncline.scheduling.jobs import SCHEDULED_FUNCTIONS, SYSTEM_LIMITS

    def body(tx: Transaction) -> int:
        tx.limits = SYSTEM_LIMITS
        writer = BulkWriter(tx)
        info = tx.ensure_table(SCHEDULED_FUNCTIONS)
        for row in rows:
            writer.insert(info, dict(row))
        writer.flush()
        return len(rows)

    return body


@click.command("migrate")
@click.option(
    "--from",
    "source",
    required=True,
    help="The database to copy: a SQLite file (path or sqlite:///... URL) or postgresql://...",
)
@click.option(
    "--to",
    "target",
    required=True,
    help="The empty database to fill: postgresql://... (or a sqlite:///... URL).",
)
@click.option(
    "--from-files",
    help="The source's file store, if not the default (PROJECT/.syncline/files): "
    "a directory or s3://bucket/prefix.",
)
@click.option(
    "--to-files",
    help="The target's file store (default: PROJECT/.syncline/files): a directory or "
    "s3://bucket/prefix, as the nodes will be given with `syncline serve --files`.",
)
@functions_option
@project_option
def migrate(
    source: str,
    target: str,
    from_files: str | None,
    to_files: str | None,
    functions: Path | None,
    project: Path,
) -> None:
    """Copy a deployment's data into an empty database (e.g. SQLite to PostgreSQL).

    Exports the source (stop its server first, and do not start it again)
    as a snapshot into a temporary folder, then imports it into the target
    as one transaction: every table with its ids and _creationTime, the
    stored files (into --to-files); then the pending scheduled functions and
    the environment variables. The target must be empty; otherwise nothing
    is changed. Crons start again from crons.py.

    \b
    Examples:
      syncline migrate --from .syncline/data.sqlite3 --to postgresql://db.internal/myapp
      syncline migrate --dir /srv/myapp --from sqlite:////var/lib/myapp/data.sqlite3 \\
        --to 'postgresql://syncline:secret@db.internal:5432/myapp' --to-files s3://myapp-files/prod
    """
    from syncline import snapshot

    source, target = database_url(source), database_url(target)
    if source == target:
        fail("--from and --to name the same database")

    # The target first: refuse before exporting anything.
    held = _target_contents(project, target, to_files)
    if held:
        fail(
            f"The target database is not empty ({', '.join(held)}): `syncline migrate` only "
            "fills an empty one. Nothing was changed."
        )

    with tempfile.TemporaryDirectory(prefix="syncline-migrate-") as folder:
        zip_path = Path(folder) / "snapshot.zip"
        with open_project(project, source, from_files, command="migrate", load=False) as app:
            environment = dict(app.env.list_all())
            jobs, running = app.database.run_read(_scheduled).value
            blobs = app.storage.blobs if app.storage is not None else None
            try:
                with progress_display() as progress:
                    exported = snapshot.export_snapshot(
                        app.database, zip_path, blobs=blobs, include_files=True, progress=progress
                    )
            except SynclineError as exc:
                fail(str(exc))
        for warning in exported.warnings:
            warn(warning)

        with open_project(
            project, target, to_files, command="migrate", load=True, functions=functions
        ) as app:
            blobs = app.storage.blobs if app.storage is not None else None
            try:
                with progress_display() as progress:
                    imported = snapshot.import_snapshot(
                        app.database, zip_path, blobs=blobs, progress=progress
                    )
                if jobs:
                    app.database.write_sync(_restore_jobs(jobs))
                app.env.update(sorted(environment.items()))
            except SynclineError as exc:
                fail(str(exc))
    _report(imported, environment, len(jobs), running)


def _target_contents(project: Path, target: str, to_files: str | None) -> list[str]:
    """What the target holds (nothing if it is a SQLite file not yet created)."""
    target_file = database_file_for(project, target)
    if target_file is not None and not target_file.exists():
        return []
    with open_project(project, target, to_files, command="migrate", load=False) as app:
        held: list[str] = app.database.run_read(_contents).value
        variables = app.env.list_all()
    if variables:
        held.append(f"{len(variables)} environment variable(s)")
    return held


def _report(imported: Any, environment: dict[str, str], jobs: int, running: int) -> None:
    for warning in imported.warnings:
        warn(warning)
    tables = {name: n for name, n in imported.tables.items() if not name.startswith("_")}
    click.echo(
        f"Migrated {sum(tables.values()):,} document(s) in {len(tables)} table(s), "
        f"{imported.files:,} stored file(s), {jobs:,} scheduled function(s) and "
        f"{len(environment)} environment variable(s)"
    )
    if running:
        warn(
            f"{running} action(s) were running when the source stopped: not carried over "
            "(an action runs at most once)"
        )
