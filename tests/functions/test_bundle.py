"""Deploy bundles: packing is deterministic and skips caches; reading is bounded and safe."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from conftest import write_functions
from syncline.errors import SynclineError
from syncline.functions.bundle import (
    MANIFEST,
    MAX_BUNDLE_FILES,
    missing_imports,
    pack,
    read_bundle,
    unpack,
)


def _folder(tmp_path: Path) -> Path:
    folder = write_functions(
        tmp_path / "functions",
        {"tasks.py": "x = 1\n", "lib/util.py": "y = 2\n", "data/words.txt": "a b\n"},
    )
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "tasks.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".env.local").write_text("SECRET=1\n")
    return folder


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_pack_takes_the_folders_files_but_not_caches_or_hidden_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    data = pack(folder)
    bundle = read_bundle(data)
    assert bundle.package == "functions"
    assert sorted(bundle.files) == ["data/words.txt", "lib/util.py", "tasks.py"]
    assert pack(folder) == data  # same files, same bundle, same version
    root = unpack(bundle, tmp_path / "out")
    assert (root / "lib" / "util.py").read_text() == "y = 2\n"
    assert unpack(bundle, tmp_path / "out") == root  # complete: used as it is


@pytest.mark.parametrize(
    "name", ["../evil.py", "/abs.py", "other/x.py", "functions/../../x.py", "functions\\x.py"]
)
def test_entries_outside_the_package_are_refused(name: str) -> None:
    data = _zip({MANIFEST: b'{"format": 1, "package": "functions"}', name: b"x = 1\n"})
    with pytest.raises(SynclineError) as caught:
        read_bundle(data)
    assert caught.value.code == "BadBundle"


def test_not_a_bundle_is_refused() -> None:
    for data in (b"not a zip", _zip({"functions/x.py": b""})):
        with pytest.raises(SynclineError) as caught:
            read_bundle(data)
        assert caught.value.code == "BadBundle"


def test_the_bundle_and_its_unpacked_size_are_bounded(tmp_path: Path) -> None:
    data = pack(write_functions(tmp_path / "functions", {"big.txt": "x" * 50_000}))
    assert len(data) < 1000
    with pytest.raises(SynclineError) as caught:
        read_bundle(data, max_bytes=len(data) - 1)
    assert caught.value.code == "DeployTooLarge"
    with pytest.raises(SynclineError) as caught:
        read_bundle(data, max_bytes=10_000)
    assert caught.value.code == "DeployTooLarge" and "unpacked" in str(caught.value)
    assert read_bundle(data, max_bytes=60_000).files["big.txt"] == b"x" * 50_000


def test_the_number_of_files_is_bounded() -> None:
    entries = {f"functions/m{i}.py": b"" for i in range(MAX_BUNDLE_FILES + 1)}
    data = _zip({MANIFEST: b'{"format": 1, "package": "functions"}', **entries})
    with pytest.raises(SynclineError) as caught:
        read_bundle(data)
    assert caught.value.code == "DeployTooLarge"


def test_missing_imports_skip_the_bundles_own_modules_and_guarded_imports(
    tmp_path: Path,
) -> None:
    folder = write_functions(
        tmp_path / "functions",
        {
            "lib.py": "import json\n",
            "a.py": (
                "import lib\n"
                "from functions import lib as l2\n"
                "from . import lib as l3\n"
                "import syncline_missing_one.sub\n"
                "try:\n"
                "    import syncline_optional\n"
                "except (ImportError, OSError):\n"
                "    pass\n"
                "if TYPE_CHECKING:\n"
                "    import syncline_types_only\n"
                "def f():\n"
                "    from syncline_missing_two import x\n"
            ),
            "broken.py": "def (:\n",
        },
    )
    missing = missing_imports(read_bundle(pack(folder)))
    assert [str(m) for m in missing] == [
        "syncline_missing_one (functions/a.py:4)",
        "syncline_missing_two (functions/a.py:12)",
    ]
