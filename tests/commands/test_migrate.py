"""``syncline migrate``: a SQLite deployment's data moved into an empty PostgreSQL database.

The source is filled in process (documents through mutations, a stored file,
an environment variable, a pending scheduled function, a cron job); after the
migration the target answers the same queries with the same results (ids and
``_creationTime`` included), serves the file, has the variable and the
pending function under its id (the cron's run is not copied: the target
schedules its own). A target holding anything is refused and left as it was.
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
    return ctx.scheduler.run_after(86_400_000, "tasks:noop", {"note": b"\\x00bytes"})


@internal_mutation
def noop(ctx, note):
    pass


@query
def pending(ctx):
    return [
        [job["_id"], job["name"], job["args"], job["_creationTime"], job["scheduledTime"]]
        for job in ctx.db.system.query("_scheduled_functions").collect()
        if job["state"]["kind"] == "pending"
    ]


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


CRONS = """
from syncline import CronJobs

crons = CronJobs()
crons.daily("tidy", "tasks:noop", {"note": b"cron"}, hour_utc=3)
"""


def _project(tmp_path: Path) -> Path:
    write_functions(
        tmp_path / "app" / "functions", {"schema.py": SCHEMA, "tasks.py": TASKS, "crons.py": CRONS}
    )
    return tmp_path / "app"


def _call(app: Application, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    outcome = asyncio.run(getattr(app, kind)(path, args))
    assert outcome.error is None, outcome.error
    return outcome.value


def _fill(project: Path) -> tuple[list[Any], str, Any]:
    """Documents, a stored file, a variable and a pending job; what the queries answer, the
    file id."""
    with Application.open(project) as app:
        assert app.storage is not None
        ids = [
            _call(app, "mutation", "tasks:add", {"title": f"t{i}", "priority": float(i % 5)})
            for i in range(40)
        ]
        file_id = asyncio.run(app.storage.store(b"%PDF-1.4 plan", content_type="application/pdf"))
        _call(app, "mutation", "tasks:attach", {"id": ids[3], "file": file_id})
        job_id = _call(app, "mutation", "tasks:remind_later")
        app.env.update([("GREETING", "hello")])
        pending = _call(app, "query", "tasks:pending")
        assert len(pending) == 2 and job_id in {job[0] for job in pending}  # and the cron's run
        mine = [job for job in pending if job[0] == job_id]
        return _call(app, "query", "tasks:urgent", {"min": 3.0}), file_id, mine


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
    urgent, file_id, job = _fill(project)
    assert len(urgent) == 16

    result = _migrate(project, postgres_url)
    assert result.exit_code == 0, result.output
    assert (
        "Migrated 40 document(s) in 1 table(s), 1 stored file(s), 1 scheduled function(s) "
        "and 1 environment variable(s)" in result.output
    )

    with Application.open(project, db=postgres_url, files=str(project / "pg-files")) as app:
        assert app.storage is not None
        # The same documents, ids and creation times, found through the same index.
        assert _call(app, "query", "tasks:urgent", {"min": 3.0}) == urgent
        assert _call(app, "query", "tasks:setting") == "hello"
        # The pending function, same id, args and time; the cron has a run of its own.
        pending = _call(app, "query", "tasks:pending")
        assert len(pending) == 2
        assert [p for p in pending if p[0] == job[0][0]] == job

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


def test_a_postgres_deployment_migrates_back_to_a_new_sqlite_file(
    tmp_path: Path, postgres_url: str
) -> None:
    project = _project(tmp_path)
    urgent, _file_id, _job = _fill(project)
    assert _migrate(project, postgres_url).exit_code == 0
    back = tmp_path / "back.sqlite3"
    result = CliRunner().invoke(
        main,
        ["migrate", "--dir", str(project), "--from", postgres_url, "--to", str(back),
         "--from-files", str(project / "pg-files"), "--to-files", str(tmp_path / "back-files")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with Application.open(
        project, db=database_url(str(back)), files=str(tmp_path / "back-files")
    ) as app:
        assert _call(app, "query", "tasks:urgent", {"min": 3.0}) == urgent


def test_from_and_to_are_database_urls() -> None:
    assert database_url("postgresql://db/app") == "postgresql://db/app"
    assert database_url("sqlite:///rel.db") == "sqlite:///rel.db"
    assert database_url("/var/lib/app/data.sqlite3") == "sqlite:////var/lib/app/data.sqlite3"
    result = CliRunner().invoke(
        main, ["migrate", "--from", "sqlite:///a.db", "--to", "sqlite:///a.db"]
    )
    assert result.exit_code == 1
    assert "--from and --to name the same database" in result.output
