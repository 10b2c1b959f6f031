"""``syncline logs``: follow the function calls of a running server.

The server is found as :mod:`syncline.commands.deployment` describes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import orjson

from syncline.commands.console import dumps, fail
from syncline.commands.deployment import data_dir_for, find_server, project_options

__all__ = ["format_log_entry", "logs"]


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
@project_options
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
                    click.echo(dumps(entry, pretty=False))
                else:
                    for text in format_log_entry(entry):
                        click.echo(text)
    except KeyboardInterrupt:
        return
    fail(f"The server at {remote.url} closed the log stream")
