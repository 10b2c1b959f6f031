"""The web dashboard in headless Chromium against a real ``syncline serve``.

One server (10,000 documents in ``items``) and one browser serve the whole
module; each test opens its own tab, logged in through the tab's session
storage unless it tests the login itself. With
``SYNCLINE_DASHBOARD_SCREENSHOTS=<dir>`` every page is saved there as a PNG.

Needs Playwright (the ``dev`` extra) and a Chromium at /usr/bin/chromium
(``.ci/run`` installs both); skipped without them, failed under ``CI=true``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_file, require_module, require_or_skip
from syncline._devtools import ServerProcess, launch
from syncline.dashboard.static import STATIC_DIR

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SYNCLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STEP_MS = 10_000
BIG_TABLE = 10_000
SEED_BATCH = 10_000  # one mutation: one commit

FILES: dict[str, str] = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "tasks": define_table({
                "title": v.string(),
                "done": v.boolean(),
                "rank": v.float64(),
            }).index("by_done_rank", ["done", "rank"]),
            "items": define_table({"n": v.float64(), "label": v.string()})
                .index("by_n", ["n"]),
            "notes": define_table({"text": v.string(), "size": v.optional(v.int64())}),
        })
    """,
    "tasks.py": """
        from syncline import internal_mutation, mutation, query, v


        @query(args={"id": v.id("tasks")})
        def get(ctx, id):
            return ctx.db.get(id)


        @query
        def greeting(ctx):
            return "hello " + ctx.env.get("WHO", "nobody")


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            print(f"adding {title}")
            return ctx.db.insert("tasks", {"title": title, "done": False, "rank": 0.0})


        @internal_mutation(args={"delay": v.float64()})
        def later(ctx, delay):
            return ctx.scheduler.run_after(delay, "tasks:add", {"title": "later"})


        @internal_mutation(args={"start": v.float64(), "n": v.float64()})
        def seed(ctx, start, n):
            for i in range(int(start), int(start + n)):
                ctx.db.insert("items", {"n": float(i), "label": f"item {i}"})
    """,
    "crons.py": """
        from syncline import CronJobs, internal

        crons = CronJobs()
        crons.interval("tidy up", internal.tasks.later, {"delay": 60.0}, hours=6)
    """,
}

# A 2x2 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_file(STATIC_DIR / "index.html", "run `npm ci && npm run build` in dashboard/")
    root = tmp_path_factory.mktemp("dashboard")
    for name, source in FILES.items():
        path = root / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    # Seeding in one mutation takes more than the default 1 s on a loaded machine.
    proc = launch(root, mode="serve", args=["--function-timeout", "30"])
    try:
        for start in range(0, BIG_TABLE, SEED_BATCH):
            call(proc, "mutation", "tasks:seed", {"start": start, "n": SEED_BATCH})
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = require_module("playwright.sync_api", "pip install -e '.[dev]' (.ci/run does)")
    if not os.access(CHROMIUM, os.X_OK):
        require_or_skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


def call(server: ServerProcess, kind: str, path: str, args: dict[str, Any]) -> Any:
    """A function's value, called over HTTP as admin (as another client than the page)."""
    response = httpx.post(
        f"{server.url}/api/{kind}",
        json={"path": path, "args": args, "format": "json"},
        headers={"Authorization": f"Convex {server.admin_key}"},
        timeout=30,
    )
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


def shoot(tab: Any, name: str) -> None:
    folder = os.environ.get("SYNCLINE_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / f"{name}.png"))


@contextlib.contextmanager
def open_tab(browser: Any, server: ServerProcess, route: str, *, logged_in: bool = True) -> Any:
    """A tab on ``/dashboard/#/<route>`` (or ``/dashboard/<route>`` for ``#...``).

    Errors thrown in the page fail the test.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(STEP_MS)
    if logged_in:
        key = json.dumps(server.admin_key)
        context.add_init_script(f"sessionStorage.setItem('syncline.adminKey', {key})")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        fragment = route if route.startswith("#") else f"#/{route}"
        tab.goto(f"{server.url}/dashboard/{fragment}")
        yield tab
        assert not errors, errors
    finally:
        context.close()


#: A subscriber in its own process: the Python client's blocking iterator holds the GIL,
#: which would stall Playwright in this one.
SUBSCRIBER = """
import json, sys
from convex import ConvexClient

client = ConvexClient(sys.argv[1])
for value in client.subscribe(sys.argv[2], json.loads(sys.argv[3])):
    print(json.dumps(value), flush=True)
"""


class Subscription:
    """A Python ``ConvexClient`` subscription; its values are read from the subscriber's output."""

    def __init__(self, server: ServerProcess, path: str, args: dict[str, Any]) -> None:
        require_module("convex", "pip install -e '.[dev]'")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, server.url, path, json.dumps(args)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.values: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.values.put(json.loads(line))

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.values.get(timeout=max(0.01, deadline - time.monotonic()))
            if predicate(value):
                return value

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_login_refuses_a_wrong_key_and_takes_the_right_one_or_a_link(
    browser: Any, server: ServerProcess
) -> None:
    with open_tab(browser, server, "data", logged_in=False) as tab:
        shoot(tab, "login")
        tab.get_by_label("Admin key").fill("not-the-key")
        tab.get_by_role("button", name="Log in").click()
        tab.get_by_role("alert").filter(has_text="not this deployment's admin key").wait_for()
        assert tab.evaluate("sessionStorage.getItem('syncline.adminKey')") is None
        tab.get_by_label("Admin key").fill(server.admin_key)
        tab.get_by_role("button", name="Log in").click()
        tab.get_by_role("navigation", name="Pages").wait_for()
        assert tab.evaluate("sessionStorage.getItem('syncline.adminKey')") == server.admin_key

    # The one-time link `serve` prints logs in, and leaves the address bar.
    link = [line for line in server.log().splitlines() if "Login link:" in line][-1]
    url = link.split("Login link:", 1)[1].split()[0]
    with open_tab(browser, server, url.split("/dashboard/", 1)[1], logged_in=False) as tab:
        tab.get_by_role("navigation", name="Pages").wait_for()
        assert "login=" not in tab.url
        assert tab.evaluate("sessionStorage.getItem('syncline.adminKey')") == server.admin_key
    # A second use is refused with the server's reason.
    with open_tab(browser, server, url.split("/dashboard/", 1)[1], logged_in=False) as tab:
        tab.get_by_role("alert").filter(has_text="used already").wait_for()


def test_a_10000_document_table_pages_to_the_end(browser: Any, server: ServerProcess) -> None:
    with open_tab(browser, server, "data/items") as tab:
        tab.get_by_test_id("table-count").filter(has_text="10,000 documents").wait_for()
        tab.get_by_test_id("loaded").filter(has_text="100 loaded").wait_for()
        shoot(tab, "data")
        tab.get_by_role("button", name="Load all").click()
        tab.get_by_test_id("end").wait_for(timeout=30_000)
        assert tab.get_by_test_id("loaded").inner_text() == "10,000 loaded"
        # Virtualised: a few dozen rows in the page, not 10,000.
        assert tab.locator(".grid-row").count() < 100
        tab.locator(".grid").evaluate("el => { el.scrollTop = el.scrollHeight }")
        last = tab.locator(".grid-row", has_text="item 0")
        last.wait_for()
        assert last.get_attribute("aria-rowindex") == str(BIG_TABLE + 1)

        # Ordered by an index, and a range on it.
        tab.get_by_label("Index").select_option("by_n")
        tab.get_by_label("Order").select_option("asc")
        tab.get_by_label("n from").fill("9990")
        tab.get_by_role("button", name="Apply").click()
        tab.get_by_test_id("end").wait_for()
        assert tab.get_by_test_id("loaded").inner_text() == "10 loaded"
        assert tab.locator(".grid-row").first.get_attribute("data-row") == "0"
        assert "item 9990" in tab.locator('.grid-row[data-row="0"]').inner_text()

        # The view exports as JSONL, in its order.
        with tab.expect_download() as download:
            tab.get_by_role("button", name="Export JSONL").click()
        lines = Path(download.value.path()).read_text().splitlines()
        assert [json.loads(line)["n"] for line in lines] == list(range(9990, 10_000))


def test_insert_delete_and_clear(browser: Any, server: ServerProcess) -> None:
    with open_tab(browser, server, "data/notes") as tab:
        tab.get_by_role("button", name="Insert document").click()
        panel = tab.get_by_role("complementary", name="Insert a document")
        editor = panel.get_by_label("Document (JSON)")
        # Filled from the schema, also when the schema arrives after the panel opened.
        tab.wait_for_function(
            """() => {
                const editor = document.getElementById('insert-json');
                return editor && editor.value.includes('"text"');
            }"""
        )
        assert json.loads(editor.input_value()) == {"text": ""}
        editor.fill('{"text": "hello", "size": {"$int64": "12345678901234"}}')
        panel.get_by_role("button", name="Insert").click()
        document = tab.get_by_role("complementary", name="Document")
        size = document.locator('[data-field="size"]')
        size.wait_for()
        assert "int64" in size.inner_text() and "12345678901234" in size.inner_text()
        tab.get_by_test_id("table-count").filter(has_text="1 document").wait_for()
        document.get_by_role("button", name="Delete…").click()
        document.get_by_role("button", name="Delete for good").click()
        tab.get_by_test_id("table-count").filter(has_text="0 documents").wait_for()

        for text in ("a", "b", "c"):
            call(
                server,
                "mutation",
                "_system/dashboard/data:insert",
                {
                    "table": "notes",
                    "document": {"text": text},
                },
            )
        tab.get_by_test_id("table-count").filter(has_text="3 documents").wait_for()
        tab.get_by_role("button", name="Clear table…").click()
        tab.get_by_role("group", name="Confirm clearing").get_by_role(
            "button", name="Clear table"
        ).click()
        tab.get_by_test_id("table-count").filter(has_text="0 documents").wait_for()
        assert tab.locator(".grid-row").count() == 0


def test_an_edit_reaches_a_subscribed_client(browser: Any, server: ServerProcess) -> None:
    doc_id = call(server, "mutation", "tasks:add", {"title": f"edit me {uuid.uuid4().hex[:6]}"})
    watcher = Subscription(server, "tasks:get", {"id": doc_id})
    try:
        watcher.wait_for(lambda doc: doc is not None)
        with open_tab(browser, server, "data/tasks") as tab:
            tab.locator(f'.grid-row[data-id="{doc_id}"]').click()
            panel = tab.get_by_role("complementary", name="Document")
            panel.locator('[data-field="_creationTime"]').wait_for()
            shoot(tab, "document")
            panel.get_by_role("button", name="Edit").click()
            editor = panel.get_by_label("Document (JSON)")
            document = json.loads(editor.input_value())
            document["title"] = "edited in the dashboard"
            document["rank"] = 7
            editor.fill(json.dumps(document))
            panel.get_by_role("button", name="Save").click()
            seen = watcher.wait_for(lambda doc: doc["title"] == "edited in the dashboard")
            assert seen["rank"] == 7
            panel.locator('[data-field="title"]', has_text="edited in the dashboard").wait_for()
    finally:
        watcher.close()


def test_an_invalid_edit_shows_the_error_and_writes_nothing(
    browser: Any, server: ServerProcess
) -> None:
    call(server, "mutation", "tasks:add", {"title": "filtered out"})
    doc_id = call(server, "mutation", "tasks:add", {"title": "stays as it is"})
    before = call(server, "query", "tasks:get", {"id": doc_id})
    with open_tab(browser, server, "data/tasks") as tab:
        tab.locator(f'.grid-row[data-id="{doc_id}"]').click()
        panel = tab.get_by_role("complementary", name="Document")
        panel.get_by_role("button", name="Edit").click()
        editor = panel.get_by_label("Document (JSON)")
        editor.fill('{"title": "broken", "done": "yes", "rank": 1}')
        panel.get_by_role("button", name="Save").click()
        panel.get_by_role("alert").filter(has_text="SchemaValidationError").wait_for()
        shoot(tab, "document-error")
        editor.fill('{"title": ')
        panel.get_by_role("button", name="Save").click()
        panel.get_by_role("alert").filter(has_text="Malformed JSON").wait_for()

        # A filter on a field (a bare word is a string).
        filters = tab.get_by_role("form", name="Filters")
        filters.get_by_role("button", name="Add filter").click()
        filters.get_by_label("Filter 1 field").fill("title")
        filters.get_by_label("Filter 1 value").fill("stays as it is")
        filters.get_by_role("button", name="Apply").click()
        tab.wait_for_function(
            """() => {
                const rows = [...document.querySelectorAll('.grid-row')];
                return rows.length > 0 && rows.every(r => r.innerText.includes('stays as it is'));
            }"""
        )
    assert call(server, "query", "tasks:get", {"id": doc_id}) == before


def test_run_a_function_with_args(browser: Any, server: ServerProcess) -> None:
    with open_tab(browser, server, "functions/tasks:add") as tab:
        editor = tab.get_by_label("Arguments (JSON)")
        assert json.loads(editor.input_value()) == {"title": ""}  # pre-filled from the validator
        editor.fill('{"title": "run from the dashboard"}')
        tab.get_by_role("button", name="Run").click()
        result = tab.get_by_role("region", name="Result")
        result.locator("pre.logs", has_text="adding run from the dashboard").wait_for()
        doc_id = json.loads(result.get_by_test_id("result-value").inner_text())
        assert call(server, "query", "tasks:get", {"id": doc_id})["title"] == (
            "run from the dashboard"
        )
        assert result.get_by_test_id("duration").inner_text().endswith(" ms")
        shoot(tab, "functions")

        # A query's result kept live follows the data.
        doc_id = call(server, "mutation", "tasks:add", {"title": "watched"})
        tab.goto(f"{server.url}/dashboard/#/functions/tasks:get")
        tab.get_by_label("Arguments (JSON)").fill(json.dumps({"id": doc_id}))
        tab.get_by_label("Keep result live").check()
        live = tab.get_by_role("region", name="Live result")
        live.get_by_text('"watched"').wait_for()
        call(
            server,
            "mutation",
            "_system/dashboard/data:replace",
            {
                "id": doc_id,
                "document": {"title": "changed", "done": True, "rank": 1},
            },
        )
        live.get_by_text('"changed"').wait_for()


def test_another_clients_call_shows_in_the_logs_within_a_second(
    browser: Any, server: ServerProcess
) -> None:
    with open_tab(browser, server, "logs") as tab:
        tab.locator('[data-stream="live"]').wait_for()
        marker = f"logged {uuid.uuid4().hex[:8]}"
        call(server, "mutation", "tasks:add", {"title": marker})
        answered = time.monotonic()  # the call is over: its record is on its way
        tab.locator("tr", has_text=f"adding {marker}").wait_for(timeout=5_000)
        elapsed = time.monotonic() - answered
        assert elapsed < 1.0, f"the call showed {elapsed:.3f} s after it returned"
        shoot(tab, "logs")


def test_cancel_a_scheduled_job(browser: Any, server: ServerProcess) -> None:
    job = call(server, "mutation", "tasks:later", {"delay": 3600})
    with open_tab(browser, server, "schedules") as tab:
        row = tab.locator(f'tr[data-id="{job}"]')
        assert row.get_attribute("data-state") == "pending"
        cron = tab.get_by_role("table", name="Cron jobs").locator("tr", has_text="tidy up")
        assert "every 21600 s" in cron.inner_text()
        assert "tasks:later" in cron.inner_text()
        shoot(tab, "schedules")
        row.get_by_role("button", name="Cancel").click()
        tab.locator(f'tr[data-id="{job}"][data-state="canceled"]').wait_for()
    page = call(
        server,
        "query",
        "_system/dashboard/schedules:list",
        {"state": "canceled", "paginationOpts": {"numItems": 10, "cursor": None}},
    )
    assert job in [row["_id"] for row in page["page"]]


def test_upload_an_image_and_see_its_preview(browser: Any, server: ServerProcess) -> None:
    with open_tab(browser, server, "files") as tab:
        tab.locator('input[type="file"]').set_input_files(
            files=[{"name": "red.png", "mimeType": "image/png", "buffer": PNG}]
        )
        thumb = tab.locator("img.thumb").first
        thumb.wait_for()
        tab.wait_for_function(
            "img => img.complete && img.naturalWidth === 2", arg=thumb.element_handle()
        )
        row = tab.locator("tr", has=thumb)
        assert "image/png" in row.inner_text()
        row.get_by_role("button", name="Preview").click()
        big = tab.locator("figure.preview img")
        tab.wait_for_function(
            "img => img.complete && img.naturalWidth === 2", arg=big.element_handle()
        )
        shoot(tab, "files")


def test_an_env_var_change_reaches_a_live_query(browser: Any, server: ServerProcess) -> None:
    watcher = Subscription(server, "tasks:greeting", {})
    try:
        watcher.wait_for(lambda value: value == "hello nobody")
        with open_tab(browser, server, "env") as tab:
            form = tab.get_by_role("form", name="Add a variable")
            form.get_by_label("Name").fill("WHO")
            form.get_by_label("Value").fill("dashboard")
            form.get_by_role("button", name="Add variable").click()
            watcher.wait_for(lambda value: value == "hello dashboard")
            row = tab.locator('tr[data-name="WHO"]')
            assert "dashboard" not in row.inner_text()  # masked
            row.get_by_role("button", name="Reveal WHO").click()
            assert row.get_by_test_id("value").inner_text() == "dashboard"
            shoot(tab, "env")
            row.get_by_role("button", name="Remove WHO").click()
            watcher.wait_for(lambda value: value == "hello nobody")
    finally:
        watcher.close()


def test_schema_and_health(browser: Any, server: ServerProcess) -> None:
    version = httpx.get(f"{server.url}/version", timeout=5).text.strip()
    with open_tab(browser, server, "health") as tab:
        assert tab.get_by_test_id("version").inner_text() in version
        tab.get_by_text("index by_done_rank on done, rank").wait_for()
        shoot(tab, "health")


def test_the_page_survives_a_server_restart(browser: Any, server: ServerProcess) -> None:
    with open_tab(browser, server, "data/tasks") as tab:
        tab.get_by_test_id("loaded").filter(has_text="loaded").wait_for()
        server.stop()
        tab.get_by_role("status").filter(has_text="reconnecting").wait_for()
        shoot(tab, "reconnecting")
        server.start()
        server.wait_ready()
        tab.locator('[data-connection="down"]').wait_for(state="detached", timeout=15_000)
        doc_id = call(server, "mutation", "tasks:add", {"title": "after the restart"})
        tab.locator(f'.grid-row[data-id="{doc_id}"]').wait_for()
