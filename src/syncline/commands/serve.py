"""``syncline serve`` and ``syncline dev``: serve a project (API, sync and HTTP actions)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncline.__about__ import __version__
from syncline.commands.console import fail
from syncline.commands.operations import (
    open_call_log,
    operations_options,
    prepare_worker_metrics,
    serve_metrics,
    stop_metrics,
)
from syncline.commands.options import (
    combine,
    db_option,
    durability_option,
    functions_option,
    project_option,
)
from syncline.errors import SynclineError
from syncline.functions.bundle import DEFAULT_MAX_DEPLOY_BYTES
from syncline.sync.limits import (
    DEFAULT_MAX_INFLIGHT_ACTIONS,
    DEFAULT_MAX_QUERIES,
    DEFAULT_MAX_QUEUED_MUTATIONS,
    ConnectionLimits,
)

if TYPE_CHECKING:
    import socket

    from syncline.application import Application
    from syncline.server.workers import WorkerFds

__all__ = ["MAX_WORKERS", "dev", "serve"]

#: the most worker processes ``--workers`` accepts
MAX_WORKERS = 64


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


def _cache_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    return 0 if value == "off" else _byte_size(ctx, param, value)


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
            "--workers",
            default=1,
            show_default=True,
            type=click.IntRange(min=1, max=MAX_WORKERS),
            help="Worker processes serving the same ports and database (each serves "
            "connections and runs functions; one runs the scheduler and crons).",
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
        click.option(
            "--files",
            help="Where stored files live: a directory (default: PROJECT/.syncline/files) "
            "or s3://bucket/prefix (pip install 'syncline[s3]'; see docs/reference/storage.md).",
        ),
        click.option(
            "--public-url",
            callback=_http_url,
            help="Base URL clients reach this server at, used in file URLs and as the "
            "site URL (PUBLIC_URL/http; the issuer of built-in auth's tokens) "
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
            "--query-cache",
            default="64MiB",
            show_default=True,
            callback=_cache_size,
            help="Answers of HTTP queries kept to serve identical calls until a commit "
            "changes what they read (e.g. 256MiB; off: none; per worker). Not used on "
            "PostgreSQL with several nodes.",
        ),
        click.option(
            "--vector-index",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "exact", "approximate"]),
            help="How vector indexes are searched: exact, approximate (HNSW graph), or "
            "auto (approximate from 100,000 vectors per index).",
        ),
        click.option(
            "--vector-memory",
            default="4GiB",
            show_default=True,
            callback=_byte_size,
            help="Memory the vector indexes of one process may hold (each worker holds "
            "its own copy).",
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
    return operations_options(fn)


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from syncline.snapshot.backups import parse_interval

    try:
        return parse_interval(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: scheduled backups and online restore (serve and dev)
_backup_options = combine(
    click.option(
        "--backup-every",
        callback=_interval,
        help="Write a snapshot ZIP of the data into --backup-dir at this interval "
        "(e.g. 6h, 30m, 1d) while serving; off by default.",
    ),
    click.option(
        "--backup-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder for scheduled backups (default: DATA_FOLDER/backups).",
    ),
    click.option(
        "--backup-keep",
        default=7,
        show_default=True,
        type=click.IntRange(min=1),
        help="Scheduled backups to keep; older ones are deleted.",
    ),
    click.option(
        "--max-import-size",
        default="16GiB",
        show_default=True,
        callback=_byte_size,
        help="Largest snapshot ZIP `syncline import --url` may upload to this server "
        "(bytes, or e.g. 500MB, 2GiB).",
    ),
)


#: ``syncline deploy`` to this server (serve only: dev serves its functions folder)
_deploy_option = click.option(
    "--max-deploy-size",
    default="32MiB",
    show_default=True,
    callback=_byte_size,
    help="Largest bundle `syncline deploy` may upload to this server, and largest its "
    "files may be unpacked (bytes, or e.g. 8MiB).",
)

_dashboard_option = click.option(
    "--no-dashboard",
    is_flag=True,
    help="Serve no web dashboard (/dashboard and its login and health routes answer 404).",
)


def _backups(app: Application, options: dict[str, Any]) -> Any:
    """``--backup-every``: the coroutine function writing scheduled backups, or None."""
    every = options.get("backup_every")
    if every is None:
        return None  # and the snapshot modules stay unloaded
    from syncline.snapshot.backups import BackupSchedule, run_backups

    assert app.paths is not None  # Application.open sets them
    folder = options.get("backup_dir") or app.paths.database_dir / "backups"
    schedule = BackupSchedule(every, Path(folder), options["backup_keep"])
    schedule.folder.mkdir(parents=True, exist_ok=True)
    blobs = app.storage.blobs if app.storage is not None else None
    return lambda: run_backups(app.database, schedule, blobs)


def _run_loop(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _bind(
    host: str, port: int, site_port: int | None, *, shared: bool = False
) -> tuple[list[socket.socket], list[socket.socket] | None]:
    """Ports first: one clear line if one is taken, before anything opens or starts."""
    from syncline.server.listen import PortUnavailable, listen

    try:
        api_sockets = listen(host, port, shared=shared)
    except PortUnavailable as exc:
        fail(f"{exc}; choose another with --port")
    try:
        site_sockets = listen(host, site_port, shared=shared) if site_port is not None else None
    except PortUnavailable as exc:
        _close_all(api_sockets)
        fail(f"{exc}; choose another with --site-port")
    return api_sockets, site_sockets


def _configure_logging(worker: int | None) -> None:
    import logging

    prefix = "" if worker is None else f"[worker {worker}] "
    logging.basicConfig(
        level=logging.INFO, format=f"%(levelname)s {prefix}%(name)s: %(message)s", force=True
    )
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if os.environ.get("SYNCLINE_TRACE_PROTOCOL"):
        logging.getLogger("syncline.server").setLevel(logging.DEBUG)


def _open_application(
    options: dict[str, Any], *, dev: bool, worker: str | None = None
) -> Application:
    from syncline.application import Application
    from syncline.functions.limits import ExecutionLimits
    from syncline.vectors import VectorSettings

    durability = options["durability"]
    app = Application.open(
        options["project"],
        functions=options["functions"],
        db=options["db"],
        durability="normal" if durability == "normal" else "full",
        dev=dev,
        files=options["files"],
        max_upload_bytes=options["max_upload_size"],
        limits=ExecutionLimits(
            function_timeout_s=options["function_timeout"],
            action_timeout_s=options["action_timeout"],
            max_memory_bytes=options["max_memory"],
        ),
        worker=worker,
        use_deployed=not dev,  # dev serves its folder; serve, a deployed bundle
        vectors=VectorSettings(
            mode=options["vector_index"], max_memory_bytes=options["vector_memory"]
        ),
    )
    app.live.cache.max_bytes = options["query_cache"]
    return app


def _public_url(options: dict[str, Any]) -> str:
    from syncline.server import discovery

    host, port = options["host"], options["port"]
    # File URLs must name an address clients can reach (never 0.0.0.0).
    return str(options["public_url"] or f"http://{discovery.connect_host(host)}:{port}").rstrip("/")


def _site_url(options: dict[str, Any]) -> str:
    """Where HTTP actions are reached: the site port, else ``/http`` on the API port.

    With ``--public-url`` it is ``<public URL>/http`` (the API port serves HTTP
    actions there too): every node behind one address then names one site
    URL, which is also the issuer of built-in auth's tokens.
    """
    from syncline.server import discovery

    if options["site_port"] is None or options["public_url"] is not None:
        return f"{_public_url(options)}/http"
    return f"http://{discovery.connect_host(options['host'])}:{options['site_port']}"


def _announce(app: Application, options: dict[str, Any], *, dev: bool, workers: int = 1) -> None:
    """The ready lines, and the server record that lets other commands find this server."""
    from syncline.auth.admin_key import ADMIN_KEY_FILE
    from syncline.server import discovery

    # With --log-format json, stdout carries only the call records.
    echo = functools.partial(click.echo, err=options["log_format"] == "json")
    host, port, site_port = options["host"], options["port"], options["site_port"]
    url = f"http://{host}:{port}"
    mode = "dev" if dev else "production"
    processes = f", {workers} workers" if workers > 1 else ""
    if app.deployment is not None:
        serving = f"the deployed bundle {app.deployment.bundle.version} (`syncline deploy`)"
    else:
        serving = str(app.functions_dir)
    echo(f"Syncline {__version__} ({mode}{processes}) serving {serving}")
    echo(f"  API and sync:  {url}")
    if site_port is not None:
        echo(f"  HTTP actions:  http://{host}:{site_port} (and {url}/http/)")
    assert app.paths is not None  # Application.open sets them
    data_dir = app.paths.database_dir
    # So that `syncline env` and friends can find this server (the data dir is locked).
    reachable = discovery.connect_host(host)
    discovery.write(
        data_dir,
        url=f"http://{reachable}:{port}",
        site_url=None if site_port is None else f"http://{reachable}:{site_port}",
    )
    if options["metrics_port"] is not None:
        echo(f"  Metrics:       http://{host}:{options['metrics_port']}/metrics")
    if not options.get("no_dashboard") and app.admin_key is not None:
        from syncline.dashboard.login import LoginTokens, login_url

        base = app.public_url  # --public-url, else this host and port
        link = login_url(base, LoginTokens(app.admin_key, app.database, app.clock).issue())
        echo(f"  Dashboard:     {base}/dashboard/")
        echo(f"  Login link:    {link} (works once, for 10 minutes)")
    echo(f"  Admin key:     {data_dir / ADMIN_KEY_FILE}")
    echo(f"  Functions:     {len(app.registry.functions)} loaded")
    if app.storage is not None:
        echo(f"  Files:         {app.storage.blobs} (URLs: {app.public_url})")
        if options["public_url"] is None and discovery.connect_host(host) != host:
            echo(
                "  Note: file URLs use a loopback address; pass --public-url "
                "so clients on other machines can reach them."
            )


def _serve(dev: bool, workers: int = 1, **options: Any) -> None:
    from syncline.server.listen import SPREADS_CONNECTIONS

    # Several workers: each gets sockets of its own on the ports, shared evenly.
    spread = workers > 1 and SPREADS_CONNECTIONS
    api_sockets, site_sockets = _bind(
        options["host"], options["port"], options["site_port"], shared=spread
    )
    bound = [*api_sockets, *(site_sockets or [])]
    _configure_logging(None)
    try:
        metrics_server = None if workers > 1 else serve_metrics(options)
    except SystemExit:
        _close_all(bound)
        raise
    if workers > 1:
        try:
            _supervise(
                options,
                dev=dev,
                workers=workers,
                api=api_sockets,
                site=site_sockets,
                spread=spread,
            )
        finally:
            _close_all(bound)
        return
    try:
        app = _open_application(options, dev=dev)
    except BaseException as exc:
        _close_all(bound)
        stop_metrics(metrics_server)
        if isinstance(exc, SynclineError):
            fail(str(exc))
        raise
    try:
        _run_application(
            app,
            options,
            dev=dev,
            api_sockets=api_sockets,
            site_sockets=site_sockets,
            on_ready=lambda: _announce(app, options, dev=dev),
        )
    finally:
        from syncline.server import discovery

        assert app.paths is not None  # Application.open sets them
        discovery.remove(app.paths.database_dir)
        app.close()
        _close_all(bound)
        stop_metrics(metrics_server)


def _run_application(
    app: Application,
    options: dict[str, Any],
    *,
    dev: bool,
    api_sockets: list[socket.socket],
    site_sockets: list[socket.socket] | None,
    on_ready: Callable[[], None],
    worker: WorkerFds | None = None,
) -> None:
    """Serve ``app`` on the bound sockets until Ctrl-C or SIGTERM (one process, or one worker).

    ``worker`` (a :class:`~syncline.server.workers.WorkerFds`) makes this
    process one of several: it follows the other workers' commits.
    """
    from syncline.server.request_limits import RequestLimits
    from syncline.server.run import ShutdownRequested
    from syncline.server.run import serve as run_server

    app.public_url = _public_url(options)
    app.site_url = _site_url(options)
    call_log = open_call_log(app, options)
    app.executor.observers.append(call_log.observe)
    call_log.start()
    background = None
    backups = _backups(app, options) if worker is None or worker.index == 0 else None
    if backups is not None:

        async def background(watching: Callable[[], None]) -> None:
            watching()
            await backups()

    if dev:
        import asyncio
        import functools

        from syncline.server import dev as devserver

        # Each worker watches the folder and reloads its own code (every process must
        # import it); each applies the schema too, and only the first finds work to do.
        echo: dict[str, Any] = {} if worker is None else {"echo": _worker_echo(worker.index)}
        app.executor.observers.append(functools.partial(devserver.print_outcome, **echo))
        app.executor.log_failures = False  # the console shows every call, failures in full

        write_types = _types_writer(app, options, worker, echo)

        async def background(watching: Callable[[], None]) -> None:
            if write_types is not None:
                await asyncio.to_thread(write_types)
            async with asyncio.TaskGroup() as tasks:
                if backups is not None:
                    tasks.create_task(backups())
                tasks.create_task(
                    devserver.watch(app, watching=watching, on_reload=write_types, **echo)
                )

    try:
        _run_loop(
            run_server(
                app,
                host=options["host"],
                port=options["port"],
                on_ready=on_ready,
                background=background,
                site_port=options["site_port"],
                sync_limits=ConnectionLimits(
                    max_queries=options["max_queries_per_connection"],
                    max_inflight_actions=options["max_actions_per_connection"],
                    max_queued_mutations=options["max_mutations_per_connection"],
                    max_request_bytes=options["max_request_bytes_per_connection"],
                    max_send_queue_bytes=options["max_send_queue_per_connection"],
                ),
                limits=RequestLimits(
                    header_timeout_s=options["header_timeout"],
                    body_timeout_s=options["body_timeout"],
                    max_header_bytes=options["max_header_size"],
                ),
                api_sockets=api_sockets,
                site_sockets=site_sockets,
                wakeups=None if worker is None else worker.wakeups(),
                max_import_bytes=options["max_import_size"],
                max_deploy_bytes=options.get("max_deploy_size", DEFAULT_MAX_DEPLOY_BYTES),
                dashboard=not options.get("no_dashboard", False),
            )
        )
    except (KeyboardInterrupt, ShutdownRequested):
        pass  # Ctrl-C or SIGTERM: the servers drained; the caller closes everything below
    finally:
        call_log.close()


def _types_writer(
    app: Application, options: dict[str, Any], worker: WorkerFds | None, echo: dict[str, Any]
) -> Callable[[], None] | None:
    """``dev --codegen-out``: what writes the TypeScript types (in one process of several)."""
    from syncline.commands.codegen import types_writer
    from syncline.server.dev import default_echo

    out = options.get("codegen_out")
    if out is None or (worker is not None and worker.index != 0):
        return None
    return types_writer(app, Path(out), echo.get("echo", default_echo))


def _worker_echo(index: int) -> Callable[[str], None]:
    def echo(line: str) -> None:
        click.echo(f"[worker {index}] {line}", err=True)

    return echo


#: the environment variable that hands a worker the serve options (JSON)
OPTIONS_ENV = "SYNCLINE_SERVE_OPTIONS"


def _supervise(
    options: dict[str, Any],
    *,
    dev: bool,
    workers: int,
    api: list[socket.socket],
    site: list[socket.socket] | None,
    spread: bool = False,
) -> None:
    """The parent of ``--workers N``: hold the data folder, check the code, run the workers."""
    import json
    import sys

    from syncline.application import DataDirLock, Paths
    from syncline.server import discovery
    from syncline.server.workers import Supervisor, WorkerExit

    try:
        paths = Paths.for_project(options["project"], options["functions"], db=options["db"])
        lock = DataDirLock(paths.database_dir)
    except SynclineError as exc:
        fail(str(exc))
    try:
        # Load once here: broken code or a schema the data violates is one clear error,
        # and the workers start on a database that already has this schema and crons.
        try:
            app = _open_application(options, dev=dev, worker="supervisor")
        except SynclineError as exc:
            fail(str(exc))
        app.public_url = _public_url(options)
        app.close()
        encoded = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
        env = {**os.environ, OPTIONS_ENV: json.dumps({"dev": dev, **encoded})}
        metrics_dir, forget_worker = prepare_worker_metrics(paths.database_dir, env)
        metrics_server = serve_metrics(options, metrics_dir)
        supervisor = Supervisor(
            [sys.executable, "-m", "syncline.commands.worker"],
            workers=workers,
            api_sockets=api,
            site_sockets=site or [],
            spread=spread,
            env=env,
            on_ready=lambda: _announce(app, options, dev=dev, workers=workers),
            on_exit=forget_worker,
        )
        try:
            supervisor.run()
        except WorkerExit as exc:
            fail(str(exc))
        finally:
            stop_metrics(metrics_server)
    finally:
        discovery.remove(paths.database_dir)
        lock.release()


def serve_worker(fds: WorkerFds, options: dict[str, Any]) -> None:
    """One worker of ``--workers N`` (see :mod:`syncline.server.workers`)."""
    dev = bool(options.pop("dev"))
    _configure_logging(fds.index)
    api_sockets, site_sockets = fds.api_sockets(), fds.site_sockets()
    try:
        app = _open_application(options, dev=dev, worker=f"worker {fds.index}")
    except SynclineError as exc:
        fail(f"worker {fds.index}: {exc}")
    try:
        _run_application(
            app,
            options,
            dev=dev,
            api_sockets=api_sockets,
            site_sockets=site_sockets,
            on_ready=fds.signal_ready,
            worker=fds,
        )
    finally:
        app.close()


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@click.command()
@_server_options
@_backup_options
@_deploy_option
@_dashboard_option
def serve(**options: Any) -> None:
    """Serve a project in production mode (errors to clients are redacted).

    \b
    Examples:
      syncline serve --dir myapp
      syncline serve --dir myapp --db sqlite:////var/lib/myapp/data.sqlite3 --port 8000
      syncline serve --backup-every 6h --backup-dir /var/backups/myapp --backup-keep 7
    """
    _serve(dev=False, **options)


@click.command()
@_server_options
@_backup_options
@click.option(
    "--codegen-out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the TypeScript types of `syncline codegen` to this folder at start and "
    "after every reload (project file: codegen-out).",
)
def dev(**options: Any) -> None:
    """Serve a project for development (full error messages to clients).

    \b
    Examples:
      syncline dev
      syncline dev --dir myapp --port 4000
      syncline dev --codegen-out web/src/convex/_generated
    """
    _serve(dev=True, **options)
