"""``syncline rotate-auth-keys`` on a project whose server is not running."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from syncline.accounts.keys import KeyStore
from syncline.application import Application
from syncline.cli import main


def _keys(project: Path) -> KeyStore:
    app = Application.open(project, load=False)
    try:
        return KeyStore.open(app.database, 0)
    finally:
        app.close()


def test_rotate_retires_the_key_and_keeps_it(tmp_path: Path) -> None:
    old = _keys(tmp_path).signing_key.kid
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    store = _keys(tmp_path)
    assert store.signing_key.kid != old
    assert store.signing_key.kid in result.output
    assert [k.kid for k in store.keys] == [old, store.signing_key.kid]
    assert store.keys[0].retired_ms is not None and store.keys[1].retired_ms is None


def test_rotate_with_no_keep_drops_the_old_key(tmp_path: Path) -> None:
    old = _keys(tmp_path).signing_key.kid
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path), "--keep", "0"])
    assert result.exit_code == 0, result.output
    assert old not in [k.kid for k in _keys(tmp_path).keys]


def test_unreadable_legacy_keys_fail_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / ".syncline" / "auth_keys"
    folder.mkdir(parents=True)
    (folder / "keys.json").write_text("{broken")
    result = CliRunner().invoke(main, ["rotate-auth-keys", "--dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "unreadable" in result.output
