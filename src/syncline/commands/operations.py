"""The operations options of ``serve`` and ``dev``: metrics port, log history, log format.

* ``--metrics-port N`` serves ``/metrics`` (Prometheus) without a key on port
  N of ``--host``, from a thread of this process (with ``--workers N``, of
  the parent, which merges the workers' metrics; :mod:`syncline.metrics`).
  Off by default; ``GET /metrics`` on the API port with the admin key is
  always there.
* ``--log-retention`` and ``--log-max-size`` bound the log history
  (:mod:`syncline.call_log`), ``logs.sqlite3`` in the data folder;
  ``--no-log-history`` keeps none (``syncline logs --follow`` still shows
  calls live; a history file of an earlier run is left as it was).
* ``--log-format json`` writes every call's record to standard output as one
  JSON line (the ready lines then go to standard error).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncline.commands.console import fail

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from syncline.application import Application
    from syncline.call_log.writer import CallLog

__all__ = [
    "DEFAULT_LOG_MAX_SIZE",
    "DEFAULT_LOG_RETENTION",
    "METRICS_DIR",
    "open_call_log",
    "operations_options",
    "prepare_worker_metrics",
    "serve_metrics",
    "stop_metrics",
]

DEFAULT_LOG_RETENTION = "7d"
DEFAULT_LOG_MAX_SIZE = "256MiB"
#: the folder (in the data folder) where ``--workers N`` keep their metrics
METRICS_DIR = "metrics"


def _duration_ms(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from syncline.call_log.records import parse_duration_ms

    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if ms <= 0:
        raise click.BadParameter(f"must be longer than zero, got {value!r}")
    return ms


def _log_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from syncline.call_log.store import MIN_MAX_BYTES
    from syncline.files.service import parse_byte_size

    try:
        size = parse_byte_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < MIN_MAX_BYTES:
        raise click.BadParameter(f"must be at least {MIN_MAX_BYTES // 1024}KiB, got {value!r}")
    return size


def operations_options(fn: Any) -> Any:
    """Add the operations options (see the module docstring) to a click command."""
    options = [
        click.option(
            "--metrics-port",
            type=click.IntRange(min=1, max=65535),
            default=None,
            help="Serve Prometheus metrics at /metrics on this port of --host, without "
            "a key (default: off; /metrics on the API port needs the admin key).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: write every function call's record to stdout as a JSON line.",
        ),
        click.option(
            "--log-history/--no-log-history",
            default=True,
            show_default=True,
            help="Keep a history of function calls for `syncline logs` (off: only "
            "`syncline logs --follow` and --log-format json see calls).",
        ),
        click.option(
            "--log-retention",
            default=DEFAULT_LOG_RETENTION,
            show_default=True,
            callback=_duration_ms,
            help="How long the log history keeps a call (e.g. 12h, 7d).",
        ),
        click.option(
            "--log-max-size",
            default=DEFAULT_LOG_MAX_SIZE,
            show_default=True,
            callback=_log_size,
            help="Largest the log history's file may grow; the oldest calls go first.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def serve_metrics(options: dict[str, Any], workers_dir: Path | None = None) -> WSGIServer | None:
    """Start the ``--metrics-port`` server (if asked for): this process's metrics, or the
    workers' in ``workers_dir``. Fails with one clear line if the port is taken."""
    port = options.get("metrics_port")
    if port is None:
        return None
    from prometheus_client import start_http_server

    from syncline import metrics

    try:
        server, _thread = start_http_server(
            port, addr=options["host"], registry=metrics.scrape_registry(workers_dir)
        )
    except OSError as exc:
        fail(
            f"Port {port} is not available for metrics ({exc}); choose another with --metrics-port"
        )
    return server


def stop_metrics(server: WSGIServer | None) -> None:
    """Stop the ``--metrics-port`` server (if one runs) and close its socket."""
    if server is not None:
        server.shutdown()
        server.server_close()


def prepare_worker_metrics(
    data_dir: Path, env: dict[str, str]
) -> tuple[Path, Callable[[int], None]]:
    """``--workers N``: an empty folder for the workers' metrics, named in ``env``; and
    what to call when a worker exits."""
    from syncline import metrics

    folder = metrics.prepare_multiprocess_dir(data_dir / METRICS_DIR)
    env[metrics.MULTIPROC_ENV] = str(folder)

    def forget(pid: int) -> None:
        metrics.forget_process(pid, folder)

    return folder, forget


def open_call_log(app: Application, options: dict[str, Any]) -> CallLog:
    """The log history writer of ``app`` (and the JSON lines of ``--log-format json``)."""
    from syncline.call_log.store import LogStore, store_path
    from syncline.call_log.writer import CallLog, stdout_lines

    store = None
    app.keeps_log_history = bool(options.get("log_history", True)) and app.paths is not None
    if app.keeps_log_history:
        assert app.paths is not None
        store = LogStore(
            store_path(app.paths.database_dir),
            max_bytes=options["log_max_size"],
            max_age_ms=options["log_retention"],
        )
    json_lines = stdout_lines if options["log_format"] == "json" else None
    return CallLog(now_ms=app.clock.now_ms, store=store, json_lines=json_lines)
