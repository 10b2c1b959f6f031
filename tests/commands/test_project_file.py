"""The project file: syncline.toml or [tool.syncline] holds option defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from syncline.commands.project_file import (
    ProjectFileError,
    ProjectGroup,
    load_project_file,
)
from syncline.commands.serve import dev


def _probe() -> tuple[click.Group, dict[str, Any]]:
    """A group with one command recording the options it was called with."""
    seen: dict[str, Any] = {}

    @click.group(cls=ProjectGroup)
    def group() -> None: ...

    @group.command()
    @click.option("--dir", "project", default=".")
    @click.option("--port", default=3210, type=int)
    @click.option("--url", envvar="SYNCLINE_URL")
    @click.option("--files")
    @click.option("--db")
    @click.option("--out")
    def probe(**options: Any) -> None:
        seen.update(options)

    return group, seen


def test_precedence_is_flag_then_env_then_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCLINE_URL", raising=False)
    group, seen = _probe()
    runner = CliRunner()
    assert runner.invoke(group, ["probe", "--dir", str(tmp_path)]).exit_code == 0
    assert seen["port"] == 3210 and seen["url"] is None
    (tmp_path / "syncline.toml").write_text(
        'port = 4000\nurl = "http://file"\nfiles = "data/files"\n'
        'db = "sqlite:///data/app.db"\ncodegen-out = "web/gen"\n'
    )
    assert runner.invoke(group, ["probe", "--dir", str(tmp_path)]).exit_code == 0
    assert seen["port"] == 4000 and seen["url"] == "http://file"
    # Paths are relative to the file's folder, whatever the working directory.
    assert seen["files"] == str((tmp_path / "data" / "files").resolve())
    assert seen["db"] == f"sqlite:///{(tmp_path / 'data' / 'app.db').resolve()}"
    assert seen["out"] == str((tmp_path / "web" / "gen").resolve())
    monkeypatch.setenv("SYNCLINE_URL", "http://env")
    result = runner.invoke(group, ["probe", f"--dir={tmp_path}", "--port", "5000"])
    assert result.exit_code == 0, result.output
    assert seen["port"] == 5000 and seen["url"] == "http://env"
    result = runner.invoke(group, ["probe", "--dir", str(tmp_path), "--url", "http://flag"])
    assert seen["url"] == "http://flag"


def test_pyproject_tool_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.syncline]\nsite-port = 4001\n'
    )
    assert dict(load_project_file(tmp_path).values) == {"site-port": 4001}
    defaults = load_project_file(tmp_path).defaults_for(dev)
    assert defaults == {"site_port": 4001}
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_project_file(tmp_path).path is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"syncline.toml": "prot = 1\n"},
            "Unknown key `prot` in {dir}/syncline.toml. Did you mean `port`?",
        ),
        (
            {"pyproject.toml": "[tool.syncline]\nbogus = 1\n"},
            "Unknown key `bogus` in [tool.syncline] of {dir}/pyproject.toml.",
        ),
        (
            {"syncline.toml": 'port = "80"\n'},
            "`port` in {dir}/syncline.toml must be a int, got '80'",
        ),
        ({"syncline.toml": "port = \n"}, "{dir}/syncline.toml is not valid TOML"),
        (
            {"syncline.toml": "port = 1\n", "pyproject.toml": "[tool.syncline]\nport = 2\n"},
            "Both {dir}/syncline.toml and [tool.syncline] in {dir}/pyproject.toml",
        ),
    ],
)
def test_bad_project_files_are_clear_errors(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ProjectFileError) as info:
        load_project_file(tmp_path)
    assert message.format(dir=tmp_path) in info.value.message
    group, _ = _probe()
    result = CliRunner().invoke(group, ["probe", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert message.format(dir=tmp_path) in result.output
    # --help still works with a broken file.
    assert CliRunner().invoke(group, ["probe", "--dir", str(tmp_path), "--help"]).exit_code == 0


def test_every_command_takes_its_defaults_from_the_file(tmp_path: Path) -> None:
    """The real CLI: `syncline run` reaches the URL the file names."""
    from syncline.cli import main

    (tmp_path / "syncline.toml").write_text('url = "http://127.0.0.1:9"\n')
    result = CliRunner().invoke(
        main, ["run", "tasks:list", "--dir", str(tmp_path), "--admin-key", "k"]
    )
    assert result.exit_code == 1
    assert "127.0.0.1:9" in result.output
