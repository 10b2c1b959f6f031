"""examples/chat in a real browser: two tabs of headless Chromium, one ``syncline dev``.

The page (served by the example's HTTP actions) runs the official Convex
browser client from the example's ``node_modules``. A message sent in one tab
must appear in the other. Tab A is opened under ``/http/`` on the API port
(the page finds the API at its own origin), tab B on the site port with
``?api=`` (the ports of a test server are not adjacent).

Needs Playwright (the ``dev`` extra), a Chromium at /usr/bin/chromium (or
``SYNCLINE_CHROMIUM``) and ``npm ci`` in examples/chat; ``.ci/run`` installs
all three. On failure, screenshots of both tabs are saved next to the test's
temporary project and named in the error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_file, require_module, require_or_skip

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat"
BUNDLE = EXAMPLE / "node_modules" / "convex" / "dist" / "browser.bundle.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: How long a message may take to reach the other tab.
LIVE_TIMEOUT_MS = 5_000
#: Page loads, connecting, and anything else that is not the live update itself.
STEP_TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    for candidate in (
        os.environ.get("SYNCLINE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def copy_example(dest: Path) -> Path:
    """The example's sources in ``dest``, its node_modules linked (not copied: 60 MB)."""
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("node_modules", ".syncline", "__pycache__")
    )
    (dest / "node_modules").symlink_to(EXAMPLE / "node_modules", target_is_directory=True)
    return dest


@contextlib.contextmanager
def launch_chromium() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (skips, or fails under CI, when either is missing)."""
    sync_api = require_module("playwright.sync_api", "pip install -e '.[dev]' (.ci/run does)")
    executable = chromium_path()
    if executable is None:
        require_or_skip("no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    require_file(BUNDLE, "run `npm ci` in examples/chat (.ci/run does)")
    with launch_chromium() as instance:
        yield instance


def test_two_tabs_chat_live(browser: Any, start_server: Any, tmp_path: Path) -> None:
    project = copy_example(tmp_path / "chat")
    server = start_server(project, mode="dev")
    site = f"http://127.0.0.1:{server.site_port}"

    # The page names the API it connects to: its own origin under /http/, else the port below.
    page_html = httpx.get(f"{server.url}/http/", timeout=10).text
    assert f'content="{server.url}"' in page_html
    page_html = httpx.get(f"{site}/", timeout=10).text
    assert f'content="http://127.0.0.1:{server.site_port - 1}"' in page_html
    assert (
        httpx.get(f"{site}/convex.js", timeout=10)
        .headers["content-type"]
        .startswith("text/javascript")
    )

    context = browser.new_context(viewport={"width": 900, "height": 640})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    tab_a = context.new_page()
    tab_b = context.new_page()
    problems: list[str] = []
    for name, tab in (("A", tab_a), ("B", tab_b)):
        tab.on("pageerror", lambda exc, name=name: problems.append(f"tab {name}: {exc}"))
        tab.on(
            "console",
            lambda msg, name=name: (
                problems.append(f"tab {name} console.error: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
    try:
        tab_a.goto(f"{server.url}/http/")
        tab_b.goto(f"{site}/?api={server.url}")
        for tab in (tab_a, tab_b):
            tab.locator("#status.online").wait_for()
            tab.locator("#empty").wait_for()  # the live query answered: no messages yet

        # A message sent in tab A shows up in tab B.
        hello = f"hello from A {uuid.uuid4().hex[:8]}"
        tab_a.bring_to_front()  # background tabs get throttled animation frames: slow clicks
        tab_a.fill("#author", "Ada")
        tab_a.fill("#body", hello)
        tab_a.press("#body", "Enter")
        in_b = tab_b.locator("#messages li", has_text=hello)
        in_b.wait_for(timeout=LIVE_TIMEOUT_MS)
        assert in_b.locator(".author").inner_text() == "Ada"
        assert tab_a.input_value("#body") == ""

        # And the other way round, with the button.
        reply = f"hi Ada, B here {uuid.uuid4().hex[:8]}"
        tab_b.bring_to_front()
        tab_b.fill("#author", "Grace")
        tab_b.fill("#body", reply)
        tab_b.click("#send")
        tab_a.locator("#messages li", has_text=reply).wait_for(timeout=LIVE_TIMEOUT_MS)
        assert tab_a.locator("#messages .body").all_inner_texts() == [hello, reply]
        assert tab_b.locator("#messages .body").all_inner_texts() == [hello, reply]
        # Each tab marks its own messages.
        assert tab_a.locator("#messages li.mine .body").all_inner_texts() == [hello]
        assert tab_b.locator("#messages li.mine .body").all_inner_texts() == [reply]

        assert not problems, "\n".join(problems)

        # The mutation validates: no name, no message; the text is given back.
        tab_a.bring_to_front()
        tab_a.fill("#author", "  ")
        tab_a.fill("#body", "nameless")
        tab_a.click("#send")
        tab_a.locator("#error", has_text="Please enter a name.").wait_for()
        assert tab_a.input_value("#body") == "nameless"
        assert tab_b.locator("#messages .body").count() == 2
        # (The Convex client logs the failed mutation with console.error: expected.)
        unexpected = [p for p in problems if "Please enter a name." not in p]
        assert not unexpected, "\n".join(unexpected)
    except BaseException as exc:
        shots = []
        for name, tab in (("a", tab_a), ("b", tab_b)):
            path = tmp_path / f"chat-tab-{name}.png"
            try:
                tab.screenshot(path=str(path), full_page=True)
                shots.append(str(path))
            except Exception as shot_error:
                shots.append(f"(no screenshot of tab {name}: {shot_error})")
        exc.add_note("Screenshots: " + ", ".join(shots))
        if problems:
            exc.add_note("Browser errors:\n" + "\n".join(problems))
        raise
    finally:
        context.close()
