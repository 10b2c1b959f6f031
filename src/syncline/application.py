"""The application: one deployment's database, code and runtime, composed.

``Application`` is the single API that the server, the CLI and the test kit
use. It owns the :class:`~syncline.database.database.Database`, the current
:class:`~syncline.functions.loader.FunctionRegistry` (replaced on reload) and
the :class:`~syncline.functions.executor.Executor`.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncline.clock import Clock, SystemClock
from syncline.database.database import Database, SchemaChange
from syncline.errors import InternalError, InvalidRequest
from syncline.functions.executor import Executor, Outcome
from syncline.functions.loader import FunctionRegistry, load_functions
from syncline.identity import ANONYMOUS, Identity

log = logging.getLogger("syncline")

DATA_DIR_NAME = ".syncline"
DEFAULT_DB_FILE = "data.sqlite3"


def sqlite_path_from_url(url: str, *, base: Path) -> Path:
    """``sqlite:///relative.db`` (relative to ``base``) or ``sqlite:////abs/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise InvalidRequest(
            f"Unsupported database URL {url!r}: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db",
            code="InvalidDatabaseUrl",
        )
    rest = url[len(prefix) :]
    if not rest:
        raise InvalidRequest(f"Database URL {url!r} names no file", code="InvalidDatabaseUrl")
    path = Path(rest)
    return path if path.is_absolute() else base / path


class DataDirLock:
    """An exclusive lock on a data directory: one process serves a database at a time.

    SQLite would let two processes write, but each keeps in-memory state (the
    catalog, the last timestamp) that the other would invalidate.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise InternalError(
                f"{data_dir} is in use by another Syncline process (a running server?). "
                "Stop it, or talk to it with --url.",
                code="DataDirLocked",
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Paths:
    project: Path
    functions: Path
    data: Path

    @classmethod
    def for_project(
        cls,
        project: str | Path,
        functions: str | Path | None = None,
        data: str | Path | None = None,
    ) -> Paths:
        project = Path(project).resolve()
        functions_path = Path(functions) if functions else project / "functions"
        data_path = Path(data) if data else project / DATA_DIR_NAME
        return cls(project, functions_path.resolve(), data_path.resolve())


class Application:
    def __init__(
        self,
        database: Database,
        functions_dir: str | Path | None,
        *,
        clock: Clock | None = None,
        dev: bool = True,
    ) -> None:
        self.database = database
        self.clock = clock or database.clock
        self.functions_dir = Path(functions_dir) if functions_dir is not None else None
        self.dev = dev
        self._registry = FunctionRegistry()
        self.executor = Executor(database, lambda: self._registry, clock=self.clock)
        self._lock: DataDirLock | None = None

    @classmethod
    def open(
        cls,
        project: str | Path = ".",
        *,
        functions: str | Path | None = None,
        db: str | None = None,
        clock: Clock | None = None,
        durability: str = "full",
        dev: bool = True,
        load: bool = True,
    ) -> Application:
        paths = Paths.for_project(project, functions)
        if db is None:
            db_path = paths.data / DEFAULT_DB_FILE
        else:
            db_path = sqlite_path_from_url(db, base=Path.cwd())
        lock = DataDirLock(db_path.parent)
        try:
            database = Database.open_sqlite(
                str(db_path), durability=durability, clock=clock or SystemClock()
            )
        except BaseException:
            lock.release()
            raise
        app = cls(database, paths.functions, clock=clock, dev=dev)
        app._lock = lock
        if load:
            try:
                app.load()
            except BaseException:
                app.close()
                raise
        return app

    @property
    def registry(self) -> FunctionRegistry:
        return self._registry

    def load(self) -> SchemaChange | None:
        """(Re)load the functions folder and apply its schema.

        On any error (a module that fails to import, a schema the existing
        data violates) the exception propagates and the previous code and
        schema stay in service.
        """
        if self.functions_dir is None:
            return None
        registry = load_functions(self.functions_dir)
        change = self.database.apply_schema(registry.schema)
        self._registry = registry
        return change

    def set_registry(self, registry: FunctionRegistry) -> SchemaChange:
        change = self.database.apply_schema(registry.schema)
        self._registry = registry
        return change

    # ------------------------------------------------------------------ calls

    async def query(
        self, path: str, args: Any = None, *, identity: Identity = ANONYMOUS
    ) -> Outcome:
        return await self.executor.query(path, args or {}, identity=identity)

    async def mutation(
        self, path: str, args: Any = None, *, identity: Identity = ANONYMOUS
    ) -> Outcome:
        return await self.executor.mutation(path, args or {}, identity=identity)

    def close(self) -> None:
        try:
            self.database.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Application:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
