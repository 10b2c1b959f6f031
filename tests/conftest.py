"""Shared fixtures: a real SQLite database on a temp file, and throwaway function projects."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.testing import TestBackend

FIXTURE_PROJECTS = Path(__file__).parent / "fixtures" / "projects"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(tmp_path: Path, clock: ManualClock) -> Iterator[Database]:
    database = Database(
        SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"), clock=clock
    )
    try:
        yield database
    finally:
        database.close()


def write_functions(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``{relative path: source}`` below ``root`` (dedented); return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return root


MakeBackend = Callable[..., TestBackend]


@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[MakeBackend]:
    """``make_backend({"tasks.py": "..."})``: a TestBackend on a fresh ``functions`` folder.

    Every backend made is closed after the test.
    """
    made: list[TestBackend] = []
    counter = 0

    def make(files: Mapping[str, str], *, clock: ManualClock | None = None) -> TestBackend:
        nonlocal counter
        counter += 1
        functions = write_functions(tmp_path / f"project{counter}" / "functions", files)
        backend = TestBackend(functions, clock=clock, data_dir=tmp_path / f"data{counter}")
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def fixture_project() -> Callable[[str], Path]:
    """The ``functions`` folder of a project under ``tests/fixtures/projects``."""

    def get(name: str) -> Path:
        path = FIXTURE_PROJECTS / name / "functions"
        assert path.is_dir(), path
        return path

    return get
