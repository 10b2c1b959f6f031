"""The project file: per-project defaults for command options.

A project keeps them in ``syncline.toml`` in the project folder, or in the
``[tool.syncline]`` table of its ``pyproject.toml`` (one of the two: both
is an error)::

    # syncline.toml
    url = "https://api.example.com"      # the deployment commands talk to
    port = 4000
    site-port = 4001
    codegen-out = "web/src/convex/_generated"

Keys are the long option names without ``--``; a key is the default of every
command that has that option (``codegen-out`` is also ``syncline codegen
--out``). Precedence: a flag on the command line, then the option's
environment variable (``SYNCLINE_URL``, ...), then the project file, then
the built-in default. Paths (and ``sqlite:///relative.db`` URLs) in the file
are relative to the file's folder. An unknown key, or a value of the wrong
type, is an error naming the key and the file.

The project folder is the command's ``--dir`` (default: the current
directory). :class:`ProjectGroup` reads the file before a command parses its
options and hands the values to click as the command's ``default_map``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = [
    "KEYS",
    "PROJECT_FILE",
    "ProjectFile",
    "ProjectFileError",
    "ProjectGroup",
    "load_project_file",
]

PROJECT_FILE = "syncline.toml"
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class Key:
    """One setting: its value type, whether it is a path, and extra flags it fills."""

    kind: type
    path: bool = False
    also: tuple[str, ...] = ()


#: Every key the project file may hold (the long option name without ``--``).
KEYS: Mapping[str, Key] = {
    "url": Key(str),
    "functions": Key(str, path=True),
    "db": Key(str, path=True),
    "files": Key(str, path=True),
    "host": Key(str),
    "port": Key(int),
    "site-port": Key(int),
    "public-url": Key(str),
    "workers": Key(int),
    "durability": Key(str),
    "max-upload-size": Key(str),
    "function-timeout": Key(float),
    "action-timeout": Key(float),
    "max-memory": Key(str),
    "codegen-out": Key(str, path=True, also=("--out",)),
    "backup-every": Key(str),
    "backup-dir": Key(str, path=True),
    "backup-keep": Key(int),
    "max-import-size": Key(str),
    "max-deploy-size": Key(str),
}


class ProjectFileError(click.ClickException):
    """The project file cannot be read, or holds an unknown key or a bad value."""

    def format_message(self) -> str:
        return self.message


@dataclass(frozen=True)
class ProjectFile:
    """The settings found for a project folder (none when it has no project file)."""

    path: Path | None
    values: Mapping[str, Any]

    def defaults_for(self, command: click.Command) -> dict[str, Any]:
        """``{parameter name: value}`` for the options of ``command`` the file sets."""
        defaults: dict[str, Any] = {}
        for param in command.params:
            if not isinstance(param, click.Option) or param.name is None:
                continue
            for key, value in self.values.items():
                flags = (f"--{key}", *KEYS[key].also)
                if any(opt in flags for opt in param.opts):
                    defaults[param.name] = value
        return defaults


def _relative_to(folder: Path, key: str, value: str) -> str:
    """A path value (or a ``sqlite:///relative`` URL) made absolute from ``folder``."""
    if key == "db":
        prefix = "sqlite:///"
        if value.startswith(prefix) and not value.startswith(prefix + "/"):
            return prefix + str((folder / value[len(prefix) :]).resolve())
        return value
    if "://" in value:  # s3://bucket and other URLs
        return value
    return str((folder / Path(value).expanduser()).resolve())


def _check(table: Mapping[str, Any], where: str, folder: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = KEYS.get(key)
        if spec is None:
            import difflib  # for a misspelt key only: not loaded with every server

            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ProjectFileError(
                f"Unknown key `{key}` in {where}.{hint} Known keys: {', '.join(KEYS)}."
            )
        accepted = (int, float) if spec.kind is float else (spec.kind,)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise ProjectFileError(
                f"`{key}` in {where} must be a {spec.kind.__name__}, got {value!r}"
            )
        values[key] = _relative_to(folder, key, str(value)) if spec.path else value
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProjectFileError(f"Cannot read {path}: {exc}") from None


def load_project_file(project: Path) -> ProjectFile:
    """The settings of the project in ``project``: syncline.toml or pyproject's [tool.syncline]."""
    own = project / PROJECT_FILE
    pyproject = project / PYPROJECT
    tool: Any = None
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {}).get("syncline")
        if tool is not None and not isinstance(tool, dict):
            raise ProjectFileError(f"[tool.syncline] in {pyproject} must be a table")
    if own.is_file():
        if tool is not None:
            raise ProjectFileError(
                f"Both {own} and [tool.syncline] in {pyproject} hold Syncline settings: "
                "keep them in one place."
            )
        return ProjectFile(own, _check(_read_toml(own), str(own), project.resolve()))
    if tool is not None:
        where = f"[tool.syncline] of {pyproject}"
        return ProjectFile(pyproject, _check(tool, where, project.resolve()))
    return ProjectFile(None, {})


def _project_dir(args: Sequence[str]) -> Path:
    """The ``--dir`` among a command's raw arguments (default: the current directory)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--dir" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--dir="):
            return Path(arg.removeprefix("--dir="))
    return Path(".")


def _default_map(command: click.Command, project: ProjectFile) -> dict[str, Any]:
    if isinstance(command, click.Group):
        return {
            name: _default_map(sub, project)
            for name, sub in command.commands.items()
            if isinstance(sub, click.Command)
        }
    return project.defaults_for(command)


class ProjectGroup(click.Group):
    """A command group whose commands take their option defaults from the project file."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and command is not None and not {"--help", "-h"} & set(rest):
            project = load_project_file(_project_dir(rest))
            if project.values:
                ctx.default_map = {**(ctx.default_map or {}), name: _default_map(command, project)}
        return name, command, rest
