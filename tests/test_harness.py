"""The test harness itself: CI turns a missing requirement into a failure; ports are distinct."""

from __future__ import annotations

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
