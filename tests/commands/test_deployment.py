"""Which deployment a command talks to: ``find_server``, shared by run, data, logs and env."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_functions
from syncline.application import Application
from syncline.cli import main
from syncline.commands.deployment import Remote, data_dir_for, find_server
from syncline.server import discovery


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_functions(tmp_path / "app" / "functions", {"noop.py": "X = 1\n"})
    return tmp_path / "app"


def _fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    with pytest.raises(SystemExit) as exit_info:
        find_server(*args)  # type: ignore[arg-type]
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def test_no_server_means_the_data_folder(project: Path) -> None:
    assert find_server(project, None, None, None) is None
    with Application.open(project, durability="off"):
        pass  # created the data folder and its lock file; released again
    assert find_server(project, None, None, None) is None


def test_the_server_holding_the_folder_at_its_recorded_url(project: Path) -> None:
    with Application.open(project, durability="off") as app:
        data_dir = data_dir_for(project, None)
        discovery.write(data_dir, url="http://127.0.0.1:4321/", site_url=None)
        try:
            remote = find_server(project, None, None, None)
            # --admin-key wins over the stored key.
            with_key = find_server(project, None, None, "other")
        finally:
            discovery.remove(data_dir)
    assert remote == Remote("http://127.0.0.1:4321", app.admin_key or "")
    assert with_key == Remote("http://127.0.0.1:4321", "other")


def test_a_server_without_a_record_must_be_named(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Application.open(project, durability="off"):
        message = _fails(capsys, project, None, None, None)
    assert "in use by a running Syncline server" in message and "--url" in message


def test_url_needs_a_key_and_a_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = _fails(capsys, tmp_path, None, "http://127.0.0.1:9", None)
    assert "No admin key for http://127.0.0.1:9" in message and "--admin-key" in message
    message = _fails(capsys, tmp_path, None, "127.0.0.1:9", "key")
    assert "http:// or https://" in message
    assert find_server(tmp_path, None, "https://x.example/", "k") == Remote(
        "https://x.example", "k"
    )


@pytest.mark.parametrize("command", [["data"], ["env", "list"], ["run", "noop:x"]])
def test_every_command_finds_the_server_alike(project: Path, command: list[str]) -> None:
    unset: dict[str, str | None] = {"SYNCLINE_URL": None, "SYNCLINE_ADMIN_KEY": None}
    with Application.open(project, durability="off"):
        result = CliRunner(env=unset).invoke(main, [*command, "--dir", str(project)])
    assert result.exit_code == 1
    assert "did not record its address" in result.output and "--url" in result.output
