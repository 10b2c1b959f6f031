"""``syncline deploy``: push the project's functions folder to a running ``syncline serve``.

The folder (functions, ``schema.py``, ``crons.py``, ``http.py``,
``auth_config.py`` and any other file in it) is packed as a deploy bundle
(:mod:`syncline.functions.bundle`) and uploaded to the server's
``/api/admin/deploy`` (:mod:`syncline.server.deploy` describes what the server
checks, and how it switches). The server is ``--url`` (or the project file's
``url``, or ``$SYNCLINE_URL``), else the one serving the project's data folder;
the admin key is ``--admin-key``, ``$SYNCLINE_ADMIN_KEY`` or the data folder's.

Exit status 0 when the new code serves (or, with ``--dry-run``, when the data
fits the new schema); 1 with what failed — nothing changed on the server then.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import click

from syncline.commands.console import fail
from syncline.commands.deployment import find_server
from syncline.commands.options import admin_key_option, db_option, project_option, url_option
from syncline.errors import SynclineError

__all__ = ["deploy"]

#: the running server's deploy endpoint (syncline.server.deploy)
DEPLOY_PATH = "/api/admin/deploy"


def _print_diff(console: Any, answer: dict[str, Any]) -> bool:
    """Print the schema, index and function changes; True if there are any."""
    from rich.tree import Tree

    diff = answer["diff"]
    tree = Tree("[bold]Changes[/bold]")
    sections = 0

    def section(
        title: str, added: list[str], removed: list[str], changed: list[str] | None = None
    ) -> None:
        nonlocal sections
        if not (added or removed or changed):
            return
        sections += 1
        node = tree.add(title)
        for item in added:
            node.add(f"[green]+ {item}[/green]")
        for item in removed:
            node.add(f"[red]- {item}[/red]")
        for item in changed or []:
            node.add(f"[yellow]~ {item}[/yellow]")

    section("tables", diff["tables"]["added"], diff["tables"]["removed"])
    for table, fields in sorted(diff["fields"].items()):
        section(f"fields of {table}", fields["added"], fields["removed"], fields["changed"])
    if diff["validators"]:
        section("document validators", [], [], diff["validators"])
    section("indexes", diff["indexes"]["added"], diff["indexes"]["removed"])
    section("functions", diff["functions"]["added"], diff["functions"]["removed"])
    if sections:
        console.print(tree)
    else:
        console.print("No schema, index or function changes (the code may still differ).")
    return sections > 0


@click.command("deploy")
@click.option(
    "--functions",
    type=click.Path(file_okay=False, path_type=Path),
    help="The functions folder to deploy (default: PROJECT/functions).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the schema, index and function changes, and check the stored data "
    "against the new schema; change nothing.",
)
@project_option
@db_option
@url_option
@admin_key_option
def deploy(
    functions: Path | None,
    dry_run: bool,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Push the functions folder to a running `syncline serve`.

    The server loads the new code apart from the serving code, checks the
    stored documents against the new schema and builds the new indexes, then
    switches atomically: connected clients keep their connection and their
    subscriptions, which re-run on the new code. If any check fails the old
    code keeps serving and the failure is printed. The deployed code is
    stored in the database: it survives restarts and reaches every worker
    and node. Roll back by deploying the previous version.

    \b
    Examples:
      syncline deploy --url https://api.example.com --admin-key "$KEY"
      syncline deploy --dry-run
    """
    from rich.console import Console

    from syncline.functions.bundle import pack

    console = Console(stderr=True, highlight=False)
    folder = (functions or project / "functions").resolve()
    remote = find_server(project, db, url, admin_key)
    if remote is None:
        fail(
            "syncline deploy pushes code to a running server: pass its address with --url "
            "(or set url in the project file)"
        )
    try:
        with console.status(f"Packing {folder}"):
            bundle = pack(folder)
    except SynclineError as exc:
        fail(str(exc))
    console.print(f"Packed {folder.name}/ ({len(bundle):,} bytes)")
    answer = _upload(console, remote, bundle, dry_run=dry_run)
    _print_diff(console, answer)
    problems = answer.get("problems", [])
    if dry_run:
        if problems:
            for problem in problems:
                console.print(f"[red]{problem}[/red]")
            fail("The stored data does not fit the new schema: a deploy would be refused")
        console.print(
            f"Dry run: bundle {answer['version']} ({answer['functions']} functions) would "
            f"deploy to {remote.url}; nothing was changed."
        )
        return
    console.print(
        f"[green]Deployed[/green] bundle {answer['version']} to {remote.url}: "
        f"{answer['functions']} functions serving ({answer['elapsedMs']:.0f} ms on the server)"
    )


def _upload(console: Any, remote: Any, bundle: bytes, *, dry_run: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    params = {"dryRun": "true"} if dry_run else {}
    step = "Checking" if dry_run else "Checking, building indexes and switching"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("Uploading", total=len(bundle))

        def sent(n: int) -> None:
            progress.advance(task, n)
            if progress.tasks[0].completed >= len(bundle):
                progress.update(task, description=f"{step} on the server")

        answer: dict[str, Any] = remote.upload(
            DEPLOY_PATH, io.BytesIO(bundle), params=params, on_chunk=sent
        )
    return answer
