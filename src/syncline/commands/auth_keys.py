"""``syncline rotate-auth-keys``: retire built-in auth's signing key and create a new one."""

from __future__ import annotations

import time
from pathlib import Path

import click

from syncline.commands.console import fail
from syncline.commands.deployment import find_server
from syncline.commands.options import combine, db_option, project_option
from syncline.errors import SynclineError

__all__ = ["rotate_auth_keys"]


@click.command("rotate-auth-keys")
@combine(project_option, db_option)
@click.option(
    "--keep",
    "keep_s",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Seconds a retired key stays in the JWKS; at least the access-token lifetime.",
)
@click.option("--url", default=None, help="A running server to rotate through (found by default).")
@click.option("--admin-key", envvar="SYNCLINE_ADMIN_KEY", default=None, help="Its admin key.")
def rotate_auth_keys(
    project: Path, db: str | None, keep_s: float, url: str | None, admin_key: str | None
) -> None:
    """Sign new access tokens with a new key; keep the old one until its tokens expire.

    The keys are in the deployment's database, shared by every node and
    worker: each picks the new key up as soon as it sees the commit, with no
    restart. Tokens signed by the retired key stay valid until they expire;
    keys retired more than --keep seconds ago are deleted. With a server
    running on the project, the rotation goes through it (as `syncline env`
    does); otherwise the database is opened directly.

    \b
    Examples:
      syncline rotate-auth-keys
      syncline rotate-auth-keys --dir myapp --keep 7200
    """
    from syncline.accounts.keys import KEY_DIR_NAME, rotate_keys
    from syncline.application import Application

    remote = find_server(project, db, url, admin_key)
    if remote is not None:
        answer = remote.request("POST", "/api/admin/auth_keys/rotate", body={"keepS": keep_s})
        click.echo(f"New signing key {answer['kid']}; the server's processes use it now.")
        return
    try:
        app = Application.open(project, db=db, load=False)
    except SynclineError as exc:
        fail(str(exc))
    try:
        legacy = None if app.paths is None else app.paths.database_dir / KEY_DIR_NAME
        new = rotate_keys(app.database, time.time() * 1000, keep_s * 1000, legacy)
    except SynclineError as exc:
        fail(f"Cannot rotate the signing keys: {exc}")
    finally:
        app.close()
    click.echo(f"New signing key {new.kid}; servers started from now on use it.")
