"""End-to-end fixtures: real ``syncline serve`` / ``syncline dev`` processes on free ports.

* ``project(files=None, auth=True)`` writes a project (``functions/`` with the
  modules in :data:`BASE_FILES` plus an ``auth_config.py`` trusting
  :data:`ISSUER`) and returns its folder. ``files`` adds or replaces modules.
* ``start_server(project, mode="serve")`` (from ``tests/conftest.py``) runs
  ``python -m syncline serve --dir PROJECT --port N --site-port M`` on free ports, waits
  for ``GET /version`` (20 s) and returns a :class:`ServerProcess`; every server
  it started is stopped (SIGTERM, then SIGKILL) when the test ends.
* ``server`` is one shared production server per test module; ``server.url``
  (also ``str(server)``) is its base URL, ``server.admin_key`` the admin key.
  Tests that share it use unique titles/values.
* ``jwt_issuer`` holds an RSA key made at test time; ``jwt_issuer.token(sub)``
  signs a JWT that the project's ``auth_config.py`` accepts.

When a test fails, the log of every server that was running is attached to
the report (section "syncline server log"). Servers run with
``SYNCLINE_TRACE_PROTOCOL=1`` so the log shows every sync frame; set
``SYNCLINE_TEST_TRACE=0`` to turn that off.
"""

from __future__ import annotations

import shutil
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import StartServer, trace_env
from syncline._devtools import ServerProcess, launch

ISSUER = "https://issuer.test"
APPLICATION_ID = "my-app"
KEY_ID = "e2e-key-1"

BASE_FILES: dict[str, str] = {
    "tasks.py": """
        from syncline import ConvexError, Int64, action, internal_query, mutation, query, v


        @query
        def list(ctx):
            return ctx.db.query("tasks").order("desc").take(50)


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            if title == "bad":
                raise ConvexError({"why": "bad"})
            return ctx.db.insert("tasks", {"title": title})


        @action(args={"x": v.number()})
        async def double(ctx, x):
            return x * 2


        @internal_query
        def count(ctx):
            return Int64(len(ctx.db.query("tasks").collect()))


        @action(args={"title": v.string()})
        async def add_via_action(ctx, title):
            doc_id = await ctx.run_mutation("tasks:add", {"title": title})
            newest = await ctx.run_query("tasks:list", {})
            return {"id": doc_id, "newest": newest[0]["title"]}
    """,
    "values.py": '''
        from syncline import Int64, mutation, query, v


        def _describe(value):
            """The server-side Python type of every leaf of ``value``."""
            if isinstance(value, dict):
                return {k: _describe(x) for k, x in value.items()}
            if isinstance(value, list):
                return [_describe(x) for x in value]
            return type(value).__name__


        @mutation(args={"value": v.any()})
        def store(ctx, value):
            """Insert ``value`` in a document; return the id and the value as stored."""
            doc_id = ctx.db.insert("values", {"value": value})
            return {"id": doc_id, "value": ctx.db.get(doc_id)["value"]}


        @query(args={"id": v.id("values")})
        def get(ctx, id):
            doc = ctx.db.get(id)
            return None if doc is None else doc["value"]


        @query(args={"value": v.any()})
        def describe(ctx, value):
            return _describe(value)


        @query(args={"n": v.number()})
        def big(ctx, n):
            """A large result: n characters in 1000-character strings."""
            return ["x" * 1000 for _ in range(int(n) // 1000)]


        @query
        def constants(ctx):
            return {
                "min": Int64(-(2**63)),
                "max": Int64(2**63 - 1),
                "small": Int64(-2),
                "bytes": bytes(range(256)),
                "empty": b"",
                "nan": float("nan"),
                "inf": float("inf"),
                "ninf": float("-inf"),
                "nzero": -0.0,
                "float": 1.5,
            }
    ''',
    "users.py": '''
        from syncline import ConvexError, action, mutation, query, v


        def _identity(ctx):
            ident = ctx.auth.get_user_identity()
            if ident is None:
                return None
            return {
                "subject": ident.subject,
                "issuer": ident.issuer,
                "tokenIdentifier": ident.token_identifier,
                "email": ident.email,
                "name": ident.name,
            }


        @query
        def whoami(ctx):
            return _identity(ctx)


        @action
        async def whoami_action(ctx):
            return _identity(ctx)


        @mutation(args={"title": v.string()})
        def add_mine(ctx, title):
            ident = ctx.auth.get_user_identity()
            if ident is None:
                raise ConvexError("sign in first")
            return ctx.db.insert("owned", {"owner": ident.token_identifier, "title": title})


        @mutation(args={"owner": v.union(v.string(), v.null()), "title": v.string()})
        def add_for(ctx, owner, title):
            """A task of any owner (None: the anonymous caller's): a known change for a test."""
            return ctx.db.insert("owned", {"owner": owner, "title": title})


        @query
        def my_tasks(ctx):
            """Reads the database AND the identity: one live result per caller."""
            ident = ctx.auth.get_user_identity()
            owner = None if ident is None else ident.token_identifier
            docs = ctx.db.query("owned").filter(lambda q: q.eq(q.field("owner"), owner)).collect()
            return [d["title"] for d in docs]
    ''',
    "items.py": """
        from syncline import mutation, query, v


        @mutation(args={"tag": v.string(), "n": v.number()})
        def add_many(ctx, tag, n):
            return [ctx.db.insert("items", {"tag": tag, "n": float(i)}) for i in range(int(n))]


        @mutation(args={"tag": v.string(), "n": v.number()})
        def add_one(ctx, tag, n):
            return ctx.db.insert("items", {"tag": tag, "n": n})


        @mutation(args={"id": v.id("items")})
        def remove(ctx, id):
            ctx.db.delete(id)


        @query(args={"tag": v.string(), "paginationOpts": v.any()})
        def page(ctx, tag, paginationOpts):
            return (
                ctx.db.query("items")
                .filter(lambda q: q.eq(q.field("tag"), tag))
                .order("desc")
                .paginate(paginationOpts)
            )
    """,
    "counters.py": """
        from syncline import mutation, query, v


        def _find(ctx, name):
            return ctx.db.query("counters").filter(lambda q: q.eq(q.field("name"), name)).first()


        @mutation(args={"name": v.string()})
        def increment(ctx, name):
            doc = _find(ctx, name)
            if doc is None:
                ctx.db.insert("counters", {"name": name, "value": 1.0})
                return 1.0
            ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
            return doc["value"] + 1


        @query(args={"name": v.string()})
        def get(ctx, name):
            doc = _find(ctx, name)
            return 0.0 if doc is None else doc["value"]
    """,
    "admin/stats.py": """
        from syncline import query


        @query
        def task_count(ctx):
            return float(len(ctx.db.query("tasks").collect()))
    """,
    "failures.py": """
        from syncline import ConvexError, action, mutation, query, v


        @query(args={"data": v.any()})
        def convex_error(ctx, data):
            raise ConvexError(data)


        @query
        def plain_error(ctx):
            raise ValueError("secret-detail-1234")


        @mutation
        def plain_mutation_error(ctx):
            ctx.db.insert("tasks", {"title": "never committed"})
            raise RuntimeError("secret-detail-5678")


        @action(args={"data": v.any()})
        async def convex_error_action(ctx, data):
            raise ConvexError(data)


        @query(args={"tag": v.string()})
        def fails_until_item(ctx, tag):
            # A ConvexError until an item with `tag` exists, then the item count.
            docs = ctx.db.query("items").filter(lambda q: q.eq(q.field("tag"), tag)).collect()
            if not docs:
                raise ConvexError({"missing": tag})
            return float(len(docs))
    """,
}


# ----------------------------------------------------------------------------- JWT


class JwtIssuer:
    """An RSA signing key made at test time and the JWKS that publishes it."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
        self.jwks: dict[str, Any] = {"keys": [jwk]}

    def token(
        self,
        subject: str,
        *,
        lifetime_s: float = 3600,
        audience: str = APPLICATION_ID,
        issuer: str = ISSUER,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + int(lifetime_s),
            **claims,
        }
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": KEY_ID})


@pytest.fixture(scope="session")
def jwt_issuer() -> JwtIssuer:
    return JwtIssuer()


def auth_config_source(jwks: Mapping[str, Any]) -> str:
    provider = {
        "type": "custom_jwt",
        "issuer": ISSUER,
        "jwks": dict(jwks),
        "algorithm": "RS256",
        "application_id": APPLICATION_ID,
    }
    return f"providers = [{provider!r}]\n"


# ----------------------------------------------------------------------------- projects


def write_project(root: Path, files: Mapping[str, str]) -> Path:
    functions = root / "functions"
    functions.mkdir(parents=True, exist_ok=True)
    for rel, source in files.items():
        path = functions / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return root


MakeProject = Callable[..., Path]


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, jwt_issuer: JwtIssuer) -> MakeProject:
    """``project(files=None, *, auth=True) -> Path``: a fresh project folder."""

    def make(files: Mapping[str, str] | None = None, *, auth: bool = True) -> Path:
        merged = dict(BASE_FILES)
        if auth:
            merged["auth_config.py"] = auth_config_source(jwt_issuer.jwks)
        merged.update(files or {})
        return write_project(tmp_path_factory.mktemp("project"), merged)

    return make


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def server(project: MakeProject) -> Iterator[ServerProcess]:
    """A production (``syncline serve``) server shared by the tests of one module."""
    proc = launch(project(), mode="serve", env=trace_env())
    try:
        yield proc
        assert proc.alive(), f"the server died during the tests:\n{proc.log()}"
    finally:
        proc.stop()


StartNode = Callable[..., ServerProcess]


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh database on the tests' PostgreSQL server (skipped without one, but in CI)."""
    from harness import require_module
    from postgres_databases import database_for_test

    require_module("psycopg", "pip install -e '.[postgres]'")
    with database_for_test("syncline_nodes") as url:
        yield url


@pytest.fixture
def start_node(
    project: MakeProject, start_server: StartServer, database_url: str, tmp_path: Path
) -> Iterator[StartNode]:
    """``start_node(db=None, env=None, restartable=False)``: one more ``serve`` node on
    the test's database.

    Each node is a copy of the project of ``tests/e2e/test_workers.py`` in its
    own folder (its data folder lock and files), as on separate machines. A
    ``restartable`` node listens on ports below the kernel's ephemeral range, so
    ``node.restart()`` finds them free again.
    """
    from postgres_cluster import ports_below_ephemeral_range

    from .test_workers import WORKER_FILES

    source = project(WORKER_FILES, auth=False)
    nodes: list[ServerProcess] = []
    own: list[ServerProcess] = []

    def start(
        db: str | None = None, env: Mapping[str, str] | None = None, restartable: bool = False
    ) -> ServerProcess:
        folder = tmp_path / f"node{len(nodes)}"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".syncline"))
        args = ["--db", db or database_url]
        if restartable:
            node = ServerProcess(folder, env={**trace_env(), **(env or {})}, args=args)
            node.port, node.site_port = ports_below_ephemeral_range(2)
            own.append(node)
            node.run()
        else:
            node = start_server(folder, args=args, env=env)
        nodes.append(node)
        return node

    yield start
    for node in own:
        node.stop()


@pytest.fixture
def unique() -> str:
    """A short unique string for titles and values on a shared server."""
    return uuid.uuid4().hex[:12]


# ----------------------------------------------------------------------------- markers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)
