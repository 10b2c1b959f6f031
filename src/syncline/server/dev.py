"""``syncline dev``: hot reload and a console log of function calls.

On every change under the functions folder the code is loaded again (off the
event loop: importing user modules runs their code). If it loads and its
schema matches the data, it replaces the running code and every live query is
run again against it — connections and subscriptions stay as they are, and
clients only receive results that changed. If it fails (a syntax error, an
exception at import, a schema the data violates), the error is printed and the
previous code keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import click

from syncline.application import Application
from syncline.errors import SynclineError
from syncline.functions.outcomes import Outcome, describe_error, user_frames

Echo = Callable[[str], None]


def default_echo(line: str) -> None:
    """Print a console line to stderr."""
    click.echo(line, err=True)


def print_outcome(outcome: Outcome, echo: Echo = default_echo) -> None:
    """One line per call: time, kind, path, duration, outcome; then its log lines."""
    kind = outcome.kind.value if outcome.kind else "function"
    stamp = time.strftime("%H:%M:%S")
    if outcome.error is None:
        status = click.style("ok", fg="green")
    else:
        status = click.style(describe_error(outcome.error), fg="red")
    cached = click.style(" (cached)", dim=True) if outcome.cached else ""
    echo(f"{stamp} {kind:<8} {outcome.path} {outcome.duration_ms:7.1f} ms  {status}{cached}")
    if outcome.error is not None:
        echo(click.style(f"    [Request ID: {outcome.request_id}]", dim=True))
        frames = user_frames(outcome.error)
        if frames:
            echo(click.style(frames, fg="red", dim=True))
    for line in outcome.log_lines:
        echo(click.style(f"    {line}", dim=True))


def reload(app: Application, echo: Echo = default_echo) -> bool:
    """Load the functions folder again; True if the new code now serves."""
    started = time.perf_counter()
    try:
        change = app.load()
    except SynclineError as exc:
        echo(click.style("Reload failed; the previous code keeps serving:", fg="red", bold=True))
        echo(str(exc))
        return False
    except Exception as exc:  # anything else raised by user code at import
        echo(click.style("Reload failed; the previous code keeps serving:", fg="red", bold=True))
        echo(f"{type(exc).__name__}: {exc}")
        return False
    elapsed = (time.perf_counter() - started) * 1000
    details = []
    if change is not None:
        if change.added_indexes:
            details.append(f"indexes added: {', '.join(change.added_indexes)}")
        if change.removed_indexes:
            details.append(f"indexes removed: {', '.join(change.removed_indexes)}")
    suffix = f" ({'; '.join(details)})" if details else ""
    echo(
        click.style("Reloaded", fg="green")
        + f" {len(app.registry.functions)} functions in {elapsed:.0f} ms{suffix}"
    )
    return True


async def watch(
    app: Application,
    echo: Echo = default_echo,
    *,
    debounce_ms: int = 100,
    watching: Callable[[], None] = lambda: None,
    on_reload: Callable[[], None] | None = None,
) -> None:
    """Reload on every change under the functions folder until cancelled.

    ``watching()`` is called once changes are being recorded: a file saved
    after that call reloads. (Without a functions folder it is never called.)
    ``on_reload()`` runs in a worker thread after each reload that succeeded
    (``syncline dev --codegen-out`` writes the TypeScript types there).
    """
    import watchfiles

    folder = app.functions_dir
    if folder is None:
        return
    folder = Path(folder)

    def relevant(change: watchfiles.Change, path: str) -> bool:
        name = Path(path).name
        return path.endswith(".py") and not name.startswith(".") and "__pycache__" not in path

    changes = watchfiles.awatch(folder, watch_filter=relevant, debounce=debounce_ms, step=20)
    # awatch opens its OS watch in the first step of the generator, before its
    # first await; one turn of the loop runs that step (tasks start in FIFO order).
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    if not pending.done():  # done this early: it failed, and the loop below raises that
        watching()
    try:
        while True:
            try:
                await pending
            except StopAsyncIteration:
                return
            loaded = await asyncio.to_thread(reload, app, echo)
            if loaded:
                app.live.rerun_all()
                if on_reload is not None:
                    await asyncio.to_thread(on_reload)
            pending = asyncio.ensure_future(anext(changes))
    finally:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await changes.aclose()
