"""``syncline logs``: the function calls of a deployment, from its log history.

The server is found as :mod:`syncline.commands.deployment` describes; its log
history is read over ``GET /api/admin/log_history`` (admin key), so this
works against ``--url`` too. When no server runs on the data folder, the
history file is read directly.

``--follow`` reads the server's live stream of calls (``GET
/api/admin/logs``): each call is printed as it finishes, without polling, and
also from a server that keeps no log history (``serve --no-log-history``).
The stream carries the calls of the process the connection reached: with
``serve --workers N``, one worker's (the log history holds every worker's).
Without a server, new records of the history file are read every
:data:`FOLLOW_INTERVAL_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from syncline.call_log.query import DEFAULT_LIMIT, MAX_LIMIT, BadLogQuery, parse_log_query
from syncline.call_log.store import query_log, store_path
from syncline.commands.console import dumps, fail
from syncline.commands.deployment import Remote, data_dir_for, find_server, project_options

__all__ = ["FOLLOW_INTERVAL_S", "format_log_entry", "logs"]

#: how often ``--follow`` reads new records of a history file (no server runs)
FOLLOW_INTERVAL_S = 0.5
#: the running server's live stream of calls (syncline.server.admin)
LIVE_PATH = "/api/admin/logs"


def format_log_entry(entry: dict[str, Any]) -> list[str]:
    """Console lines for one call record: a summary, then its log lines.

    ``HH:MM:SS kind path duration status``; the status is ``ok`` or the error,
    followed (for failures) by the request id the caller was shown and the
    traceback.
    """
    stamp = time.strftime("%H:%M:%S", time.localtime(float(entry.get("timestamp", 0)) / 1000))
    kind = entry.get("kind") or "function"
    failed = entry.get("status") != "success"
    if failed:
        status = click.style(str(entry.get("error") or "failed"), fg="red")
    else:
        status = click.style("ok", fg="green")
    duration = float(entry.get("durationMs") or 0.0)
    summary = f"{stamp} {kind:<8} {entry.get('path')} {duration:7.1f} ms  {status}"
    if entry.get("cached"):
        summary += click.style(" (cached)", dim=True)
    if entry.get("caller"):
        summary += click.style(f"  ({entry['caller']})", dim=True)
    lines = [summary]
    if failed and entry.get("requestId"):
        lines.append(click.style(f"    [Request ID: {entry['requestId']}]", dim=True))
    for text in str(entry.get("traceback") or "").splitlines():
        lines.append(click.style(f"    {text}", fg="red", dim=True))
    lines.extend(click.style(f"    {line}", dim=True) for line in entry.get("logLines") or [])
    return lines


class _History:
    """Reads the log history from a server, or from the file when none runs."""

    def __init__(self, remote: Remote | None, data_dir: Path) -> None:
        self.remote = remote
        self.data_dir = data_dir

    def read(self, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        if self.remote is not None:
            answer = self.remote.request("GET", "/api/admin/log_history", params=params)
            return answer["records"], int(answer["last"])
        try:
            query = parse_log_query(params, now_ms=time.time() * 1000)
        except BadLogQuery as exc:
            fail(str(exc))
        return query_log(store_path(self.data_dir), query)


@click.command()
@project_options
@click.option("--since", help="Only calls from this long ago on (e.g. 90s, 15m, 1h, 7d).")
@click.option(
    "--function", "function", help="Only calls of this function (tasks:add) or module (tasks)."
)
@click.option(
    "--status",
    type=click.Choice(["success", "error"]),
    help="Only calls that succeeded, or only those that failed.",
)
@click.option("--request-id", help="Only the call with this request id (from an error message).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=None,
    help=f"Show the newest N matching calls [default: {DEFAULT_LIMIT}].",
)
@click.option("--follow", "-f", is_flag=True, help="After the history, keep printing new calls.")
@click.option("--jsonl", is_flag=True, help="Print each call's record as one JSON line.")
def logs(
    project: Path,
    db: str | None,
    url: str | None,
    admin_key: str | None,
    since: str | None,
    function: str | None,
    status: str | None,
    request_id: str | None,
    limit: int | None,
    follow: bool,
    jsonl: bool,
) -> None:
    """Show the function calls of a deployment, with what they logged and where they failed.

    One line per call: time, kind, path, duration, outcome ("ok" or the
    error) and caller; for failures the request id and the traceback (file
    and line); then the lines the function printed, indented. With filters,
    prints the newest matching calls from the log history; without any, or
    with --follow, keeps printing new calls until Ctrl-C.

    \b
    Examples:
      syncline logs
      syncline logs --since 1h --status error
      syncline logs --function tasks:add --limit 20 --follow
      syncline logs --request-id 3f2a9c1b0d4e5f67
      syncline logs --url https://syncline.example.com --admin-key "$KEY" --jsonl
    """
    data_dir = data_dir_for(project, db)
    remote = find_server(project, db, url, admin_key)
    if remote is None and not store_path(data_dir).exists():
        fail(
            f"No Syncline server runs on {data_dir}, and it holds no log history yet. Start "
            f"one with `syncline dev --dir {project}`, or pass --url to read a server elsewhere."
        )
    history = _History(remote, data_dir)
    filters = {
        "function": function,
        "status": {"error": "failure"}.get(status or "", status),
        "requestId": request_id,
    }
    params = {key: value for key, value in filters.items() if value}
    show_history = any(v is not None for v in (since, function, status, request_id, limit))

    def show(records: list[dict[str, Any]]) -> None:
        for record in records:
            if jsonl:
                click.echo(dumps(record, pretty=False))
            else:
                for text in format_log_entry(record):
                    click.echo(text)

    first = {**params, "limit": str(limit or DEFAULT_LIMIT)}
    if since:
        first["since"] = since
    if show_history:
        records, last = history.read(first)
        show(records)
        if not follow:
            return
    if remote is not None:
        # After the history: also the calls written between it and the stream's start.
        catch_up = (
            (lambda: history.read({**params, "after": str(last), "limit": str(MAX_LIMIT)})[0])
            if show_history
            else None
        )
        _follow_live(remote, params, show, catch_up)
        return
    if not show_history:
        records, last = history.read({**params, "limit": "1"})
    click.echo(f"Following the function calls of {data_dir} (Ctrl-C to stop)", err=True)
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            records, newest = history.read({**params, "after": str(last), "limit": str(MAX_LIMIT)})
            show(records)
            # Past the last record shown, or past everything when nothing matched.
            last = records[-1]["id"] if len(records) == MAX_LIMIT else max(last, newest)
    except KeyboardInterrupt:
        return


def _follow_live(
    remote: Remote,
    params: dict[str, str],
    show: Callable[[list[dict[str, Any]]], None],
    catch_up: Callable[[], list[dict[str, Any]]] | None,
) -> None:
    """Print the calls of the server's live stream that pass the filters, until Ctrl-C.

    ``catch_up()``: once the stream is open, the history's calls since the
    last one shown (printed first; the stream's copies of them are skipped).
    """
    from syncline.commands.console import warn

    query = parse_log_query(params, now_ms=time.time() * 1000)
    caught_up: set[tuple[Any, Any]] = set()
    try:
        for line in remote.stream_lines(LIVE_PATH):
            entry = orjson.loads(line)
            kind = entry.pop("type", None)
            if kind == "connected":
                if catch_up is not None:
                    records = catch_up()
                    caught_up = {(r.get("requestId"), r.get("timestamp")) for r in records}
                    show(records)
                click.echo(
                    f"Following the function calls of {remote.url} (Ctrl-C to stop)", err=True
                )
            elif kind == "dropped":
                warn(f"{entry.get('count')} call(s) not shown: this reader fell behind")
            elif kind == "call" and query.matches(entry):
                if caught_up and (entry.get("requestId"), entry.get("timestamp")) in caught_up:
                    continue
                show([entry])
    except KeyboardInterrupt:
        return
