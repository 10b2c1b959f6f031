"""``POST /api/admin/deploy``: checks before the switch, dry runs, refusals that change
nothing, the stored bundle after a restart and in another process on the same database."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import write_functions
from deploy_projects import V1, V2, VIOLATING
from syncline.application import Application
from syncline.functions.bundle import pack, stored_description
from syncline.schema import Schema
from syncline.server.deploy import DEPLOY_PATH, Deployer, schema_diff

from .conftest import ADMIN_KEY, MakeServer


def _bundle(tmp_path: Path, files: Mapping[str, str], name: str = "next") -> bytes:
    return pack(write_functions(tmp_path / name / "functions", files))


def _post(server: Any, data: bytes, *, dry_run: bool = False, key: str = ADMIN_KEY) -> Any:
    return server.client.post(
        DEPLOY_PATH + ("?dryRun=true" if dry_run else ""),
        content=data,
        headers={"Authorization": f"Convex {key}", "Content-Type": "application/zip"},
    )


def _query(server: Any, path: str) -> Any:
    answer = server.client.post("/api/query", json={"path": path, "args": {}}).json()
    assert answer["status"] == "success", answer
    return answer["value"]


def _add(server: Any, title: str) -> None:
    answer = server.client.post(
        "/api/mutation", json={"path": "tasks:add", "args": {"title": title}}
    ).json()
    assert answer["status"] == "success", answer


def test_a_deploy_switches_code_schema_and_indexes(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(V1)
    _add(server, "a")
    ws = server.ws()
    ws.connect()
    ws.add(0, "tasks:list")
    ws.transition()
    assert ws.state.value(0) == ["v1:a"]
    response = _post(server, _bundle(tmp_path, V2))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["diff"]["fields"] == {"tasks": {"added": ["done"], "removed": [], "changed": []}}
    assert answer["diff"]["indexes"]["added"] == ["tasks.by_title (title)"]
    assert answer["diff"]["functions"]["added"] == ["tasks:open"]
    # The subscription stays and re-runs on the new code.
    ws.until(lambda m: m["type"] == "Transition" and ws.state.value(0) == ["v2:a"])
    assert _query(server, "tasks:open") == 1  # the new index was built for the stored document
    assert stored_description(server.app.database) is not None


def test_a_dry_run_prints_the_diff_and_changes_nothing(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(V1)
    _add(server, "a")
    served = sys.modules["functions.tasks"]
    answer = _post(server, _bundle(tmp_path, V2), dry_run=True).json()
    assert answer["dryRun"] is True and answer["problems"] == []
    assert answer["diff"]["indexes"]["added"] == ["tasks.by_title (title)"]
    assert _query(server, "tasks:list") == ["v1:a"]
    assert stored_description(server.app.database) is None
    assert "tasks" in server.app.database.schema.tables
    assert server.app.database.schema.validator_for("tasks").to_json()["value"].keys() == {"title"}
    assert sys.modules["functions.tasks"] is served  # the serving code's modules are back

    violating = _post(server, _bundle(tmp_path, VIOLATING, "bad"), dry_run=True).json()
    assert len(violating["problems"]) == 1
    assert "missing the required field `done`" in violating["problems"][0]


def test_a_schema_the_data_violates_is_refused_and_nothing_changes(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(V1)
    _add(server, "a")
    before = server.app.database.schema
    response = _post(server, _bundle(tmp_path, VIOLATING))
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidSchema"
    assert "missing the required field `done`" in response.json()["message"]
    assert _query(server, "tasks:list") == ["v1:a"]
    assert server.app.database.schema == before
    assert "by_title" not in server.app.database.catalog.table("tasks").indexes
    assert stored_description(server.app.database) is None
    assert list(server.app.deployments_dir.iterdir()) == []


def test_missing_imports_are_named_and_refused_before_any_code_runs(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(V1)
    files = {
        **V2,
        "ml.py": """
            import os
            from typing import TYPE_CHECKING
            import syncline_no_such_module.sub
            from .tasks import list
            from functions import tasks

            try:
                import syncline_optional_module
            except ImportError:
                syncline_optional_module = None
            if TYPE_CHECKING:
                import syncline_typing_only_module
            raise RuntimeError("imported")
        """,
    }
    response = _post(server, _bundle(tmp_path, files))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "MissingImports"
    assert "syncline_no_such_module (functions/ml.py:3)" in body["message"]
    assert "optional" not in body["message"] and "typing_only" not in body["message"]
    assert _query(server, "tasks:list") == []
    assert stored_description(server.app.database) is None


def test_a_module_that_fails_to_import_is_refused(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(V1)
    response = _post(server, _bundle(tmp_path, {**V2, "broken.py": "raise ValueError('no')\n"}))
    assert response.status_code == 400
    assert response.json()["code"] == "FunctionDefinitionError"
    assert "functions/broken.py" in response.json()["message"]
    assert _query(server, "tasks:list") == []


def test_the_bundle_size_is_bounded(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(V1)
    deployer = Deployer(server.app, max_bytes=4096)
    big = _bundle(tmp_path, {**V2, "data.txt": "x" * 100_000})  # compresses well below 4 KiB
    with pytest.raises(Exception) as caught:
        deployer.deploy(big)
    assert getattr(caught.value, "code", None) == "DeployTooLarge"
    assert "unpacked" in str(caught.value)
    random_bytes = _bundle(tmp_path, {**V2, "data.bin": ""}, "rnd")
    assert len(random_bytes) < 4096
    deployer.deploy(random_bytes)  # within the limit: deployed
    # Over HTTP: the declared length is refused before the body is read.
    response = _post(server, b"x" * (33 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["code"] == "DeployTooLarge"


def test_a_dev_server_refuses_deploys(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(V1)
    server.app.use_deployed = False  # as `syncline dev` opens it
    response = _post(server, _bundle(tmp_path, V2))
    assert response.status_code == 400
    assert response.json()["code"] == "DeployToDevServer"
    assert _query(server, "tasks:list") == []


def test_deploy_needs_the_admin_key(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(V1)
    response = _post(server, _bundle(tmp_path, V2), key="wrong")
    assert response.status_code == 401
    assert _query(server, "tasks:list") == []


def test_the_deployed_bundle_survives_a_restart_and_reaches_other_processes(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    write_functions(project / "functions", V1)
    app = Application.open(project, dev=False)
    # Another process on the same database (a worker of `serve --workers 2`).
    other = Application.open(project, dev=False, worker="worker 2")
    try:
        app.database.write_sync(lambda tx: tx.insert("tasks", {"title": "a"}))
        Deployer(app).deploy(_bundle(tmp_path, V2))
        assert Deployer(other).follow() is True
        assert "tasks:open" in other.registry.functions
        assert Deployer(other).follow() is False  # nothing newer
    finally:
        other.close()
        app.close()
    # The folder still holds V1; the stored bundle wins.
    restarted = Application.open(project, dev=False)
    try:
        assert "tasks:open" in restarted.registry.functions
        assert restarted.deployment is not None
    finally:
        restarted.close()
    # `syncline dev` serves its folder.
    dev = Application.open(project, dev=True, use_deployed=False)
    try:
        assert "tasks:open" not in dev.registry.functions
    finally:
        dev.close()


def define_schema_from_source(source: str) -> Schema:
    from syncline import define_schema, define_table, v

    namespace: dict[str, Any] = {
        "define_schema": define_schema,
        "define_table": define_table,
        "v": v,
    }
    exec(textwrap.dedent(source), namespace)
    schema: Schema = namespace["schema"]
    return schema


def test_schema_diff_names_tables_fields_validators_and_indexes() -> None:
    old = define_schema_from_source(
        """
        schema = define_schema({
            "a": define_table({"x": v.string(), "y": v.number()}).index("by_x", ["x"]),
            "gone": define_table({"z": v.string()}),
            "u": define_table(v.union(v.object({"k": v.string()}), v.object({"j": v.number()}))),
        })
        """
    )
    new = define_schema_from_source(
        """
        schema = define_schema({
            "a": define_table({"x": v.number(), "w": v.string()}).index("by_x", ["x", "w"]),
            "b": define_table({"t": v.string()}).search_index("s", search_field="t"),
            "u": define_table(v.union(v.object({"k": v.string()}), v.object({"j": v.string()}))),
        })
        """
    )
    diff = schema_diff(old, new)
    assert diff["tables"] == {"added": ["b"], "removed": ["gone"]}
    assert diff["fields"] == {"a": {"added": ["w"], "removed": ["y"], "changed": ["x"]}}
    assert diff["validators"] == ["u"]
    assert diff["indexes"] == {
        "added": ["a.by_x (x, w)", "b.s search (t)"],
        "removed": ["a.by_x (x)"],
    }
    assert schema_diff(None, None)["indexes"] == {"added": [], "removed": []}
