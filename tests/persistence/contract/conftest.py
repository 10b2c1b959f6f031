"""The backend fixture: every contract test runs once per selected backend.

Select backends with ``SYNCLINE_CONTRACT_BACKENDS=sqlite,postgresql`` (default:
every entry of :data:`~.backends.BACKENDS`), or among those with a marker
named after the backend: ``pytest tests/persistence/contract -m sqlite``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncline.persistence.base import Durability, Persistence

from .backends import BACKENDS, Opener
from .support import provision


def _selected() -> list[str]:
    raw = os.environ.get("SYNCLINE_CONTRACT_BACKENDS", "")
    names = [n.strip() for n in raw.split(",") if n.strip()] or list(BACKENDS)
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"SYNCLINE_CONTRACT_BACKENDS names unknown backends {unknown}; "
            f"expected some of {sorted(BACKENDS)}"
        )
    return names


def pytest_configure(config: pytest.Config) -> None:
    for name in BACKENDS:
        config.addinivalue_line("markers", f"{name}: a persistence contract test on {name}")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked here, not in the fixture's params: this conftest is imported before
    # its pytest_configure has registered the markers (and --strict-markers checks).
    here = Path(__file__).parent
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and "backend" in params.params and here in item.path.parents:
            item.add_marker(params.params["backend"])


@pytest.fixture(params=[pytest.param(n, id=n) for n in _selected()])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens another handle on this test's one fresh store; all are closed at the end."""
    opened: list[Persistence] = []
    with provision(backend, tmp_path) as opener:

        def tracked(*, durability: Durability = "off") -> Persistence:
            store = opener(durability=durability)
            opened.append(store)
            return store

        try:
            yield tracked
        finally:
            for store in opened:
                store.close()


@pytest.fixture
def store(open_store: Opener) -> Persistence:
    return open_store()
