"""The ``syncline`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from syncline.__about__ import __version__
from syncline.commands.codegen import codegen
from syncline.commands.init import init
from syncline.commands.options import (
    admin_key_option,
    combine,
    db_option,
    functions_option,
    project_option,
    url_option,
)
from syncline.commands.remote import admin_key, data, logs, run
from syncline.commands.snapshot import export_command, import_command
from syncline.errors import SynclineError


def _fail(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncline")
def main() -> None:
    """Syncline: a self-hosted reactive backend for Python."""


main.add_command(run)
main.add_command(data)
main.add_command(logs)
main.add_command(admin_key)
main.add_command(codegen)
main.add_command(init)
main.add_command(export_command)
main.add_command(import_command)


def _byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from syncline.files.service import parse_byte_size

    try:
        return parse_byte_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _memory_size(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    from syncline.functions.limits import default_max_memory_bytes

    if value == "auto":
        return default_max_memory_bytes()
    if value == "off":
        return None
    return _byte_size(ctx, param, value)


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter(f"must be a positive number of seconds, got {value:g}")
    return value


def _http_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


def _server_options(fn: Any) -> Any:
    options = [
        project_option,
        functions_option,
        db_option,
        click.option(
            "--host", default="127.0.0.1", show_default=True, help="Interface to listen on."
        ),
        click.option(
            "--port", default=3210, show_default=True, type=int, help="API and sync port."
        ),
        click.option(
            "--site-port", default=3211, show_default=True, type=int, help="HTTP actions port."
        ),
        click.option(
            "--files",
            help="Directory for stored files (default: PROJECT/.syncline/files). "
            "S3 (s3://bucket) is not supported yet.",
        ),
        click.option(
            "--public-url",
            callback=_http_url,
            help="Base URL clients reach this server at, used in file URLs "
            "(default: http://HOST:PORT; set it when clients are on other machines).",
        ),
        click.option(
            "--max-upload-size",
            default="1GiB",
            show_default=True,
            callback=_byte_size,
            help="Largest file upload accepted (bytes, or e.g. 500MB, 2GiB).",
        ),
        click.option(
            "--function-timeout",
            default=1.0,
            show_default=True,
            type=float,
            callback=_seconds,
            help="Longest a query or mutation may run, in seconds (FunctionTimeout after).",
        ),
        click.option(
            "--action-timeout",
            default=600.0,
            show_default=True,
            type=float,
            callback=_seconds,
            help="Longest an action or HTTP action may run, in seconds (ActionTimeout after).",
        ),
        click.option(
            "--max-memory",
            default="auto",
            show_default=True,
            callback=_memory_size,
            help="Memory ceiling of the server process (e.g. 2GiB; auto: half the machine's "
            "memory, at least 1 GiB; off: none). The call that crosses it fails with "
            "MemoryLimitExceeded.",
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
    project: Path,
    functions: Path | None,
    db: str | None,
    host: str,
    port: int,
    *,
    dev: bool,
    site_port: int | None = None,
    files: str | None = None,
    public_url: str | None = None,
    max_upload_size: int | None = None,
    function_timeout: float = 1.0,
    action_timeout: float = 600.0,
    max_memory: int | None = None,
) -> None:
    import logging

    from syncline.application import Application
    from syncline.auth.admin_key import ADMIN_KEY_FILE
    from syncline.functions.limits import ExecutionLimits
    from syncline.server import discovery
    from syncline.server.run import ShutdownRequested
    from syncline.server.run import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if os.environ.get("SYNCLINE_TRACE_PROTOCOL"):
        logging.getLogger("syncline.server").setLevel(logging.DEBUG)
    try:
        app = Application.open(
            project,
            functions=functions,
            db=db,
            dev=dev,
            files=files,
            max_upload_bytes=max_upload_size,
            limits=ExecutionLimits(
                function_timeout_s=function_timeout,
                action_timeout_s=action_timeout,
                max_memory_bytes=max_memory,
            ),
        )
    except SynclineError as exc:
        _fail(str(exc))
        return
    url = f"http://{host}:{port}"
    # File URLs must name an address clients can reach (never 0.0.0.0).
    app.public_url = (public_url or f"http://{discovery.connect_host(host)}:{port}").rstrip("/")
    site_url = f"http://{host}:{site_port}" if site_port is not None else None
    assert app.paths is not None  # Application.open sets them
    data_dir = app.paths.database_dir

    def ready() -> None:
        mode = "dev" if dev else "production"
        click.echo(f"Syncline {__version__} ({mode}) serving {app.functions_dir}")
        click.echo(f"  API and sync:  {url}")
        if site_url is not None:
            click.echo(f"  HTTP actions:  {site_url} (and {url}/http/)")
        # So that `syncline env` and friends can find this server (the data dir is locked).
        reachable = discovery.connect_host(host)
        discovery.write(
            data_dir,
            url=f"http://{reachable}:{port}",
            site_url=None if site_port is None else f"http://{reachable}:{site_port}",
        )
        click.echo(f"  Admin key:     {data_dir / ADMIN_KEY_FILE}")
        click.echo(f"  Functions:     {len(app.registry.functions)} loaded")
        if app.storage is not None:
            click.echo(f"  Files:         {app.storage.blobs} (URLs: {app.public_url})")
            if public_url is None and discovery.connect_host(host) != host:
                click.echo(
                    "  Note: file URLs use a loopback address; pass --public-url "
                    "so clients on other machines can reach them."
                )

    background = None
    if dev:
        from syncline.server import dev as devserver

        app.executor.observers.append(devserver.print_outcome)
        app.executor.log_failures = False  # the console shows every call, failures in full

        async def background() -> None:
            await devserver.watch(app)

    try:
        _run_loop(
            run_server(
                app,
                host=host,
                port=port,
                on_ready=ready,
                background=background,
                site_port=site_port,
            )
        )
    except (KeyboardInterrupt, ShutdownRequested):
        pass  # Ctrl-C or SIGTERM: the servers drained; close everything below
    finally:
        discovery.remove(data_dir)
        app.close()


@main.command()
@_server_options
def serve(**options: Any) -> None:
    """Serve a project in production mode (errors to clients are redacted).

    \b
    Examples:
      syncline serve --dir myapp
      syncline serve --dir myapp --db sqlite:////var/lib/myapp/data.sqlite3 --port 8000
    """
    _serve(dev=False, **options)


@main.command()
@_server_options
def dev(**options: Any) -> None:
    """Serve a project for development (full error messages to clients).

    \b
    Examples:
      syncline dev
      syncline dev --dir myapp --port 4000
    """
    _serve(dev=True, **options)


# ---------------------------------------------------------------------- env


class _LocalEnv:
    """Environment variables of a data directory opened directly (no server running)."""

    def __init__(self, app: Any, where: Path) -> None:
        self.app = app
        self.where = f"local data in {where}"

    def list_all(self) -> dict[str, str]:
        return dict(self.app.env.list_all())

    def update(self, changes: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
        return [(c.name, c.result) for c in self.app.env.update(changes)]

    def close(self) -> None:
        self.app.close()


class _RemoteEnv:
    """Environment variables of a running server, through ``/api/admin/env``."""

    def __init__(self, url: str, admin_key: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.where = self.url
        self._http = httpx.Client(
            timeout=30.0, headers={"Authorization": f"Convex {admin_key.strip()}"}
        )

    def _call(self, method: str, body: Any = None) -> Any:
        import httpx

        try:
            response = self._http.request(method, f"{self.url}/api/admin/env", json=body)
        except httpx.HTTPError as exc:
            raise SynclineError(
                f"Could not reach Syncline at {self.url}: {exc}", code="ServerUnreachable"
            ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            if isinstance(payload, dict) and "message" in payload:
                raise SynclineError(
                    f"{payload['message']} ({payload.get('code')})",
                    code=str(payload.get("code")),
                )
            raise SynclineError(
                f"{self.url} answered HTTP {response.status_code}: {response.text[:200]}",
                code="BadResponse",
            )
        return payload

    def list_all(self) -> dict[str, str]:
        payload = self._call("GET")
        return {item["name"]: item["value"] for item in payload["variables"]}

    def update(self, changes: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
        body = {"changes": [{"name": name, "value": value} for name, value in changes]}
        payload = self._call("POST", body)
        return [(item["name"], item["result"]) for item in payload["changes"]]

    def close(self) -> None:
        self._http.close()


def _read_key_file(data_dir: Path) -> str | None:
    try:
        key = (data_dir / "admin_key").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None


def _env_target(
    project: Path, db: str | None, url: str | None, admin_key: str | None
) -> _LocalEnv | _RemoteEnv:
    """Where `syncline env` reads and writes: --url, else the data dir, else its server."""
    from syncline.application import DATA_DIR_NAME, Application, Paths
    from syncline.server import discovery

    data_dir = Paths.for_project(project, db=db).database_dir
    if url is not None:
        key = admin_key or _read_key_file(data_dir)
        if key is None:
            raise SynclineError(
                f"No admin key for {url}: pass --admin-key (or set SYNCLINE_ADMIN_KEY); "
                f"{data_dir / 'admin_key'} does not exist",
                code="NoAdminKey",
            )
        return _RemoteEnv(url, key)
    if not data_dir.is_dir() and not (project / "functions").is_dir():
        raise SynclineError(
            f"{project.resolve()} is not a Syncline project (no functions/ or {DATA_DIR_NAME}/): "
            "pass --dir PROJECT, or --url to talk to a running server",
            code="NotAProject",
        )
    try:
        app = Application.open(project, db=db, load=False)
    except SynclineError as exc:
        if exc.code != "DataDirLocked":
            raise
        # A server holds the data dir: talk to it instead.
        record = discovery.read(data_dir)
        key = admin_key or _read_key_file(data_dir)
        if record is None or key is None:
            raise SynclineError(
                f"{data_dir} is in use by a running Syncline server: pass its address with "
                "--url http://127.0.0.1:3210 (and --admin-key if needed)",
                code="DataDirLocked",
            ) from None
        return _RemoteEnv(record["url"], key)
    return _LocalEnv(app, data_dir)


_env_options = combine(project_option, db_option, url_option, admin_key_option)


def _with_env_target(
    project: Path, db: str | None, url: str | None, admin_key: str | None, work: Any
) -> Any:
    try:
        target = _env_target(project, db, url, admin_key)
    except SynclineError as exc:
        _fail(str(exc))
        return None
    try:
        return work(target)
    except SynclineError as exc:
        _fail(str(exc))
        return None
    finally:
        target.close()


@main.group()
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
@_env_options
def env_list(project: Path, db: str | None, url: str | None, admin_key: str | None) -> None:
    """Print every variable as NAME=value, sorted by name.

    \b
    Examples:
      syncline env list
      syncline env list --dir myapp
      syncline env list --url http://127.0.0.1:3210
    """
    values = _with_env_target(project, db, url, admin_key, lambda t: t.list_all())
    for name, value in (values or {}).items():
        click.echo(f"{name}={value}")


@env.command("get")
@click.argument("name")
@_env_options
def env_get(
    name: str, project: Path, db: str | None, url: str | None, admin_key: str | None
) -> None:
    """Print the value of NAME (exit status 1 if it is not set).

    \b
    Examples:
      syncline env get OPENAI_API_KEY
      syncline env get WEBHOOK_SECRET --url http://127.0.0.1:3210
    """
    values = _with_env_target(project, db, url, admin_key, lambda t: t.list_all())
    if values is None or name not in values:
        _fail(f"Environment variable {name!r} is not set")
        return
    click.echo(values[name])


@env.command("set")
@click.argument("name")
@click.argument("value", required=False)
@_env_options
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
    done = _with_env_target(project, db, url, admin_key, lambda t: t.update(changes))
    for changed, result in done or []:
        click.echo({"unchanged": f"{changed} already has that value"}.get(result, f"Set {changed}"))


@env.command("remove")
@click.argument("name")
@_env_options
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
    done = _with_env_target(project, db, url, admin_key, lambda t: t.update(changes))
    for changed, result in done or []:
        click.echo(f"Removed {changed}" if result == "removed" else f"{changed} was not set")


if __name__ == "__main__":  # pragma: no cover
    main()
