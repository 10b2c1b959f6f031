"""Import benchmark: documents/s for importing 100,000 documents (target >= 20,000/s).

    python bench/import.py [--documents 100000] [--rounds 3] [--durability full|normal|off]

Each round imports into a fresh SQLite database (WAL, on a temp file) whose
schema validates every document (an object validator with an id reference)
and has one user index, through the same code as ``syncline import``: one
write transaction on the database's writer, rows checked against the schema
as they are written. Measured:

* a snapshot ZIP (ids and ``_creationTime`` restored) of N documents;
* a JSONL file of N documents without system fields (ids generated);
* ``syncline export`` of the imported snapshot back to a ZIP.

Prints the median of the rounds; this machine is noisy, so compare medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import orjson

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.snapshot import export_snapshot, import_snapshot, import_table
from syncline.values.ids import new_id

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "users": define_table({"name": v.string()}),
    "tasks": define_table({
        "title": v.string(),
        "done": v.boolean(),
        "priority": v.number(),
        "tags": v.array(v.string()),
        "owner": v.id("users"),
    }).index("by_priority", ["priority"]),
})
"""

USERS = 10001
TASKS = 10002


def _documents(count: int, owner: str, *, system_fields: bool) -> list[bytes]:
    start_ms = time.time() * 1000 - count
    lines = []
    for i in range(count):
        doc: dict[str, object] = {
            "title": f"Task number {i} with a reasonably long title",
            "done": i % 3 == 0,
            "priority": float(i % 100),
            "tags": ["work", f"tag{i % 7}"],
            "owner": owner,
        }
        if system_fields:
            doc = {"_id": new_id(TASKS), "_creationTime": start_ms + i + 0.5, **doc}
        lines.append(orjson.dumps(doc))
    return lines


def _write_inputs(root: Path, count: int) -> tuple[Path, Path]:
    owner = new_id(USERS)
    snapshot = root / "snapshot.zip"
    with zipfile.ZipFile(snapshot, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "_tables/documents.jsonl",
            b'{"name":"users","id":10001}\n{"name":"tasks","id":10002}\n',
        )
        user = {"_id": owner, "_creationTime": time.time() * 1000 - count - 1, "name": "Ada"}
        archive.writestr("users/documents.jsonl", orjson.dumps(user) + b"\n")
        archive.writestr("users/generated_schema.jsonl", b'"uniform"\n')
        archive.writestr(
            "tasks/documents.jsonl",
            b"\n".join(_documents(count, owner, system_fields=True)) + b"\n",
        )
        archive.writestr("tasks/generated_schema.jsonl", b'"uniform"\n')
    jsonl = root / "tasks.jsonl"
    jsonl.write_bytes(b"\n".join(_documents(count, owner, system_fields=False)) + b"\n")
    return snapshot, jsonl


def _app(root: Path, name: str, durability: str) -> Application:
    functions = root / "functions"
    if not functions.exists():
        functions.mkdir()
        (functions / "schema.py").write_text(SCHEMA)
    database = Database(
        SqlitePersistence(str(root / f"{name}.sqlite3"), durability=durability), clock=SystemClock()
    )
    app = Application(database, functions)
    app.load()
    return app


def run_round(root: Path, count: int, durability: str) -> tuple[float, float, float]:
    snapshot, jsonl = _write_inputs(root, count)

    app = _app(root, "zip", durability)
    try:
        t0 = time.perf_counter()
        result = import_snapshot(app.database, snapshot)
        zip_rate = count / (time.perf_counter() - t0)
        assert result.tables["tasks"] == count, result

        t0 = time.perf_counter()
        exported = export_snapshot(app.database, root / "export.zip")
        export_rate = (count + 1) / (time.perf_counter() - t0)
        assert exported.tables["tasks"] == count, exported
    finally:
        app.close()

    app = _app(root, "jsonl", durability)
    try:
        # The owner id must exist for v.id("users") to accept it: import the user first.
        import_snapshot(app.database, _users_only(root, snapshot))
        t0 = time.perf_counter()
        result = import_table(app.database, "tasks", jsonl)
        jsonl_rate = count / (time.perf_counter() - t0)
        assert result.tables["tasks"] == count, result
    finally:
        app.close()
    return zip_rate, jsonl_rate, export_rate


def _users_only(root: Path, snapshot: Path) -> Path:
    path = root / "users.zip"
    with zipfile.ZipFile(snapshot) as source, zipfile.ZipFile(path, "w") as target:
        for name in ("_tables/documents.jsonl", "users/documents.jsonl"):
            target.writestr(name, source.read(name))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", default="full", choices=["full", "normal", "off"])
    args = parser.parse_args()

    zips, jsonls, exports = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            zip_rate, jsonl_rate, export_rate = run_round(
                Path(tmp), args.documents, args.durability
            )
        zips.append(zip_rate)
        jsonls.append(jsonl_rate)
        exports.append(export_rate)

    med = statistics.median
    print(
        f"import benchmark ({args.documents:,} documents, durability={args.durability}, "
        f"{args.rounds} rounds, medians)"
    )
    print(f"  snapshot ZIP import (ids restored), documents/s : {med(zips):9.0f}")
    print(f"  JSONL import (ids generated), documents/s      : {med(jsonls):9.0f}")
    print(f"  snapshot ZIP export, documents/s               : {med(exports):9.0f}")


if __name__ == "__main__":
    main()
