"""LocalBlobStore beyond the shared contract: its directory layout, a failed rename,
files that are not its own, and how it names itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncline.blobs import LocalBlobStore
from syncline.blobs import local as local_module

from .support import collect, files_under, run, stream


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", read_chunk_size=7, write_buffer_size=10)


def test_layout(store: LocalBlobStore) -> None:
    run(store.put("k1", stream([b"contents"])))
    path = store.path_of("k1")
    assert path.read_bytes() == b"contents"
    assert path.parent.parent == store.root  # ROOT/<shard>/<key>
    assert files_under(store.root) == [str(path.relative_to(store.root))]


def test_keys_spread_over_shard_directories(store: LocalBlobStore) -> None:
    async def scenario() -> None:
        for i in range(20):
            await store.put(f"key{i}", stream([b"x"]))

    run(scenario())
    assert len({p.parent for p in store.root.rglob("key*")}) > 1


def test_failure_at_the_final_rename_leaves_nothing(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        run(store.put("k", stream([b"a" * 50])))
    monkeypatch.undo()
    assert files_under(store.root) == []


def test_incomplete_uploads_are_temp_files(store: LocalBlobStore) -> None:
    shard = store.path_of("k").parent
    shard.mkdir()
    (shard / f"{local_module.TEMP_PREFIX}abc").write_bytes(b"half")
    assert run(collect(store)) == []
    assert run(store.remove_incomplete(3600)) == 0
    assert run(store.remove_incomplete(0)) == 1
    assert files_under(store.root) == []


def test_list_ignores_foreign_files(store: LocalBlobStore) -> None:
    run(store.put("mine", stream([b"1"])))
    (store.root / "README").write_text("not a blob")
    (store.root / "zz").mkdir()
    (store.root / "zz" / "stray").write_text("wrong shard directory name")
    shard = store.path_of("mine").parent
    (shard / "not-in-this-shard-0").write_text("x")
    assert run(collect(store)) == [("mine", 1)]


def test_a_store_reads_as_its_folder_in_messages(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "files")
    assert f"Files: {store}" == f"Files: {(tmp_path / 'files').resolve()}"
    assert repr(store).startswith("LocalBlobStore(")
