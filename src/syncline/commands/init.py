"""``syncline init [DIR]``: start a project from the template in ``syncline/templates/default``.

The template is a small task list that runs as is: ``functions/`` (schema,
queries, mutations, an action, a cron job, HTTP actions), ``tests/`` (run
with ``pytest``, on :class:`syncline.testing.TestBackend`), a README and a
``.gitignore`` for the ``.syncline/`` data folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

import click

__all__ = ["TEMPLATE", "init", "template_files", "write_project"]

#: the template ``syncline init`` writes
TEMPLATE = "default"
_RENAMES = {"gitignore": ".gitignore"}
_PROJECT_NAME = "{{project_name}}"


class ProjectExists(click.ClickException):
    """The target folder has files in it (and ``--force`` was not given)."""


def template_files(template: str = TEMPLATE) -> dict[str, bytes]:
    """``{relative path in the new project: contents}`` of a template (caches skipped)."""
    root = resources.files("syncline") / "templates" / template
    if not root.is_dir():
        raise ValueError(f"No project template named {template!r}")
    return {str(path): item.read_bytes() for path, item in _walk(root, PurePosixPath())}


def _walk(
    folder: Traversable, prefix: PurePosixPath
) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.name == "__pycache__" or item.name.endswith((".pyc", ".pyo")):
            continue
        if item.is_dir():
            yield from _walk(item, prefix / item.name)
        else:
            yield prefix / _RENAMES.get(item.name, item.name), item


def write_project(directory: Path, *, force: bool = False, template: str = TEMPLATE) -> list[Path]:
    """Write the template into ``directory`` (created if missing); return the files written.

    Refuses (:class:`ProjectExists`, nothing written) when ``directory`` is
    not empty, unless ``force``: then the template's files replace files of
    the same name and everything else is left alone.
    """
    if directory.exists() and not directory.is_dir():
        raise ProjectExists(f"{directory} exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ProjectExists(
            f"{directory} is not empty. Choose a new folder, or pass --force to write the "
            "template's files into it (files with the same names are overwritten)"
        )
    name = directory.resolve().name
    written = []
    for relative, content in template_files(template).items():
        target = directory / relative
        if relative == "README.md":
            content = content.replace(_PROJECT_NAME.encode(), name.encode())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        written.append(target)
    return written


@click.command("init")
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, path_type=Path), required=False
)
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
@click.option(
    "--template",
    type=click.Choice(["default", "auth"]),
    default=TEMPLATE,
    show_default=True,
    help="default: a task list; auth: built-in sign-in and a React page using @convex-dev/auth.",
)
def init(directory: Path, force: bool, template: str) -> None:
    """Create a new project in DIRECTORY (default: the current folder).

    The project runs as is: `syncline dev` serves it and `pytest` tests it.

    \b
    Examples:
      syncline init myapp && cd myapp && syncline dev
      syncline init myapp --template auth
    """
    written = write_project(directory, force=force, template=template)
    where = "the current folder" if directory == Path(".") else str(directory)
    click.echo(f"Created a Syncline project in {where}:")
    for path in sorted(written):
        click.echo(f"  {path.relative_to(directory)}")
    click.echo("\nNext:")
    if directory != Path("."):
        click.echo(f"  cd {_shell_quote(str(directory))}")
    click.echo("  syncline dev     # serve it on http://127.0.0.1:3210, reloading on save")
    click.echo("  pytest           # run its tests")


def _shell_quote(text: str) -> str:
    if sys.platform != "win32":
        import shlex

        return shlex.quote(text)
    return f'"{text}"' if " " in text else text
