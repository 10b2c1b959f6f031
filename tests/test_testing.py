"""The in-process test kit, ``syncline.testing.TestBackend``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import write_functions
from syncline import ConvexError, api, internal
from syncline.clock import ManualClock
from syncline.errors import FunctionDefinitionError, InternalError, SchemaValidationError
from syncline.testing import TestBackend

WHO = """
from syncline import query

@query
def me(ctx):
    identity = ctx.auth.get_user_identity()
    if identity is None:
        return None
    return {"token": identity.token_identifier, "subject": identity.subject, "name": identity.name}
"""


@pytest.fixture
def app_dir(fixture_project: Callable[[str], Path]) -> Path:
    return fixture_project("tasks_app")


def test_runs_a_project_end_to_end(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        user = t.mutation(api.admin.users.create, {"name": "ada"})
        task = t.mutation("tasks:add", {"title": "write tests", "owner": user})
        t.mutation("tasks:add", {"title": "ship"})
        assert t.query(api.tasks.list) == ["task: write tests", "task: ship"]
        assert t.query("admin/users:tasks_of", {"owner": user}) == ["write tests"]
        assert t.query("admin/users:get", {"name": "ada"}) == {
            "name": "ada",
            "label": "task: ada",
            "prefix": "task: ",
        }
        t.mutation("tasks:finish", {"id": task})
        assert t.query("tasks:by_status", {"status": "done"}) == ["write tests"]
        assert t.query("tasks") == "DEFAULT"
        # Functions loaded from the project are references too.
        assert t.query(t.app.registry.functions["tasks:list"]) == t.query("tasks:list")


def test_internal_functions_are_callable(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        assert t.query(internal.tasks.secret) == "internal only"
        assert t.query("tasks:secret") == "internal only"


def test_errors_are_raised_with_their_data(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        ghost_task = t.mutation("tasks:add", {"title": "x"})
        t.run(lambda ctx: ctx.db.delete(ghost_task))
        with pytest.raises(ConvexError) as info:
            t.mutation("tasks:finish", {"id": ghost_task})
        assert info.value.data == {"code": "NOT_FOUND", "id": ghost_task}


def test_the_schema_is_applied(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        assert t.database.schema is not None
        assert set(t.database.schema.tables) == {"users", "tasks"}
        with pytest.raises(SchemaValidationError):
            t.run(lambda ctx: ctx.db.insert("tasks", {"title": "no status"}))


def test_manual_clock(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        assert isinstance(t.clock, ManualClock)
        start = t.query("tasks:now")
        assert start == t.clock.now_ms() == 1_700_000_000_000.0
        t.clock.advance(60_000)
        assert t.query("tasks:now") == start + 60_000
        task = t.mutation("tasks:add", {"title": "later"})
        created = t.run(lambda ctx: ctx.db.get(task))
        assert created["createdAt"] == start + 60_000
        assert created["_creationTime"] == pytest.approx(start + 60_000, abs=1.0)


def test_own_clock(app_dir: Path) -> None:
    clock = ManualClock(start_ms=5_000.0)
    with TestBackend(app_dir, clock=clock) as t:
        assert t.clock is clock
        assert t.query("tasks:now") == 5_000.0


def test_run_gives_direct_database_access(app_dir: Path) -> None:
    with TestBackend(app_dir) as t:
        user = t.run(lambda ctx: ctx.db.insert("users", {"name": "bob"}))
        assert t.run(lambda ctx: ctx.db.get(user)["name"]) == "bob"
        assert t.query("admin/users:get", {"name": "bob"})["name"] == "bob"
        assert t.run(lambda ctx: ctx.now) == t.clock.now_ms()

        def failing(ctx: Any) -> None:
            ctx.db.insert("users", {"name": "rolled back"})
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            t.run(failing)
        assert t.query("admin/users:get", {"name": "rolled back"}) is None


def test_with_identity(tmp_path: Path) -> None:
    functions = write_functions(tmp_path / "functions", {"who.py": WHO})
    with TestBackend(functions) as t:
        assert t.query("who:me") is None
        alice = t.with_identity({"subject": "alice", "name": "Alice"})
        assert alice.query("who:me") == {
            "token": "https://test.syncline.dev|alice",
            "subject": "alice",
            "name": "Alice",
        }
        defaults = t.with_identity({})
        assert defaults.query("who:me")["token"] == "https://test.syncline.dev|test-user"
        custom = t.with_identity({"issuer": "https://issuer.example.com", "subject": "s1"})
        assert custom.query("who:me")["token"] == "https://issuer.example.com|s1"
        # The original is unchanged; views share the same database.
        assert t.query("who:me") is None
        assert alice.database is t.database
        assert t.as_admin().query("who:me") is None


def test_with_identity_in_run(tmp_path: Path) -> None:
    functions = write_functions(tmp_path / "functions", {"who.py": WHO})
    with TestBackend(functions) as t:
        bob = t.with_identity({"subject": "bob"})
        token = bob.run(lambda ctx: ctx.auth.get_user_identity().token_identifier)
        assert token == "https://test.syncline.dev|bob"
        assert t.run(lambda ctx: ctx.auth.get_user_identity()) is None


def test_backends_are_isolated(app_dir: Path) -> None:
    with TestBackend(app_dir) as first, TestBackend(app_dir) as second:
        first.mutation("tasks:add", {"title": "only in first"})
        assert second.query("tasks:list") == []
        assert first.query("tasks:list") == ["task: only in first"]
        assert first.data_dir != second.data_dir


def test_temporary_data_is_deleted_on_close(app_dir: Path) -> None:
    t = TestBackend(app_dir)
    data_dir = t.data_dir
    assert (data_dir / "test.sqlite3").exists()
    t.mutation("tasks:add", {"title": "x"})
    t.close()
    assert not data_dir.exists()
    with pytest.raises(InternalError, match="closed"):
        t.mutation("tasks:add", {"title": "after close"})
    t.close()  # closing twice is fine


def test_a_given_data_dir_is_kept(app_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "keep"
    with TestBackend(app_dir, data_dir=data_dir) as t:
        t.mutation("tasks:add", {"title": "persisted"})
    assert (data_dir / "test.sqlite3").exists()
    with TestBackend(app_dir, data_dir=data_dir) as again:
        assert again.query("tasks:list") == ["task: persisted"]


def test_without_a_functions_folder(tmp_path: Path) -> None:
    with TestBackend(data_dir=tmp_path / "bare") as t:
        assert t.app.registry.functions == {}
        doc = t.run(lambda ctx: ctx.db.insert("t", {"x": 1}))
        assert t.run(lambda ctx: ctx.db.get(doc)["x"]) == 1.0


def test_a_broken_project_fails_to_open_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    functions = write_functions(tmp_path / "functions", {"bad.py": "def nope(:\n"})
    made: list[str] = []
    import tempfile

    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    with pytest.raises(FunctionDefinitionError, match=r"bad\.py"):
        TestBackend(functions)
    assert made and not Path(made[0]).exists()


def test_test_backend_is_not_collected_by_pytest() -> None:
    assert TestBackend.__test__ is False
