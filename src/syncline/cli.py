"""The ``syncline`` command."""

from __future__ import annotations

import os
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


def _server_options(fn: Any) -> Any:
    options = [
        click.option(
            "--dir",
            "project",
            default=".",
            show_default=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Project folder (holds functions/ and .syncline/).",
        ),
        click.option(
            "--functions",
            type=click.Path(file_okay=False, path_type=Path),
            help="Functions folder (default: PROJECT/functions).",
        ),
        click.option(
            "--db",
            help="sqlite:///relative.db or sqlite:////absolute/path.db "
            "(default: PROJECT/.syncline/data.sqlite3).",
        ),
        click.option(
            "--host", default="127.0.0.1", show_default=True, help="Interface to listen on."
        ),
        click.option(
            "--port", default=3210, show_default=True, type=int, help="API and sync port."
        ),
        click.option(
            "--site-port", default=3211, show_default=True, type=int, help="HTTP actions port."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_loop(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _serve(
    project: Path, functions: Path | None, db: str | None, host: str, port: int, *, dev: bool
) -> None:
    import logging

    from syncline.application import Application
    from syncline.server.run import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if os.environ.get("SYNCLINE_TRACE_PROTOCOL"):
        logging.getLogger("syncline.server").setLevel(logging.DEBUG)
    try:
        app = Application.open(project, functions=functions, db=db, dev=dev)
    except SynclineError as exc:
        _fail(str(exc))
        return
    url = f"http://{host}:{port}"

    def ready() -> None:
        mode = "dev" if dev else "production"
        click.echo(f"Syncline {__version__} ({mode}) serving {app.functions_dir}")
        click.echo(f"  API and sync:  {url}")
        click.echo(f"  Admin key:     {app.database.persistence.path.rsplit('/', 1)[0]}/admin_key")
        click.echo(f"  Functions:     {len(app.registry.functions)} loaded")

    background = None
    if dev:
        from syncline.server import dev as devserver

        app.executor.observers.append(devserver.print_outcome)

        async def background() -> None:
            await devserver.watch(app)

    try:
        _run_loop(run_server(app, host=host, port=port, on_ready=ready, background=background))
    except KeyboardInterrupt:
        pass
    finally:
        app.close()


@main.command()
@_server_options
def serve(
    project: Path, functions: Path | None, db: str | None, host: str, port: int, site_port: int
) -> None:
    """Serve a project in production mode (errors to clients are redacted).

    \b
    Examples:
      syncline serve --dir myapp
      syncline serve --dir myapp --db sqlite:////var/lib/myapp/data.sqlite3 --port 8000
    """
    _serve(project, functions, db, host, port, dev=False)


@main.command()
@_server_options
def dev(
    project: Path, functions: Path | None, db: str | None, host: str, port: int, site_port: int
) -> None:
    """Serve a project for development (full error messages to clients).

    \b
    Examples:
      syncline dev
      syncline dev --dir myapp --port 4000
    """
    _serve(project, functions, db, host, port, dev=True)


if __name__ == "__main__":  # pragma: no cover
    main()
