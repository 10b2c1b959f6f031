"""``syncline init``: the project it writes runs as is (its tests pass, ``syncline dev`` serves it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from syncline._devtools import ServerProcess
from syncline.cli import main
from syncline.commands.init import template_files

EXPECTED = {
    ".gitignore",
    "README.md",
    "functions/crons.py",
    "functions/http.py",
    "functions/schema.py",
    "functions/tasks.py",
    "tests/test_tasks.py",
}


def _init(tmp_path: Path, *args: str) -> tuple[Path, str]:
    target = tmp_path / "myapp"
    result = CliRunner().invoke(main, ["init", str(target), *args])
    assert result.exit_code == 0, result.output
    return target, result.output


def test_init_writes_the_template(tmp_path: Path) -> None:
    project, output = _init(tmp_path)
    written = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert written == EXPECTED
    assert set(template_files()) == EXPECTED
    assert (project / ".gitignore").read_text().splitlines()[1] == ".syncline/"
    assert (project / "README.md").read_text().startswith("# myapp\n")
    assert "syncline dev" in output and "cd " in output


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    (target / "README.md").write_text("my readme")
    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 1
    assert "is not empty" in result.output and "--force" in result.output
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "notes.txt"]

    result = CliRunner().invoke(main, ["init", str(target), "--force"])
    assert result.exit_code == 0, result.output
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "README.md").read_text().startswith("# busy")
    assert (target / "functions" / "tasks.py").is_file()


def test_init_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert "the current folder" in result.output and "cd " not in result.output
    assert (tmp_path / "functions" / "schema.py").is_file()


@pytest.mark.slow
def test_the_new_project_tests_pass(tmp_path: Path) -> None:
    project, _ = _init(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "6 passed" in completed.stdout


@pytest.mark.slow
def test_syncline_dev_serves_the_new_project(tmp_path: Path) -> None:
    project, _ = _init(tmp_path)
    with ServerProcess(project, mode="dev") as server, httpx.Client(timeout=10) as http:
        assert http.get(f"{server.url}/version").status_code == 200
        added = http.post(
            f"{server.url}/api/mutation",
            json={"path": "tasks:add", "args": {"text": "From the test"}, "format": "json"},
        ).json()
        assert added["status"] == "success", added
        listed = http.post(
            f"{server.url}/api/query", json={"path": "tasks:list", "args": {}, "format": "json"}
        ).json()
        assert listed["status"] == "success", listed
        assert [t["text"] for t in listed["value"]] == ["From the test"]
        # The HTTP action of functions/http.py, on the site port.
        site = http.get(f"{server.site_url}/tasks")
        assert site.status_code == 200, site.text
        assert site.json() == [{"id": added["value"], "text": "From the test", "done": False}]
