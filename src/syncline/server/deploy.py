"""``syncline deploy``: new code for a running deployment, switched atomically.

``POST /api/admin/deploy[?dryRun=true]`` (admin only) takes a deploy bundle
(:mod:`syncline.functions.bundle`; at most ``--max-deploy-size`` bytes, 413
``DeployTooLarge`` beyond) and, one deploy at a time:

1. reads the bundle and refuses it (400 ``MissingImports``) when its code
   imports modules this server cannot find, naming each with its file and
   line — before any of its code runs;
2. unpacks it into ``DATA_FOLDER/deployments/VERSION`` and loads it into a
   fresh registry (a module that fails to import: 400
   ``FunctionDefinitionError``), and works out the schema, index and
   function diff against what serves now;
3. with ``dryRun=true``: checks the stored documents against the new schema
   on one snapshot and answers the diff and any problem; nothing changes
   (the modules loaded for the check are put back);
4. else switches: one exclusive transaction checks every stored document of
   a table whose validator changed, creates tables, builds the new indexes,
   stores the schema *and the bundle*, and commits; only then does the new
   code serve (``Application.set_registry``, the hot-reload path of
   ``syncline dev``) and every live query run again on it. Connected
   clients keep their WebSocket and subscriptions and receive the results
   that changed. A check that fails (400 ``InvalidSchema`` naming the
   document) rolls the transaction back: the old code keeps serving and
   nothing is stored.

The answer: ``{"version", "functions", "diff", "problems", "dryRun",
"elapsedMs"}`` (``diff`` as :func:`schema_diff` makes it).

Every other process serving the database — the other workers of ``serve
--workers N``, other nodes on PostgreSQL — hears of the deploy's commit like
of any schema change, finds a new bundle stored (:class:`DeploymentFollower`)
and loads it the same way, without writing. A restart serves the stored
bundle too (``Application.load``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from syncline.auth.credentials import require_admin
from syncline.database.writes import EVERYTHING_CHANGED, SCHEMA_CHANGED, Commit
from syncline.errors import FunctionDefinitionError, InvalidRequest, SynclineError
from syncline.functions.bundle import (
    BUNDLE_KEY,
    DEFAULT_MAX_DEPLOY_BYTES,
    DEPLOYMENT_KEY,
    Bundle,
    Deployment,
    describe,
    discard,
    materialize,
    missing_imports,
    read_bundle,
    stored_deployment,
    stored_description,
    too_large,
    unpack,
)
from syncline.functions.loader import FunctionRegistry, load_functions
from syncline.server.api import error_answer

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.schema import Schema

__all__ = [
    "DEFAULT_MAX_DEPLOY_BYTES",
    "DEPLOY_PATH",
    "Deployer",
    "DeploymentFollower",
    "routes",
    "schema_diff",
]

log = logging.getLogger("syncline.deploy")

DEPLOY_PATH = "/api/admin/deploy"


# --------------------------------------------------------------------------- the diff


def _tables(schema: Schema | None) -> dict[str, dict[str, Any]]:
    if schema is None:
        return {}
    return {table["tableName"]: table for table in schema.to_json()["tables"]}


def _indexes(name: str, table: dict[str, Any]) -> dict[str, str]:
    """``table.index`` -> a description of every index of one table (its kind and fields)."""
    found = {}
    for index in table.get("indexes", ()):
        found[f"{name}.{index['indexDescriptor']}"] = f"({', '.join(index['fields'])})"
    for index in table.get("searchIndexes", ()):
        filters = index["filterFields"]
        extra = f", filter {', '.join(filters)}" if filters else ""
        found[f"{name}.{index['indexDescriptor']}"] = f"search ({index['searchField']}{extra})"
    for index in table.get("vectorIndexes", ()):
        found[f"{name}.{index['indexDescriptor']}"] = (
            f"vector ({index['vectorField']}, {index['dimensions']} dimensions)"
        )
    return found


def _fields(document_type: dict[str, Any]) -> dict[str, Any] | None:
    if document_type.get("type") != "object":
        return None
    fields: dict[str, Any] = document_type["value"]
    return fields


def schema_diff(old: Schema | None, new: Schema | None) -> dict[str, Any]:
    """What changes between two schemas, as JSON.

    ``{"tables": {"added", "removed"}, "fields": {table: {"added", "removed",
    "changed"}}, "validators": [tables whose document type changed otherwise],
    "indexes": {"added", "removed"}}``; an index whose fields change is
    removed and added (it is rebuilt). A table leaving the schema keeps its
    documents (it is no longer validated).
    """
    before, after = _tables(old), _tables(new)
    diff: dict[str, Any] = {
        "tables": {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
        },
        "fields": {},
        "validators": [],
        "indexes": {"added": [], "removed": []},
    }
    old_indexes: dict[str, str] = {}
    new_indexes: dict[str, str] = {}
    for name, table in before.items():
        old_indexes.update(_indexes(name, table))
    for name, table in after.items():
        new_indexes.update(_indexes(name, table))
    for key in sorted(new_indexes):
        if old_indexes.get(key) != new_indexes[key]:
            diff["indexes"]["added"].append(f"{key} {new_indexes[key]}")
    for key in sorted(old_indexes):
        if new_indexes.get(key) != old_indexes[key]:
            diff["indexes"]["removed"].append(f"{key} {old_indexes[key]}")
    for name in sorted(before.keys() & after.keys()):
        old_type, new_type = before[name]["documentType"], after[name]["documentType"]
        if old_type == new_type:
            continue
        old_fields, new_fields = _fields(old_type), _fields(new_type)
        if old_fields is None or new_fields is None:
            diff["validators"].append(name)
            continue
        diff["fields"][name] = {
            "added": sorted(new_fields.keys() - old_fields.keys()),
            "removed": sorted(old_fields.keys() - new_fields.keys()),
            "changed": sorted(
                f for f in old_fields.keys() & new_fields.keys() if old_fields[f] != new_fields[f]
            ),
        }
    return diff


def _functions_diff(old: FunctionRegistry, new: FunctionRegistry) -> dict[str, list[str]]:
    return {
        "added": sorted(new.functions.keys() - old.functions.keys()),
        "removed": sorted(old.functions.keys() - new.functions.keys()),
    }


# --------------------------------------------------------------------------- deploying


@contextlib.contextmanager
def _modules_kept(package: str) -> Iterator[list[bool]]:
    """Put ``package``'s modules and ``sys.path`` back as they were, unless told to keep.

    Loading a bundle replaces the package's entries in ``sys.modules``: a
    dry run, or a deploy that fails its checks, must leave the serving
    code's modules (which its functions may still import lazily) in place.
    Setting the yielded ``[False]`` to ``[True]`` keeps the new ones.
    """
    saved = {n: m for n, m in sys.modules.items() if n == package or n.startswith(package + ".")}
    path = list(sys.path)
    keep = [False]
    try:
        yield keep
    finally:
        if not keep[0]:
            for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                del sys.modules[name]
            sys.modules.update(saved)
            sys.path[:] = path


@dataclass
class _Loaded:
    bundle: Bundle
    registry: FunctionRegistry
    folder: Path


class Deployer:
    """Deploys bundles to one application, one at a time (see the module docstring)."""

    def __init__(self, app: Application, *, max_bytes: int = DEFAULT_MAX_DEPLOY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: one deploy (or one follow of another process's deploy) at a time
        self.lock = threading.Lock()

    def _serving(self) -> set[str]:
        deployment = self.app.deployment
        return set() if deployment is None else {deployment.bundle.version}

    def _load(self, bundle: Bundle) -> _Loaded:
        missing = missing_imports(bundle)
        if missing:
            listed = ", ".join(str(m) for m in missing)
            raise FunctionDefinitionError(
                f"The server cannot import {listed}: install {'it' if len(missing) == 1 else 'them'} "
                "where the server runs (e.g. pip install), then deploy again. Nothing was changed.",
                code="MissingImports",
            )
        folder = self.app.deployments_dir / bundle.version
        root = unpack(bundle, folder)
        try:
            registry = load_functions(root)
        except BaseException:
            self._forget(folder)
            raise
        return _Loaded(bundle, registry, folder)

    def _forget(self, folder: Path) -> None:
        if folder.name not in self._serving():
            shutil.rmtree(folder, ignore_errors=True)

    def deploy(self, data: bytes, *, dry_run: bool = False) -> dict[str, Any]:
        """Check and (unless ``dry_run``) switch to the bundle ``data``; the answer's JSON.

        Runs user code (the bundle's modules): call it off the event loop.
        Raises the :class:`SynclineError` that refused the bundle.
        """
        if not self.app.use_deployed:
            raise InvalidRequest(
                "This server is `syncline dev`, which serves its functions folder: deploy to "
                "a `syncline serve` deployment",
                code="DeployToDevServer",
            )
        started = time.perf_counter()
        with self.lock:
            old_registry = self.app.registry
            bundle = read_bundle(data, max_bytes=self.max_bytes)
            with _modules_kept(bundle.package) as keep:
                loaded = self._load(bundle)
                diff = {
                    **schema_diff(self.app.database.schema, loaded.registry.schema),
                    "functions": _functions_diff(old_registry, loaded.registry),
                }
                problems: list[str] = []
                try:
                    if dry_run:
                        problems = self._check(loaded.registry)
                    else:
                        self._switch(loaded)
                        keep[0] = True
                finally:
                    if not keep[0]:
                        self._forget(loaded.folder)
        return {
            "version": loaded.bundle.version,
            "functions": len(loaded.registry.functions),
            "diff": diff,
            "problems": problems,
            "dryRun": dry_run,
            "elapsedMs": round((time.perf_counter() - started) * 1000, 1),
        }

    def _check(self, registry: FunctionRegistry) -> list[str]:
        if registry.schema is None:
            return []
        try:
            self.app.vectors.check_schema(registry.schema)
            self.app.database.check_documents(registry.schema)
        except SynclineError as exc:
            return [str(exc)]
        return []

    def _switch(self, loaded: _Loaded) -> None:
        bundle = loaded.bundle
        raw = describe(
            bundle, now_ms=int(self.app.clock.now_ms()), functions=len(loaded.registry.functions)
        )
        self.app.set_registry(loaded.registry, store={DEPLOYMENT_KEY: raw, BUNDLE_KEY: bundle.data})
        previous = self._serving()
        self.app.deployment = Deployment(raw, bundle)
        # Keep the previous bundle's files: code of the old version may still be running.
        discard(self.app.deployments_dir, keep={bundle.version, *previous})
        log.info(
            "Deployed bundle %s: %d functions now serving",
            bundle.version,
            len(loaded.registry.functions),
        )

    def follow(self) -> bool:
        """Serve the bundle another process deployed, if one newer than ours is stored.

        Nothing is written: that process applied the schema. True if the code changed.
        """
        app = self.app
        raw = stored_description(app.database)
        current = None if app.deployment is None else app.deployment.raw
        if raw is None or raw == current:
            return False
        with self.lock:
            deployment = stored_deployment(app.database)
            if deployment is None or (app.deployment and deployment.raw == app.deployment.raw):
                return False
            previous = self._serving()
            root = materialize(deployment, app.deployments_dir)
            with _modules_kept(deployment.bundle.package) as keep:
                registry = load_functions(root)
                app.set_registry(registry, schema_applied=True)
                keep[0] = True
            app.deployment = deployment
            discard(app.deployments_dir, keep={deployment.bundle.version, *previous})
        log.info(
            "Serving bundle %s, deployed by another process (%d functions)",
            deployment.bundle.version,
            len(registry.functions),
        )
        return True


class DeploymentFollower:
    """Makes one process serve what other processes sharing its database deploy.

    A deploy commits with the schema-changed flag; on such a commit from
    another process (or a gap in the commit log) the stored bundle is
    compared with the one serving here, and a new one is loaded
    (:meth:`Deployer.follow`) and every live query run again.
    """

    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_commits(self, commits: list[Commit]) -> None:
        loop = self._loop
        if loop is None:
            return
        if any(not c.local and c.flags & (SCHEMA_CHANGED | EVERYTHING_CHANGED) for c in commits):
            with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping
                loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        app = self.deployer.app
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                changed = await asyncio.to_thread(self.deployer.follow)
            except Exception:
                log.exception("Could not load the newly deployed bundle; the previous code serves")
                continue
            if changed:
                app.live.rerun_all()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Follow deploys while the block runs (a ``syncline dev`` server does not)."""
        app = self.deployer.app
        if not app.use_deployed:
            yield
            return
        self._loop = asyncio.get_running_loop()
        app.database.add_commit_listener(self._on_commits)
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            app.database.remove_commit_listener(self._on_commits)
            self._loop = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------- HTTP


class DeployApi:
    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer

    async def deploy(self, request: Request) -> Response:
        app = self.deployer.app
        try:
            identity = await app.identity_from_header(request.headers.get("authorization"))
            require_admin(identity, f"POST {DEPLOY_PATH}")
            dry_run = request.query_params.get("dryRun", "false") == "true"
            data = await self._receive(request)
            answer = await asyncio.to_thread(self.deployer.deploy, data, dry_run=dry_run)
        except SynclineError as exc:
            status, body = error_answer(exc)
            if exc.code == "DeployTooLarge":
                status = 413
            elif status == 500 and exc.code != "InternalError":
                status = 400  # the bundle was refused; the server is fine
            return Response(body, status_code=status, media_type="application/json")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it; nothing was deployed
        if not dry_run:
            app.live.rerun_all()
        return Response(orjson.dumps(answer), media_type="application/json")

    async def _receive(self, request: Request) -> bytes:
        limit = self.deployer.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(int(declared), limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large(len(body), limit)
        return bytes(body)


def routes(application: Application, deployer: Deployer) -> list[Route]:
    """The deploy route (see the module docstring)."""
    api = DeployApi(deployer)
    return [Route(DEPLOY_PATH, api.deploy, methods=["POST"])]
