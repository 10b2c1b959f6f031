"""``syncline env``: the deployment's environment variables (``ctx.env`` in functions).

Through the running server (or ``--url``) when there is one, else on the
project's data folder directly; the deployment is found as
:mod:`syncline.commands.deployment` describes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import click

from syncline.commands.console import fail
from syncline.commands.deployment import Remote, data_dir_for, find_server, project_options
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["env"]

T = TypeVar("T")


class _Target(Protocol):
    def list_all(self) -> dict[str, str]: ...

    def update(self, changes: Sequence[tuple[str, str | None]]) -> list[tuple[str, str]]: ...

    def close(self) -> None: ...


class _LocalEnv:
    """The variables of a data folder opened directly (no server running on it)."""

    def __init__(self, app: Application) -> None:
        self.app = app

    def list_all(self) -> dict[str, str]:
        return dict(self.app.env.list_all())

    def update(self, changes: Sequence[tuple[str, str | None]]) -> list[tuple[str, str]]:
        return [(c.name, c.result) for c in self.app.env.update(changes)]

    def close(self) -> None:
        self.app.close()


class _RemoteEnv:
    """The variables of a running server, through ``/api/admin/env``."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def list_all(self) -> dict[str, str]:
        payload = self.remote.request("GET", "/api/admin/env")
        return {item["name"]: item["value"] for item in payload["variables"]}

    def update(self, changes: Sequence[tuple[str, str | None]]) -> list[tuple[str, str]]:
        body = {"changes": [{"name": name, "value": value} for name, value in changes]}
        payload = self.remote.request("POST", "/api/admin/env", body=body)
        return [(item["name"], item["result"]) for item in payload["changes"]]

    def close(self) -> None:
        pass


def _target(project: Path, db: str | None, url: str | None, admin_key: str | None) -> _Target:
    """The server (see :func:`find_server`), else the project's data folder."""
    from syncline.application import DATA_DIR_NAME, Application

    remote = find_server(project, db, url, admin_key)
    if remote is not None:
        return _RemoteEnv(remote)
    if not data_dir_for(project, db).is_dir() and not (project / "functions").is_dir():
        fail(
            f"{project.resolve()} is not a Syncline project (no functions/ or {DATA_DIR_NAME}/): "
            "pass --dir PROJECT, or --url to talk to a running server"
        )
    try:
        return _LocalEnv(Application.open(project, db=db, load=False))
    except SynclineError as exc:
        fail(str(exc))


def _with_target(
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    work: Callable[[_Target], T],
) -> T:
    target = _target(project, db, url, admin_key)
    try:
        return work(target)
    except SynclineError as exc:
        fail(str(exc))
    finally:
        target.close()


@click.group()
def env() -> None:
    """Manage the deployment's environment variables (read with ctx.env in functions).

    Without --url the project's data folder is used directly; if a server is
    running on it, that server is used instead. Changes take effect at once:
    live queries that read a changed variable are re-run.

    \b
    Examples:
      syncline env set OPENAI_API_KEY sk-...
      syncline env list
      syncline env get OPENAI_API_KEY
      syncline env remove OPENAI_API_KEY
      syncline env list --url http://127.0.0.1:3210 --admin-key "$(cat .syncline/admin_key)"
    """


@env.command("list")
@project_options
def env_list(project: Path, db: str | None, url: str | None, admin_key: str | None) -> None:
    """Print every variable as NAME=value, sorted by name.

    \b
    Examples:
      syncline env list
      syncline env list --dir myapp
      syncline env list --url http://127.0.0.1:3210
    """
    values = _with_target(project, db, url, admin_key, lambda t: t.list_all())
    for name, value in values.items():
        click.echo(f"{name}={value}")


@env.command("get")
@click.argument("name")
@project_options
def env_get(
    name: str, project: Path, db: str | None, url: str | None, admin_key: str | None
) -> None:
    """Print the value of NAME (exit status 1 if it is not set).

    \b
    Examples:
      syncline env get OPENAI_API_KEY
      syncline env get WEBHOOK_SECRET --url http://127.0.0.1:3210
    """
    values = _with_target(project, db, url, admin_key, lambda t: t.list_all())
    if name not in values:
        fail(f"Environment variable {name!r} is not set")
    click.echo(values[name])


@env.command("set")
@click.argument("name")
@click.argument("value", required=False)
@project_options
def env_set(
    name: str,
    value: str | None,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Set NAME to VALUE (or give NAME=VALUE as one argument).

    Names start with a letter and contain letters, digits and underscores
    (at most 256 characters); values are at most 8 KiB; at most 512 variables.

    \b
    Examples:
      syncline env set OPENAI_API_KEY sk-...
      syncline env set GREETING="Hello there"
      syncline env set FEATURE_FLAG on --url http://127.0.0.1:3210
    """
    if value is None:
        if "=" not in name:
            raise click.UsageError("Give a value: syncline env set NAME VALUE (or NAME=VALUE)")
        name, value = name.split("=", 1)
    changes = [(name, value)]
    done = _with_target(project, db, url, admin_key, lambda t: t.update(changes))
    for changed, result in done:
        click.echo({"unchanged": f"{changed} already has that value"}.get(result, f"Set {changed}"))


@env.command("remove")
@click.argument("name")
@project_options
def env_remove(
    name: str, project: Path, db: str | None, url: str | None, admin_key: str | None
) -> None:
    """Remove NAME (not an error if it is not set).

    \b
    Examples:
      syncline env remove OPENAI_API_KEY
      syncline env remove OLD_FLAG --url http://127.0.0.1:3210
    """
    changes: list[tuple[str, str | None]] = [(name, None)]
    done = _with_target(project, db, url, admin_key, lambda t: t.update(changes))
    for changed, result in done:
        click.echo(f"Removed {changed}" if result == "removed" else f"{changed} was not set")
