"""``syncline rotate-auth-keys``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from syncline.accounts.keys import KEY_DIR_NAME, KeyStore
from syncline.cli import main


def test_rotate_retires_the_key_and_keeps_it(tmp_path: Path) -> None:
    folder = tmp_path / ".syncline" / KEY_DIR_NAME
    old = KeyStore.open(folder, 0).signing_key.kid
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    store = KeyStore.open(folder, 0)
    assert store.signing_key.kid != old
    assert store.signing_key.kid in result.output
    index = json.loads((folder / "keys.json").read_text())["keys"]
    assert [k["kid"] for k in index] == [old, store.signing_key.kid]
    assert index[0]["retiredMs"] is not None and index[1]["retiredMs"] is None


def test_rotate_with_no_keep_drops_the_old_key(tmp_path: Path) -> None:
    folder = tmp_path / ".syncline" / KEY_DIR_NAME
    old = KeyStore.open(folder, 0).signing_key.kid
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path), "--keep", "0"])
    assert result.exit_code == 0, result.output
    assert [k.kid for k in KeyStore.open(folder, 0).keys] != [old]
    assert not (folder / f"{old}.pem").exists()


def test_unreadable_keys_fail_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / ".syncline" / KEY_DIR_NAME
    folder.mkdir(parents=True)
    (folder / "keys.json").write_text("{broken")
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "unreadable" in result.output
