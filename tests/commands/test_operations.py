"""The operations options of serve and dev: parsed and bounded at the command line, wired up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import write_functions
from syncline.application import Paths
from syncline.call_log.store import MIN_MAX_BYTES, store_path
from syncline.cli import main
from syncline.commands.operations import open_call_log
from syncline.testing import TestBackend


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--log-max-size", "1KiB"], "must be at least 64KiB"),
        (["--log-max-size", "lots"], "is not a size"),
        (["--log-retention", "0s"], "must be longer than zero"),
        (["--log-retention", "a week"], "is not a duration"),
        (["--log-format", "xml"], "'xml' is not one of 'text', 'json'"),
        (["--metrics-port", "0"], "0 is not in the range"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "dev"])
def test_bad_values_are_refused_before_anything_starts(
    tmp_path: Path, command: str, args: list[str], needle: str
) -> None:
    result = CliRunner().invoke(main, [command, "--dir", str(tmp_path), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert not (tmp_path / ".syncline").exists()


def test_the_call_log_writes_to_the_data_folder_with_the_options(tmp_path: Path) -> None:
    functions = write_functions(tmp_path / "functions", {"tasks.py": "x = 1\n"})
    with TestBackend(functions, data_dir=tmp_path / "data") as backend:
        # As Application.open sets them: the data folder holds the database.
        backend.app.paths = Paths.for_project(tmp_path, data=tmp_path / "data")
        options: dict[str, Any] = {
            "log_max_size": MIN_MAX_BYTES,
            "log_retention": 60_000.0,
            "log_format": "json",
        }
        log = open_call_log(backend.app, options)
        try:
            assert log.store is not None
            assert log.store.path == store_path(backend.app.paths.database_dir)
            assert backend.app.paths.database_dir == (tmp_path / "data").resolve()
            assert (log.store.max_bytes, log.store.max_age_ms) == (MIN_MAX_BYTES, 60_000.0)
        finally:
            log.close()
        backend.app.paths = None
        without = open_call_log(backend.app, {**options, "log_format": "text"})
        assert without.store is None
        without.close()
