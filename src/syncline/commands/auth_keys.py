"""``syncline rotate-auth-keys``: retire built-in auth's signing key and create a new one."""

from __future__ import annotations

import time
from pathlib import Path

import click

from syncline.commands.console import fail
from syncline.commands.deployment import data_dir_for
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
def rotate_auth_keys(project: Path, db: str | None, keep_s: float) -> None:
    """Sign new access tokens with a new key; keep the old one until its tokens expire.

    The keys are in the data folder (PROJECT/.syncline/auth_keys). Tokens
    signed by the retired key stay valid until they expire; keys retired more
    than --keep seconds ago are deleted. Restart the server afterwards: it
    reads the keys when it starts.

    \b
    Examples:
      syncline rotate-auth-keys
      syncline rotate-auth-keys --dir myapp --keep 7200
    """
    from syncline.accounts.keys import KEY_DIR_NAME, KeyStore

    folder = data_dir_for(project, db) / KEY_DIR_NAME
    now_ms = time.time() * 1000
    try:
        new = KeyStore.open(folder, now_ms).rotate(now_ms, keep_ms=keep_s * 1000)
    except (SynclineError, OSError) as exc:
        fail(f"Cannot rotate the signing keys in {folder}: {exc}")
    click.echo(f"New signing key {new.kid} in {folder}; restart the server to use it.")
