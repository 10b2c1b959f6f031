"""``syncline run``: run a function as admin, on a server or on the data folder.

The deployment is found as :mod:`syncline.commands.deployment` describes.
Values are printed as Convex's encoded JSON (``{"$integer": "..."}`` for
int64, ``{"$bytes": "..."}`` for bytes), as on the wire.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from syncline.commands.console import dumps, fail
from syncline.commands.deployment import (
    CONNECT_TIMEOUT_S,
    Remote,
    find_server,
    project_options,
)
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["CALL_TIMEOUT_S", "parse_args_json", "run"]

#: seconds to wait for a one-shot function call (actions may take long)
CALL_TIMEOUT_S = 600.0


def parse_args_json(text: str) -> dict[str, Any]:
    """``ARGS`` as a JSON object (still in Convex's encoded JSON); a usage error otherwise."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"ARGS must be a JSON object: {exc}", param_hint="ARGS") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            'ARGS must be a JSON object, like \'{"id": "..."}\'', param_hint="ARGS"
        )
    return parsed


def _print_log_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(click.style(line, dim=True), err=True)


def _run_remote(remote: Remote, path: str, args: dict[str, Any]) -> None:
    answer = remote.request(
        "POST",
        "/api/function",
        body={"path": path, "args": args, "format": "convex_encoded_json"},
        timeout=CALL_TIMEOUT_S,
    )
    _print_log_lines(answer.get("logLines") or [])
    if answer.get("status") == "success":
        click.echo(dumps(answer.get("value"), pretty=True))
        return
    message = answer.get("errorMessage") or "the function failed"
    if "errorData" in answer:
        message += f"\nerrorData: {dumps(answer['errorData'], pretty=False)}"
    fail(message)


def _run_local(
    project: Path, functions: Path | None, db: str | None, path: str, args: dict[str, Any]
) -> None:
    from syncline.application import Application
    from syncline.errors import ConvexError
    from syncline.functions.outcomes import convex_error_data, describe_error
    from syncline.functions.registration import FunctionKind
    from syncline.identity import Admin
    from syncline.values.json import from_json, to_json

    try:
        app = Application.open(project, functions=functions, db=db)
    except SynclineError as exc:
        fail(str(exc))
    try:
        fn = app.registry.resolve(path, allow_internal=True)
        value = from_json(args)
        if fn.kind is FunctionKind.QUERY:
            outcome = app.executor.query_sync(path, value, identity=Admin())
        elif fn.kind is FunctionKind.MUTATION:
            outcome = app.executor.mutation_sync(path, value, identity=Admin())
        else:
            outcome = _run_action(app, path, value)
        _print_log_lines(outcome.log_lines)
        if outcome.error is not None:
            if isinstance(outcome.error, ConvexError):
                data = convex_error_data(outcome.error)
                fail(f"ConvexError: {dumps(to_json(data), pretty=False)}")
            fail(describe_error(outcome.error))
        click.echo(dumps(to_json(outcome.value), pretty=True))
    except SynclineError as exc:
        fail(str(exc))
    finally:
        app.close()


def _run_action(app: Application, path: str, args: Any) -> Any:
    """Run an action on a private event loop.

    The application's background services are not started, so the CLI never
    runs scheduled jobs or crons as a side effect.
    """
    from syncline.identity import Admin

    return asyncio.run(app.executor.action(path, args, identity=Admin()))


def _check_watchable(remote: Remote, path: str) -> None:
    listing = remote.request("GET", "/api/admin/functions")
    for fn in listing.get("functions", []):
        if fn.get("path") == path:
            if fn.get("kind") != "query":
                fail(f"--watch needs a query; {path} is a {fn.get('kind')}")
            return
    fail(f"Could not find function for '{path}'")


async def _watch(remote: Remote, path: str, args: dict[str, Any]) -> None:
    from syncline.client import AsyncClient, FunctionError
    from syncline.errors import AuthError, ConvexError
    from syncline.values.json import from_json, to_json

    client = AsyncClient(remote.url, admin_key=remote.admin_key)
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await client.connect()
        except TimeoutError:
            fail(f"Could not open a sync connection to {remote.url} within {CONNECT_TIMEOUT_S:g} s")
        except AuthError as exc:
            fail(f"The server at {remote.url} rejected the admin key: {exc}")
        subscription = client.subscribe(path, from_json(args))  # type: ignore[arg-type]
        while True:
            try:
                value = await subscription.__anext__()
            except StopAsyncIteration:
                fail(f"The connection to {remote.url} was closed")
            except ConvexError as exc:
                click.echo(
                    click.style("ConvexError: ", fg="red") + dumps(to_json(exc.data), pretty=False),
                    err=True,
                )
                continue
            except FunctionError as exc:
                click.echo(click.style(str(exc), fg="red"), err=True)
                continue
            click.echo(dumps(to_json(value), pretty=False))
    finally:
        await client.close()


@click.command()
@click.argument("function")
@click.argument("args", default="{}")
@project_options
@click.option(
    "--functions",
    type=click.Path(file_okay=False, path_type=Path),
    help="Functions folder, when no server runs (default: PROJECT/functions).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep a live subscription to the query and print every new result (needs a server).",
)
def run(
    function: str,
    args: str,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    functions: Path | None,
    watch: bool,
) -> None:
    """Run a function as admin (internal ones too) and print its result as JSON.

    ARGS is a JSON object (Convex encoded JSON: {"$integer": "..."} for int64).
    When a server runs on the project (or with --url), the function runs
    there; otherwise directly on the project's data folder. Log lines the
    function printed go to stderr. With --watch, the query's result is
    printed again, one JSON line each, whenever it changes (Ctrl-C stops).

    \b
    Examples:
      syncline run tasks:list
      syncline run tasks:create '{"title": "Write docs"}'
      syncline run admin/users:get '{"id": "j57..."}' --dir myapp
      syncline run tasks:list --watch
      syncline run tasks:count --url https://syncline.example.com --admin-key "$KEY"
    """
    from syncline.functions.paths import canonicalize_path

    parsed = parse_args_json(args)
    try:
        path = canonicalize_path(function)
    except SynclineError as exc:
        fail(str(exc))
    remote = find_server(project, db, url, admin_key)
    if watch:
        if remote is None:
            fail(
                f"--watch needs a running server: start one with `syncline dev --dir {project}`, "
                "or pass --url."
            )
        _check_watchable(remote, path)
        try:
            asyncio.run(_watch(remote, path, parsed))
        except KeyboardInterrupt:
            pass
        return
    if remote is None:
        _run_local(project, functions, db, path, parsed)
    else:
        _run_remote(remote, path, parsed)
