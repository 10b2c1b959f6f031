"""The ``under_test`` fixture: each blob store implementation in turn (see support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncline.blobs import BlobStore

from .support import StoreUnderTest, local_store, s3_store


@pytest.fixture(params=["local", "s3"])
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    if request.param == "local":
        return local_store(tmp_path)
    return s3_store(request.getfixturevalue("s3_files"))


@pytest.fixture
def store(under_test: StoreUnderTest) -> BlobStore:
    return under_test.store
