"""``server.run.serve``: what a client that reached the server can rely on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from syncline._devtools import free_port
from syncline.server.run import serve

from .conftest import open_application

APP = """
from syncline import query

@query
def hello(ctx):
    return "hi"
"""


def test_nothing_is_served_before_the_background_task_works(tmp_path: Path) -> None:
    # The dev file watcher is the background task: a file saved once the server
    # answers (or printed its ready lines) must reload, so it watches first.
    app = open_application(tmp_path, {"app.py": APP})
    events: list[tuple[str, float]] = []

    def note(event: str) -> None:
        events.append((event, time.monotonic()))

    async def background(working: Callable[[], None]) -> None:
        await asyncio.sleep(0.5)  # a watcher slow to start
        note("working")
        working()
        await asyncio.Event().wait()

    async def first_answer(url: str) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                try:
                    if (await http.get(url)).status_code == 200:
                        note("answered")
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.01)

    async def main() -> None:
        port = free_port()
        server = asyncio.create_task(
            serve(app, port=port, on_ready=lambda: note("ready"), background=background)
        )
        try:
            await asyncio.wait_for(first_answer(f"http://127.0.0.1:{port}/version"), 20)
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        app.close()
    order = [event for event, _ in sorted(events, key=lambda e: e[1])]
    assert order[0] == "working", events  # before the first answer and the ready lines
    assert "answered" in order, events
