"""Where a project's parts are (``Paths``) and the database URL choosing the storage backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_functions
from syncline.application import DATA_DIR_NAME, DEFAULT_DB_FILE, Application, Paths
from syncline.auth.admin_key import ADMIN_KEY_FILE
from syncline.errors import InvalidRequest
from syncline.persistence import open_persistence, sqlite_path_from_url
from syncline.persistence.sqlite import SqlitePersistence


def test_default_paths_keep_everything_in_the_data_folder(tmp_path: Path) -> None:
    paths = Paths.for_project(tmp_path)
    assert paths.data == tmp_path.resolve() / DATA_DIR_NAME
    assert paths.database_file == paths.data / DEFAULT_DB_FILE
    assert paths.database_dir == paths.data
    assert sqlite_path_from_url(paths.database_url, base=Path("/elsewhere")) == paths.database_file


def test_a_db_url_moves_the_database_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = Paths.for_project(tmp_path / "app", db="sqlite:///store/main.db")
    assert paths.database_file == tmp_path.resolve() / "store" / "main.db"
    assert paths.database_dir == tmp_path.resolve() / "store"
    # Stored files stay in the project's data folder.
    assert paths.data == (tmp_path / "app").resolve() / DATA_DIR_NAME


def test_unsupported_database_urls_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="Unsupported database URL") as info:
        open_persistence("mysql://db/app", base=tmp_path)
    assert info.value.code == "InvalidDatabaseUrl"
    with pytest.raises(InvalidRequest, match="names no file"):
        Paths.for_project(tmp_path, db="sqlite:///")


def test_open_persistence_opens_the_file_the_url_names(tmp_path: Path) -> None:
    persistence = open_persistence("sqlite:///sub/x.db", base=tmp_path, durability="off")
    try:
        assert isinstance(persistence, SqlitePersistence)
        assert Path(persistence.path) == tmp_path / "sub" / "x.db"
        assert (tmp_path / "sub" / "x.db").exists()
    finally:
        persistence.close()


def test_open_records_its_paths_and_keeps_the_key_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_functions(tmp_path / "app" / "functions", {"noop.py": "X = 1\n"})
    monkeypatch.chdir(tmp_path)
    with Application.open(tmp_path / "app", db="sqlite:///state/app.db", durability="off") as app:
        assert app.paths is not None
        assert app.paths.database_dir == tmp_path.resolve() / "state"
        assert (app.paths.database_dir / ADMIN_KEY_FILE).read_text().strip() == app.admin_key
        assert (tmp_path / "state" / "app.db").exists()


#: ``PRAGMA synchronous``: 1 = NORMAL, 2 = FULL
_SYNCHRONOUS = {"normal": 1, "full": 2}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, "full"),
        (("--durability", "normal"), {}, "normal"),
        ((), {"SYNCLINE_DURABILITY": "normal"}, "normal"),
        (("--durability", "full"), {"SYNCLINE_DURABILITY": "normal"}, "full"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "dev"])
def test_the_durability_flag_reaches_sqlite(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    args: tuple[str, ...],
    env: dict[str, str],
    expected: str,
) -> None:
    from click.testing import CliRunner

    from syncline.cli import main
    from syncline.errors import InternalError

    write_functions(tmp_path / "functions", {"noop.py": "X = 1\n"})
    seen: list[int] = []
    real_open = Application.open.__func__  # type: ignore[attr-defined]

    def open_then_stop(cls: type[Application], *a: object, **kw: object) -> Application:
        app = real_open(cls, *a, **kw)
        try:
            persistence = app.database.persistence
            assert isinstance(persistence, SqlitePersistence)
            seen.append(persistence._writer.conn.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            app.close()
        raise InternalError("stopped before serving")

    monkeypatch.setattr(Application, "open", classmethod(open_then_stop))
    result = CliRunner().invoke(
        main, [command, "--dir", str(tmp_path), "--port", "0", "--site-port", "0", *args], env=env
    )
    assert "stopped before serving" in result.output, result.output
    assert seen == [_SYNCHRONOUS[expected]]


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from syncline.cli import main

    result = CliRunner().invoke(main, ["serve", "--dir", str(tmp_path), "--durability", "off"])
    assert result.exit_code == 2
    assert "'off' is not one of 'full', 'normal'" in result.output


@pytest.mark.parametrize("command", ["serve", "dev"])
@pytest.mark.parametrize("workers", ["0", "65"])
def test_a_worker_count_outside_1_to_64_is_refused(
    tmp_path: Path, command: str, workers: str
) -> None:
    from click.testing import CliRunner

    from syncline.cli import main

    result = CliRunner().invoke(main, [command, "--dir", str(tmp_path), "--workers", workers])
    assert result.exit_code == 2
    assert f"{workers} is not in the range 1<=x<=64" in result.output
    assert not (tmp_path / ".syncline").exists()  # refused before anything was opened


def test_workers_share_a_data_folder_and_one_of_them_runs_the_scheduler(tmp_path: Path) -> None:
    import asyncio

    write_functions(tmp_path / "functions", {"noop.py": "from syncline import query\n"})
    first = Application.open(tmp_path, worker="worker 0")
    # Workers take no DataDirLock (their parent holds it for them all).
    second = Application.open(tmp_path, worker="worker 1")
    try:
        assert first.leadership is not None and second.leadership is not None

        async def main() -> None:
            await first.start()
            await second.start()
            try:
                assert first.leadership is not None and second.leadership is not None
                assert first.leadership.leading and not second.leadership.leading
                assert first.scheduler.running_jobs == 0
                await first.stop()
                for _ in range(100):  # the other tries every 0.5 s
                    if second.leadership.leading:
                        break
                    await asyncio.sleep(0.05)
                assert second.leadership.leading
            finally:
                await second.stop()

        asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        first.close()
        second.close()
