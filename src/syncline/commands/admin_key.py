"""``syncline admin-key``: print the project's admin key, creating it if there is none."""

from __future__ import annotations

from pathlib import Path

import click

from syncline.commands.console import fail
from syncline.commands.deployment import data_dir_for
from syncline.commands.options import combine, db_option, project_option
from syncline.errors import SynclineError

__all__ = ["admin_key"]


@click.command("admin-key")
@combine(project_option, db_option)
def admin_key(project: Path, db: str | None) -> None:
    """Print the project's admin key, creating it if there is none yet.

    The key is stored in the data folder (PROJECT/.syncline/admin_key, mode
    0600). It authorises `syncline run`/`data`/`logs`/`env` against a server
    (--admin-key or SYNCLINE_ADMIN_KEY), the dashboard, and admin clients
    (`Authorization: Convex <key>`, `client.set_admin_auth(key)`).

    \b
    Examples:
      syncline admin-key
      syncline admin-key --dir myapp
      export SYNCLINE_ADMIN_KEY=$(syncline admin-key --dir myapp)
    """
    from syncline.auth.admin_key import load_or_create_admin_key

    try:
        key = load_or_create_admin_key(data_dir_for(project, db))
    except (SynclineError, OSError) as exc:
        fail(f"Cannot read or create the admin key: {exc}")
    click.echo(key)
