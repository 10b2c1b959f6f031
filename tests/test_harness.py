"""The test harness itself: CI turns a missing requirement into a failure; ports are distinct."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import in_ci, require_module, require_node_package, require_or_skip
from syncline._devtools import free_ports, server_env


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_a_missing_requirement_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match=r"required in CI .*but chromium is missing"):
        require_or_skip("chromium is missing")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_requirement_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="chromium is missing"):
        require_or_skip("chromium is missing")


def test_requirements_name_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no_such_module.*pip install nothing"):
        require_module("no_such_module", "pip install nothing")
    with pytest.raises(pytest.fail.Exception, match="npm left-pad is not installed"):
        require_node_package(tmp_path, "left-pad")
    assert require_module("json", "-").dumps([]) == "[]"


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(1024 <= p < 65536 for p in ports)


def test_servers_do_not_inherit_syncline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCLINE_ADMIN_KEY", "from the shell")
    env = server_env({"SYNCLINE_TRACE_PROTOCOL": "1"})
    assert "SYNCLINE_ADMIN_KEY" not in env
    assert env["SYNCLINE_TRACE_PROTOCOL"] == "1" and env["PYTHONUNBUFFERED"] == "1"


HANGS_FROM_THE_THIRD_EXAMPLE = """
import asyncio

from hypothesis import given, settings, strategies as st

calls = []


@settings(max_examples=50, deadline=None)
@given(st.integers())
def test_hangs(x):
    calls.append(x)
    if len(calls) >= 3:  # and in every replay after it
        loop = asyncio.new_event_loop()
        loop.run_until_complete(loop.create_future())
"""


def test_a_hang_in_a_hypothesis_test_ends_the_run_with_every_stack(tmp_path: Path) -> None:
    # With the project's pytest configuration a hang cannot eat CI's time.
    (tmp_path / "test_hang.py").write_text(textwrap.dedent(HANGS_FROM_THE_THIRD_EXAMPLE))
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(pyproject)]
    command += ["--rootdir", str(tmp_path), "--timeout", "2", "test_hang.py"]
    try:
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the hang was not ended by the timeout:\n{exc.stdout}") from None
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "Timeout" in output, output
    assert "Stack of MainThread" in output, output
