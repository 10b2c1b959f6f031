"""The data folder and what Syncline writes in it are private, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from syncline.application import Application
from syncline.private_paths import private_dir, private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def _chunks() -> AsyncIterator[bytes]:
    yield b"hello"


def test_data_folder_database_key_and_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    (tmp_path / "functions").mkdir()
    with Application.open(tmp_path, durability="off") as app:
        app.env.update([("SECRET", "s3cret")])
        assert app.storage is not None
        asyncio.run(app.storage.blobs.put("kg2example", _chunks()))
        data = tmp_path / ".syncline"
        db = data / "data.sqlite3"
        assert (Path(f"{db}-wal")).exists()
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-writer"), data / "admin_key"]
        folders = [data, data / "files"]
        folders += [p for p in (data / "files").rglob("*") if p.is_dir()]
        files += [p for p in (data / "files").rglob("*") if p.is_file()]
        assert len(folders) >= 3 and len(files) >= 5
        assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files} == {
            str(p.relative_to(tmp_path)): oct(0o600) for p in files
        }
        assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in folders} == {
            str(p.relative_to(tmp_path)): oct(0o700) for p in folders
        }


def test_an_existing_loose_database_is_tightened(tmp_path: Path, loose_umask: None) -> None:
    (tmp_path / "functions").mkdir()
    with Application.open(tmp_path, durability="off"):
        pass
    db = tmp_path / ".syncline" / "data.sqlite3"
    os.chmod(db, 0o644)
    with Application.open(tmp_path, durability="off"):
        assert mode(db) == 0o600


def test_private_dir_makes_missing_parents_private_and_keeps_existing_ones(
    tmp_path: Path, loose_umask: None
) -> None:
    os.chmod(tmp_path, 0o755)
    private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


def test_private_file_creates_or_tightens(tmp_path: Path, loose_umask: None) -> None:
    new = private_file(tmp_path / "new")
    assert mode(new) == 0o600 and new.read_bytes() == b""
    old = tmp_path / "old"
    old.write_text("kept")
    os.chmod(old, 0o664)
    private_file(old)
    assert mode(old) == 0o600 and old.read_text() == "kept"
