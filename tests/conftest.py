"""Shared fixtures: a real SQLite database on a temp file, throwaway function projects,
and real ``syncline serve|dev`` processes.

* ``start_server(project, mode="serve", env=None, args=())`` starts
  ``python -m syncline MODE --dir PROJECT --port N --site-port M`` on free ports
  (:mod:`syncline._devtools`, shared with ``bench/``), waits until it serves and
  returns its :class:`~syncline._devtools.ServerProcess`; every server it
  started is stopped when the test ends. Servers log every sync frame
  (``SYNCLINE_TRACE_PROTOCOL=1``; ``SYNCLINE_TEST_TRACE=0`` turns that off).
* When a test fails, the log of every server still running is attached to the
  report (section "syncline server log").
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from s3_moto import MotoS3, moto_session, s3_env
from stores import ENGINE_DATABASE, drop_test_databases, open_store
from syncline._devtools import ServerProcess, launch, running
from syncline.blobs import BlobStore
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.files.service import open_file_storage
from syncline.testing import TestBackend

FIXTURE_PROJECTS = Path(__file__).parent / "fixtures" / "projects"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(tmp_path: Path, clock: ManualClock) -> Iterator[Database]:
    """An empty database on SQLite, or PostgreSQL with ``SYNCLINE_TEST_DATABASE=postgres``."""
    database = Database(open_store(tmp_path / "db.sqlite3"), clock=clock)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(autouse=ENGINE_DATABASE == "postgres")
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases a test's stores were made in (``stores.py``)."""
    yield
    drop_test_databases()


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


# ----------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server for the session (tests/s3_moto.py)."""
    yield from moto_session()


@pytest.fixture
def s3_files(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``--files`` URL on a new bucket of the moto server, with test credentials set."""
    s3_env(monkeypatch)
    return moto_s3.url(moto_s3.new_bucket())


@pytest.fixture(params=["local", "s3"])
def files_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a file storage test keeps its blobs: a folder, then a bucket on moto."""
    if request.param == "local":
        return str(tmp_path / "files")
    location: str = request.getfixturevalue("s3_files")
    return location


def sub_location(location: str, name: str) -> str:
    """A store next to ``location``, named ``name`` (another folder, or another prefix)."""
    if "://" not in location:
        return str(Path(location) / name)
    parts = urlsplit(location)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def use_files(t: TestBackend, location: str) -> TestBackend:
    """``t`` with its blobs at ``location`` (see ``files_location``)."""
    t.app.use_storage(
        open_file_storage(
            location,
            database=t.database,
            secret_dir=t.data_dir,
            clock=t.clock,
            origin=lambda: t.app.public_url,
        )
    )
    return t


def blob_keys(store: BlobStore) -> list[str]:
    """The keys ``store`` lists, sorted (from a thread without a running event loop)."""

    async def keys() -> list[str]:
        return sorted([entry.key async for entry in store.list()])

    return asyncio.run(keys())


# ----------------------------------------------------------------------------- real servers


def trace_env() -> dict[str, str]:
    """The environment that makes a test server log every sync frame (unless turned off)."""
    if os.environ.get("SYNCLINE_TEST_TRACE", "1") == "0":
        return {}
    return {"SYNCLINE_TRACE_PROTOCOL": "1"}


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """``start_server(project, mode="serve"|"dev", env=None, args=()) -> ServerProcess``."""
    started: list[ServerProcess] = []

    def start(
        project: Path,
        *,
        mode: str = "serve",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> ServerProcess:
        server = launch(project, mode=mode, env={**trace_env(), **(env or {})}, args=args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


_LOG_MARKS = pytest.StashKey[dict[int, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_MARKS] = {id(s): s.log_size() for s in running()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        marks = item.stash.get(_LOG_MARKS, {})
        for server in running():
            text = server.log(since=marks.get(id(server), 0))
            lines = text.splitlines()
            if len(lines) > 400:
                text = "\n".join(["[... earlier lines cut ...]", *lines[-400:]])
            report.sections.append(
                (f"syncline server log ({server.mode} {server.url}, during this test)", text)
            )
    return report
