"""Environment variables: rules and limits, ctx.env in every kind of function,
invalidation of live queries, the admin endpoint, and the ``syncline env`` CLI.

The CLI is run in-process (click's runner) on a data folder, and as a real
command against a real ``syncline serve`` process (``@pytest.mark.slow``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from conftest import MakeBackend, write_functions
from syncline._devtools import ServerProcess
from syncline.application import Application
from syncline.cli import main as cli
from syncline.env_vars import (
    MAX_NAME_LENGTH,
    MAX_VALUE_BYTES,
    MAX_VARIABLES,
    TABLE,
    EnvVarError,
)
from syncline.identity import Admin
from syncline.server.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FUNCTIONS = {
    "conf.py": """
        from syncline import action, internal_query, mutation, query, v

        @query(args={"name": v.string()})
        def read(ctx, name):
            return ctx.env.get(name)

        @query
        def everything(ctx):
            return {"names": sorted(ctx.env), "count": len(ctx.env)}

        @query
        def unrelated(ctx):
            return len(ctx.db.query("notes").collect())

        @query
        def strict(ctx):
            return ctx.env["MUST_EXIST"]

        @query
        def membership(ctx):
            return "FLAG" in ctx.env

        @mutation(args={"name": v.string()})
        def copy_to_note(ctx, name):
            value = ctx.env.get(name, "<unset>")
            ctx.db.insert("notes", {"text": value})
            return value

        @action(args={"name": v.string()})
        async def from_action(ctx, name):
            nested = await ctx.run_query("conf:read", {"name": name})
            return {"direct": ctx.env.get(name), "nested": nested}
    """,
    "http.py": """
        from syncline import HttpRouter

        http = HttpRouter()

        @http.route(path="/env", method="GET")
        async def env(ctx, request):
            return {"value": ctx.env.get(request.query["name"])}
    """,
}


# ---------------------------------------------------------------------- rules and limits


@pytest.fixture
def backend(make_backend: MakeBackend) -> Any:
    return make_backend(FUNCTIONS)


@pytest.mark.parametrize(
    "name", ["A", "openai_key", "X1_2", "a" * MAX_NAME_LENGTH, "CONVEX_SITE_URL"]
)
def test_valid_names(backend: Any, name: str) -> None:
    backend.set_env(name, "v")
    assert backend.query("conf:read", {"name": name}) == "v"


@pytest.mark.parametrize(
    "name", ["", "1ABC", "_X", "A-B", "A B", "é", "A.B", "a" * (MAX_NAME_LENGTH + 1)]
)
def test_invalid_names(backend: Any, name: str) -> None:
    with pytest.raises(EnvVarError) as info:
        backend.set_env(name, "v")
    assert info.value.code == "InvalidEnvVarName"
    assert backend.app.env.list_all() == {}


def test_value_limits(backend: Any) -> None:
    backend.set_env("BIG", "x" * MAX_VALUE_BYTES)
    assert len(backend.query("conf:read", {"name": "BIG"})) == MAX_VALUE_BYTES
    with pytest.raises(EnvVarError, match="limit is 8192 bytes") as info:
        backend.set_env("BIG", "x" * (MAX_VALUE_BYTES + 1))
    assert info.value.code == "EnvVarValueTooLarge"
    # Bytes, not characters: 4097 two-byte characters are too many.
    with pytest.raises(EnvVarError):
        backend.set_env("BIG", "é" * 4097)
    assert len(backend.app.env.list_all()["BIG"]) == MAX_VALUE_BYTES  # unchanged
    with pytest.raises(EnvVarError) as wrong_type:
        backend.app.env.update({"NUM": 3})
    assert wrong_type.value.code == "InvalidEnvVarValue"
    backend.set_env("EMPTY", "")
    assert backend.query("conf:read", {"name": "EMPTY"}) == ""


def test_count_limit_and_atomic_updates(backend: Any) -> None:
    env = backend.app.env
    env.update({f"V{n}": str(n) for n in range(MAX_VARIABLES)})
    with pytest.raises(EnvVarError, match="limit is 512") as info:
        env.update({"ONE_MORE": "x"})
    assert info.value.code == "TooManyEnvVars"
    # Replacing one while adding one keeps the count: allowed, in one commit.
    env.update([("V0", None), ("REPLACEMENT", "r")])
    assert len(env.list_all()) == MAX_VARIABLES
    # A batch with one bad change changes nothing.
    with pytest.raises(EnvVarError):
        env.update([("V1", "changed"), ("bad-name", "x")])
    with pytest.raises(EnvVarError) as duplicate:
        env.update([("V2", "a"), ("V2", "b")])
    assert duplicate.value.code == "DuplicateEnvVar"
    assert env.list_all()["V1"] == "1" and env.list_all()["V2"] == "2"


def test_change_results(backend: Any) -> None:
    env = backend.app.env
    first = env.update([("A", "1"), ("B", "2")])
    assert [(c.name, c.result) for c in first] == [("A", "created"), ("B", "created")]
    second = env.update([("A", "1"), ("B", "3"), ("C", None)])
    assert [c.result for c in second] == ["unchanged", "updated", "absent"]
    third = env.update({"A": None})
    assert [c.result for c in third] == ["removed"]
    assert env.list_all() == {"B": "3"}


def test_variables_are_stored_in_the_private_system_table(backend: Any) -> None:
    backend.set_env("SECRET", "s")
    from syncline.errors import SystemTableError

    with pytest.raises(SystemTableError):
        backend.run(lambda ctx: ctx.db.system.query(TABLE).collect())
    rows = backend.database.run_read(lambda tx: tx.count(TABLE)).value
    assert rows == 1


def test_survive_a_restart(tmp_path: Path) -> None:
    write_functions(tmp_path / "functions", FUNCTIONS)
    with Application.open(tmp_path, durability="off") as app:
        app.env.update({"KEPT": "yes"})
    with Application.open(tmp_path, durability="off") as app:
        outcome = app.executor.query_sync("conf:read", {"name": "KEPT"})
        assert outcome.unwrap() == "yes"


# ---------------------------------------------------------------------- ctx.env


def test_ctx_env_in_every_kind_of_function(backend: Any) -> None:
    backend.set_env("TOKEN", "abc")
    assert backend.query("conf:read", {"name": "TOKEN"}) == "abc"
    assert backend.query("conf:read", {"name": "MISSING"}) is None
    assert backend.mutation("conf:copy_to_note", {"name": "TOKEN"}) == "abc"
    outcome = asyncio.run(backend.app.executor.action("conf:from_action", {"name": "TOKEN"}))
    assert outcome.unwrap() == {"direct": "abc", "nested": "abc"}
    assert backend.fetch("/env?name=TOKEN").json() == {"value": "abc"}


def test_changes_apply_without_restart(backend: Any) -> None:
    backend.set_env("TOKEN", "one")
    run_action = backend.app.executor.action
    assert asyncio.run(run_action("conf:from_action", {"name": "TOKEN"})).value["direct"] == "one"
    backend.set_env("TOKEN", "two")
    assert backend.query("conf:read", {"name": "TOKEN"}) == "two"
    assert asyncio.run(run_action("conf:from_action", {"name": "TOKEN"})).value["direct"] == "two"
    assert backend.fetch("/env?name=TOKEN").json() == {"value": "two"}
    backend.set_env("TOKEN", None)
    assert backend.fetch("/env?name=TOKEN").json() == {"value": None}


def test_mapping_behaviour(backend: Any) -> None:
    backend.set_env("B", "2")
    backend.set_env("A", "1")
    assert backend.query("conf:everything") == {"names": ["A", "B"], "count": 2}
    with pytest.raises(KeyError, match="MUST_EXIST"):
        backend.query("conf:strict")
    backend.set_env("MUST_EXIST", "here")
    assert backend.query("conf:strict") == "here"
    assert backend.query("conf:membership") is False
    backend.set_env("FLAG", "on")
    assert backend.query("conf:membership") is True


def test_env_reads_are_in_the_read_set(backend: Any) -> None:
    executor = backend.app.executor
    reads_token = executor.query_sync("conf:read", {"name": "TOKEN"}).read_set
    reads_all = executor.query_sync("conf:everything", {}).read_set
    reads_nothing = executor.query_sync("conf:unrelated", {}).read_set

    def writes_of(name: str, value: str | None) -> dict[str, list[bytes]]:
        env = backend.app.env
        return backend.database.write_sync(env._apply([(name, value)])).writes.keys

    token = writes_of("TOKEN", "x")
    assert reads_token.overlaps(token) and reads_all.overlaps(token)
    assert not reads_nothing.overlaps(token)
    # A point read: another variable does not touch the query that read TOKEN.
    other = writes_of("OTHER", "y")
    assert not reads_token.overlaps(other) and reads_all.overlaps(other)


class Recorder:
    """A live query subscriber that records every change it is told about."""

    def __init__(self) -> None:
        self.changes: asyncio.Queue[Any] = asyncio.Queue()

    def live_query_changed(self, query: Any) -> None:
        self.changes.put_nowait(query.result)

    def live_query_split(self, query: Any) -> None:
        pass


def test_a_change_reruns_live_queries_that_read_it(backend: Any) -> None:
    app = backend.app
    runs: list[str] = []
    app.executor.observers.append(lambda outcome: runs.append(outcome.path))

    async def next_value(recorder: Recorder) -> Any:
        result = await asyncio.wait_for(recorder.changes.get(), 5)
        return orjson.loads(orjson.dumps(result.value))  # an encoded fragment

    async def main() -> None:
        await app.start()
        try:
            token, unrelated = Recorder(), Recorder()
            app.live.subscribe(token, "conf:read", {"name": "TOKEN"}, identity=Admin())
            app.live.subscribe(unrelated, "conf:unrelated", {}, identity=Admin())
            assert await next_value(token) is None
            assert await next_value(unrelated) == 0
            runs.clear()
            await app.env.aupdate({"TOKEN": "first"})
            assert await next_value(token) == "first"
            await app.env.aupdate({"OTHER": "ignored"})
            await app.env.aupdate({"TOKEN": "second"})
            assert await next_value(token) == "second"
            # Commits are processed in order: once the value of a later commit has
            # arrived, whatever the earlier ones were going to re-run has run.
            await app.env.aupdate({"TOKEN": "third"})
            assert await next_value(token) == "third"
            # Only the query that read TOKEN ran again, once per change of TOKEN.
            assert runs == ["conf:read", "conf:read", "conf:read"]
            assert unrelated.changes.empty() and token.changes.empty()
            # Actions see changes made by any commit to the table (snapshot refreshed).
            await app.database.write(lambda tx: tx.insert(TABLE, {"name": "RAW", "value": "r"}))
            for _ in range(100):
                outcome = await app.executor.action("conf:from_action", {"name": "RAW"})
                if outcome.value["direct"] == "r":
                    break
                await asyncio.sleep(0.01)
            assert outcome.value == {"direct": "r", "nested": "r"}
        finally:
            await app.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------- admin endpoint


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    write_functions(tmp_path / "functions", FUNCTIONS)
    app = Application.open(tmp_path, durability="off")
    try:
        with TestClient(create_app(app)) as client:
            yield client, app.admin_key or ""
    finally:
        app.close()


def test_admin_endpoint(api: tuple[TestClient, str]) -> None:
    client, key = api
    admin = {"Authorization": f"Convex {key}"}
    assert client.get("/api/admin/env", headers=admin).json() == {"variables": []}
    changes = {"changes": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    response = client.post("/api/admin/env", headers=admin, json=changes)
    assert response.status_code == 200
    assert response.json()["changes"] == [
        {"name": "A", "result": "created"},
        {"name": "B", "result": "created"},
    ]
    removal = {"changes": [{"name": "A", "value": None}, {"name": "Z"}]}
    response = client.post("/api/admin/env", headers=admin, json=removal)
    assert [c["result"] for c in response.json()["changes"]] == ["removed", "absent"]
    assert response.json()["variables"] == [{"name": "B", "value": "2"}]
    # The change is live for functions at once.
    query = client.post("/api/query", json={"path": "conf:read", "args": {"name": "B"}})
    assert query.json()["value"] == "2"


def test_admin_endpoint_errors(api: tuple[TestClient, str]) -> None:
    client, key = api
    admin = {"Authorization": f"Convex {key}"}
    assert client.get("/api/admin/env").status_code == 403
    assert client.get("/api/admin/env").json()["code"] == "Forbidden"
    wrong = client.get("/api/admin/env", headers={"Authorization": "Convex wrong-key"})
    assert wrong.status_code == 401
    bad_name = client.post(
        "/api/admin/env", headers=admin, json={"changes": [{"name": "9lives", "value": "x"}]}
    )
    assert bad_name.status_code == 400 and bad_name.json()["code"] == "InvalidEnvVarName"
    shapeless = client.post("/api/admin/env", headers=admin, json={"set": {"A": "1"}})
    assert shapeless.status_code == 400 and shapeless.json()["code"] == "BadEnvChanges"


# ---------------------------------------------------------------------- CLI, local


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_functions(tmp_path / "app" / "functions", FUNCTIONS)
    return tmp_path / "app"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_local(project: Path) -> None:
    where = ["--dir", str(project)]
    assert invoke("env", "list", *where).output == ""
    result = invoke("env", "set", "API_KEY", "sk-123", *where)
    assert result.exit_code == 0 and "Set API_KEY" in result.output
    assert invoke("env", "set", "GREETING=hello there", *where).exit_code == 0
    assert invoke("env", "set", "API_KEY", "sk-123", *where).output.strip() == (
        "API_KEY already has that value"
    )
    assert invoke("env", "list", *where).output == "API_KEY=sk-123\nGREETING=hello there\n"
    assert invoke("env", "get", "GREETING", *where).output == "hello there\n"
    missing = invoke("env", "get", "NOPE", *where)
    assert missing.exit_code == 1 and "'NOPE' is not set" in missing.output
    assert invoke("env", "remove", "API_KEY", *where).output.strip() == "Removed API_KEY"
    assert invoke("env", "remove", "API_KEY", *where).output.strip() == "API_KEY was not set"
    assert invoke("env", "list", *where).output == "GREETING=hello there\n"
    # What the CLI wrote is what functions read.
    with Application.open(project, durability="off") as app:
        assert app.executor.query_sync("conf:read", {"name": "GREETING"}).value == "hello there"


def test_cli_errors(project: Path, tmp_path: Path) -> None:
    where = ["--dir", str(project)]
    bad = invoke("env", "set", "1BAD", "x", *where)
    assert bad.exit_code == 1 and "Invalid environment variable name '1BAD'" in bad.output
    big = invoke("env", "set", "BIG", "x" * (MAX_VALUE_BYTES + 1), *where)
    assert big.exit_code == 1 and "8 KiB" in big.output
    no_value = invoke("env", "set", "ALONE", *where)
    assert no_value.exit_code == 2 and "Give a value" in no_value.output
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    nowhere = invoke("env", "list", "--dir", str(empty_dir))
    assert nowhere.exit_code == 1 and "is not a Syncline project" in nowhere.output
    assert not (empty_dir / ".syncline").exists()
    unreachable = invoke(
        "env", "list", "--url", "http://127.0.0.1:9", "--admin-key", "k", "--dir", str(empty_dir)
    )
    assert unreachable.exit_code == 1 and "Could not reach a Syncline server" in unreachable.output


def test_cli_locked_data_dir_without_a_server_record(project: Path) -> None:
    with Application.open(project, durability="off"):
        result = invoke("env", "list", "--dir", str(project))
    assert result.exit_code == 1
    assert "in use by a running Syncline server" in result.output and "--url" in result.output


@pytest.mark.parametrize("command", ["list", "get", "set", "remove"])
def test_cli_help_has_examples(command: str) -> None:
    result = invoke("env", command, "--help")
    assert (
        result.exit_code == 0 and "Examples:" in result.output and "syncline env" in result.output
    )


# ---------------------------------------------------------------------- CLI, real server


def syncline(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    return subprocess.run(
        [sys.executable, "-m", "syncline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.slow
def test_cli_against_a_running_server(project: Path) -> None:
    from syncline.client import AsyncClient

    with ServerProcess(project) as server:
        # Local mode finds the server that holds the data dir and goes through it.
        result = syncline("env", "set", "MODE", "first", "--dir", str(project))
        assert result.returncode == 0, result.stderr
        listing = syncline("env", "list", "--dir", str(project))
        assert listing.stdout == "MODE=first\n"
        # Explicit --url with the admin key (in-process runs of the CLI: quicker).
        remote = ["--url", server.url, "--admin-key", server.admin_key, "--dir", "/nonexistent"]
        assert invoke("env", "get", "MODE", *remote).output == "first\n"
        wrong_key = invoke("env", "list", "--url", server.url, "--admin-key", "nope")
        assert wrong_key.exit_code == 1 and "admin key" in wrong_key.output.lower()
        bad_name = invoke("env", "set", "9X", "v", *remote)
        assert bad_name.exit_code == 1 and "InvalidEnvVarName" in bad_name.output

        async def main() -> None:
            async with AsyncClient(server.url) as client:
                values = client.subscribe("conf:read", {"name": "MODE"})
                assert await asyncio.wait_for(values.__anext__(), 10) == "first"
                changed = await asyncio.to_thread(syncline, "env", "set", "MODE", "second", *remote)
                assert changed.returncode == 0, changed.stderr
                # The subscription is re-run and pushed without a restart.
                assert await asyncio.wait_for(values.__anext__(), 10) == "second"
                assert await client.action("conf:from_action", {"name": "MODE"}) == {
                    "direct": "second",
                    "nested": "second",
                }
                removed = await asyncio.to_thread(
                    syncline, "env", "remove", "MODE", "--dir", str(project)
                )
                assert removed.stdout.strip() == "Removed MODE"
                assert await asyncio.wait_for(values.__anext__(), 10) is None
                await values.aclose()

        asyncio.run(main())
    # With the server gone the data dir is used directly again.
    assert invoke("env", "set", "AFTER", "stop", "--dir", str(project)).exit_code == 0
    assert invoke("env", "list", "--dir", str(project)).output == "AFTER=stop\n"
