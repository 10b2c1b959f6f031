"""``syncline export``/``import`` on PostgreSQL, and moving a SQLite deployment there.

The migration path of ``docs/deployment.md`` (moving from SQLite to
PostgreSQL), step by step: a SQLite deployment's data is exported (the
server stopped: the data folder directly), imported with ``--db
postgresql://...`` into an empty database, and two nodes started on it serve
it. Then, with the nodes running, a snapshot exported through one node holds
the same documents, and one imported through a node (``--replace``) is what
the other node serves too.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import StartServer
from syncline._devtools import ServerProcess
from syncline.cli import main

from .conftest import MakeProject, StartNode
from .test_workers import WORKER_FILES, call

pytestmark = pytest.mark.slow

TABLES = ("counters", "records", "accounts")


def _documents(snapshot: Path) -> dict[str, list[bytes]]:
    """Each table's documents in a snapshot ZIP (as exported: JSON lines, sorted)."""
    with zipfile.ZipFile(io.BytesIO(snapshot.read_bytes())) as archive:
        return {
            table: sorted(archive.read(f"{table}/documents.jsonl").splitlines()) for table in TABLES
        }


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _serves_the_data(node: ServerProcess, counter: float) -> None:
    assert call(node, "query", "workers:counter", {"name": "a"}) == counter
    rows = call(node, "query", "workers:records", {"client": "m"})
    assert [seq for seq, _ in rows] == [float(i) for i in range(10)]
    assert call(node, "query", "bank:summary")["total"] == 500.0


def test_a_sqlite_deployment_moves_to_postgres_through_export_and_import(
    project: MakeProject,
    start_server: StartServer,
    start_node: StartNode,
    database_url: str,
    tmp_path: Path,
) -> None:
    sqlite = project(WORKER_FILES, auth=False)
    server = start_server(sqlite)
    for _ in range(3):
        call(server, "mutation", "workers:increment", {"name": "a"})
    for seq in range(10):
        call(server, "mutation", "workers:record", {"client": "m", "seq": float(seq)})
    call(server, "mutation", "bank:open_accounts", {"n": 5.0, "balance": 100.0})
    server.stop()

    # 1. Export the stopped SQLite deployment; 2. import it into the empty database.
    exported = tmp_path / "from-sqlite.zip"
    _cli("export", "--dir", str(sqlite), "--path", str(exported))
    output = _cli("import", "--replace", str(exported), "--dir", str(sqlite), "--db", database_url)
    assert "Imported 10 document(s) into records" in output

    # 3. Nodes on PostgreSQL serve it.
    a, b = start_node(), start_node()
    for node in (a, b):
        _serves_the_data(node, 3.0)
        # The import stored the SQLite deployment's admin key as the deployment's.
        assert node.admin_key == (sqlite / ".syncline" / "admin_key").read_text().strip()

    # Exported through a running node: the same documents.
    through_node = tmp_path / "from-postgres.zip"
    _cli("export", "--url", b.url, "--admin-key", b.admin_key, "--path", str(through_node))
    assert _documents(through_node) == _documents(exported)

    # Imported through node A while both run: node B serves the imported data.
    call(b, "mutation", "workers:increment", {"name": "a"})
    call(b, "mutation", "workers:record", {"client": "m", "seq": 10.0})
    _cli("import", "--replace", str(exported), "--url", a.url, "--admin-key", a.admin_key)
    # Node B learns of node A's commit a moment later.
    deadline = time.monotonic() + 15
    while call(b, "query", "workers:counter", {"name": "a"}) != 3.0:
        assert time.monotonic() < deadline, "node B never served the imported data"
        time.sleep(0.1)
    for node in (a, b):
        _serves_the_data(node, 3.0)
