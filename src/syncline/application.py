"""The application: one deployment's database, code and runtime, composed.

``Application`` is the single API that the server, the CLI and the test kit
use. It owns the :class:`~syncline.database.database.Database`, the current
:class:`~syncline.functions.loader.FunctionRegistry` (replaced on reload) and
the :class:`~syncline.functions.executor.Executor`.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from syncline.auth.admin_key import load_or_create_admin_key
from syncline.auth.credentials import (
    AuthHeaderKind,
    identity_from_credentials,
    parse_authorization_header,
)
from syncline.auth.providers import parse_providers
from syncline.auth.verifier import AuthVerifier
from syncline.clock import Clock, SystemClock
from syncline.database.database import Database, SchemaChange
from syncline.database.transaction import RequestKey
from syncline.env_vars import EnvironmentVariables
from syncline.errors import AuthError, FunctionDefinitionError, InternalError, SynclineError
from syncline.files.ctx_storage import install_ctx_storage
from syncline.files.service import FILES_DIR_NAME, FileStorage, open_file_storage
from syncline.functions.bundle import (
    Deployment,
    materialize,
    stored_deployment,
    stored_description,
)
from syncline.functions.executor import Executor
from syncline.functions.limits import ExecutionLimits
from syncline.functions.loader import FunctionRegistry, load_functions
from syncline.functions.outcomes import Outcome
from syncline.identity import ANONYMOUS, Admin, Identity, User
from syncline.live_queries import LiveQueryManager
from syncline.persistence import is_postgres_url, open_persistence, sqlite_path_from_url
from syncline.persistence.base import Durability, Persistence
from syncline.private_paths import private_dir
from syncline.scheduling.cron_runner import CronRunner
from syncline.scheduling.job_runner import ScheduledJobExecutor
from syncline.scheduling.leadership import (
    SCHEDULER_LOCK_FILE,
    FileLease,
    SchedulerLeadership,
)
from syncline.values.json import to_json
from syncline.vectors import VectorSearch, VectorSettings

if TYPE_CHECKING:
    from syncline.accounts.issuer import TokenIssuer

log = logging.getLogger("syncline")

# The tokenType of a sync Authenticate message -> the kind of credentials it carries.
_TOKEN_TYPE_KINDS: dict[str, AuthHeaderKind] = {"User": "bearer", "Admin": "admin", "None": "none"}


def call_fingerprint(path: str, args: Any, identity: Identity) -> bytes:
    """A digest of one call: the function path, the arguments and the caller.

    The caller counts by who it is, not by its token: a user's refreshed token
    (same ``tokenIdentifier``) still makes the same call.
    """
    caller: list[Any]
    if isinstance(identity, User):
        caller = ["user", identity.user.token_identifier]
    elif isinstance(identity, Admin):
        acting_as = identity.acting_as
        caller = ["admin", None if acting_as is None else acting_as.token_identifier]
    else:
        caller = [type(identity).__name__]
    try:
        encoded_args = to_json(args)
    except SynclineError:
        encoded_args = repr(args)  # not a value: the call fails, and nothing is recorded
    payload = orjson.dumps([path, encoded_args, caller], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).digest()


DATA_DIR_NAME = ".syncline"
DEFAULT_DB_FILE = "data.sqlite3"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:3210"
DEFAULT_SITE_URL = "http://127.0.0.1:3211"


class DataDirLock:
    """An exclusive lock on a data directory: one process serves a database at a time.

    With ``serve --workers N`` the parent holds it for all of its workers
    (which open the database with ``Application.open(worker=...)``): other
    commands still find the folder in use and talk to the server over HTTP.
    """

    def __init__(self, data_dir: Path) -> None:
        private_dir(data_dir)
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
    """Where a project's parts are.

    ``data`` (``PROJECT/.syncline``) holds the stored files and, by default, the
    database. The folder of the database file, :attr:`database_dir`, holds what
    belongs to the database: the lock, the admin key, the server record.
    """

    project: Path
    functions: Path
    data: Path
    #: the database URL: ``--db``, else the SQLite file in ``data``
    database_url: str
    #: the SQLite file (None: the database is a PostgreSQL server's)
    database_file: Path | None

    @classmethod
    def for_project(
        cls,
        project: str | Path,
        functions: str | Path | None = None,
        data: str | Path | None = None,
        *,
        db: str | None = None,
    ) -> Paths:
        """The paths of ``project``; a relative ``db`` URL is relative to the working directory."""
        project = Path(project).resolve()
        functions_path = Path(functions) if functions else project / "functions"
        data_path = (Path(data) if data else project / DATA_DIR_NAME).resolve()
        database_file: Path | None
        if db is None:
            database_file = data_path / DEFAULT_DB_FILE
            db = f"sqlite:///{database_file}"
        elif is_postgres_url(db):
            database_file = None
        else:
            database_file = sqlite_path_from_url(db, base=Path.cwd()).resolve()
        return cls(project, functions_path.resolve(), data_path, db, database_file)

    @property
    def database_dir(self) -> Path:
        """The folder of the database: its lock, admin key and server record (the data
        folder when the database is PostgreSQL's)."""
        return self.data if self.database_file is None else self.database_file.parent


def _deployment_admin_key(persistence: Persistence, data_dir: Path) -> str:
    """The admin key: the data folder's, or (on a store several nodes share) the store's.

    On a shared store the first node's key is stored there and every other node
    writes it to its own data folder (for the CLI); a folder holding another key
    is refused rather than silently serving two keys.
    """
    shared = persistence.shared_secret("admin_key", lambda: load_or_create_admin_key(data_dir))
    if shared is None:
        return load_or_create_admin_key(data_dir)
    local = load_or_create_admin_key(data_dir, new_key=shared)
    if local != shared:
        raise InternalError(
            f"The admin key in {data_dir} is not the deployment's (the one stored in the "
            "database, shared by every node): delete that admin_key file to have the "
            "deployment's written there"
        )
    return shared


class Application:
    def __init__(
        self,
        database: Database,
        functions_dir: str | Path | None,
        *,
        clock: Clock | None = None,
        dev: bool = True,
        admin_key: str | None = None,
        limits: ExecutionLimits | None = None,
        vectors: VectorSettings | None = None,
    ) -> None:
        self.database = database
        self.clock = clock or database.clock
        self.functions_dir = Path(functions_dir) if functions_dir is not None else None
        self.dev = dev
        #: the deployment's admin key (None: admin access is disabled)
        self.admin_key = admin_key
        self._registry = FunctionRegistry()
        self.executor = Executor(database, lambda: self._registry, clock=self.clock, limits=limits)
        self.live = LiveQueryManager(database, self.executor, dev=dev)
        #: scheduled functions (``ctx.scheduler``, ``_scheduled_functions``) and cron jobs
        self.scheduler = ScheduledJobExecutor(
            database, self.executor, lambda: self._registry, clock=self.clock
        )
        self.crons = CronRunner(self.scheduler.jobs)
        #: environment variables (``ctx.env``; ``syncline env``)
        self.env = EnvironmentVariables(database)
        self.executor.register_ctx_member("env", self.env.ctx_member)
        #: vector indexes (``ctx.vector_search`` in actions)
        self.vectors = VectorSearch(database, vectors)
        self.vectors.install(self.executor)
        self._providers: tuple[Any, ...] = ()
        self._configured_providers: tuple[Any, ...] = ()
        #: built-in auth's token issuer (created when the functions use convex_auth)
        self.issuer: TokenIssuer | None = None
        #: the event loop of a started application (None before start() and after stop())
        self._running_loop: asyncio.AbstractEventLoop | None = None
        self._verifier: AuthVerifier | None = None
        self._retired_verifiers: list[AuthVerifier] = []
        self._lock: DataDirLock | None = None
        self._scratch: Path | None = None
        #: where the project's parts are (set by :meth:`open`; None for an application
        #: composed in memory, as the test kit does)
        self.paths: Paths | None = None
        #: the base URL clients reach the API port at (file URLs start with it)
        self.public_url = DEFAULT_PUBLIC_URL
        #: the base URL of HTTP actions (the issuer of built-in auth's tokens)
        self.site_url = DEFAULT_SITE_URL
        #: file storage (``ctx.storage``, ``/api/storage``); None: not enabled
        self.storage: FileStorage | None = None
        #: set for one worker of several: the scheduler runs only while this holds its lease
        self.leadership: SchedulerLeadership | None = None
        #: serve the bundle ``syncline deploy`` stored in the database, when there is one,
        #: instead of the functions folder (``syncline dev`` serves its folder)
        self.use_deployed = True
        #: the deployed bundle serving now (None: the functions folder's code)
        self.deployment: Deployment | None = None
        #: whether this server writes the log history (``serve --no-log-history``: no)
        self.keeps_log_history = True

    @classmethod
    def open(
        cls,
        project: str | Path = ".",
        *,
        functions: str | Path | None = None,
        db: str | None = None,
        clock: Clock | None = None,
        durability: Durability = "full",
        dev: bool = True,
        load: bool = True,
        files: str | Path | None = None,
        max_upload_bytes: int | None = None,
        limits: ExecutionLimits | None = None,
        worker: str | None = None,
        vectors: VectorSettings | None = None,
        use_deployed: bool = True,
    ) -> Application:
        """Open a project. ``files``: the file store directory (default ``PROJECT/.syncline/files``).

        ``limits``: the time and memory limits user code runs under (default:
        :class:`~syncline.functions.limits.ExecutionLimits`).

        ``worker`` (its name in the log, e.g. ``"worker 2"``) opens the project
        as one of several processes serving it: the data folder's lock is not
        taken (the parent process holds it for all), and the scheduler runs
        only while this process holds the scheduler lease in the database
        folder (see :mod:`syncline.scheduling.leadership`).

        ``use_deployed``: once ``syncline deploy`` stored a bundle in the
        database, load that instead of the functions folder (see :meth:`load`).
        """
        paths = Paths.for_project(project, functions, db=db)
        may_have_deployment = use_deployed and (
            paths.database_file is None or paths.database_file.exists()
        )
        if load and not paths.functions.is_dir() and not may_have_deployment:
            # Say so before creating a data folder for a project that is not there.
            raise FunctionDefinitionError(
                f"No functions folder at {paths.functions}: create it, run `syncline init`, "
                "or pass --dir / --functions"
            )
        lock = DataDirLock(paths.database_dir) if worker is None else None
        try:
            persistence = open_persistence(
                paths.database_url, base=Path.cwd(), durability=durability
            )
            database = Database(persistence, clock=clock or SystemClock())
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            admin_key = _deployment_admin_key(persistence, paths.database_dir)
        except BaseException:
            database.close()
            if lock is not None:
                lock.release()
            raise
        app = cls(
            database,
            paths.functions,
            clock=clock,
            dev=dev,
            admin_key=admin_key,
            limits=limits,
            vectors=vectors,
        )
        app.paths = paths
        app._lock = lock
        app.use_deployed = use_deployed
        # Several processes on one store (workers, or nodes on PostgreSQL): one scheduler.
        node_lease = persistence.exclusive_lease("scheduler")
        if worker is not None or node_lease is not None:
            app.live.share_store()
            app.leadership = SchedulerLeadership(
                app.scheduler,
                node_lease or FileLease(paths.database_dir / SCHEDULER_LOCK_FILE),
                clock=app.clock,
                name=worker or "",
            )
        try:
            app.use_storage(
                open_file_storage(
                    paths.data / FILES_DIR_NAME if files is None else files,
                    database=database,
                    secret_dir=paths.database_dir,
                    clock=app.clock,
                    origin=lambda: app.public_url,
                    max_upload_bytes=max_upload_bytes,
                )
            )
        except BaseException:
            app.close()
            raise
        if load:
            try:
                if not paths.functions.is_dir() and stored_description(database) is None:
                    raise FunctionDefinitionError(
                        f"No functions folder at {paths.functions}: create it, run "
                        "`syncline init`, pass --dir / --functions, or `syncline deploy` "
                        "code to this database"
                    )
                app.load()
            except BaseException:
                app.close()
                raise
        return app

    @property
    def registry(self) -> FunctionRegistry:
        return self._registry

    def use_storage(self, storage: FileStorage) -> None:
        """Serve files from ``storage``: ``ctx.storage`` in functions, ``/api/storage`` routes."""
        self.storage = storage
        install_ctx_storage(self.executor, storage)

    @property
    def deployments_dir(self) -> Path:
        """Where deployed bundles are unpacked (``DATABASE_FOLDER/deployments``)."""
        if self.paths is None:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="syncline-deployments-"))
            return self._scratch
        return self.paths.database_dir / "deployments"

    def load(self) -> SchemaChange | None:
        """(Re)load the code and apply its schema.

        The code is the bundle ``syncline deploy`` stored in the database,
        when there is one and :attr:`use_deployed` holds (a log line says
        so: the functions folder is not read), else the functions folder.
        On any error (a module that fails to import, a schema the existing
        data violates) the exception propagates and the previous code and
        schema stay in service.
        """
        deployment = stored_deployment(self.database) if self.use_deployed else None
        if deployment is not None:
            log.info(
                "Serving the deployed bundle %s (deployed %s); the functions folder %s is "
                "not read (`syncline deploy` replaces the code)",
                deployment.bundle.version,
                deployment.deployed_at,
                self.functions_dir,
            )
            root = materialize(deployment, self.deployments_dir)
            change = self.set_registry(load_functions(root))
            self.deployment = deployment
            return change
        if self.functions_dir is None:
            return None
        if not self.use_deployed and stored_description(self.database) is not None:
            log.info(
                "Serving the functions folder %s; the bundle deployed to this database is "
                "not used by `syncline dev` (`syncline serve` serves it)",
                self.functions_dir,
            )
        change = self.set_registry(load_functions(self.functions_dir))
        self.deployment = None
        return change

    def set_registry(
        self,
        registry: FunctionRegistry,
        *,
        store: Mapping[str, bytes] | None = None,
        schema_applied: bool = False,
    ) -> SchemaChange:
        """Serve ``registry``'s code, after applying its schema (checked against the data).

        ``store``: globals committed with the schema (a deploy's bundle).
        ``schema_applied``: the schema is in the database already (another
        process deployed it): nothing is written.
        """
        configured = parse_providers(registry.auth_providers)
        crons = self.crons.definitions(registry)  # checked before anything changes
        self.vectors.check_schema(registry.schema)
        if schema_applied:
            change = SchemaChange()
        else:
            change = self.database.apply_schema(registry.schema, store=store)
        self._registry = registry
        if not schema_applied:  # else the deploying process synced them
            self.crons.sync(crons)
        self._configured_providers = configured
        self._use_providers(self._all_providers())
        return change

    def _use_providers(self, providers: tuple[Any, ...]) -> None:
        if providers != self._providers:
            self._providers = providers
            if self._verifier is not None:
                # Reloads run off the event loop: the old verifier's HTTP client is
                # closed by stop(), on the loop it belongs to.
                self._retired_verifiers.append(self._verifier)
                self._verifier = AuthVerifier(providers, clock=self.clock)

    def _all_providers(self) -> tuple[Any, ...]:
        """``auth_config.py``'s providers, plus built-in auth's issuer when the app uses it."""
        if "syncline.accounts" not in sys.modules:
            # No function can be built-in auth's: the functions never imported it. Built-in
            # auth (26 modules) then stays out of the server's memory.
            return self._configured_providers
        from syncline.accounts.issuer import TokenIssuer, install_issuer
        from syncline.accounts.keys import KEY_DIR_NAME, KeyStore
        from syncline.accounts.setup import find_convex_auth

        if find_convex_auth(self._registry.functions.values()) is None:
            return self._configured_providers
        if self.issuer is None:
            # The keys are in the database, shared by every node; a rotation by any of
            # them reaches this one through follow(). The data folder's copy is read once.
            legacy = None if self.paths is None else self.paths.database_dir / KEY_DIR_NAME
            keys = KeyStore.open(self.database, self.clock.now_ms(), legacy)
            keys.follow(lambda: self._use_providers(self._all_providers()))
            if self._running_loop is not None:  # auth added by a reload of a running server
                keys.start(self._running_loop)
            self.issuer = TokenIssuer(keys, lambda: self.site_url, self.clock)
            install_issuer(self.executor, self.issuer)
        return (*self._configured_providers, self.issuer.provider())

    # ------------------------------------------------------------------ serving

    async def start(self) -> None:
        """Start background work on the running event loop (live queries, auth)."""
        self.live.start()
        if self.leadership is not None:
            await self.leadership.start()
        else:
            await self.scheduler.start()
        self.env.start()
        if self.storage is not None:
            await self.storage.start()
        self._providers = self._all_providers()  # site_url is known by now
        self._verifier = AuthVerifier(self._providers, clock=self.clock)
        self._running_loop = asyncio.get_running_loop()
        if self.issuer is not None:
            self.issuer.keys.start(self._running_loop)
        await self.vectors.start()

    async def stop(self) -> None:
        # Runaway user code would hold the writer (and so the scheduler's last
        # writes) or a read thread: stop it first.
        await asyncio.to_thread(self.executor.interrupt_running)
        if self.leadership is not None:
            await self.leadership.stop()  # after the scheduler stopped: another may lead
        else:
            await self.scheduler.stop()
        await self.live.close()
        await self.vectors.stop()
        await self.env.stop()
        if self.storage is not None:
            await self.storage.stop()
        self._running_loop = None
        if self.issuer is not None:
            await self.issuer.keys.stop()
        for verifier in [*self._retired_verifiers, self._verifier]:
            if verifier is not None:
                await verifier.aclose()
        self._retired_verifiers.clear()
        self._verifier = None

    def _auth_verifier(self) -> AuthVerifier:
        if self._verifier is None:
            self._verifier = AuthVerifier(self._providers, clock=self.clock)
        return self._verifier

    async def authenticate(
        self, token_type: str, value: str | None, acting_as: dict[str, Any] | None = None
    ) -> Identity:
        """The identity for a sync ``Authenticate`` (``User`` / ``Admin`` / ``None``)."""
        kind = _TOKEN_TYPE_KINDS[token_type]
        return await identity_from_credentials(
            kind,
            value,
            acting_as,
            verifier=self._auth_verifier(),
            admin_key=self._admin_key_or_reject(kind),
        )

    async def identity_from_header(self, header: str | None) -> Identity:
        """The identity for an HTTP ``Authorization`` header."""
        kind, value, acting_as = parse_authorization_header(header)
        return await identity_from_credentials(
            kind,
            value,
            acting_as,
            verifier=self._auth_verifier(),
            admin_key=self._admin_key_or_reject(kind),
        )

    def _admin_key_or_reject(self, kind: str) -> str:
        if kind == "admin" and not self.admin_key:
            raise AuthError("This deployment has no admin key configured", code="BadAdminKey")
        return self.admin_key or ""

    async def session_mutation(
        self,
        path: str,
        args: Any,
        *,
        identity: Identity,
        session_id: str,
        request_id: int,
        maybe_resent: bool = True,
    ) -> Outcome:
        """A client's mutation, de-duplicated by (session id, request id).

        A resend is answered with the recorded result only when it is the same
        call (function path, arguments and caller); reusing the ids for another
        call fails with code ``RequestIdReused``. ``maybe_resent=False`` (the
        session's first socket) skips looking for an earlier run: nothing can
        have been sent under this session before. The outcome is recorded
        either way, for a later reconnect.
        """
        key = RequestKey(session_id, request_id, call_fingerprint(path, args, identity))
        return await self.executor.mutation(
            path,
            args,
            identity=identity,
            idempotency_key=key,
            check_resent=maybe_resent,
        )

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
            self.executor.close()
            self.vectors.close()
            self.database.close()
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Application:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
