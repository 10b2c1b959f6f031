"""``syncline data``: the tables of a deployment, or the documents of one.

The deployment is found as :mod:`syncline.commands.deployment` describes.
Values are printed as Convex's encoded JSON (``{"$integer": "..."}`` for
int64, ``{"$bytes": "..."}`` for bytes), as on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from syncline.commands.console import dumps, fail
from syncline.commands.deployment import database_file_for, find_server, project_options
from syncline.errors import SynclineError

__all__ = ["data"]


def _read_local(project: Path, db: str | None, read: Callable[[Any], Any]) -> Any:
    """``read(tx)`` on a snapshot of the project's database (no server running)."""
    from syncline.application import Application

    db_file = database_file_for(project, db)
    if db_file is not None and not db_file.exists():
        fail(
            f"{project} has no data yet ({db_file} does not exist). Start it with "
            f"`syncline dev --dir {project}`, or pass --url to read a running server."
        )
    try:
        app = Application.open(project, db=db, load=False)
    except SynclineError as exc:
        fail(str(exc))
    try:
        return app.database.run_read(read).value
    except SynclineError as exc:
        fail(str(exc))
    finally:
        app.close()


def _print_tables(tables: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(dumps(tables, pretty=True))
        return
    if fmt == "jsonl":
        for table in tables:
            click.echo(dumps(table, pretty=False))
        return
    if not tables:
        click.echo("No tables yet.", err=True)
        return
    width = max(len("Table"), *(len(t["name"]) for t in tables))
    click.echo(click.style(f"{'Table':<{width}}  Documents", bold=True))
    for table in tables:
        click.echo(f"{table['name']:<{width}}  {table['documents']}")


def _print_documents(page: dict[str, Any], fmt: str, order: str) -> None:
    documents = page["documents"]
    if fmt == "jsonl":
        for doc in documents:
            click.echo(dumps(doc, pretty=False))
    else:
        click.echo(dumps(documents, pretty=fmt == "pretty"))
    total = page.get("total", len(documents))
    if fmt == "pretty" and total > len(documents):
        first = "newest" if order == "desc" else "oldest"
        click.echo(
            click.style(
                f"({len(documents)} of {total} documents of {page['table']}, {first} first; "
                "see --limit)",
                dim=True,
            ),
            err=True,
        )


@click.command()
@click.argument("table", required=False)
@project_options
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Most documents to print.",
)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="By _creationTime: desc prints the newest first.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json", "jsonl"]),
    default="pretty",
    show_default=True,
    help="pretty: a table list / indented JSON; json: one JSON value; jsonl: one per line.",
)
def data(
    table: str | None,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    limit: int,
    order: Literal["asc", "desc"],
    fmt: str,
) -> None:
    """List the tables, or print the documents of TABLE as JSON.

    Without TABLE: every table with its number of documents. With TABLE: its
    documents by _creationTime, newest first (--order asc for oldest first).
    Reads the running server (or --url), else the project's data folder.

    \b
    Examples:
      syncline data
      syncline data messages
      syncline data messages --limit 5 --order asc
      syncline data _scheduled_functions --format jsonl | jq .state
    """
    from syncline.database.browse import read_documents, table_counts

    remote = find_server(project, db, url, admin_key)
    if table is None:
        if remote is not None:
            tables = remote.request("GET", "/api/admin/tables")["tables"]
        else:
            tables = _read_local(project, db, table_counts)
        _print_tables(tables, fmt)
        return
    if remote is not None:
        page = remote.request(
            "GET", "/api/admin/data", params={"table": table, "limit": limit, "order": order}
        )
    else:
        page = _read_local(
            project,
            db,
            lambda tx: read_documents(tx, table, limit=limit, order=order),
        )
    _print_documents(page, fmt, order)
