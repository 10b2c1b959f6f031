"""The ``syncline`` command: one click group; each command lives in :mod:`syncline.commands`."""

from __future__ import annotations

import click

from syncline.__about__ import __version__
from syncline.commands.admin_key import admin_key
from syncline.commands.auth_keys import rotate_auth_keys
from syncline.commands.codegen import codegen
from syncline.commands.data import data
from syncline.commands.deploy import deploy
from syncline.commands.env import env
from syncline.commands.init import init
from syncline.commands.logs import logs
from syncline.commands.migrate import migrate
from syncline.commands.project_file import ProjectGroup
from syncline.commands.run import run
from syncline.commands.serve import dev, serve
from syncline.commands.snapshot import export_command, import_command


@click.group(cls=ProjectGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncline")
def main() -> None:
    """Syncline: a self-hosted reactive backend for Python.

    Option defaults can live in the project folder's syncline.toml (or
    [tool.syncline] in pyproject.toml): see the project file reference.
    """


for _command in (
    serve,
    dev,
    run,
    data,
    logs,
    env,
    admin_key,
    rotate_auth_keys,
    codegen,
    init,
    export_command,
    import_command,
    migrate,
    deploy,
):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
