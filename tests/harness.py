"""Test requirements that are optional on a laptop and mandatory in CI.

The official clients (npm ``convex``, PyPI ``convex``), TypeScript and Chromium
are what prove wire compatibility. Locally a test that needs a missing one is
skipped, with the command that installs it; with ``CI=true`` in the
environment it **fails** instead, so a green CI run means these tests ran.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_or_skip(reason: str) -> NoReturn:
    """Skip with ``reason``; under ``CI=true`` fail with it instead."""
    if in_ci():
        pytest.fail(f"required in CI (CI=true), but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, install: str) -> ModuleType:
    """Import ``name``, or skip (fail in CI) saying how to ``install`` it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        require_or_skip(f"`{name}` cannot be imported ({exc}): {install}")


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        require_or_skip("`node` is not on PATH (Node 18+ is needed)")
    return node


def require_node_package(folder: Path, package: str) -> Path:
    """``folder/node_modules/package`` (and node itself), or skip (fail in CI)."""
    require_node()
    path = folder / "node_modules" / package
    if not (path / "package.json").is_file():
        require_or_skip(
            f"npm {package} is not installed: run `npm ci` in {_shown(folder)} (.ci/run does)"
        )
    return path


def require_file(path: Path, install: str) -> Path:
    if not path.is_file():
        require_or_skip(f"{_shown(path)} is missing: {install}")
    return path


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path
