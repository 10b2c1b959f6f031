"""The ``syncline`` command: one click group; each command lives in :mod:`syncline.commands`.

A command's module is imported when that command runs (or when help lists
it), not with the group: ``syncline serve`` does not carry the modules of
``export``, ``deploy`` or ``logs`` for the life of the server.
"""

from __future__ import annotations

import importlib

import click

from syncline.__about__ import __version__
from syncline.commands.project_file import ProjectGroup

#: command name -> "module:attribute" of its click command
COMMANDS = {
    "serve": "syncline.commands.serve:serve",
    "dev": "syncline.commands.serve:dev",
    "run": "syncline.commands.run:run",
    "data": "syncline.commands.data:data",
    "logs": "syncline.commands.logs:logs",
    "env": "syncline.commands.env:env",
    "admin-key": "syncline.commands.admin_key:admin_key",
    "rotate-auth-keys": "syncline.commands.auth_keys:rotate_auth_keys",
    "codegen": "syncline.commands.codegen:codegen",
    "init": "syncline.commands.init:init",
    "export": "syncline.commands.snapshot:export_command",
    "import": "syncline.commands.snapshot:import_command",
    "migrate": "syncline.commands.migrate:migrate",
    "deploy": "syncline.commands.deploy:deploy",
}


class LazyGroup(ProjectGroup):
    """A :class:`ProjectGroup` that imports a command's module the first time it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncline")
def main() -> None:
    """Syncline: a self-hosted reactive backend for Python.

    Option defaults can live in the project folder's syncline.toml (or
    [tool.syncline] in pyproject.toml): see the project file reference.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
