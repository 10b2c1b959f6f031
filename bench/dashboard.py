"""The web dashboard in headless Chromium on a 100,000-document table.

    python bench/dashboard.py [--documents 100000] [--runs 5]

Starts ``syncline serve`` on a project with one table of ``--documents``
documents and drives Chromium (Playwright, ``/usr/bin/chromium`` or
``SYNCLINE_CHROMIUM``). Each run opens a fresh tab and measures:

* **first rows**: from navigating to ``/dashboard/#/data/items`` (logged in
  through the tab's session storage) to the first row of the table on screen;
* **commit to page**: from the start of a mutation made by another client
  (an HTTP call) to the new document shown at the top of the Data page.

Prints the median (and min/max) of each over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from syncline._devtools import ServerProcess, launch

FUNCTIONS = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "items": define_table({"n": v.float64(), "label": v.string(), "done": v.boolean()})
                .index("by_n", ["n"]),
        })
    """,
    "items.py": """
        from syncline import internal_mutation, mutation, v


        @internal_mutation(args={"start": v.float64(), "n": v.float64()})
        def seed(ctx, start, n):
            for i in range(int(start), int(start + n)):
                ctx.db.insert("items", {"n": float(i), "label": f"item {i}", "done": i % 3 == 0})


        @mutation(args={"label": v.string()})
        def add(ctx, label):
            return ctx.db.insert("items", {"n": -1.0, "label": label, "done": False})
    """,
}
BATCH = 5000


def call(server: ServerProcess, kind: str, path: str, args: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{server.url}/api/{kind}",
        json={"path": path, "args": args, "format": "json"},
        headers={"Authorization": f"Convex {server.admin_key}"},
        timeout=120,
    )
    body = response.json()
    if body["status"] != "success":
        raise RuntimeError(body)
    return body["value"]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} median {statistics.median(values):8.1f} ms"
        f"   (min {min(values):.1f}, max {max(values):.1f}, {len(values)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    chromium = os.environ.get("SYNCLINE_CHROMIUM", "/usr/bin/chromium")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, source in FUNCTIONS.items():
            path = root / "functions" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).lstrip("\n"))
        server = launch(root, mode="serve", args=["--function-timeout", "30"])
        try:
            started = time.perf_counter()
            for start in range(0, options.documents, BATCH):
                n = min(BATCH, options.documents - start)
                call(server, "mutation", "items:seed", {"start": start, "n": n})
            print(f"seeded {options.documents} documents in {time.perf_counter() - started:.1f} s")
            first_rows: list[float] = []
            to_page: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox"]
                )
                key = json.dumps(server.admin_key)
                for run in range(options.runs + 1):  # the first run warms up: not counted
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.add_init_script(f"sessionStorage.setItem('syncline.adminKey', {key})")
                    tab = context.new_page()
                    began = time.perf_counter()
                    tab.goto(f"{server.url}/dashboard/#/data/items")
                    tab.locator('.grid-row[data-row="0"]').wait_for(timeout=60_000)
                    opened = (time.perf_counter() - began) * 1000

                    label = f"bench {run}"
                    began = time.perf_counter()
                    call(server, "mutation", "items:add", {"label": label})
                    tab.locator('.grid-row[data-row="0"]', has_text=label).wait_for(timeout=60_000)
                    shown = (time.perf_counter() - began) * 1000
                    context.close()
                    if run:
                        first_rows.append(opened)
                        to_page.append(shown)
                browser.close()
        finally:
            server.stop()

    print(summary("navigation -> first rows", first_rows))
    print(summary("commit -> Data page shows it", to_page))


if __name__ == "__main__":
    main()
