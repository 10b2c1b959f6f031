"""``syncline migrate``: a SQLite deployment's data moved into an empty PostgreSQL database.

The source is filled in process (documents through mutations, a stored file,
an environment variable, a pending scheduled function); after the migration
the target answers the same queries with the same results (ids and
``_creationTime`` included), serves the file and has the variable. A target
holding anything is refused and left as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import write_functions
from harness import require_module
from syncline.application import Application
from syncline.cli import main
from syncline.commands.migrate import database_url

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "tasks": define_table({
        "title": v.string(), "priority": v.number(), "attachment": v.optional(v.id("_storage")),
    }).index("by_priority", ["priority"]),
})
"""

TASKS = """
from syncline import internal_mutation, mutation, query, v


@mutation(args={"title": v.string(), "priority": v.number()})
def add(ctx, title, priority):
    return ctx.db.insert("tasks", {"title": title, "priority": priority})


@mutation(args={"id": v.id("tasks"), "file": v.id("_storage")})
def attach(ctx, id, file):
    ctx.db.patch(id, {"attachment": file})


@mutation
def remind_later(ctx):
    ctx.scheduler.run_after(86_400_000, "tasks:noop")


@internal_mutation
def noop(ctx):
    pass


@query(args={"min": v.number()})
def urgent(ctx, min):
    return (
        ctx.db.query("tasks")
        .with_index("by_priority", lambda q: q.gte("priority", min))
        .order("desc")
        .collect()
    )


@query
def setting(ctx):
    return ctx.env.get("GREETING")
"""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the tests' PostgreSQL server (skipped without one, but in CI)."""
    require_module("psycopg", "pip install -e '.[postgres]'")
    from postgres_databases import database_for_test

    with database_for_test("syncline_migrate") as url:
        yield url


def _project(tmp_path: Path) -> Path:
    write_functions(tmp_path / "app" / "functions", {"schema.py": SCHEMA, "tasks.py": TASKS})
    return tmp_path / "app"


def _call(app: Application, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    outcome = asyncio.run(getattr(app, kind)(path, args))
    assert outcome.error is None, outcome.error
    return outcome.value


def _fill(project: Path) -> tuple[list[Any], str]:
    """Documents, a stored file, a variable and a pending job; the query result and file id."""
    with Application.open(project) as app:
        assert app.storage is not None
        ids = [
            _call(app, "mutation", "tasks:add", {"title": f"t{i}", "priority": float(i % 5)})
            for i in range(40)
        ]
        file_id = asyncio.run(app.storage.store(b"%PDF-1.4 plan", content_type="application/pdf"))
        _call(app, "mutation", "tasks:attach", {"id": ids[3], "file": file_id})
        _call(app, "mutation", "tasks:remind_later")
        app.env.update([("GREETING", "hello")])
        return _call(app, "query", "tasks:urgent", {"min": 3.0}), file_id


def _migrate(project: Path, target: str) -> Any:
    return CliRunner().invoke(
        main,
        ["migrate", "--dir", str(project), "--from", str(project / ".syncline" / "data.sqlite3"),
         "--to", target, "--to-files", str(project / "pg-files")],
    )  # fmt: skip


def test_a_sqlite_deployment_migrates_to_postgres_with_its_files_and_variables(
    tmp_path: Path, postgres_url: str
) -> None:
    project = _project(tmp_path)
    urgent, file_id = _fill(project)
    assert len(urgent) == 16

    result = _migrate(project, postgres_url)
    assert result.exit_code == 0, result.output
    assert (
        "Migrated 40 document(s) in 1 table(s), 1 stored file(s) and 1 environment variable(s)"
        in result.output
    )
    assert "1 scheduled function(s) pending on the source were not carried over" in result.output

    with Application.open(project, db=postgres_url, files=str(project / "pg-files")) as app:
        assert app.storage is not None
        # The same documents, ids and creation times, found through the same index.
        assert _call(app, "query", "tasks:urgent", {"min": 3.0}) == urgent
        assert _call(app, "query", "tasks:setting") == "hello"

        async def read() -> tuple[bytes, str | None]:
            reader = await app.storage.open(file_id)  # type: ignore[union-attr]
            assert reader is not None
            return await reader.read(), reader.content_type

        assert asyncio.run(read()) == (b"%PDF-1.4 plan", "application/pdf")

    # Run again: the target now has data, and nothing is changed.
    again = _migrate(project, postgres_url)
    assert again.exit_code == 1
    assert (
        "The target database is not empty (1 stored file(s), 40 document(s) in `tasks`, "
        "1 environment variable(s)): `syncline migrate` only fills an empty one. "
        "Nothing was changed." in again.output
    )
    with Application.open(project, db=postgres_url, load=False) as app:
        assert app.database.run_read(lambda tx: tx.count("tasks")).value == 40


def test_a_target_with_only_a_variable_is_refused(tmp_path: Path, postgres_url: str) -> None:
    project = _project(tmp_path)
    _fill(project)
    with Application.open(project, db=postgres_url) as app:
        app.env.update([("OTHER", "x")])
    result = _migrate(project, postgres_url)
    assert result.exit_code == 1
    assert "not empty (1 environment variable(s))" in result.output
    with Application.open(project, db=postgres_url, load=False) as app:
        assert app.database.run_read(lambda tx: tx.count("tasks")).value == 0
        assert app.env.list_all() == {"OTHER": "x"}


def test_from_and_to_are_database_urls() -> None:
    assert database_url("postgresql://db/app") == "postgresql://db/app"
    assert database_url("sqlite:///rel.db") == "sqlite:///rel.db"
    assert database_url("/var/lib/app/data.sqlite3") == "sqlite:////var/lib/app/data.sqlite3"
    result = CliRunner().invoke(
        main, ["migrate", "--from", "sqlite:///a.db", "--to", "sqlite:///a.db"]
    )
    assert result.exit_code == 1
    assert "--from and --to name the same database" in result.output
