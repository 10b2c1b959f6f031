"""Online backup and restore against a running server: export at one ts while writers run,
all-or-nothing import that subscribers see, scheduled backups."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from conftest import StartServer, write_functions
from syncline._devtools import ServerProcess
from syncline.cli import main
from syncline.client import AsyncClient
from syncline.persistence import open_persistence
from syncline.snapshot import from_export_json
from syncline.values.json import from_json_bytes

pytestmark = pytest.mark.slow

FUNCTIONS = {
    "schema.py": """
        from syncline import define_schema, define_table, v
        schema = define_schema({"tasks": define_table({"w": v.number(), "n": v.number()})})
    """,
    "tasks.py": """
        from syncline import mutation, query, v

        @mutation(args={"w": v.number(), "n": v.number()})
        def add(ctx, w, n):
            return ctx.db.insert("tasks", {"w": w, "n": n})

        @query(returns=v.array(v.doc("tasks")))
        def list(ctx):
            return ctx.db.query("tasks").collect()
    """,
}
WRITERS = 8


def _project(tmp_path: Path) -> Path:
    write_functions(tmp_path / "functions", FUNCTIONS)
    return tmp_path


def _admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Convex {server.admin_key}"}


def _zip_documents(data: bytes, table: str = "tasks") -> dict[str, dict[str, Any]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        lines = archive.read(f"{table}/documents.jsonl").splitlines()
    docs = [from_export_json(orjson.loads(line)) for line in lines if line]
    return {doc["_id"]: doc for doc in docs}


def _add(server: ServerProcess, client: httpx.Client, w: int, n: int) -> None:
    answer = client.post(
        f"{server.url}/api/mutation",
        json={"path": "tasks:add", "args": {"w": w, "n": n}, "format": "json"},
    ).json()
    assert answer["status"] == "success", answer


def test_export_while_eight_writers_run_equals_the_database_at_its_ts(
    tmp_path: Path, start_server: StartServer
) -> None:
    project = _project(tmp_path)
    server = start_server(project)
    stop = threading.Event()
    written = [0] * WRITERS

    def writer(w: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                _add(server, client, w, written[w])
                written[w] += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        while sum(written) < 200:
            time.sleep(0.02)
        response = httpx.get(f"{server.url}/api/admin/export", headers=_admin(server), timeout=60)
        before_stop = sum(written)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert response.status_code == 200, response.text
    ts = int(response.headers["x-syncline-snapshot-ts"])
    exported = _zip_documents(response.content)
    server.stop()

    # Replay the commit log up to the export's ts: the same documents, field for field.
    persistence = open_persistence(
        f"sqlite:///{project / '.syncline' / 'data.sqlite3'}", base=project
    )
    try:
        conn = persistence.reader()
        entries = conn.log_since(0, limit=10**9)
        persistence.release_reader(conn)
    finally:
        persistence.close()
    replayed: dict[str, dict[str, Any]] = {}
    later = 0
    for entry in entries:
        if entry.ts > ts:
            later += 1
            continue
        if entry.value is None:
            replayed.pop(entry.doc_id, None)
        else:
            doc = from_json_bytes(entry.value)
            if "w" in doc:
                replayed[entry.doc_id] = doc
    assert later > 0, "no write committed after the export's snapshot: writes did not go on"
    assert len(exported) >= 200 and len(exported) < sum(written)
    assert exported.keys() == replayed.keys()
    for doc_id, doc in exported.items():
        assert {k: doc[k] for k in ("w", "n", "_creationTime")} == {
            k: replayed[doc_id][k] for k in ("w", "n", "_creationTime")
        }
    # Each writer's inserts are a prefix: a snapshot at one ts never has a gap.
    for w in range(WRITERS):
        ns = sorted(doc["n"] for doc in exported.values() if doc["w"] == w)
        assert ns == [float(i) for i in range(len(ns))]
    assert before_stop >= len(exported)


def _source_and_target(
    tmp_path: Path, start_server: StartServer, documents: int
) -> tuple[ServerProcess, ServerProcess]:
    """Two servers: one holding ``documents`` tasks, one empty."""
    source = start_server(_project(tmp_path / "source"))
    target = start_server(_project(tmp_path / "target"))
    with httpx.Client(timeout=30) as client:
        for n in range(documents):
            _add(source, client, 1, n)
    return source, target


def test_cli_export_and_import_against_a_running_server(
    tmp_path: Path, start_server: StartServer
) -> None:
    source, target = _source_and_target(tmp_path, start_server, 50)
    runner = CliRunner()
    backups = tmp_path / "backups"
    result = runner.invoke(
        main,
        ["export", "--url", source.url, "--admin-key", source.admin_key, "--path", f"{backups}/"],
    )
    assert result.exit_code == 0, result.output
    (snapshot,) = backups.glob("snapshot_*.zip")
    assert len(_zip_documents(snapshot.read_bytes())) == 50
    bad = tmp_path / "bad.zip"
    bad.write_bytes(snapshot.read_bytes()[:-100])  # truncated: no ZIP directory

    async def scenario() -> None:
        async with AsyncClient(target.url) as client:
            updates = client.subscribe("tasks:list").__aiter__()
            assert await updates.__anext__() == []
            importing = ["import", "--url", target.url, "--admin-key", target.admin_key]
            failed = await asyncio.to_thread(runner.invoke, main, [*importing, str(bad)])
            assert failed.exit_code == 1
            assert "as a ZIP file" in failed.output
            done = await asyncio.to_thread(runner.invoke, main, [*importing, str(snapshot)])
            assert done.exit_code == 0, done.output
            assert "Imported 50 document(s) into tasks" in done.output
            # The subscriber's next result is the import's, whole: nothing changed before it.
            seen = await asyncio.wait_for(updates.__anext__(), timeout=10)
            assert sorted(doc["n"] for doc in seen) == [float(n) for n in range(50)]

    asyncio.run(scenario())


def test_cli_exports_and_imports_one_table_as_jsonl_and_csv_against_a_running_server(
    tmp_path: Path, start_server: StartServer
) -> None:
    source, target = _source_and_target(tmp_path, start_server, 20)
    runner = CliRunner()
    at = ["--admin-key", source.admin_key, "--url", source.url]
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"tasks.{fmt}"
        done = runner.invoke(main, ["export", "--table", "tasks", "--path", str(out), *at])
        assert done.exit_code == 0, done.output
        assert "at ts" in done.output
        lines = out.read_text().splitlines()
        assert len(lines) == 20 + (fmt == "csv")  # CSV: a header line
    stdout = runner.invoke(main, ["export", "--table", "tasks", "--path", "-", *at])
    assert stdout.exit_code == 0 and stdout.stdout.count("\n") == 20
    missing = runner.invoke(main, ["export", "--table", "nope", "--path", "-", *at])
    assert missing.exit_code == 1 and "NoSuchTable" in missing.output

    async def scenario() -> None:
        async with AsyncClient(target.url) as client:
            updates = client.subscribe("tasks:list").__aiter__()
            assert await updates.__anext__() == []
            importing = ["import", "--url", target.url, "--admin-key", target.admin_key]
            importing += ["--table", "tasks"]
            done = await asyncio.to_thread(
                runner.invoke, main, [*importing, str(tmp_path / "tasks.jsonl")]
            )
            assert done.exit_code == 0, done.output
            assert "Imported 20 document(s) into tasks" in done.output
            seen = await asyncio.wait_for(updates.__anext__(), timeout=10)
            assert sorted(doc["n"] for doc in seen) == [float(n) for n in range(20)]
            again = await asyncio.to_thread(
                runner.invoke, main, [*importing, "--append", str(tmp_path / "tasks.csv")]
            )
            assert again.exit_code == 1  # the same ids: all or nothing
            assert "tasks.csv:2: A document with `_id`" in again.output
            replaced = await asyncio.to_thread(
                runner.invoke, main, [*importing, "--replace", str(tmp_path / "tasks.csv")]
            )
            assert replaced.exit_code == 0, replaced.output
            assert "Imported 20 document(s) into tasks (replacing 20)" in replaced.output

    asyncio.run(scenario())


def test_import_refuses_a_body_over_the_limit(tmp_path: Path, start_server: StartServer) -> None:
    from syncline.server import snapshot_api

    server = start_server(_project(tmp_path))
    too_big = snapshot_api.DEFAULT_MAX_IMPORT_BYTES + 1
    host, port = server.url.removeprefix("http://").split(":")
    # A declared oversize body is refused before any of it is read.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /api/admin/import HTTP/1.1\r\nHost: x\r\nAuthorization: Convex "
            f"{server.admin_key}\r\nContent-Length: {too_big}\r\n\r\n".encode()
        )
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 400"), answer
    assert "ImportTooLarge" in answer
    server.stop()
    # A body that passes the limit as it streams (no declared length) is refused too.
    server = start_server(tmp_path, args=["--max-import-size", "1KiB"])

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    streamed = httpx.post(
        f"{server.url}/api/admin/import", headers=_admin(server), content=chunks()
    )
    assert streamed.status_code == 400 and streamed.json()["code"] == "ImportTooLarge"
    assert "1024 bytes" in streamed.json()["message"]
    no_key = httpx.get(f"{server.url}/api/admin/export")
    assert no_key.status_code == 403


def test_scheduled_backups_are_written_and_pruned(
    tmp_path: Path, start_server: StartServer
) -> None:
    project = _project(tmp_path)
    folder = tmp_path / "backups"
    server = start_server(
        project,
        args=["--backup-every", "0.3s", "--backup-dir", str(folder), "--backup-keep", "2"],
    )
    with httpx.Client(timeout=30) as client:
        _add(server, client, 1, 0)
    deadline = time.monotonic() + 30
    while server.log().count("backup written") < 4:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    files = sorted(folder.iterdir())
    assert len(files) == 2, files  # pruned to --backup-keep, no partial files left
    for path in files:
        assert path.name.startswith("backup_") and path.suffix == ".zip"
        assert len(_zip_documents(path.read_bytes())) == 1
    # A failing backup is logged; the server keeps serving.
    for path in files:
        path.unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    deadline = time.monotonic() + 30
    while "scheduled backup into" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    assert httpx.get(f"{server.url}/version").status_code == 200
