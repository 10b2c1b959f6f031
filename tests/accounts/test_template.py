"""``syncline init --template auth``: the project runs, its tests pass, its page compiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import require_node_package
from syncline.cli import main
from syncline.commands.init import template_files

AUTH_APP = Path(__file__).resolve().parents[1] / "e2e" / "auth_app"


def _init(tmp_path: Path) -> Path:
    target = tmp_path / "notes"
    result = CliRunner().invoke(main, ["init", str(target), "--template", "auth"])
    assert result.exit_code == 0, result.output
    return target


def test_init_writes_the_auth_template(tmp_path: Path) -> None:
    project = _init(tmp_path)
    written = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert written == set(template_files("auth"))
    assert {"functions/auth.py", "web/src/main.jsx", "tests/test_auth.py"} <= written
    assert (project / "README.md").read_text().startswith("# notes\n")
    assert '"@convex-dev/auth": "0.0.95"' in (project / "web" / "package.json").read_text()


@pytest.mark.slow
def test_the_auth_project_tests_pass(tmp_path: Path) -> None:
    project = _init(tmp_path)
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
    assert "3 passed" in completed.stdout


def test_the_auth_page_compiles(tmp_path: Path) -> None:
    """The template's page bundles against the pinned @convex-dev/auth and convex."""
    require_node_package(AUTH_APP, "@convex-dev/auth")
    esbuild = require_node_package(AUTH_APP, "esbuild")
    project = _init(tmp_path)
    completed = subprocess.run(
        [
            str(esbuild.parent / ".bin" / "esbuild"),
            str(project / "web" / "src" / "main.jsx"),
            "--bundle",
            "--format=esm",
            f"--outfile={tmp_path / 'out.js'}",
            "--define:import.meta.env.VITE_CONVEX_URL=undefined",
            "--log-level=warning",
        ],
        env={**os.environ, "NODE_PATH": str(AUTH_APP / "node_modules")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "__convexAuthJWT" in (tmp_path / "out.js").read_text()
