"""``syncline serve`` and ``syncline dev``: serve a project (API, sync and HTTP actions)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from syncline.__about__ import __version__
from syncline.commands.console import fail
from syncline.commands.options import (
    db_option,
    durability_option,
    functions_option,
    project_option,
)
from syncline.errors import SynclineError
from syncline.sync.limits import (
    DEFAULT_MAX_INFLIGHT_ACTIONS,
    DEFAULT_MAX_QUERIES,
    DEFAULT_MAX_QUEUED_MUTATIONS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SEND_QUEUE_BYTES,
    ConnectionLimits,
)

__all__ = ["dev", "serve"]


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
        durability_option,
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
        click.option(
            "--max-queries-per-connection",
            default=DEFAULT_MAX_QUERIES,
            show_default=True,
            type=click.IntRange(min=1),
            help="Queries one sync connection may subscribe at once.",
        ),
        click.option(
            "--max-actions-per-connection",
            default=DEFAULT_MAX_INFLIGHT_ACTIONS,
            show_default=True,
            type=click.IntRange(min=1),
            help="Actions one sync connection may have running; more wait unread.",
        ),
        click.option(
            "--max-mutations-per-connection",
            default=DEFAULT_MAX_QUEUED_MUTATIONS,
            show_default=True,
            type=click.IntRange(min=1),
            help="Mutations one sync connection may have queued or running; more wait unread.",
        ),
        click.option(
            "--max-request-bytes-per-connection",
            default="16MiB",
            show_default=True,
            callback=_byte_size,
            help="Bytes of mutation and action messages one sync connection may have "
            "unanswered; more wait unread.",
        ),
        click.option(
            "--max-send-queue-per-connection",
            default="16MiB",
            show_default=True,
            callback=_byte_size,
            help="Response bytes a sync client may leave unread before it is disconnected.",
        ),
        click.option(
            "--header-timeout",
            default=30.0,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a request's line and headers may take to arrive (then 408).",
        ),
        click.option(
            "--body-timeout",
            default=30.0,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Longest wait in seconds for the next part of a request body (then 408).",
        ),
        click.option(
            "--max-header-size",
            default="64KiB",
            show_default=True,
            callback=_byte_size,
            help="Largest request line plus headers accepted (then 431).",
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
    durability: str = "full",
    site_port: int | None = None,
    files: str | None = None,
    public_url: str | None = None,
    max_upload_size: int | None = None,
    function_timeout: float = 1.0,
    action_timeout: float = 600.0,
    max_memory: int | None = None,
    max_queries_per_connection: int = DEFAULT_MAX_QUERIES,
    max_actions_per_connection: int = DEFAULT_MAX_INFLIGHT_ACTIONS,
    max_mutations_per_connection: int = DEFAULT_MAX_QUEUED_MUTATIONS,
    max_request_bytes_per_connection: int = DEFAULT_MAX_REQUEST_BYTES,
    max_send_queue_per_connection: int = DEFAULT_MAX_SEND_QUEUE_BYTES,
    header_timeout: float = 30.0,
    body_timeout: float = 30.0,
    max_header_size: int = 64 * 1024,
) -> None:
    import logging

    from syncline.application import Application
    from syncline.auth.admin_key import ADMIN_KEY_FILE
    from syncline.functions.limits import ExecutionLimits
    from syncline.server import discovery
    from syncline.server.listen import PortUnavailable, listen
    from syncline.server.request_limits import RequestLimits
    from syncline.server.run import ShutdownRequested
    from syncline.server.run import serve as run_server

    # Ports first: one clear line if one is taken, before anything opens or starts.
    try:
        api_sockets = listen(host, port)
    except PortUnavailable as exc:
        fail(f"{exc}; choose another with --port")
    try:
        site_sockets = listen(host, site_port) if site_port is not None else None
    except PortUnavailable as exc:
        _close_all(api_sockets)
        fail(f"{exc}; choose another with --site-port")
    bound = [*api_sockets, *(site_sockets or [])]

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if os.environ.get("SYNCLINE_TRACE_PROTOCOL"):
        logging.getLogger("syncline.server").setLevel(logging.DEBUG)
    try:
        app = Application.open(
            project,
            functions=functions,
            db=db,
            durability="normal" if durability == "normal" else "full",
            dev=dev,
            files=files,
            max_upload_bytes=max_upload_size,
            limits=ExecutionLimits(
                function_timeout_s=function_timeout,
                action_timeout_s=action_timeout,
                max_memory_bytes=max_memory,
            ),
        )
    except BaseException as exc:
        _close_all(bound)
        if isinstance(exc, SynclineError):
            fail(str(exc))
        raise
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

        async def background(watching: Callable[[], None]) -> None:
            await devserver.watch(app, watching=watching)

    try:
        _run_loop(
            run_server(
                app,
                host=host,
                port=port,
                on_ready=ready,
                background=background,
                site_port=site_port,
                sync_limits=ConnectionLimits(
                    max_queries=max_queries_per_connection,
                    max_inflight_actions=max_actions_per_connection,
                    max_queued_mutations=max_mutations_per_connection,
                    max_request_bytes=max_request_bytes_per_connection,
                    max_send_queue_bytes=max_send_queue_per_connection,
                ),
                limits=RequestLimits(
                    header_timeout_s=header_timeout,
                    body_timeout_s=body_timeout,
                    max_header_bytes=max_header_size,
                ),
                api_sockets=api_sockets,
                site_sockets=site_sockets,
            )
        )
    except (KeyboardInterrupt, ShutdownRequested):
        pass  # Ctrl-C or SIGTERM: the servers drained; close everything below
    finally:
        discovery.remove(data_dir)
        app.close()
        _close_all(bound)


def _close_all(sockets: list[Any]) -> None:
    for sock in sockets:
        sock.close()


@click.command()
@_server_options
def serve(**options: Any) -> None:
    """Serve a project in production mode (errors to clients are redacted).

    \b
    Examples:
      syncline serve --dir myapp
      syncline serve --dir myapp --db sqlite:////var/lib/myapp/data.sqlite3 --port 8000
    """
    _serve(dev=False, **options)


@click.command()
@_server_options
def dev(**options: Any) -> None:
    """Serve a project for development (full error messages to clients).

    \b
    Examples:
      syncline dev
      syncline dev --dir myapp --port 4000
    """
    _serve(dev=True, **options)
