"""``syncline run``, ``data``, ``logs`` and ``admin-key``: work with a project's deployment.

Which deployment a command talks to (:func:`find_server`):

1. ``--url URL`` (or ``$SYNCLINE_URL``): the server at that URL;
2. else, when a running ``syncline serve|dev`` holds the project's data folder
   (its :class:`~syncline.application.DataDirLock`): that server, at the URL
   it recorded in ``<data dir>/server.json`` (:mod:`syncline.server.discovery`),
   or ``http://127.0.0.1:3210`` if it recorded none;
3. else no server: ``run`` and ``data`` open the data folder directly;
   ``logs`` and ``run --watch`` need a server and say so.

Requests to a server carry ``Authorization: Convex <admin key>``; the key is
``--admin-key`` (or ``$SYNCLINE_ADMIN_KEY``), else the one stored in the
project's data folder (``PROJECT/.syncline/admin_key``, printed by
``syncline admin-key``). A rejected key, an unreachable server or a failing
function ends the command with exit status 1 and one ``error:`` line on
stderr saying what to do.

Values are printed as Convex's encoded JSON (``{"$integer": "..."}`` for
int64, ``{"$bytes": "..."}`` for bytes), as on the wire.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from syncline.commands.options import (
    admin_key_option,
    combine,
    db_option,
    project_option,
    url_option,
)
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_URL",
    "Remote",
    "admin_key",
    "data",
    "data_dir_for",
    "fail",
    "find_server",
    "format_log_entry",
    "logs",
    "parse_args_json",
    "run",
    "server_holds",
]

DEFAULT_URL = "http://127.0.0.1:3210"
#: seconds to wait for a server to accept a connection or answer a request
CONNECT_TIMEOUT_S = 10.0
#: seconds to wait for a one-shot function call (actions may take long)
CALL_TIMEOUT_S = 600.0


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 1."""
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def _dumps(value: Any, *, pretty: bool) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0).decode()


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


# --------------------------------------------------------------------------
# Finding the deployment


def data_dir_for(project: Path, db: str | None) -> Path:
    """The data folder ``syncline serve --dir project [--db db]`` would use (and lock)."""
    from syncline.application import Paths

    try:
        return Paths.for_project(project, db=db).database_dir
    except SynclineError as exc:
        fail(str(exc))


def server_holds(data_dir: Path) -> bool:
    """True if another process (a running server) holds ``data_dir``'s lock."""
    from syncline.application import DataDirLock

    if not (data_dir / "lock").exists():
        return False
    try:
        lock = DataDirLock(data_dir)
    except SynclineError as exc:
        if exc.code == "DataDirLocked":
            return True
        raise
    lock.release()
    return False


def _stored_admin_key(data_dir: Path) -> str | None:
    from syncline.auth.admin_key import ADMIN_KEY_FILE

    try:
        key = (data_dir / ADMIN_KEY_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        fail(f"Cannot read the admin key in {data_dir}: {exc}")
    return key or None


def _recorded_url(data_dir: Path) -> str | None:
    from syncline.server import discovery

    record = discovery.read(data_dir)
    return None if record is None else str(record["url"])


@dataclass(frozen=True)
class Remote:
    """A running server and the admin key to talk to it with."""

    url: str
    admin_key: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Convex {self.admin_key}"}

    def _endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float = CONNECT_TIMEOUT_S,
    ) -> Any:
        """``method path`` with the admin key; the decoded JSON answer (2xx) or :func:`fail`."""
        import httpx

        try:
            response = httpx.request(
                method,
                self._endpoint(path),
                params=params,
                content=None if body is None else orjson.dumps(body),
                headers={**self._headers(), "Content-Type": "application/json"},
                timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=timeout),
            )
        except httpx.TransportError as exc:
            self._unreachable(exc)
        if not response.is_success:
            self._http_error(path, response.status_code, response.text)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            fail(f"{self.url}{path} answered something that is not JSON: {response.text[:200]!r}")

    def stream_lines(self, path: str) -> Iterator[str]:
        """The non-empty lines of a streamed ``GET path`` answer, until the server ends it."""
        import httpx

        try:
            with httpx.stream(
                "GET",
                self._endpoint(path),
                headers=self._headers(),
                timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    self._http_error(path, response.status_code, response.text)
                for line in response.iter_lines():
                    if line.strip():
                        yield line
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                self._unreachable(exc)
            fail(f"Lost the connection to the server at {self.url} (did it stop?)")

    def _unreachable(self, exc: Exception) -> NoReturn:
        fail(
            f"Could not reach a Syncline server at {self.url} ({exc or type(exc).__name__}). "
            "Is it running (`syncline dev`)? Pass its address with --url."
        )

    def _http_error(self, path: str, status: int, text: str) -> NoReturn:
        try:
            body = orjson.loads(text)
            code, message = body["code"], body["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            if status == 404:
                fail(
                    f"{self.url}{path} does not exist (HTTP 404): is {self.url} a Syncline "
                    "server of this version?"
                )
            fail(f"HTTP {status} from {self.url}{path}: {text[:200]}")
        if status == 401 and code in ("BadAdminKey", "InvalidAuthHeader"):
            fail(
                f"The server at {self.url} rejected the admin key: {message}. Pass the key of "
                "the server's data folder with --admin-key (`syncline admin-key --dir PROJECT` "
                "prints it on the server's machine)."
            )
        fail(f"{message} ({code})")


def find_server(
    project: Path, db: str | None, url: str | None, admin_key: str | None
) -> Remote | None:
    """The server to talk to (see the module docstring), or None to work on the data folder."""
    data_dir = data_dir_for(project, db)
    if url is None:
        if not server_holds(data_dir):
            return None
        url = _recorded_url(data_dir) or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        fail(f"--url must be an http:// or https:// URL, got {url!r}")
    key = admin_key or _stored_admin_key(data_dir)
    if not key:
        fail(
            f"No admin key for {url}: {data_dir} holds none. Pass --admin-key (or set "
            "SYNCLINE_ADMIN_KEY) with the key of the server's data folder; "
            "`syncline admin-key --dir PROJECT` prints it on the server's machine."
        )
    return Remote(url.rstrip("/"), key)


_project_options = combine(project_option, db_option, url_option, admin_key_option)


# --------------------------------------------------------------------------
# syncline run


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
        click.echo(_dumps(answer.get("value"), pretty=True))
        return
    message = answer.get("errorMessage") or "the function failed"
    if "errorData" in answer:
        message += f"\nerrorData: {_dumps(answer['errorData'], pretty=False)}"
    fail(message)


def _run_local(
    project: Path, functions: Path | None, db: str | None, path: str, args: dict[str, Any]
) -> None:
    from syncline.application import Application
    from syncline.errors import ConvexError
    from syncline.functions.executor import convex_error_data
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
                fail(f"ConvexError: {_dumps(to_json(data), pretty=False)}")
            fail(f"{type(outcome.error).__name__}: {outcome.error}")
        click.echo(_dumps(to_json(outcome.value), pretty=True))
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
                    click.style("ConvexError: ", fg="red")
                    + _dumps(to_json(exc.data), pretty=False),
                    err=True,
                )
                continue
            except FunctionError as exc:
                click.echo(click.style(str(exc), fg="red"), err=True)
                continue
            click.echo(_dumps(to_json(value), pretty=False))
    finally:
        await client.close()


@click.command()
@click.argument("function")
@click.argument("args", default="{}")
@_project_options
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


# --------------------------------------------------------------------------
# syncline data


def _database_file(project: Path, db: str | None) -> Path:
    from syncline.application import Paths

    try:
        return Paths.for_project(project, db=db).database_file
    except SynclineError as exc:
        fail(str(exc))


def _read_local(project: Path, db: str | None, read: Callable[[Any], Any]) -> Any:
    """``read(tx)`` on a snapshot of the project's database (no server running)."""
    from syncline.application import Application

    db_file = _database_file(project, db)
    if not db_file.exists():
        fail(
            f"{project} has no data yet ({db_file} does not exist). Start it with "
            f"`syncline dev --dir {project}`, or pass --url to read a running server."
        )
    try:
        app = Application.open(project, db=db, load=False)
    except SynclineError as exc:
        fail(str(exc))
    try:
        return app.database.run_read(read).value
    except SynclineError as exc:
        fail(str(exc))
    finally:
        app.close()


def _print_tables(tables: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(_dumps(tables, pretty=True))
        return
    if fmt == "jsonl":
        for table in tables:
            click.echo(_dumps(table, pretty=False))
        return
    if not tables:
        click.echo("No tables yet.", err=True)
        return
    width = max(len("Table"), *(len(t["name"]) for t in tables))
    click.echo(click.style(f"{'Table':<{width}}  Documents", bold=True))
    for table in tables:
        click.echo(f"{table['name']:<{width}}  {table['documents']}")


def _print_documents(page: dict[str, Any], fmt: str, order: str) -> None:
    documents = page["documents"]
    if fmt == "jsonl":
        for doc in documents:
            click.echo(_dumps(doc, pretty=False))
    else:
        click.echo(_dumps(documents, pretty=fmt == "pretty"))
    total = page.get("total", len(documents))
    if fmt == "pretty" and total > len(documents):
        first = "newest" if order == "desc" else "oldest"
        click.echo(
            click.style(
                f"({len(documents)} of {total} documents of {page['table']}, {first} first; "
                "see --limit)",
                dim=True,
            ),
            err=True,
        )


@click.command()
@click.argument("table", required=False)
@_project_options
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Most documents to print.",
)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="By _creationTime: desc prints the newest first.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json", "jsonl"]),
    default="pretty",
    show_default=True,
    help="pretty: a table list / indented JSON; json: one JSON value; jsonl: one per line.",
)
def data(
    table: str | None,
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    limit: int,
    order: str,
    fmt: str,
) -> None:
    """List the tables, or print the documents of TABLE as JSON.

    Without TABLE: every table with its number of documents. With TABLE: its
    documents by _creationTime, newest first (--order asc for oldest first).
    Reads the running server (or --url), else the project's data folder.

    \b
    Examples:
      syncline data
      syncline data messages
      syncline data messages --limit 5 --order asc
      syncline data _scheduled_functions --format jsonl | jq .state
    """
    from syncline.database.browse import read_documents, table_counts

    remote = find_server(project, db, url, admin_key)
    if table is None:
        if remote is not None:
            tables = remote.request("GET", "/api/admin/tables")["tables"]
        else:
            tables = _read_local(project, db, table_counts)
        _print_tables(tables, fmt)
        return
    if remote is not None:
        page = remote.request(
            "GET", "/api/admin/data", params={"table": table, "limit": limit, "order": order}
        )
    else:
        page = _read_local(
            project,
            db,
            lambda tx: read_documents(tx, table, limit=limit, order=order),  # type: ignore[arg-type]
        )
    _print_documents(page, fmt, order)


# --------------------------------------------------------------------------
# syncline logs


def format_log_entry(entry: dict[str, Any]) -> list[str]:
    """Console lines for one ``/api/admin/logs`` call record: a summary, then its log lines.

    ``HH:MM:SS kind path duration status``; the status is ``ok`` or the error,
    followed by the request id the caller was shown and the traceback.
    """
    stamp = time.strftime("%H:%M:%S", time.localtime(float(entry.get("timestamp", 0)) / 1000))
    kind = entry.get("kind") or "function"
    if entry.get("status") == "success":
        status = click.style("ok", fg="green")
    else:
        status = click.style(str(entry.get("error") or "failed"), fg="red")
    duration = float(entry.get("durationMs") or 0.0)
    lines = [f"{stamp} {kind:<8} {entry.get('path')} {duration:7.1f} ms  {status}"]
    if entry.get("requestId"):
        lines.append(click.style(f"    [Request ID: {entry['requestId']}]", dim=True))
    for text in str(entry.get("traceback") or "").splitlines():
        lines.append(click.style(f"    {text}", fg="red", dim=True))
    lines.extend(click.style(f"    {line}", dim=True) for line in entry.get("logLines") or [])
    return lines


@click.command()
@_project_options
@click.option("--jsonl", is_flag=True, help="Print each call's record as one JSON line.")
def logs(
    project: Path, db: str | None, url: str | None, admin_key: str | None, jsonl: bool
) -> None:
    """Follow the function calls of a running server, with what they logged.

    One line per finished call: time, kind, path, duration and outcome ("ok"
    or the error), then the lines the function printed, indented. Runs until
    Ctrl-C or until the server stops.

    \b
    Examples:
      syncline logs
      syncline logs --dir myapp
      syncline logs --url https://syncline.example.com --admin-key "$KEY" --jsonl
    """
    remote = find_server(project, db, url, admin_key)
    if remote is None:
        fail(
            f"No Syncline server runs on {data_dir_for(project, db)}. Start one with "
            f"`syncline dev --dir {project}`, or pass --url to follow a server elsewhere."
        )
    try:
        for line in remote.stream_lines("/api/admin/logs"):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            kind = entry.get("type")
            if kind == "connected":
                click.echo(
                    f"Following the function logs of {remote.url} (Ctrl-C to stop)", err=True
                )
            elif kind == "dropped":
                click.echo(
                    click.style(
                        f"... {entry.get('count')} calls not shown (the log stream fell behind)",
                        fg="yellow",
                    ),
                    err=True,
                )
            elif kind == "call":
                if jsonl:
                    click.echo(_dumps(entry, pretty=False))
                else:
                    for text in format_log_entry(entry):
                        click.echo(text)
    except KeyboardInterrupt:
        return
    fail(f"The server at {remote.url} closed the log stream")


# --------------------------------------------------------------------------
# syncline admin-key


@click.command("admin-key")
@click.option(
    "--dir",
    "project",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Project folder (holds .syncline/).",
)
@click.option(
    "--db", help="The project's database URL, if not the default; its folder holds the key."
)
def admin_key(project: Path, db: str | None) -> None:
    """Print the project's admin key, creating it if there is none yet.

    The key is stored in the data folder (PROJECT/.syncline/admin_key, mode
    0600). It authorises `syncline run`/`data`/`logs`/`env` against a server
    (--admin-key or SYNCLINE_ADMIN_KEY), the dashboard, and admin clients
    (`Authorization: Convex <key>`, `client.set_admin_auth(key)`).

    \b
    Examples:
      syncline admin-key
      syncline admin-key --dir myapp
      export SYNCLINE_ADMIN_KEY=$(syncline admin-key --dir myapp)
    """
    from syncline.auth.admin_key import load_or_create_admin_key

    try:
        key = load_or_create_admin_key(data_dir_for(project, db))
    except (SynclineError, OSError) as exc:
        fail(f"Cannot read or create the admin key: {exc}")
    click.echo(key)
