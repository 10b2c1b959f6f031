"""``syncline run`` on the project's data folder: near-miss paths get a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_functions
from syncline.cli import main


@pytest.mark.parametrize(
    ("typed", "meant"), [("tasks.add", "tasks:add"), ("task:add", "tasks:add")]
)
def test_run_suggests_the_function_meant(tmp_path: Path, typed: str, meant: str) -> None:
    write_functions(
        tmp_path / "functions",
        {
            "tasks.py": """
                from syncline import mutation

                @mutation
                def add(ctx):
                    return 1
            """
        },
    )
    result = CliRunner().invoke(main, ["run", typed, "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"Did you mean `{meant}`?" in result.output
    assert CliRunner().invoke(main, ["run", meant, "--dir", str(tmp_path)]).output.strip() == "1.0"
