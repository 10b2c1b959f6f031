"""Deploy benchmark: ``syncline deploy`` of code whose schema adds an index to a big table.

    python bench/deploy.py [--documents 100000] [--rounds 5]

Starts ``syncline serve`` on a temporary project, loads N documents into one
table (a snapshot ZIP through ``POST /api/admin/import``), then deploys
``--rounds`` times a bundle whose schema adds an index on that table, each
time after a deploy that drops it again. One writer inserts into another
table without pause meanwhile. Prints per round and as medians: the
deploy's wall time as the CLI sees it (upload, checks, index build, switch),
the server's own time, and the longest a writer's mutation waited (the index
is built in the deploy's exclusive transaction, so writes queue behind it).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import orjson

from syncline._devtools import launch
from syncline.functions.bundle import pack

SCHEMA = (
    "from syncline import define_schema, define_table, v\n"
    "docs = define_table({'n': v.number(), 'tag': v.string(), 'body': v.string()})\n"
    "schema = define_schema({'docs': docs{index}, 'log': define_table({'i': v.number()})})\n"
)
FUNCTIONS = (
    "from syncline import mutation, query, v\n"
    "@mutation(args={'i': v.number()})\n"
    "def write(ctx, i):\n"
    "    return ctx.db.insert('log', {'i': i})\n"
    "@query\n"
    "def version(ctx):\n"
    "    return '{version}'\n"
)


def _write(folder: Path, *, index: bool, version: str) -> Path:
    functions = folder / "functions"
    functions.mkdir(parents=True, exist_ok=True)
    clause = ".index('by_tag', ['tag', 'n'])" if index else ""
    (functions / "schema.py").write_text(SCHEMA.replace("{index}", clause))
    (functions / "app.py").write_text(FUNCTIONS.replace("{version}", version))
    return functions


def _snapshot(documents: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        lines = (
            orjson.dumps({"n": float(i), "tag": f"t{i % 97}", "body": "y" * 100}) + b"\n"
            for i in range(documents)
        )
        archive.writestr("docs/documents.jsonl", b"".join(lines))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        _write(project, index=False, version="start")
        server = launch(project)
        headers = {"Authorization": f"Convex {server.admin_key}"}
        try:
            httpx.post(
                f"{server.url}/api/admin/import",
                headers=headers,
                content=_snapshot(options.documents),
                timeout=600,
            ).raise_for_status()
            stop = threading.Event()
            waits: list[tuple[float, float]] = []  # (started, seconds)

            def writer() -> None:
                with httpx.Client(timeout=600) as client:
                    i = 0
                    while not stop.is_set():
                        started = time.perf_counter()
                        client.post(
                            f"{server.url}/api/mutation",
                            json={"path": "app:write", "args": {"i": i}},
                        ).raise_for_status()
                        waits.append((started, time.perf_counter() - started))
                        i += 1

            def deploy(folder: Path) -> tuple[float, float]:
                bundle = pack(folder)
                started = time.perf_counter()
                response = httpx.post(
                    f"{server.url}/api/admin/deploy", headers=headers, content=bundle, timeout=600
                )
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                return elapsed, response.json()["elapsedMs"] / 1000

            thread = threading.Thread(target=writer)
            thread.start()
            walls, servers, stalls = [], [], []
            try:
                time.sleep(0.3)
                for round_ in range(options.rounds):
                    deploy(_write(Path(tmp) / f"drop{round_}", index=False, version=f"d{round_}"))
                    started = time.perf_counter()
                    wall, server_s = deploy(
                        _write(Path(tmp) / f"add{round_}", index=True, version=f"a{round_}")
                    )
                    during = [s for t, s in waits if t >= started - 1] or [0.0]
                    walls.append(wall)
                    servers.append(server_s)
                    stalls.append(max(during))
                    print(
                        f"round {round_ + 1}: deploy adding an index over "
                        f"{options.documents:,} documents: {wall:.2f} s "
                        f"(server {server_s:.2f} s); longest write wait {stalls[-1] * 1000:.0f} ms"
                    )
            finally:
                stop.set()
                thread.join()
        finally:
            server.stop()
    print(
        f"median: {statistics.median(walls):.2f} s per deploy adding an index to "
        f"{options.documents:,} documents (server {statistics.median(servers):.2f} s); "
        f"longest write wait {statistics.median(stalls) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
