"""Online export benchmark: MB/s of ``GET /api/admin/export`` while 8 writers run.

    python bench/export_online.py [--documents 50000] [--rounds 3] [--writers 8]

Starts ``syncline serve`` on a temporary project, loads N documents (a
snapshot ZIP through ``POST /api/admin/import``), then starts the writers
(each inserting one document per mutation over HTTP, without pause) and
exports the whole database ``--rounds`` times while they run. Prints, per
round and as medians, MB/s of exported JSON (uncompressed) and documents/s, and the writers'
commits/s during the exports; this machine is noisy, so compare medians.
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

FUNCTIONS = {
    "schema.py": (
        "from syncline import define_schema, define_table, v\n"
        'schema = define_schema({"docs": define_table('
        '{"w": v.number(), "n": v.number(), "body": v.string()})})\n'
    ),
    "docs.py": (
        "from syncline import mutation, v\n"
        '@mutation(args={"w": v.number(), "n": v.number()})\n'
        "def add(ctx, w, n):\n"
        '    return ctx.db.insert("docs", {"w": w, "n": n, "body": "x" * 200})\n'
    ),
}


def _snapshot(documents: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        lines = (
            orjson.dumps({"w": -1.0, "n": float(i), "body": f"{i:08d}" + "y" * 192}) + b"\n"
            for i in range(documents)
        )
        archive.writestr("docs/documents.jsonl", b"".join(lines))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "functions").mkdir()
        for name, text in FUNCTIONS.items():
            (project / "functions" / name).write_text(text)
        server = launch(project)
        try:
            headers = {"Authorization": f"Convex {server.admin_key}"}
            loaded = httpx.post(
                f"{server.url}/api/admin/import",
                headers=headers,
                content=_snapshot(options.documents),
                timeout=600,
            )
            loaded.raise_for_status()
            stop = threading.Event()
            commits = [0] * options.writers

            def writer(w: int) -> None:
                with httpx.Client(timeout=60) as client:
                    while not stop.is_set():
                        client.post(
                            f"{server.url}/api/mutation",
                            json={"path": "docs:add", "args": {"w": w, "n": commits[w]}},
                        ).raise_for_status()
                        commits[w] += 1

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(options.writers)]
            for thread in threads:
                thread.start()
            mbps, docps, cps = [], [], []
            try:
                time.sleep(0.5)
                for round_ in range(options.rounds):
                    before = sum(commits)
                    started = time.perf_counter()
                    response = httpx.get(
                        f"{server.url}/api/admin/export", headers=headers, timeout=600
                    )
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                        count = archive.read("docs/documents.jsonl").count(b"\n")
                        data = sum(info.file_size for info in archive.infolist())
                    mbps.append(data / elapsed / 1e6)
                    docps.append(count / elapsed)
                    cps.append((sum(commits) - before) / elapsed)
                    print(
                        f"round {round_ + 1}: {data / 1e6:.1f} MB of JSON "
                        f"({len(response.content) / 1e6:.1f} MB zipped), "
                        f"{count:,} documents in {elapsed:.2f} s: {mbps[-1]:.1f} MB/s, "
                        f"{docps[-1]:,.0f} documents/s; writers {cps[-1]:,.0f} commits/s"
                    )
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
        finally:
            server.stop()
    print(
        f"median: {statistics.median(mbps):.1f} MB/s, {statistics.median(docps):,.0f} documents/s "
        f"with {options.writers} writers at {statistics.median(cps):,.0f} commits/s"
    )


if __name__ == "__main__":
    main()
