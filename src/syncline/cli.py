"""The ``syncline`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from syncline.__about__ import __version__
from syncline.errors import ConvexError, SynclineError


def _fail(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def _parse_args(text: str) -> dict[str, Any]:
    from syncline.values.json import from_json

    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"ARGS must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('ARGS must be a JSON object, like \'{"id": "..."}\'')
    return from_json(parsed)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncline")
def main() -> None:
    """Syncline: a self-hosted reactive backend for Python."""


@main.command()
@click.argument("function")
@click.argument("args", default="{}")
@click.option(
    "--dir",
    "project",
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
    show_default=True,
    help="Project folder (holds functions/ and .syncline/).",
)
@click.option(
    "--functions",
    type=click.Path(file_okay=False, path_type=Path),
    help="Functions folder (default: PROJECT/functions).",
)
@click.option(
    "--db",
    help="Database URL: sqlite:///relative.db or sqlite:////absolute/path.db "
    "(default: PROJECT/.syncline/data.sqlite3).",
)
def run(function: str, args: str, project: Path, functions: Path | None, db: str | None) -> None:
    """Run a query or mutation and print its result as JSON.

    Runs with admin rights (internal functions too) directly against the
    project's data folder.

    \b
    Examples:
      syncline run tasks:list
      syncline run tasks:create '{"title": "Write docs"}'
      syncline run admin/users:get '{"id": "j57..."}' --dir myapp
    """
    from syncline.application import Application
    from syncline.functions.paths import canonicalize_path
    from syncline.functions.registration import FunctionKind
    from syncline.identity import Admin
    from syncline.values.json import to_json

    parsed = _parse_args(args)
    try:
        app = Application.open(project, functions=functions, db=db)
    except SynclineError as exc:
        _fail(str(exc))
        return
    try:
        path = canonicalize_path(function)
        fn = app.registry.get(path)
        if fn is None:
            _fail(f"Could not find function for '{path}'")
            return
        if fn.kind is FunctionKind.QUERY:
            outcome = app.executor.query_sync(path, parsed, identity=Admin())
        elif fn.kind is FunctionKind.MUTATION:
            outcome = app.executor.mutation_sync(path, parsed, identity=Admin())
        else:
            _fail(f"{path} is an {fn.kind.value}; `syncline run` runs queries and mutations")
            return
        for line in outcome.log_lines:
            click.echo(click.style(line, dim=True), err=True)
        if outcome.error is not None:
            if isinstance(outcome.error, ConvexError):
                _fail(f"ConvexError: {orjson.dumps(to_json(outcome.error.data)).decode()}")
            _fail(f"{type(outcome.error).__name__}: {outcome.error}")
        click.echo(orjson.dumps(to_json(outcome.value), option=orjson.OPT_INDENT_2).decode())
    except SynclineError as exc:
        _fail(str(exc))
    finally:
        app.close()


if __name__ == "__main__":  # pragma: no cover
    main()
